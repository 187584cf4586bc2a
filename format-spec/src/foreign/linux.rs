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
    parse_auxv, parse_file_note, parse_prpsinfo, parse_prstatus, parse_siginfo, SignalInfo, AT_ENTRY, AT_PHDR,
    CORE_NOTE_NAME, NT_AUXV, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, NT_SIGINFO,
};
use super::{qemu, FileBytes};
use crate::model::{FileMapping, Metadata, SourceKind, VcpuState};
use crate::target::{MemoryError, MemoryRange, Target};

/// Number of file mappings whose build id is looked up, after which the
/// rest get `None`. It bounds the work a crafted `NT_FILE` note can cause.
/// NOTE: a guess well above the few hundred ELF files a large process maps.
const MAX_BUILD_ID_LOOKUPS: usize = 4096;

/// `p_flags` bits of a program header.
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One `PT_LOAD` segment: a range of the process's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// First virtual address (`p_vaddr`).
    pub start: u64,
    /// Bytes of address space the segment covers (`p_memsz`).
    pub memory_len: u64,
    /// Bytes present in the file from `start` on. They are fewer than
    /// `memory_len` when the writer left pages out or the file is truncated.
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
    signal_info: Option<SignalInfo>,
    pid: Option<u32>,
    command_line: Option<String>,
    /// Segments in virtual address order, without overlaps.
    segments: Vec<LoadSegment>,
    file_mappings: Vec<FileMapping>,
    auxv: Vec<(u64, u64)>,
    /// How the end of the file cuts segments short, if it does.
    truncation: Option<elf::Truncation>,
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
                debug!(
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
    /// Opens and validates a process core, which stays memory-mapped.
    pub fn open(path: &Path) -> Result<LinuxCore, OpenError> {
        let bytes = FileBytes::map(path)?;
        LinuxCore::parse(path, bytes).map_err(|source| OpenError::LinuxCore { path: path.to_path_buf(), source })
    }

    /// Parses a process core held in memory. `path` names it in metadata and errors.
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
        let signal_info = core_notes(NT_SIGINFO).next().map(parse_siginfo).transpose()?;
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
        let mut lookups = 0;
        let file_mappings: Vec<FileMapping> = file_entries
            .into_iter()
            .map(|entry| {
                let mut look_up = entry.file_offset == 0;
                if look_up {
                    lookups += 1;
                    if lookups == MAX_BUILD_ID_LOOKUPS + 1 {
                        warn!(limit = MAX_BUILD_ID_LOOKUPS, "too many mapped files, so the rest get no build id");
                    }
                    look_up = lookups <= MAX_BUILD_ID_LOOKUPS;
                }
                let build_id = look_up.then(|| mapped_build_id(&read, entry.start, entry.end - entry.start));
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
            signal_info,
            pid: process.as_ref().map(|process| process.pid),
            command_line: process.map(|process| process.arguments),
            segments,
            file_mappings,
            auxv,
            truncation: elf::Truncation::of(&program_headers, file.len() as u64),
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

    /// Returns how the end of the file cuts segments short, if it does.
    pub fn truncation(&self) -> Option<&elf::Truncation> {
        self.truncation.as_ref()
    }

    /// Returns the process id from `NT_PRPSINFO`, when the core has that note.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Returns the start of the command line from `NT_PRPSINFO` (the kernel keeps 79
    /// bytes), when the core has that note.
    pub fn command_line(&self) -> Option<&str> {
        self.command_line.as_deref()
    }

    /// Returns the signal that stopped each thread (`pr_cursig`), in the order of
    /// [`Target::vcpus`], or 0 for a thread that had none pending.
    pub fn thread_signals(&self) -> &[u16] {
        &self.signals
    }

    /// Returns the `siginfo_t` of the signal that dumped core, from the first
    /// `NT_SIGINFO` note, which belongs to the first thread. The kernel
    /// writes one; gcore writes one per thread that has a pending signal.
    pub fn signal_info(&self) -> Option<&SignalInfo> {
        self.signal_info.as_ref()
    }

    /// Returns the file mappings from `NT_FILE`, in the order the note lists them
    /// (address order for both writers). It is empty when the core has no such note.
    pub fn file_mappings(&self) -> &[FileMapping] {
        &self.file_mappings
    }

    /// Returns the auxiliary vector as (key, value) pairs without the final
    /// `AT_NULL`, or an empty slice when the core has no `NT_AUXV` note.
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
        super::merge_adjacent(self.segments.iter().map(|segment| (segment.start, segment.captured_len)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foreign::{detect_format, Format};

    /// Appends a note with 4-byte padding after the name and the descriptor.
    fn push_note(out: &mut Vec<u8>, name: &[u8], note_type: u32, desc: &[u8]) {
        out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&note_type.to_le_bytes());
        out.extend_from_slice(name);
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(desc);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    /// Builds an `NT_PRSTATUS` descriptor with thread id `tid` and rip `rip`.
    fn prstatus(tid: u32, rip: u64) -> Vec<u8> {
        let mut desc = vec![0u8; 336];
        desc[32..36].copy_from_slice(&tid.to_le_bytes());
        desc[112 + 16 * 8..112 + 17 * 8].copy_from_slice(&rip.to_le_bytes());
        desc
    }

    /// Builds an `NT_PRPSINFO` descriptor for process `pid` named `command`.
    fn prpsinfo(pid: u32, command: &str) -> Vec<u8> {
        let mut desc = vec![0u8; 136];
        desc[24..28].copy_from_slice(&pid.to_le_bytes());
        desc[40..40 + command.len()].copy_from_slice(command.as_bytes());
        desc
    }

    /// One PT_LOAD: (p_vaddr, contents, p_memsz).
    type Load = (u64, Vec<u8>, u64);

    /// Builds a core file with a PT_NOTE segment holding `notes` and the
    /// given PT_LOAD segments, in the layout the kernel uses.
    fn build(notes: &[u8], loads: &[Load]) -> Vec<u8> {
        let phnum = 1 + loads.len();
        let mut file = vec![0u8; 64 + phnum * 56];
        file[0..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[16..18].copy_from_slice(&elf::ET_CORE.to_le_bytes());
        file[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        file[32..40].copy_from_slice(&64u64.to_le_bytes());
        file[54..56].copy_from_slice(&56u16.to_le_bytes());
        file[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut headers = vec![(elf::PT_NOTE, file.len() as u64, 0u64, notes.len() as u64, 0u64)];
        file.extend_from_slice(notes);
        for (vaddr, contents, memsz) in loads {
            headers.push((elf::PT_LOAD, file.len() as u64, *vaddr, contents.len() as u64, *memsz));
            file.extend_from_slice(contents);
        }
        for (index, (p_type, offset, vaddr, filesz, memsz)) in headers.into_iter().enumerate() {
            let at = 64 + index * 56;
            file[at..at + 4].copy_from_slice(&p_type.to_le_bytes());
            file[at + 4..at + 8].copy_from_slice(&(PF_R | PF_W).to_le_bytes());
            file[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            file[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            file[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            file[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        file
    }

    fn two_thread_notes() -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, CORE_NOTE_NAME, NT_PRSTATUS, &prstatus(700, 0x40_1000));
        push_note(&mut notes, CORE_NOTE_NAME, NT_PRPSINFO, &prpsinfo(700, "server"));
        push_note(&mut notes, CORE_NOTE_NAME, NT_PRSTATUS, &prstatus(701, 0x40_2000));
        notes
    }

    fn parse(bytes: Vec<u8>) -> Result<LinuxCore, CoreFileError> {
        LinuxCore::parse(Path::new("test.core"), FileBytes::Owned(bytes))
    }

    #[test]
    fn signal_info_is_read() {
        let mut notes = two_thread_notes();
        let mut siginfo = vec![0u8; 128];
        siginfo[0..4].copy_from_slice(&11u32.to_le_bytes());
        siginfo[8..12].copy_from_slice(&1i32.to_le_bytes());
        siginfo[16..24].copy_from_slice(&0xdead_b000u64.to_le_bytes());
        push_note(&mut notes, CORE_NOTE_NAME, NT_SIGINFO, &siginfo);
        let core = parse(build(&notes, &[])).unwrap();
        let info = core.signal_info().unwrap();
        assert_eq!((info.signal, info.code, info.address), (11, 1, 0xdead_b000));
        assert_eq!((info.sender_pid, info.sender_uid), (0xdead_b000, 0));
        assert!(parse(build(&two_thread_notes(), &[])).unwrap().signal_info().is_none());
    }

    #[test]
    fn short_signal_info_names_the_note() {
        let mut notes = two_thread_notes();
        push_note(&mut notes, CORE_NOTE_NAME, NT_SIGINFO, &[0u8; 12]);
        let error = parse(build(&notes, &[])).err().unwrap().to_string();
        assert!(error.contains("NT_SIGINFO"), "{error}");
        assert!(error.contains("descriptor is 12 bytes, expected 128"), "{error}");
    }

    #[test]
    fn threads_in_file_order() {
        let core = parse(build(&two_thread_notes(), &[])).unwrap();
        let threads: Vec<(u32, Option<u64>, u64)> = core.vcpus().iter().map(|v| (v.id, v.thread_id, v.rip)).collect();
        assert_eq!(threads, vec![(0, Some(700), 0x40_1000), (1, Some(701), 0x40_2000)]);
        assert_eq!(core.metadata().target_name, "server (pid 700)");
        assert_eq!(core.pid(), Some(700));
    }

    #[test]
    fn bytes_past_filesz_are_not_captured() {
        let loads = [(0x1000, vec![7; 0x1000], 0x3000), (0x4000, vec![9; 0x1000], 0x1000)];
        let core = parse(build(&two_thread_notes(), &loads)).unwrap();
        let mut buf = [0u8; 4];
        core.read_virtual(0, 0x1ffc, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert_eq!(core.read_virtual(0, 0x1ffe, &mut buf), Err(MemoryError::NotCaptured { address: 0x2000, len: 4 }));
        assert_eq!(core.read_virtual(0, 0x3ffe, &mut buf), Err(MemoryError::NotCaptured { address: 0x3ffe, len: 4 }));
        assert_eq!(core.read_physical(0x4000, &mut buf), Ok(()));
        assert_eq!(
            core.memory_map(),
            vec![MemoryRange { start: 0x1000, len_bytes: 0x1000 }, MemoryRange { start: 0x4000, len_bytes: 0x1000 }]
        );
        assert_eq!(core.segments()[0].memory_len, 0x3000);
        assert!(core.segments()[0].writable);
    }

    #[test]
    fn read_spans_adjacent_segments() {
        let loads = [(0x1000, vec![1; 0x1000], 0x1000), (0x2000, vec![2; 0x1000], 0x1000)];
        let core = parse(build(&two_thread_notes(), &loads)).unwrap();
        let mut buf = [0u8; 4];
        core.read_virtual(0, 0x1ffe, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 2, 2]);
        assert_eq!(core.memory_map(), vec![MemoryRange { start: 0x1000, len_bytes: 0x2000 }]);
    }

    #[test]
    fn overlapping_segments_rejected() {
        let loads = [(0x1000, vec![0; 0x1000], 0x1000), (0x1800, vec![0; 0x1000], 0x1000)];
        let error = parse(build(&two_thread_notes(), &loads)).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidProgramHeader { index: 2, offset: 176, .. }), "{error}");
    }

    #[test]
    fn segment_wrapping_address_space_rejected() {
        let loads = [(u64::MAX - 0xfff, vec![0; 0x1000], 0x2000)];
        let error = parse(build(&two_thread_notes(), &loads)).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidProgramHeader { index: 1, .. }), "{error}");
    }

    #[test]
    fn detection_needs_process_notes() {
        let mut prstatus_only = Vec::new();
        push_note(&mut prstatus_only, CORE_NOTE_NAME, NT_PRSTATUS, &prstatus(1, 0));
        assert!(detect_format(&build(&prstatus_only, &[])).is_err());
        assert_eq!(detect_format(&build(&two_thread_notes(), &[])), Ok(Format::LinuxCore));
    }

    #[test]
    fn detection_prefers_qemu_notes() {
        let mut notes = two_thread_notes();
        push_note(&mut notes, b"QEMU", 0, &[0; 16]);
        assert_eq!(detect_format(&build(&notes, &[])), Ok(Format::QemuDump));
    }

    #[test]
    fn executable_found_through_at_phdr() {
        let mut auxv = Vec::new();
        for value in [AT_PHDR, 0x5000_0040, 0, 0] {
            auxv.extend_from_slice(&u64::to_le_bytes(value));
        }
        let mut file_note = Vec::new();
        for value in [2u64, 4096, 0x5000_0000, 0x5000_1000, 0, 0x5000_1000, 0x5000_3000, 1] {
            file_note.extend_from_slice(&value.to_le_bytes());
        }
        file_note.extend_from_slice(b"/usr/bin/server\0/usr/bin/server\0");
        let mut notes = two_thread_notes();
        push_note(&mut notes, CORE_NOTE_NAME, NT_AUXV, &auxv);
        push_note(&mut notes, CORE_NOTE_NAME, NT_FILE, &file_note);
        let core = parse(build(&notes, &[])).unwrap();
        assert_eq!(core.auxv(), &[(AT_PHDR, 0x5000_0040)]);
        assert_eq!(core.file_mappings().len(), 2);
        let executable = core.executable().unwrap();
        assert_eq!((executable.start, executable.file_offset), (0x5000_0000, 0));
        assert_eq!(executable.build_id, None, "the ELF header was not captured");
    }
}
