//! Errors of the foreign core-file readers. Every variant names the file
//! offset and the part of the file that is damaged; [`OpenError`] adds the
//! path and the format that was being read.

use std::path::PathBuf;

use crate::snapshot::SnapshotError;

/// Damage found in a QEMU dump, an `xl dump-core` file or a Linux process core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreFileError {
    /// A part of the file extends past its end.
    #[error("truncated {part} at file offset {offset:#x}: needs {needed} bytes, file ends at {file_len:#x}")]
    Truncated {
        /// The damaged part ("ELF header", "section .xen_pages").
        part: String,
        /// File offset where the part starts.
        offset: u64,
        /// Length of the part in bytes.
        needed: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A field of the ELF header has a value the reader cannot use.
    #[error("invalid ELF header at file offset {offset:#x}: {field} is {value:#x}, expected {expected}")]
    InvalidElfHeader {
        /// File offset of the field.
        offset: u64,
        /// Field name as the ELF specification spells it.
        field: &'static str,
        /// The value found.
        value: u64,
        /// Values the reader accepts.
        expected: &'static str,
    },
    /// A program header is inconsistent.
    #[error("invalid program header {index} at file offset {offset:#x}: {reason}")]
    InvalidProgramHeader {
        /// Position in the program header table.
        index: usize,
        /// File offset of the program header.
        offset: u64,
        /// Description of the problem.
        reason: String,
    },
    /// A section header or the contents of a section are inconsistent.
    #[error("invalid section {section} at file offset {offset:#x}: {reason}")]
    InvalidSection {
        /// Section name, or its index when the name is unknown.
        section: String,
        /// File offset of the section header or of the bad entry.
        offset: u64,
        /// Description of the problem.
        reason: String,
    },
    /// A note header or descriptor is malformed.
    #[error("invalid {note} note at file offset {offset:#x}: {reason}")]
    InvalidNote {
        /// Note owner and type ("CORE NT_PRSTATUS", "Xen header").
        note: &'static str,
        /// File offset of the note header or descriptor.
        offset: u64,
        /// Description of the problem.
        reason: String,
    },
    /// A required section is absent.
    #[error("missing section {section}: the section header table at file offset {offset:#x} does not list it")]
    MissingSection {
        /// Section name.
        section: &'static str,
        /// File offset of the section header table.
        offset: u64,
    },
    /// A required note is absent.
    #[error("missing {note} note in the notes at file offset {offset:#x}")]
    MissingNote {
        /// Note owner and type.
        note: &'static str,
        /// File offset of the note segment or section.
        offset: u64,
    },
    /// The file uses a variant of its format that this reader does not read.
    #[error("unsupported {what} {value:#x} at file offset {offset:#x}: this reader supports {supported}")]
    Unsupported {
        /// The field ("dump-core format version", "page size").
        what: &'static str,
        /// The value found.
        value: u64,
        /// File offset of the field.
        offset: u64,
        /// Values the reader supports.
        supported: &'static str,
    },
}

/// Error opening a core file with [`open_core`](super::open_core) or one of
/// the format readers.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened, read or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path of the file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in any format stardump reads.
    #[error("{path} is not a stardump snapshot, QEMU dump, xl dump-core or Linux process core: {found}")]
    UnknownFormat {
        /// Path of the file.
        path: PathBuf,
        /// Description of the file's actual contents ("ELF type ET_EXEC", "no ELF magic").
        found: String,
    },
    /// The file is a stardump snapshot that the snapshot reader rejected.
    #[error("invalid stardump snapshot {path}")]
    Snapshot {
        /// Path of the file.
        path: PathBuf,
        /// The snapshot reader's error.
        #[source]
        source: SnapshotError,
    },
    /// The file is a QEMU `dump-guest-memory` core with damage.
    #[error("invalid QEMU dump-guest-memory file {path}")]
    QemuDump {
        /// Path of the file.
        path: PathBuf,
        /// The damaged part and its file offset.
        #[source]
        source: CoreFileError,
    },
    /// The file is a Xen `xl dump-core` file with damage.
    #[error("invalid xl dump-core file {path}")]
    XenDumpCore {
        /// Path of the file.
        path: PathBuf,
        /// The damaged part and its file offset.
        #[source]
        source: CoreFileError,
    },
    /// The file is the ELF core of a Linux process, with damage.
    #[error("invalid Linux process core file {path}")]
    LinuxCore {
        /// Path of the file.
        path: PathBuf,
        /// The damaged part and its file offset.
        #[source]
        source: CoreFileError,
    },
}
