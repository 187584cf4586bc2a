//! Stack memory for the unwinder: one address space of the target.

use stardump_format::{MemoryError, Target};

/// Guest virtual memory of one address space.
pub trait StackMemory {
    /// Reads `buf.len()` bytes at `address`, whole or not at all.
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Reads one little-endian 64-bit word at `address`.
    fn read_u64(&self, address: u64) -> Result<u64, MemoryError> {
        let mut word = [0u8; 8];
        self.read(address, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }
}

/// The address space rooted at one vCPU's cr3 in a [`Target`].
pub struct TargetMemory<'t> {
    target: &'t dyn Target,
    cr3: u64,
}

impl<'t> TargetMemory<'t> {
    /// Reads `target`'s memory through the page tables rooted at `cr3`.
    pub fn new(target: &'t dyn Target, cr3: u64) -> Self {
        TargetMemory { target, cr3 }
    }
}

impl StackMemory for TargetMemory<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_virtual(self.cr3, address, buf)
    }
}

/// A stack given as an array of words at a base address, for tests.
#[cfg(test)]
pub(crate) struct WordStack {
    pub base: u64,
    pub words: Vec<u64>,
}

#[cfg(test)]
impl StackMemory for WordStack {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let not_captured = MemoryError::NotCaptured { address, len: buf.len() };
        let offset = address.checked_sub(self.base).ok_or(not_captured.clone())?;
        let bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let start = usize::try_from(offset).map_err(|_| not_captured.clone())?;
        let end = start.checked_add(buf.len()).ok_or(not_captured.clone())?;
        let source = bytes.get(start..end).ok_or(not_captured)?;
        buf.copy_from_slice(source);
        Ok(())
    }
}

/// Memory of which nothing was captured: every read fails. Values that
/// DWARF computes from registers and constants need no memory.
pub struct EmptyMemory;

impl StackMemory for EmptyMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        Err(MemoryError::NotCaptured { address, len: buf.len() })
    }
}

/// Memory as the image file describes it before the program runs: the
/// file-backed bytes of each `PT_LOAD` segment, and zeros for the rest of
/// the segment (`.bss`). Reading initialized globals needs nothing else,
/// which is how a program's static data can be printed without a capture.
pub struct ImageMemory<'i> {
    image: &'i crate::image::Image,
}

impl<'i> ImageMemory<'i> {
    /// Reads the load segments of `image`.
    pub fn new(image: &'i crate::image::Image) -> Self {
        ImageMemory { image }
    }
}

impl StackMemory for ImageMemory<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let not_captured = MemoryError::NotCaptured { address, len: buf.len() };
        let len = buf.len() as u64;
        let segment = self
            .image
            .segments()
            .iter()
            .find(|segment| {
                address >= segment.address
                    && (address - segment.address).checked_add(len).is_some_and(|end| end <= segment.memory_len_bytes)
            })
            .ok_or(not_captured.clone())?;
        let offset = address - segment.address;
        for (index, byte) in buf.iter_mut().enumerate() {
            let position = offset + index as u64;
            *byte = if position < segment.file_len_bytes {
                *self.image.bytes_at(segment.address + position, 1).ok_or(not_captured.clone())?.first().unwrap_or(&0)
            } else {
                0
            };
        }
        Ok(())
    }
}
