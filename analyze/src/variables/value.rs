//! Values: a type and where its bytes are, each byte known or not.
//!
//! A value in target memory is read lazily, member by member, so printing
//! the first 200 elements of a large array reads only those. A value that
//! DWARF assembles from registers and pieces carries its bytes, with holes
//! where a piece is optimized out or its memory was not captured.

use std::ops::Range;

use stardump_format::MemoryError;

use super::dwarf::DieId;
use super::types::TypeRef;
use crate::unwind::StackMemory;

/// Maximum number of bytes read into one value at once. Larger objects are
/// read lazily, element by element, as the printer needs them.
pub const MAX_VALUE_BYTES: u64 = 1 << 20;

/// Why some bytes of a value are not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hole {
    /// DWARF states that the value (or this piece) does not exist at this pc.
    OptimizedOut,
    /// A register the value lives in was not recovered in this frame.
    NotSaved {
        /// The register's name.
        register: String,
    },
    /// The memory was not captured or could not be read.
    Unreadable {
        /// The first address that could not be read.
        address: u64,
        /// Why.
        reason: String,
    },
    /// A pointer DWARF describes by what it points to
    /// (`DW_OP_implicit_pointer`), which has no address to print. `*p`
    /// reads `byte_offset` bytes into the variable `target`.
    SyntheticPointer {
        /// The DIE of the variable the pointer points into.
        target: DieId,
        /// The byte offset into that variable.
        byte_offset: i64,
    },
    /// A location stardump cannot evaluate, such as the thread-local storage
    /// of a shared object.
    Unsupported(String),
    /// The location could not be evaluated.
    Error(String),
}

impl Hole {
    /// Returns the text gdb prints in place of the value.
    pub fn marker(&self) -> String {
        match self {
            Hole::OptimizedOut => "<optimized out>".to_owned(),
            Hole::NotSaved { .. } => "<not saved>".to_owned(),
            Hole::Unreadable { address, reason } => format!("<unreadable at {address:#x}: {reason}>"),
            Hole::SyntheticPointer { .. } => "<synthetic pointer>".to_owned(),
            Hole::Unsupported(what) => format!("<{what}: not supported>"),
            Hole::Error(reason) => format!("<error: {reason}>"),
        }
    }

    /// Returns the hole for a failed memory read.
    pub fn from_memory(error: &MemoryError) -> Hole {
        let address = match error {
            MemoryError::NotCaptured { address, .. }
            | MemoryError::NotMapped { address, .. }
            | MemoryError::PageTableNotCaptured { address, .. }
            | MemoryError::Corrupt { address, .. }
            | MemoryError::Target { address, .. } => *address,
        };
        let reason = match error {
            MemoryError::NotCaptured { .. } => "page not captured".to_owned(),
            MemoryError::NotMapped { cr3, .. } => format!("not mapped by the page tables at cr3 {cr3:#x}"),
            MemoryError::PageTableNotCaptured { entry_address, .. } => {
                format!("page-table entry at physical {entry_address:#x} not captured")
            }
            MemoryError::Corrupt { reason, .. } | MemoryError::Target { reason, .. } => reason.clone(),
        };
        Hole::Unreadable { address, reason }
    }
}

/// Where a value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// In target memory at this address.
    Memory(u64),
    /// Known bytes, with holes: byte ranges that are not known and why.
    Bytes {
        /// The bytes; those inside a hole are zero.
        bytes: Vec<u8>,
        /// Unknown byte ranges.
        holes: Vec<(Range<usize>, Hole)>,
    },
    /// Nothing is known, for this reason.
    Missing(Hole),
}

/// A typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// Its type.
    pub ty: TypeRef,
    /// Its bytes.
    pub contents: Contents,
}

impl Value {
    /// A value in memory at `address`.
    pub fn in_memory(ty: TypeRef, address: u64) -> Value {
        Value { ty, contents: Contents::Memory(address) }
    }

    /// A value with known bytes.
    pub fn from_bytes(ty: TypeRef, bytes: Vec<u8>) -> Value {
        Value { ty, contents: Contents::Bytes { bytes, holes: Vec::new() } }
    }

    /// A value of which nothing is known.
    pub fn missing(ty: TypeRef, hole: Hole) -> Value {
        Value { ty, contents: Contents::Missing(hole) }
    }

    /// The value's address, when it is in memory (an lvalue).
    pub fn address(&self) -> Option<u64> {
        match self.contents {
            Contents::Memory(address) => Some(address),
            _ => None,
        }
    }

