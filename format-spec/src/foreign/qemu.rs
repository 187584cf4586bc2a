//! Reader of the ELF core files that QEMU's `dump-guest-memory` command
//! writes with `paging=false`.
//!
//! Such a file has one `PT_LOAD` per guest RAM block, whose `p_paddr` is
//! the guest physical address. Each vCPU has one `CORE`/`NT_PRSTATUS` note
//! and one `QEMU` note containing `QEMUCPUState` version 1 (QEMU's
//! `target/i386/arch_dump.c`): general registers, segments with their
//! bases, cr0..cr4 and `kernel_gs_base`. QEMU writes all `NT_PRSTATUS` notes first and then all
//! `QEMU` notes, in the same vCPU order, so the n-th of each belong together.
//!
//! Files written with `paging=true` have one segment per virtual mapping,
//! so several segments can cover the same physical memory, and QEMU 7.2
//! writes them with wrong segment sizes. This reader rejects them: a
//! segment whose `p_vaddr` is neither 0 nor its `p_paddr` marks such a file.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::elf::{self, read_u16, read_u32, read_u64, Note, ProgramHeader};
use super::error::{CoreFileError, OpenError};
use super::FileBytes;
use crate::model::{Metadata, RegisterGroups, SourceKind, VcpuState};
use crate::paging;
use crate::target::{MemoryError, MemoryRange, Target};

/// Owner name of the per-vCPU register notes QEMU adds.
pub(super) const QEMU_NOTE_NAME: &[u8] = b"QEMU";
/// Owner name of the standard core notes.
const CORE_NOTE_NAME: &[u8] = b"CORE";
/// Note type of `struct elf_prstatus`.
const NT_PRSTATUS: u32 = 1;

/// `QEMUCPUState.version` this reader understands.
const QEMU_CPU_STATE_VERSION: u32 = 1;
/// Length of `QEMUCPUState` version 1 on x86_64.
const QEMU_CPU_STATE_LEN: usize = 0x1b8;
/// Offsets in `QEMUCPUState`: `version`, `size`, then rax, rbx, rcx, rdx,
/// rsi, rdi, rsp, rbp, r8..r15, rip, rflags as u64 from offset 8.
const QEMU_SIZE: usize = 4;
const QEMU_RAX: usize = 8;
const QEMU_R8: usize = 72;
const QEMU_RIP: usize = 136;
const QEMU_RFLAGS: usize = 144;
/// Segments follow rflags as `QEMUCPUSegment {u32 selector, limit, flags,
/// pad; u64 base}` (24 bytes) in the order cs, ds, es, fs, gs, ss, ldt, tr,
/// gdt, idt.
const QEMU_SEGMENTS: usize = 152;
const QEMU_SEGMENT_LEN: usize = 24;
const QEMU_SEGMENT_BASE: usize = 16;
/// `cr[5]` after the ten segments, then `kernel_gs_base`.
const QEMU_CR: usize = QEMU_SEGMENTS + 10 * QEMU_SEGMENT_LEN;
const QEMU_KERNEL_GS_BASE: usize = QEMU_CR + 5 * 8;

/// One `PT_LOAD` segment: guest physical memory stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoadSegment {
    /// Guest physical address of the first byte (`p_paddr`).
    physical_start: u64,
    /// File offset of the first byte (`p_offset`).
    file_offset: u64,
    /// Bytes present in the file; less than `memory_len` when `p_filesz`
    /// is smaller than `p_memsz` or the file is truncated.
    file_len: u64,
    /// Bytes of guest memory the segment covers (`p_memsz`).
    memory_len: u64,
    /// Position and file offset of the program header, for errors.
    header_index: usize,
    header_offset: u64,
}

impl LoadSegment {
    fn physical_end(&self) -> u64 {
        self.physical_start + self.memory_len
    }
}

/// An opened QEMU `dump-guest-memory` core file.
pub struct QemuDump {
    path: PathBuf,
    bytes: FileBytes,
    metadata: Metadata,
    vcpus: Vec<VcpuState>,
    /// Segments in guest physical address order, without overlaps.
    segments: Vec<LoadSegment>,
    /// How the end of the file cuts segments short, if it does.
    truncation: Option<elf::Truncation>,
}

