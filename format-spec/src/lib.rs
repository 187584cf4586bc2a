//! The stardump snapshot format and the model every stardump source shares.
//!
//! `model` holds the register state of a vCPU and the metadata of a capture,
//! `target` the [`Target`] trait through which the analyzer reads any source,
//! `paging` the x86_64 page-table walk, and `snapshot` the reader and writer
//! of the file format that `SPEC.md` defines byte by byte. `foreign` reads
//! core files other programs write (QEMU `dump-guest-memory`, Xen
//! `xl dump-core`, Linux process cores) and opens any supported file by its
//! contents.

#![warn(missing_docs)]

pub mod foreign;
pub mod model;
pub mod paging;
pub mod snapshot;
pub mod target;

pub use foreign::{open_core, Core, FileMapping, LinuxCore, OpenError, QemuDump, XenDumpCore};
pub use model::{Metadata, RegisterGroups, SourceKind, VcpuState};
pub use paging::{Mapping, MappingFlags};
pub use snapshot::{Snapshot, SnapshotError, SnapshotWriter, WriteError, WriteSummary, WriterOptions};
pub use target::{MemoryError, MemoryRange, Target};
