//! The stardump snapshot file: an ELF64 core file whose notes carry the vCPU
//! state, metadata, chunk index and mapping tables, and whose chunk segment
//! carries guest memory as zstd-compressed chunks of frames. A Linux process
//! snapshot adds its file mappings and thread names (`process_notes`).
//! `SPEC.md` at the crate root defines the format byte by byte.

mod error;
pub(crate) mod layout;
mod process_notes;
mod reader;
mod writer;

pub use error::{SnapshotError, WriteError};
pub use reader::Snapshot;
pub use writer::{SnapshotWriter, WriteSummary, WriterOptions};