/// Returns whether `notes` contain a QEMU register note, which marks a file
/// that `dump-guest-memory` wrote.
pub(super) fn has_qemu_notes(notes: &[Note<'_>]) -> bool {
    notes.iter().any(|note| note.name == QEMU_NOTE_NAME)
}

/// Returns every note of every `PT_NOTE` segment.
pub(super) fn segment_notes<'a>(file: &'a [u8], headers: &[ProgramHeader]) -> Result<Vec<Note<'a>>, CoreFileError> {
    let mut notes = Vec::new();
    for header in headers.iter().filter(|h| h.p_type == elf::PT_NOTE) {
        let bytes = elf::file_range(
            file,
            || format!("note segment of program header {}", header.index),
            header.p_offset,
            header.p_filesz,
        )?;
        notes.extend(elf::parse_notes(bytes, header.p_offset)?);
    }
    Ok(notes)
}

/// Checks the `PT_LOAD` headers and returns them as segments sorted by
/// physical address. A segment cut short by the end of the file keeps the
/// bytes that are present; the rest reads as not captured.
fn load_segments(file_len: u64, headers: &[ProgramHeader]) -> Result<Vec<LoadSegment>, CoreFileError> {
    let paging = headers.iter().find(|h| h.p_type == elf::PT_LOAD && h.p_vaddr != 0 && h.p_vaddr != h.p_paddr);
    if let Some(header) = paging {
        return Err(CoreFileError::Unsupported {
            what: "PT_LOAD p_vaddr",
            value: header.p_vaddr,
            offset: header.header_offset + 16,
            supported: "dumps written with paging=false, whose p_vaddr is 0 or equal to p_paddr",
        });
    }
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
        if header.p_paddr.checked_add(header.p_memsz).is_none() {
            return Err(invalid(format!("p_paddr {:#x} + p_memsz {:#x} overflows", header.p_paddr, header.p_memsz)));
        }
        let file_end = header.p_offset.checked_add(header.p_filesz);
        let file_len_present = match file_end {
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
        segments.push(LoadSegment {
            physical_start: header.p_paddr,
            file_offset: header.p_offset,
            file_len: file_len_present,
            memory_len: header.p_memsz,
            header_index: header.index,
            header_offset: header.header_offset,
        });
    }
    segments.sort_by_key(|segment| segment.physical_start);
    for pair in segments.windows(2) {
        if pair[1].physical_start < pair[0].physical_end() {
            return Err(CoreFileError::InvalidProgramHeader {
                index: pair[1].header_index,
                offset: pair[1].header_offset,
                reason: format!(
                    "physical range {:#x}..{:#x} overlaps {:#x}..{:#x} of program header {}",
                    pair[1].physical_start,
                    pair[1].physical_end(),
                    pair[0].physical_start,
                    pair[0].physical_end(),
                    pair[0].header_index
                ),
            });
        }
    }
    Ok(segments)
}

/// Fills the general registers and selectors from an `NT_PRSTATUS` note,
/// which QEMU writes in the Linux layout with `pr_pid` = vCPU id + 1.
fn apply_prstatus(vcpu: &mut VcpuState, note: &Note<'_>) -> Result<(), CoreFileError> {
    let status = super::linux_notes::parse_prstatus(note)?;
    let pid = status.vcpu.thread_id.unwrap_or(0);
    let id = match u32::try_from(pid) {
        Ok(pid) if pid != 0 => pid - 1,
        _ => vcpu.id,
    };
    // The segment bases count only once the QEMU note confirms them.
    let present = RegisterGroups { general: true, ..RegisterGroups::default() };
    *vcpu = VcpuState { id, thread_id: None, present, ..status.vcpu };
    Ok(())
}

