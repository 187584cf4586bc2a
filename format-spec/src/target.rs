//! The [`Target`] trait: everything the analyzer reads goes through it, so a
//! snapshot file, a core file and a live domain look the same to the engine.

use crate::model::{Metadata, VcpuState};

/// Why a memory read failed. Every variant names the address, so a value
/// that could not be read is never mistaken for zeroes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The page containing `address` was not captured.
    #[error("cannot read {len} bytes at {address:#x}: page not captured")]
    NotCaptured {
        /// First address that could not be read.
        address: u64,
        /// Length of the whole request.
        len: usize,
    },
    /// The page tables rooted at `cr3` do not map `address`.
    #[error("cannot read {len} bytes at {address:#x}: not mapped by the page tables at cr3 {cr3:#x}")]
    NotMapped {
        /// Virtual address that has no translation.
        address: u64,
        /// Length of the whole request.
        len: usize,
        /// Root of the page tables that were walked.
        cr3: u64,
    },
    /// A page-table entry could not be read while translating `address`.
    #[error("cannot translate {address:#x}: page-table entry at physical {entry_address:#x} not captured")]
    PageTableNotCaptured {
        /// Virtual address being translated.
        address: u64,
        /// Physical address of the entry that was missing.
        entry_address: u64,
    },
    /// The stored data for the page is damaged (checksum or decompression).
    #[error("cannot read {len} bytes at {address:#x}: {reason}")]
    Corrupt {
        /// First address that could not be read.
        address: u64,
        /// Length of the whole request.
        len: usize,
        /// What is damaged, with its file offset.
        reason: String,
    },
    /// A live target failed to return the memory.
    #[error("cannot read {len} bytes at {address:#x}: {reason}")]
    Target {
        /// First address that could not be read.
        address: u64,
        /// Length of the whole request.
        len: usize,
        /// The failure the target reported.
        reason: String,
    },
}

/// A range of guest memory that the source has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryRange {
    /// First guest physical address of the range.
    pub start: u64,
    /// Length in bytes.
    pub len_bytes: u64,
}

/// A source of vCPU state and guest memory.
///
/// Methods take `&self`; live targets keep their connection behind interior
/// mutability, so the engine can hold one reference for the whole analysis.
pub trait Target {
    /// Facts about the source.
    fn metadata(&self) -> &Metadata;

    /// Register state of every vCPU, in vCPU id order.
    fn vcpus(&self) -> &[VcpuState];

    /// Reads guest physical memory at `address` into `buf`, whole or not at all.
    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Reads guest virtual memory at `address`, translated through the page
    /// tables rooted at `cr3`, into `buf`, whole or not at all.
    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Ranges of guest physical memory the source has, in address order.
    fn memory_map(&self) -> Vec<MemoryRange>;
}