    /// Returns the part of the value at `offset` with type `ty` (a member
    /// or an element).
    pub fn slice(&self, offset: u64, len: u64, ty: TypeRef) -> Value {
        let contents = match &self.contents {
            Contents::Memory(address) => match address.checked_add(offset) {
                Some(address) => Contents::Memory(address),
                None => Contents::Missing(Hole::Error(format!("address {address:#x} + {offset:#x} overflows"))),
            },
            Contents::Missing(hole) => Contents::Missing(hole.clone()),
            Contents::Bytes { bytes, holes } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                match bytes.get(start..end) {
                    Some(part) => {
                        let holes = holes
                            .iter()
                            .filter(|(range, _)| range.start < end && range.end > start)
                            .map(|(range, hole)| {
                                (range.start.max(start) - start..range.end.min(end) - start, hole.clone())
                            })
                            .collect();
                        Contents::Bytes { bytes: part.to_vec(), holes }
                    }
                    None => Contents::Missing(Hole::Error(format!(
                        "{len} bytes at offset {offset} lie outside a value of {} bytes",
                        bytes.len()
                    ))),
                }
            }
        };
        Value { ty, contents }
    }

    /// Reads `len` bytes of the value from `offset`, or the first reason
    /// some of them are unknown.
    pub fn read(&self, memory: &dyn StackMemory, offset: u64, len: u64) -> Result<Vec<u8>, Hole> {
        if len > MAX_VALUE_BYTES {
            return Err(Hole::Error(format!("value of {len} bytes is larger than the {MAX_VALUE_BYTES}-byte limit")));
        }
        let len_usize = len as usize;
        match &self.contents {
            Contents::Memory(address) => {
                let address = address
                    .checked_add(offset)
                    .ok_or_else(|| Hole::Error(format!("address {address:#x} + {offset:#x} overflows")))?;
                let mut buf = vec![0u8; len_usize];
                memory.read(address, &mut buf).map_err(|error| Hole::from_memory(&error))?;
                Ok(buf)
            }
            Contents::Missing(hole) => Err(hole.clone()),
            Contents::Bytes { bytes, holes } => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(len_usize);
                if let Some((_, hole)) = holes.iter().find(|(range, _)| range.start < end && range.end > start) {
                    return Err(hole.clone());
                }
                bytes.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
                    Hole::Error(format!("{len} bytes at offset {offset} lie outside a value of {} bytes", bytes.len()))
                })
            }
        }
    }

    /// Returns the first reason some of the value's `len` bytes are unknown
    /// without reading memory.
    pub fn first_hole(&self) -> Option<&Hole> {
        match &self.contents {
            Contents::Missing(hole) => Some(hole),
            Contents::Bytes { holes, .. } => holes.first().map(|(_, hole)| hole),
            Contents::Memory(_) => None,
        }
    }
}

/// Returns `bytes` (little-endian) as an unsigned integer; at most 8 bytes count.
pub fn le_unsigned(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let len = bytes.len().min(8);
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(word)
}

/// Returns `bytes` (little-endian) as a sign-extended integer.
pub fn le_signed(bytes: &[u8]) -> i64 {
    let len = bytes.len().min(8);
    if len == 0 {
        return 0;
    }
    let value = le_unsigned(bytes);
    let shift = 64 - 8 * len as u32;
    ((value << shift) as i64) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_extension() {
        assert_eq!(le_signed(&[0xff]), -1);
        assert_eq!(le_signed(&[0xfe, 0xff, 0xff, 0xff]), -2);
        assert_eq!(le_signed(&[0x7f]), 127);
        assert_eq!(le_unsigned(&[0x34, 0x12]), 0x1234);
    }

    #[test]
    fn slice_keeps_holes() {
        let value = Value {
            ty: TypeRef::Void,
            contents: Contents::Bytes { bytes: vec![1, 2, 3, 4, 5, 6, 7, 8], holes: vec![(4..8, Hole::OptimizedOut)] },
        };
        let memory = crate::unwind::memory::EmptyMemory;
        assert_eq!(value.slice(0, 4, TypeRef::Void).read(&memory, 0, 4), Ok(vec![1, 2, 3, 4]));
        assert_eq!(value.slice(2, 4, TypeRef::Void).read(&memory, 0, 4), Err(Hole::OptimizedOut));
        assert_eq!(value.read(&memory, 6, 4), Err(Hole::OptimizedOut));
    }
}