/// Fills every register `QEMUCPUState` version 1 holds.
fn apply_qemu_state(vcpu: &mut VcpuState, note: &Note<'_>) -> Result<(), CoreFileError> {
    let invalid = |reason: String| CoreFileError::InvalidNote { note: "QEMU", offset: note.desc_offset, reason };
    let desc = note.desc;
    if desc.len() < 8 {
        return Err(invalid(format!("descriptor is {} bytes, too short for version and size", desc.len())));
    }
    let version = read_u32(desc, 0);
    if version != QEMU_CPU_STATE_VERSION {
        return Err(CoreFileError::Unsupported {
            what: "QEMUCPUState version",
            value: version.into(),
            offset: note.desc_offset,
            supported: "version 1",
        });
    }
    let size = read_u32(desc, QEMU_SIZE) as usize;
    if size < QEMU_CPU_STATE_LEN || desc.len() < QEMU_CPU_STATE_LEN {
        return Err(invalid(format!(
            "QEMUCPUState size field is {size:#x} and descriptor is {:#x} bytes, both must be at least {QEMU_CPU_STATE_LEN:#x}",
            desc.len()
        )));
    }
    let general = |index: usize| read_u64(desc, QEMU_RAX + index * 8);
    vcpu.rax = general(0);
    vcpu.rbx = general(1);
    vcpu.rcx = general(2);
    vcpu.rdx = general(3);
    vcpu.rsi = general(4);
    vcpu.rdi = general(5);
    vcpu.rsp = general(6);
    vcpu.rbp = general(7);
    let high = |index: usize| read_u64(desc, QEMU_R8 + index * 8);
    vcpu.r8 = high(0);
    vcpu.r9 = high(1);
    vcpu.r10 = high(2);
    vcpu.r11 = high(3);
    vcpu.r12 = high(4);
    vcpu.r13 = high(5);
    vcpu.r14 = high(6);
    vcpu.r15 = high(7);
    vcpu.rip = read_u64(desc, QEMU_RIP);
    vcpu.rflags = read_u64(desc, QEMU_RFLAGS);

    let segment = |index: usize| QEMU_SEGMENTS + index * QEMU_SEGMENT_LEN;
    // A selector is 16 bits; QEMU widens it to u32 in the note.
    let selector = |index: usize| read_u16(desc, segment(index));
    let base = |index: usize| read_u64(desc, segment(index) + QEMU_SEGMENT_BASE);
    vcpu.cs = selector(0);
    vcpu.ds = selector(1);
    vcpu.es = selector(2);
    vcpu.fs = selector(3);
    vcpu.gs = selector(4);
    vcpu.ss = selector(5);
    vcpu.fs_base = base(3);
    vcpu.gs_base = base(4);
    vcpu.kernel_gs_base = read_u64(desc, QEMU_KERNEL_GS_BASE);

    let control = |index: usize| read_u64(desc, QEMU_CR + index * 8);
    vcpu.cr0 = control(0);
    vcpu.cr2 = control(2);
    vcpu.cr3 = control(3);
    vcpu.cr4 = control(4);
    // NOTE: QEMUCPUState version 1 has no cr8 and no EFER, so both stay
    // zero although `present.control` is set.
    vcpu.present = RegisterGroups { general: true, segment_bases: true, control: true };
    Ok(())
}

