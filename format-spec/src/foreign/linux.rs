//! Reader of the ELF core files of x86_64 Linux processes, as the kernel
//! writes them when a process crashes and as gdb's `gcore` writes them.
//!
//! Each thread has one `CORE`/`NT_PRSTATUS` note, and becomes one
//! [`VcpuState`] whose `id` is its position in the file and whose
//! `thread_id` is the Linux thread id. The kernel writes the thread that
//! dumps core, the one that took the fatal signal, first. `NT_PRPSINFO` names the process,
//! `NT_AUXV` is the auxiliary vector and `NT_FILE` lists the file mappings.
//! The build id of each mapped ELF file is read from its first page in
//! the core's memory (see `linux_build_id`).
//!
//! Memory is the `PT_LOAD` segments, addressed by `p_vaddr`. Both writers
//! leave out pages that the files on disk still contain. The kernel writes
//! `p_filesz` 0 (or one page, for an ELF header) for unmodified file
//! mappings, and gdb leaves some such mappings out of the program headers.
//! Those bytes read as [`MemoryError::NotCaptured`], never as zeroes.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::elf::{self, read_u32, ProgramHeader};
use super::error::{CoreFileError, OpenError};
use super::linux_build_id::mapped_build_id;
use super::linux_notes::{
    parse_auxv, parse_file_note, parse_prpsinfo, parse_prstatus, AT_ENTRY, AT_PHDR, CORE_NOTE_NAME, NT_AUXV, NT_FILE,
    NT_PRPSINFO, NT_PRSTATUS,
};
use super::{qemu, FileBytes};
use crate::model::{Metadata, SourceKind, VcpuState};
use crate::target::{MemoryError, MemoryRange, Target};

