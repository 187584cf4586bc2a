//! Errors of the snapshot reader and writer. Every reader error names the
//! file offset and the part of the file that is damaged.

use std::path::PathBuf;

/// Error opening a snapshot, or damage found in one, with the part and its file offset.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be opened or mapped.
    #[error("cannot read snapshot {path}: {source}")]
    Io {
        /// Path of the snapshot.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A part of the file extends past its end.
    #[error("truncated {part} at file offset {offset:#x}: needs {needed} bytes, file ends at {file_len:#x}")]
    Truncated {
        /// The damaged part ("ELF header", "program header 1", "chunk 3").
        part: String,
        /// File offset where the part starts.
        offset: u64,
        /// Length of the part in bytes.
        needed: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A field of the ELF header has a value the format does not allow.
    #[error("invalid ELF header at file offset {offset:#x}: {field} is {value:#x}, expected {expected}")]
    InvalidElfHeader {
        /// File offset of the field.
        offset: u64,
        /// Field name as the ELF specification spells it.
        field: &'static str,
        /// The value found.
        value: u64,
        /// Value the format requires.
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
    /// A required program header is absent.
    #[error("missing {segment} program header in the table at file offset {offset:#x}")]
    MissingSegment {
        /// The segment looked for.
        segment: &'static str,
        /// File offset of the program header table.
        offset: u64,
    },
    /// A note header or descriptor is malformed.
    #[error("invalid {note} note at file offset {offset:#x}: {reason}")]
    InvalidNote {
        /// Note name ("header", "vcpu", "chunk index", or "ELF" for the note header).
        note: &'static str,
        /// File offset of the note's descriptor or header.
        offset: u64,
        /// Description of the problem.
        reason: String,
    },
    /// A stardump note's CRC-32 does not match its contents.
    #[error("checksum mismatch in {note} note at file offset {offset:#x}: stored {stored:#010x}, computed {computed:#010x}")]
    NoteChecksumMismatch {
        /// Note name.
        note: &'static str,
        /// File offset of the descriptor.
        offset: u64,
        /// CRC-32 stored in the file.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },
    /// A required stardump note is absent.
    #[error("missing {note} note in the note segment at file offset {offset:#x}")]
    MissingNote {
        /// Note name.
        note: &'static str,
        /// File offset of the note segment.
        offset: u64,
    },
    /// The file's format major version is not the one this reader implements.
    #[error("unsupported snapshot format version {major}.{minor} in the header note at file offset {offset:#x}: this reader supports major version 1")]
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
        /// File offset of the header descriptor.
        offset: u64,
    },
    /// A chunk-index entry is inconsistent.
    #[error("invalid chunk index entry {chunk} at file offset {offset:#x}: {reason}")]
    InvalidChunkIndex {
        /// Position of the entry in the index.
        chunk: usize,
        /// File offset of the entry.
        offset: u64,
        /// Description of the problem.
        reason: String,
    },
    /// A chunk's compressed bytes do not match the CRC-32 in the index.
    #[error("chunk {chunk} at file offset {offset:#x}: checksum mismatch, stored {stored:#010x}, computed {computed:#010x}")]
    ChunkChecksumMismatch {
        /// Position of the chunk in the index.
        chunk: usize,
        /// File offset of the compressed bytes.
        offset: u64,
        /// CRC-32 stored in the index.
        stored: u32,
        /// CRC-32 of the bytes read.
        computed: u32,
    },
    /// A chunk lies outside the chunk segment.
    #[error("chunk {chunk} at file offset {offset:#x}: {len} bytes lie outside the chunk segment {segment_start:#x}..{segment_end:#x}")]
    ChunkOutsideSegment {
        /// Position of the chunk in the index.
        chunk: usize,
        /// File offset of the compressed bytes.
        offset: u64,
        /// Compressed length.
        len: u64,
        /// First byte of the chunk segment.
        segment_start: u64,
        /// End of the chunk segment.
        segment_end: u64,
    },
    /// A chunk's compressed bytes could not be decompressed, or decompressed
    /// to the wrong size.
    #[error("chunk {chunk} at file offset {offset:#x}: decompression failed: {reason}")]
    ChunkDecompression {
        /// Position of the chunk in the index.
        chunk: usize,
        /// File offset of the compressed bytes.
        offset: u64,
        /// What failed.
        reason: String,
    },
}

/// Error writing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// Operation that failed ("create", "write chunk data to", "rename").
        action: String,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The writer options are out of range.
    #[error("invalid writer options: {reason}")]
    InvalidOptions {
        /// Description of the out-of-range option.
        reason: String,
    },
    /// Page data is not a whole number of pages.
    #[error("invalid page data at frame {first_pfn:#x}: {len_bytes} bytes is not a multiple of 4096")]
    InvalidPageData {
        /// First frame of the call.
        first_pfn: u64,
        /// Length given.
        len_bytes: usize,
    },
    /// Pages lie beyond the 52-bit physical address space.
    #[error("frames {first_pfn:#x} + {page_count} lie beyond the 52-bit physical address space")]
    FrameOutOfRange {
        /// First frame of the call.
        first_pfn: u64,
        /// Number of pages in the call.
        page_count: u64,
    },
    /// Pages were added twice.
    #[error("frames {first_pfn:#x}..{end_pfn:#x} overlap frames {existing_first_pfn:#x}..{existing_end_pfn:#x} added before")]
    OverlappingPages {
        /// First frame of the call.
        first_pfn: u64,
        /// Exclusive end frame of the call.
        end_pfn: u64,
        /// First frame of the earlier call.
        existing_first_pfn: u64,
        /// Exclusive end frame of the earlier call.
        existing_end_pfn: u64,
    },
    /// An earlier write failed, so the writer accepts nothing more.
    #[error("cannot continue the snapshot after an earlier error: {reason}")]
    Failed {
        /// The earlier error.
        reason: String,
    },
    /// A note descriptor does not fit the 32-bit `descsz` of an ELF note.
    #[error("cannot write the {note} note: its {len_bytes}-byte descriptor exceeds the 4 GiB limit of an ELF note")]
    NoteTooLarge {
        /// Note name.
        note: &'static str,
        /// Length of the descriptor.
        len_bytes: usize,
    },
    /// zstd failed to compress a chunk.
    #[error("cannot compress the chunk at frame {first_pfn:#x}: {source}")]
    Compression {
        /// First frame of the chunk.
        first_pfn: u64,
        /// zstd's error.
        #[source]
        source: std::io::Error,
    },
}