/// Builds the vCPU list: the n-th `NT_PRSTATUS` note and the n-th `QEMU`
/// note describe the same vCPU.
fn parse_vcpus(notes: &[Note<'_>]) -> Result<Vec<VcpuState>, CoreFileError> {
    let prstatus: Vec<&Note<'_>> =
        notes.iter().filter(|n| n.name == CORE_NOTE_NAME && n.note_type == NT_PRSTATUS).collect();
    let qemu: Vec<&Note<'_>> = notes.iter().filter(|n| n.name == QEMU_NOTE_NAME).collect();
    if prstatus.len() != qemu.len() {
        warn!(
            prstatus = prstatus.len(),
            qemu = qemu.len(),
            "the numbers of NT_PRSTATUS and QEMU notes differ; pairing them in file order"
        );
    }
    let count = prstatus.len().max(qemu.len());
    let mut vcpus = Vec::with_capacity(count);
    for index in 0..count {
        let mut vcpu = VcpuState { id: index as u32, ..VcpuState::default() };
        if let Some(note) = prstatus.get(index) {
            apply_prstatus(&mut vcpu, note)?;
        }
        if let Some(note) = qemu.get(index) {
            apply_qemu_state(&mut vcpu, note)?;
        }
        vcpus.push(vcpu);
    }
    vcpus.sort_by_key(|vcpu| vcpu.id);
    Ok(vcpus)
}

impl QemuDump {
    /// Opens and validates a QEMU dump; the file is memory-mapped.
    pub fn open(path: &Path) -> Result<QemuDump, OpenError> {
        let bytes = FileBytes::map(path)?;
        QemuDump::parse(path, bytes).map_err(|source| OpenError::QemuDump { path: path.to_path_buf(), source })
    }

    /// Parses a QEMU dump held in memory; `path` names it in metadata and errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<QemuDump, OpenError> {
        QemuDump::parse(path, FileBytes::Owned(bytes))
            .map_err(|source| OpenError::QemuDump { path: path.to_path_buf(), source })
    }

    pub(super) fn parse(path: &Path, bytes: FileBytes) -> Result<QemuDump, CoreFileError> {
        let file: &[u8] = &bytes;
        let header = elf::parse_file_header(file)?;
        let program_headers = elf::parse_program_headers(file, &header)?;
        let notes = segment_notes(file, &program_headers)?;
        if !has_qemu_notes(&notes) && !notes.iter().any(|n| n.name == CORE_NOTE_NAME && n.note_type == NT_PRSTATUS) {
            return Err(CoreFileError::MissingNote { note: "QEMU or CORE NT_PRSTATUS", offset: header.e_phoff });
        }
        let vcpus = parse_vcpus(&notes)?;
        let segments = load_segments(file.len() as u64, &program_headers)?;
        let metadata = Metadata {
            source_kind: SourceKind::QemuDump,
            target_name: super::file_name(path),
            // NOTE: the file records neither QEMU's version nor the time of
            // the dump, so the version is None and the time 0.
            hypervisor_version: None,
            ..Metadata::default()
        };
        debug!(
            path = %path.display(),
            vcpus = vcpus.len(),
            segments = segments.len(),
            "opened QEMU dump"
        );
        let truncation = elf::Truncation::of(&program_headers, file.len() as u64);
        Ok(QemuDump { path: path.to_path_buf(), bytes, metadata, vcpus, segments, truncation })
    }

    /// Path the dump was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns how the end of the file cuts segments short, if it does.
    pub fn truncation(&self) -> Option<&elf::Truncation> {
        self.truncation.as_ref()
    }

    /// Returns the segment covering `address`.
    fn find_segment(&self, address: u64) -> Option<&LoadSegment> {
        let after = self.segments.partition_point(|segment| segment.physical_start <= address);
        let segment = self.segments.get(after.checked_sub(1)?)?;
        (address < segment.physical_end()).then_some(segment)
    }
}

impl Target for QemuDump {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        if address.checked_add(len as u64).is_none() {
            return Err(MemoryError::NotCaptured { address, len });
        }
        let mut done = 0;
        while done < len {
            let current = address + done as u64;
            let not_captured = MemoryError::NotCaptured { address: current, len };
            let segment = self.find_segment(current).ok_or(not_captured.clone())?;
            let offset_in_segment = current - segment.physical_start;
            // Bytes past p_filesz exist in the guest but are not in the file.
            if offset_in_segment >= segment.file_len {
                return Err(not_captured);
            }
            let count = (segment.file_len - offset_in_segment).min((len - done) as u64) as usize;
            let start = (segment.file_offset + offset_in_segment) as usize;
            buf[done..done + count].copy_from_slice(&self.bytes[start..start + count]);
            done += count;
        }
        Ok(())
    }

    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut translate = |virtual_address: u64| {
            let mut read = |physical: u64, out: &mut [u8]| self.read_physical(physical, out);
            paging::translate(&mut read, cr3, virtual_address)
        };
        let mut read = |physical: u64, out: &mut [u8]| self.read_physical(physical, out);
        super::read_virtual_paged(address, buf, &mut translate, &mut read)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        super::merge_adjacent(self.segments.iter().map(|segment| (segment.physical_start, segment.file_len)))
    }
}