/// `p_flags` bits of a program header.
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One file mapping of the process, from `NT_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    /// First virtual address of the mapping.
    pub start: u64,
    /// Virtual address one past the mapping's last byte.
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub file_offset: u64,
    /// Path of the file as the kernel printed it. The path of a file deleted
    /// after it was mapped ends in " (deleted)".
    pub path: String,
    /// GNU build id of the ELF file, read from the core's memory. Set only
    /// on a mapping with `file_offset` 0 whose ELF header and build-id note
    /// were captured.
    pub build_id: Option<Vec<u8>>,
}

/// One `PT_LOAD` segment: a range of the process's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// First virtual address (`p_vaddr`).
    pub start: u64,
    /// Bytes of address space the segment covers (`p_memsz`).
    pub memory_len: u64,
    /// Bytes present in the file from `start` on; less than `memory_len`
    /// when the writer left pages out or the file is truncated.
    pub captured_len: u64,
    /// Whether the mapping was readable (`PF_R`).
    pub readable: bool,
    /// Whether the mapping was writable (`PF_W`).
    pub writable: bool,
    /// Whether the mapping was executable (`PF_X`).
    pub executable: bool,
    /// File offset of the first byte (`p_offset`).
    file_offset: u64,
    /// Position and file offset of the program header, for errors.
    header_index: usize,
    header_offset: u64,
}

impl LoadSegment {
    fn end(&self) -> u64 {
        self.start + self.memory_len
    }
}

/// An opened core file of a Linux process.
pub struct LinuxCore {
    path: PathBuf,
    bytes: FileBytes,
    metadata: Metadata,
    vcpus: Vec<VcpuState>,
    signals: Vec<u16>,
    pid: Option<u32>,
    command_line: Option<String>,
    /// Segments in virtual address order, without overlaps.
    segments: Vec<LoadSegment>,
    file_mappings: Vec<FileMapping>,
    auxv: Vec<(u64, u64)>,
}

/// Returns whether `notes` mark a Linux process core: a `CORE`/`NT_PRSTATUS`
/// note and at least one of `NT_FILE`, `NT_PRPSINFO` and `NT_AUXV`, which a
/// QEMU dump does not have.
pub(super) fn is_process_core(notes: &[elf::Note<'_>]) -> bool {
    let has = |note_type: u32| notes.iter().any(|n| n.name == CORE_NOTE_NAME && n.note_type == note_type);
    has(NT_PRSTATUS) && (has(NT_FILE) || has(NT_PRPSINFO) || has(NT_AUXV))
}

/// Checks the `PT_LOAD` headers and returns them as segments sorted by
/// address. A segment cut short by the end of the file keeps the bytes
/// that are present, and the rest reads as not captured.
fn load_segments(file: &[u8], headers: &[ProgramHeader]) -> Result<Vec<LoadSegment>, CoreFileError> {
    let file_len = file.len() as u64;
    let mut segments = Vec::new();
    for header in headers.iter().filter(|h| h.p_type == elf::PT_LOAD && h.p_memsz > 0) {
        let invalid = |reason: String| CoreFileError::InvalidProgramHeader {
            index: header.index,
            offset: header.header_offset,
            reason,
        };
        if header.p_filesz > header.p_memsz {
            return Err(invalid(format!(
                "p_filesz {:#x} is larger than p_memsz {:#x}",
                header.p_filesz, header.p_memsz
            )));
        }
        if header.p_vaddr.checked_add(header.p_memsz).is_none() {
            return Err(invalid(format!("p_vaddr {:#x} + p_memsz {:#x} overflows", header.p_vaddr, header.p_memsz)));
        }
        let captured_len = match header.p_offset.checked_add(header.p_filesz) {
            Some(end) if end <= file_len => header.p_filesz,
            _ => {
                let present = file_len.saturating_sub(header.p_offset).min(header.p_filesz);
                warn!(
                    index = header.index,
                    p_offset = format_args!("{:#x}", header.p_offset),
                    p_filesz = format_args!("{:#x}", header.p_filesz),
                    file_len,
                    present,
                    "segment extends past the end of the file; reading only the bytes present"
                );
                present
            }
        };
        // The program header table was bounds-checked when it was parsed.
        let p_flags = read_u32(file, header.header_offset as usize + 4);
        segments.push(LoadSegment {
            start: header.p_vaddr,
            memory_len: header.p_memsz,
            captured_len,
            readable: p_flags & PF_R != 0,
            writable: p_flags & PF_W != 0,
            executable: p_flags & PF_X != 0,
            file_offset: header.p_offset,
            header_index: header.index,
            header_offset: header.header_offset,
        });
    }
    segments.sort_by_key(|segment| segment.start);
    for pair in segments.windows(2) {
        if pair[1].start < pair[0].end() {
            return Err(CoreFileError::InvalidProgramHeader {
                index: pair[1].header_index,
                offset: pair[1].header_offset,
                reason: format!(
                    "address range {:#x}..{:#x} overlaps {:#x}..{:#x} of program header {}",
                    pair[1].start,
                    pair[1].end(),
                    pair[0].start,
                    pair[0].end(),
                    pair[0].header_index
                ),
            });
        }
    }
    Ok(segments)
}

/// Reads `buf.len()` bytes at `address` from `segments`, whole or not at all.
fn read_segments(file: &[u8], segments: &[LoadSegment], address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
    let len = buf.len();
    if address.checked_add(len as u64).is_none() {
        return Err(MemoryError::NotCaptured { address, len });
    }
    let mut done = 0;
    while done < len {
        let current = address + done as u64;
        let not_captured = MemoryError::NotCaptured { address: current, len };
        let after = segments.partition_point(|segment| segment.start <= current);
        let segment = after.checked_sub(1).and_then(|index| segments.get(index)).ok_or(not_captured.clone())?;
        let offset_in_segment = current - segment.start;
        // Past `captured_len` the address exists in the process (up to
        // p_memsz) but its bytes are not in the file.
        if offset_in_segment >= segment.captured_len {
            return Err(not_captured);
        }
        let count = (segment.captured_len - offset_in_segment).min((len - done) as u64) as usize;
        let start = (segment.file_offset + offset_in_segment) as usize;
        buf[done..done + count].copy_from_slice(&file[start..start + count]);
        done += count;
    }
    Ok(())
}

/// Returns the mapping at file offset 0 of the file that contains the
/// address of `AT_PHDR` (or `AT_ENTRY`), which points into the executable.
fn find_executable<'a>(auxv: &[(u64, u64)], mappings: &'a [FileMapping]) -> Option<&'a FileMapping> {
    let pointer = [AT_PHDR, AT_ENTRY]
        .iter()
        .find_map(|&key| auxv.iter().find(|&&(k, value)| k == key && value != 0).map(|&(_, value)| value))?;
    let containing = mappings.iter().find(|m| m.start <= pointer && pointer < m.end)?;
    mappings.iter().find(|m| m.path == containing.path && m.file_offset == 0)
}

impl LinuxCore {
    /// Opens and validates a process core; the file is memory-mapped.
    pub fn open(path: &Path) -> Result<LinuxCore, OpenError> {
        let bytes = FileBytes::map(path)?;
        LinuxCore::parse(path, bytes).map_err(|source| OpenError::LinuxCore { path: path.to_path_buf(), source })
    }

    /// Parses a process core held in memory; `path` names it in metadata and errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<LinuxCore, OpenError> {
        LinuxCore::parse(path, FileBytes::Owned(bytes))
            .map_err(|source| OpenError::LinuxCore { path: path.to_path_buf(), source })
    }

    pub(super) fn parse(path: &Path, bytes: FileBytes) -> Result<LinuxCore, CoreFileError> {
        let file: &[u8] = &bytes;
        let header = elf::parse_file_header(file)?;
        let program_headers = elf::parse_program_headers(file, &header)?;
        let notes = qemu::segment_notes(file, &program_headers)?;
        let core_notes =
            |note_type: u32| notes.iter().filter(move |n| n.name == CORE_NOTE_NAME && n.note_type == note_type);

        let mut vcpus = Vec::new();
        let mut signals = Vec::new();
        for (index, note) in core_notes(NT_PRSTATUS).enumerate() {
            let status = parse_prstatus(note)?;
            vcpus.push(VcpuState { id: index as u32, ..status.vcpu });
            signals.push(status.signal);
        }
        if vcpus.is_empty() {
            return Err(CoreFileError::MissingNote { note: "CORE NT_PRSTATUS", offset: header.e_phoff });
        }
        let process = core_notes(NT_PRPSINFO).next().map(parse_prpsinfo).transpose()?;
        let auxv = core_notes(NT_AUXV).next().map(parse_auxv).transpose()?.unwrap_or_default();
        let (file_entries, page_size) = match core_notes(NT_FILE).next() {
            Some(note) => {
                let (entries, page_size) = parse_file_note(note)?;
                (entries, Some(page_size))
            }
            None => (Vec::new(), None),
        };

        let segments = load_segments(file, &program_headers)?;
        let read = |address: u64, buf: &mut [u8]| read_segments(file, &segments, address, buf);
        let file_mappings: Vec<FileMapping> = file_entries
            .into_iter()
            .map(|entry| {
                let build_id =
                    (entry.file_offset == 0).then(|| mapped_build_id(&read, entry.start, entry.end - entry.start));
                FileMapping {
                    start: entry.start,
                    end: entry.end,
                    file_offset: entry.file_offset,
                    path: entry.path,
                    build_id: build_id.flatten(),
                }
            })
            .collect();

        let target_name = match &process {
            Some(process) => format!("{} (pid {})", process.command, process.pid),
            None => super::file_name(path),
        };
        let mut metadata = Metadata {
            source_kind: SourceKind::LinuxCore,
            target_name,
            // NOTE: a process core records neither the time of the crash nor
            // the kernel version, so the time stays 0 and the version None.
            hypervisor_version: None,
            ..Metadata::default()
        };
        if let Some(page_size) = page_size.and_then(|size| u32::try_from(size).ok()) {
            metadata.page_size = page_size;
        }
        metadata.image_build_id = find_executable(&auxv, &file_mappings).and_then(|mapping| mapping.build_id.clone());
        let core = LinuxCore {
            path: path.to_path_buf(),
            metadata,
            vcpus,
            signals,
            pid: process.as_ref().map(|process| process.pid),
            command_line: process.map(|process| process.arguments),
            segments,
            file_mappings,
            auxv,
            bytes,
        };
        debug!(
            path = %path.display(),
            threads = core.vcpus.len(),
            segments = core.segments.len(),
            file_mappings = core.file_mappings.len(),
            "opened Linux process core"
        );
        Ok(core)
    }

    /// Path the core was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Process id from `NT_PRPSINFO`, when the core has that note.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Start of the command line from `NT_PRPSINFO` (the kernel keeps 79
    /// bytes), when the core has that note.
    pub fn command_line(&self) -> Option<&str> {
        self.command_line.as_deref()
    }

    /// Signal that stopped each thread (`pr_cursig`), in the order of
    /// [`Target::vcpus`]; 0 for a thread that had none pending.
    pub fn thread_signals(&self) -> &[u16] {
        &self.signals
    }

    /// File mappings from `NT_FILE`, in the order the note lists them
    /// (address order for both writers); empty when the core has no such note.
    pub fn file_mappings(&self) -> &[FileMapping] {
        &self.file_mappings
    }

    /// Auxiliary vector as (key, value) pairs without the final `AT_NULL`;
    /// empty when the core has no `NT_AUXV` note.
    pub fn auxv(&self) -> &[(u64, u64)] {
        &self.auxv
    }

    /// Returns the `PT_LOAD` segments in address order.
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// Returns the mapping of the executable that starts at file offset 0,
    /// found through the auxiliary vector's `AT_PHDR` (or `AT_ENTRY`), which
    /// points into the executable.
    pub fn executable(&self) -> Option<&FileMapping> {
        find_executable(&self.auxv, &self.file_mappings)
    }
}

impl Target for LinuxCore {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    /// Reads the same bytes as [`Target::read_virtual`], because a process
    /// has no physical addresses, only its one virtual address space. So the
    /// ranges that [`Target::memory_map`] lists are readable here too.
    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        read_segments(&self.bytes, &self.segments, address, buf)
    }

    /// Reads the process's memory by virtual address. `cr3` is ignored
    /// because a process core contains one address space and no page tables.
    fn read_virtual(&self, _cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        read_segments(&self.bytes, &self.segments, address, buf)
    }

    /// Returns the virtual address ranges whose bytes the file contains, with
    /// adjacent ranges merged. Pages a writer left out are not listed, but
    /// [`LinuxCore::segments`] lists every segment with its full length.
    fn memory_map(&self) -> Vec<MemoryRange> {
        let mut ranges: Vec<MemoryRange> = Vec::new();
        for segment in self.segments.iter().filter(|segment| segment.captured_len > 0) {
            match ranges.last_mut() {
                Some(last) if last.start + last.len_bytes == segment.start => last.len_bytes += segment.captured_len,
                _ => ranges.push(MemoryRange { start: segment.start, len_bytes: segment.captured_len }),
            }
        }
        ranges
    }
}

impl std::fmt::Debug for LinuxCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxCore")
            .field("path", &self.path)
            .field("threads", &self.vcpus.len())
            .field("segments", &self.segments.len())
            .field("file_mappings", &self.file_mappings.len())
            .finish_non_exhaustive()
    }
}
