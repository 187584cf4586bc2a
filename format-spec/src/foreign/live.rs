//! [`LiveCore`]: a live target that a crate with the live backends opened
//! (the analyzer's `gdb:HOST:PORT`), carried in a [`super::Core`] so the
//! commands read it like a file.
//!
//! This crate has no live backend, so the opener passes its target boxed.
//! Dropping the `LiveCore` drops that target, which resumes or releases
//! what it paused.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{Metadata, VcpuState};
use crate::target::{MemoryError, MemoryRange, Target};

/// A live target read on demand.
pub struct LiveCore {
    /// The target's name as the user wrote it, as a path so that
    /// [`super::Core::path`] can return it.
    name: PathBuf,
    target: Box<dyn Target + Send + Sync>,
}

impl LiveCore {
    /// Wraps `target`, which the user named `name` (`gdb:127.0.0.1:1234`).
    pub fn new(name: impl Into<String>, target: Box<dyn Target + Send + Sync>) -> LiveCore {
        LiveCore { name: PathBuf::from(name.into()), target }
    }

    /// Returns the target's name as the user wrote it.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Returns the wrapped target.
    pub fn target(&self) -> &(dyn Target + Send + Sync) {
        &*self.target
    }
}

impl fmt::Debug for LiveCore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LiveCore")
            .field("name", &self.name)
            .field("vcpus", &self.target.vcpus().len())
            .finish_non_exhaustive()
    }
}

impl Target for LiveCore {
    fn metadata(&self) -> &Metadata {
        self.target.metadata()
    }

    fn vcpus(&self) -> &[VcpuState] {
        self.target.vcpus()
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_physical(address, buf)
    }

    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_virtual(cr3, address, buf)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.target.memory_map()
    }
}