impl std::fmt::Debug for QemuDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuDump")
            .field("path", &self.path)
            .field("vcpus", &self.vcpus.len())
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::linux_notes::{PRSTATUS_LEN, PRSTATUS_PID, PRSTATUS_REGS};
    use super::*;

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

    fn qemu_state(rip: u64, cr3: u64) -> Vec<u8> {
        let mut desc = vec![0u8; QEMU_CPU_STATE_LEN];
        desc[0..4].copy_from_slice(&QEMU_CPU_STATE_VERSION.to_le_bytes());
        desc[4..8].copy_from_slice(&(QEMU_CPU_STATE_LEN as u32).to_le_bytes());
        desc[QEMU_RIP..QEMU_RIP + 8].copy_from_slice(&rip.to_le_bytes());
        desc[QEMU_CR + 24..QEMU_CR + 32].copy_from_slice(&cr3.to_le_bytes());
        let gs = QEMU_SEGMENTS + 4 * QEMU_SEGMENT_LEN;
        desc[gs..gs + 2].copy_from_slice(&0x18u16.to_le_bytes());
        desc[gs + QEMU_SEGMENT_BASE..gs + QEMU_SEGMENT_BASE + 8].copy_from_slice(&0xabcdu64.to_le_bytes());
        desc[QEMU_KERNEL_GS_BASE..QEMU_KERNEL_GS_BASE + 8].copy_from_slice(&0x7777u64.to_le_bytes());
        desc
    }

    fn prstatus(pid: u32, rip: u64) -> Vec<u8> {
        let mut desc = vec![0u8; PRSTATUS_LEN];
        desc[PRSTATUS_PID..PRSTATUS_PID + 4].copy_from_slice(&pid.to_le_bytes());
        desc[PRSTATUS_REGS + 16 * 8..PRSTATUS_REGS + 17 * 8].copy_from_slice(&rip.to_le_bytes());
        desc
    }

    /// One PT_LOAD: (p_paddr, contents, p_memsz).
    type Load = (u64, Vec<u8>, u64);

    /// Builds a core file with a PT_NOTE segment holding `notes` and the
    /// given PT_LOAD segments, laid out as QEMU lays them out.
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
        let mut headers = Vec::new();
        headers.push((elf::PT_NOTE, file.len() as u64, 0u64, notes.len() as u64, notes.len() as u64));
        file.extend_from_slice(notes);
        for (paddr, contents, memsz) in loads {
            headers.push((elf::PT_LOAD, file.len() as u64, *paddr, contents.len() as u64, *memsz));
            file.extend_from_slice(contents);
        }
        for (index, (p_type, offset, paddr, filesz, memsz)) in headers.into_iter().enumerate() {
            let at = 64 + index * 56;
            file[at..at + 4].copy_from_slice(&p_type.to_le_bytes());
            file[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            file[at + 16..at + 24].copy_from_slice(&paddr.to_le_bytes());
            file[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
            file[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
            file[at + 40..at + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        file
    }

    fn two_vcpu_notes() -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, CORE_NOTE_NAME, NT_PRSTATUS, &prstatus(1, 0x1000));
        push_note(&mut notes, CORE_NOTE_NAME, NT_PRSTATUS, &prstatus(2, 0x2000));
        push_note(&mut notes, QEMU_NOTE_NAME, 0, &qemu_state(0x1000, 0x5000));
        push_note(&mut notes, QEMU_NOTE_NAME, 0, &qemu_state(0x2000, 0x6000));
        notes
    }

    fn parse(bytes: Vec<u8>) -> Result<QemuDump, CoreFileError> {
        QemuDump::parse(Path::new("test.core"), FileBytes::Owned(bytes))
    }

    #[test]
    fn vcpus_pair_prstatus_and_qemu_notes() {
        let dump = parse(build(&two_vcpu_notes(), &[(0, vec![1; 4096], 4096)])).unwrap();
        let vcpus = dump.vcpus();
        assert_eq!(vcpus.len(), 2);
        assert_eq!((vcpus[0].id, vcpus[0].rip, vcpus[0].cr3), (0, 0x1000, 0x5000));
        assert_eq!((vcpus[1].id, vcpus[1].rip, vcpus[1].cr3), (1, 0x2000, 0x6000));
        assert_eq!((vcpus[0].gs, vcpus[0].gs_base, vcpus[0].kernel_gs_base), (0x18, 0xabcd, 0x7777));
        assert!(vcpus[0].present.control);
    }

    #[test]
    fn tail_past_filesz_is_not_captured() {
        let loads = [(0x1000, vec![7; 0x800], 0x1000), (0x4000, vec![9; 0x1000], 0x1000)];
        let dump = parse(build(&two_vcpu_notes(), &loads)).unwrap();
        let mut buf = [0u8; 4];
        dump.read_physical(0x17fc, &mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert_eq!(dump.read_physical(0x17fe, &mut buf), Err(MemoryError::NotCaptured { address: 0x1800, len: 4 }));
        assert_eq!(dump.read_physical(0x2000, &mut buf), Err(MemoryError::NotCaptured { address: 0x2000, len: 4 }));
        assert_eq!(
            dump.memory_map(),
            vec![MemoryRange { start: 0x1000, len_bytes: 0x800 }, MemoryRange { start: 0x4000, len_bytes: 0x1000 }]
        );
    }

    #[test]
    fn truncated_segment_keeps_bytes_present() {
        let mut bytes = build(&two_vcpu_notes(), &[(0, vec![3; 0x2000], 0x2000)]);
        bytes.truncate(bytes.len() - 0x1000);
        let dump = parse(bytes).unwrap();
        let mut buf = [0u8; 2];
        dump.read_physical(0xfff, &mut buf).unwrap_err();
        dump.read_physical(0xffe, &mut buf).unwrap();
        assert_eq!(dump.memory_map(), vec![MemoryRange { start: 0, len_bytes: 0x1000 }]);
    }

    #[test]
    fn rejects_overlapping_segments() {
        let loads = [(0x1000, vec![0; 0x1000], 0x1000), (0x1800, vec![0; 0x1000], 0x1000)];
        let error = parse(build(&two_vcpu_notes(), &loads)).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidProgramHeader { index: 2, offset: 176, .. }), "{error}");
    }

    #[test]
    fn rejects_dump_written_with_paging() {
        let mut bytes = build(&two_vcpu_notes(), &[(0x1000, vec![0; 0x1000], 0x1000)]);
        // Program header 1 at 120: p_vaddr at 136 becomes a higher-half address.
        bytes[136..144].copy_from_slice(&0xffff_ffff_8000_0000u64.to_le_bytes());
        let error = parse(bytes).unwrap_err();
        assert!(matches!(error, CoreFileError::Unsupported { what: "PT_LOAD p_vaddr", offset: 136, .. }), "{error}");
    }

    #[test]
    fn rejects_filesz_larger_than_memsz() {
        let error = parse(build(&two_vcpu_notes(), &[(0, vec![0; 0x1000], 0x800)])).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidProgramHeader { index: 1, .. }), "{error}");
    }

    #[test]
    fn rejects_unknown_qemu_state_version() {
        let mut state = qemu_state(0, 0);
        state[0] = 2;
        let mut notes = Vec::new();
        push_note(&mut notes, QEMU_NOTE_NAME, 0, &state);
        let error = parse(build(&notes, &[])).unwrap_err();
        assert!(matches!(error, CoreFileError::Unsupported { what: "QEMUCPUState version", value: 2, .. }), "{error}");
    }

    #[test]
    fn rejects_short_qemu_state() {
        let mut notes = Vec::new();
        push_note(&mut notes, QEMU_NOTE_NAME, 0, &qemu_state(0, 0)[..0x100]);
        let error = parse(build(&notes, &[])).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidNote { note: "QEMU", .. }), "{error}");
    }

    #[test]
    fn virtual_read_walks_page_tables() {
        // PML4 at 0x1000 -> PDPT at 0x2000 -> 1 GiB page at 0 for virtual 0.
        let mut memory = vec![0u8; 0x4000];
        memory[0x1000..0x1008].copy_from_slice(&(0x2000u64 | 3).to_le_bytes());
        memory[0x2000..0x2008].copy_from_slice(&(3u64 | 0x80).to_le_bytes());
        memory[0x3ffc..0x4000].copy_from_slice(b"core");
        let dump = parse(build(&two_vcpu_notes(), &[(0, memory, 0x4000)])).unwrap();
        let mut buf = [0u8; 4];
        dump.read_virtual(0x1000, 0x3ffc, &mut buf).unwrap();
        assert_eq!(&buf, b"core");
        assert_eq!(
            dump.read_virtual(0x1000, 0x3ffe, &mut buf),
            Err(MemoryError::NotCaptured { address: 0x4000, len: 4 })
        );
    }
}
