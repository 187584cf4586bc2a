//! Raw records of the snapshot file: constants and the byte layout of every
//! note descriptor, with encoders for the writer and bounds-checked decoders
//! for the reader. `SPEC.md` is the authority; the offsets here follow it.
//!
//! Decoders take a descriptor slice and its file offset and return
//! [`SnapshotError`]s that name that offset; they never index past the slice.

use crate::model::{Metadata, RegisterGroups, SourceKind, VcpuState};
use crate::paging::{Mapping, MappingFlags};

use super::error::SnapshotError;

/// Format major version written by this crate. A reader rejects any other major.
pub const FORMAT_MAJOR: u16 = 1;
/// Format minor version written by this crate. Higher minors only append fields.
pub const FORMAT_MINOR: u16 = 1;

/// Guest page (frame) size in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// Largest number of pages one chunk may hold, so one decompressed chunk is
/// at most 16 MiB.
pub const MAX_CHUNK_PAGES: u32 = 4096;
/// Frames above this are beyond the 52-bit physical address space of x86_64.
pub const MAX_PFN: u64 = 1 << (52 - 12);

/// ELF header size (ELF64).
pub const ELF_HEADER_LEN: u64 = 64;
/// Program header entry size (ELF64).
pub const PROGRAM_HEADER_LEN: u64 = 56;
/// The writer emits exactly two program headers: PT_NOTE, then the chunk segment.
pub const PROGRAM_HEADER_COUNT: u16 = 2;
/// File offset of the first chunk byte in files this crate writes.
pub const CHUNK_DATA_OFFSET: u64 = ELF_HEADER_LEN + PROGRAM_HEADER_COUNT as u64 * PROGRAM_HEADER_LEN;

/// ELF constants used by the snapshot.
pub const ET_CORE: u16 = 4;
/// Machine number of x86_64.
pub const EM_X86_64: u16 = 62;
/// Program header type of the note segment.
pub const PT_NOTE: u32 = 4;
/// Program header type of the chunk segment, in the OS-specific range
/// (PT_LOOS 0x60000000 ..= PT_HIOS 0x6fffffff). The bytes spell "SDC" after 0x60.
pub const PT_STARDUMP_CHUNKS: u32 = 0x6053_4443;
/// Readable segment flag.
pub const PF_R: u32 = 4;

/// Owner name of the standard core notes.
pub const CORE_NOTE_NAME: &[u8] = b"CORE";
/// Owner name of stardump's own notes.
pub const STARDUMP_NOTE_NAME: &[u8] = b"STARDUMP";
/// Standard note type of `struct elf_prstatus`.
pub const NT_PRSTATUS: u32 = 1;
// Stardump note types start at 0x53440000 ("SD") because readelf and BFD
// decode notes of unknown owners in a core file with the Linux core note
// types (1 = NT_PRSTATUS, 2 = NT_FPREGSET, ...); small numbers would make
// them misread stardump notes as process state.
/// Stardump note: format version and totals.
pub const NT_STARDUMP_HEADER: u32 = 0x5344_0001;
/// Stardump note: capture metadata.
pub const NT_STARDUMP_METADATA: u32 = 0x5344_0002;
/// Stardump note: the full register state of one vCPU.
pub const NT_STARDUMP_VCPU: u32 = 0x5344_0003;
/// Stardump note: the chunk index.
pub const NT_STARDUMP_CHUNK_INDEX: u32 = 0x5344_0004;
/// Stardump note: the guest-virtual mapping table of one cr3.
pub const NT_STARDUMP_MAPPINGS: u32 = 0x5344_0005;

/// Size of `struct elf_prstatus` on Linux x86_64.
pub const PRSTATUS_LEN: usize = 336;

/// Every stardump descriptor starts with a CRC-32 of bytes 8.. and a reserved u32.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Header note descriptor length in format 1.0.
pub const HEADER_LEN: usize = 48;
/// Fixed part of the metadata descriptor, before its strings.
pub const METADATA_FIXED_LEN: usize = 56;
/// vCPU descriptor length in format 1.0.
pub const VCPU_LEN: usize = 256;
/// Fixed part of the chunk-index descriptor, before its entries.
pub const INDEX_FIXED_LEN: usize = 24;
/// Fixed part of one chunk-index entry, before its zero-page bitmap.
pub const INDEX_ENTRY_FIXED_LEN: usize = 40;
/// Fixed part of the mappings descriptor, before its entries.
pub const MAPPINGS_FIXED_LEN: usize = 24;
/// One mapping entry.
pub const MAPPING_ENTRY_LEN: usize = 32;

/// Metadata flag: `domain_id` is present.
const METADATA_HAS_DOMAIN_ID: u32 = 1 << 0;
/// Metadata flag: `hypervisor_version` is present.
const METADATA_HAS_HYPERVISOR_VERSION: u32 = 1 << 1;
/// Metadata flag: `image_build_id` is present.
const METADATA_HAS_BUILD_ID: u32 = 1 << 2;

/// vCPU flag: `thread_id` is present.
const VCPU_HAS_THREAD_ID: u32 = 1 << 0;
/// vCPU flag: general registers present.
const VCPU_GENERAL: u32 = 1 << 1;
/// vCPU flag: segment bases present.
const VCPU_SEGMENT_BASES: u32 = 1 << 2;
/// vCPU flag: control registers present.
const VCPU_CONTROL: u32 = 1 << 3;

/// Mapping flag bits.
const MAPPING_WRITABLE: u32 = 1 << 0;
const MAPPING_USER: u32 = 1 << 1;
const MAPPING_NO_EXECUTE: u32 = 1 << 2;

/// Maximum length in bytes of each metadata string and of the build id.
pub const MAX_METADATA_STRING_LEN: usize = 64 * 1024;

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Number of bytes of the zero-page bitmap of a chunk of `page_count` pages,
/// padded to 8 bytes.
pub fn bitmap_len(page_count: u32) -> usize {
    (page_count as usize).div_ceil(64) * 8
}

/// Byte writer for little-endian records.
#[derive(Default)]
pub struct RecordBuilder {
    bytes: Vec<u8>,
}

impl RecordBuilder {
    /// Starts a stardump record with room for its CRC prefix.
    pub fn stardump() -> RecordBuilder {
        RecordBuilder { bytes: vec![0; RECORD_PREFIX_LEN] }
    }
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }
    /// Pads with zero bytes to a multiple of 8.
    pub fn pad8(&mut self) -> &mut Self {
        while self.bytes.len() % 8 != 0 {
            self.bytes.push(0);
        }
        self
    }
    /// Fills in the CRC prefix of a stardump record and returns its bytes.
    pub fn finish_stardump(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.bytes[RECORD_PREFIX_LEN..]);
        self.bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        self.bytes
    }
    /// Returns the bytes without a CRC prefix.
    pub fn finish_raw(self) -> Vec<u8> {
        self.bytes
    }
}

/// Bounds-checked little-endian reads from a descriptor at a known file offset.
pub struct RecordReader<'a> {
    bytes: &'a [u8],
    file_offset: u64,
    note: &'static str,
}

impl<'a> RecordReader<'a> {
    pub fn new(bytes: &'a [u8], file_offset: u64, note: &'static str) -> Self {
        RecordReader { bytes, file_offset, note }
    }

    fn invalid(&self, reason: String) -> SnapshotError {
        SnapshotError::InvalidNote { note: self.note, offset: self.file_offset, reason }
    }

    /// Returns `len` bytes at `at`, or an error naming the descriptor.
    pub fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], SnapshotError> {
        let end = at.checked_add(len).filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => Ok(&self.bytes[at..end]),
            None => Err(self.invalid(format!(
                "descriptor is {} bytes, field at byte {at} needs {len} bytes",
                self.bytes.len()
            ))),
        }
    }
    pub fn u16(&self, at: usize) -> Result<u16, SnapshotError> {
        let b = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&self, at: usize) -> Result<u32, SnapshotError> {
        let b = self.slice(at, 4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("slice has 4 bytes")))
    }
    pub fn u64(&self, at: usize) -> Result<u64, SnapshotError> {
        let b = self.slice(at, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("slice has 8 bytes")))
    }

    /// Checks the CRC prefix of a stardump record and its minimum length.
    pub fn check_stardump(&self, min_len: usize) -> Result<(), SnapshotError> {
        if self.bytes.len() < min_len.max(RECORD_PREFIX_LEN) {
            return Err(self.invalid(format!(
                "descriptor is {} bytes, expected at least {min_len}",
                self.bytes.len()
            )));
        }
        let stored = self.u32(0)?;
        let computed = crc32fast::hash(&self.bytes[RECORD_PREFIX_LEN..]);
        if stored != computed {
            return Err(SnapshotError::NoteChecksumMismatch {
                note: self.note,
                offset: self.file_offset,
                stored,
                computed,
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// Contents of the header note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRecord {
    pub format_major: u16,
    pub format_minor: u16,
    pub page_size: u32,
    pub chunk_pages: u32,
    pub vcpu_count: u32,
    pub chunk_count: u64,
    pub stored_pages: u64,
    pub zero_pages: u64,
}

impl HeaderRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = RecordBuilder::stardump();
        b.u16(self.format_major)
            .u16(self.format_minor)
            .u32(self.page_size)
            .u32(self.chunk_pages)
            .u32(self.vcpu_count)
            .u64(self.chunk_count)
            .u64(self.stored_pages)
            .u64(self.zero_pages);
        b.finish_stardump()
    }

    /// Decodes the header. The version is read before the checksum is
    /// checked, so an unknown major version is reported as such even if a
    /// future format changed the record's layout.
    pub fn decode(desc: &[u8], offset: u64) -> Result<HeaderRecord, SnapshotError> {
        let r = RecordReader::new(desc, offset, "header");
        let format_major = r.u16(8)?;
        let format_minor = r.u16(10)?;
        if format_major != FORMAT_MAJOR {
            return Err(SnapshotError::UnsupportedVersion { major: format_major, minor: format_minor, offset });
        }
        r.check_stardump(HEADER_LEN)?;
        let header = HeaderRecord {
            format_major,
            format_minor,
            page_size: r.u32(12)?,
            chunk_pages: r.u32(16)?,
            vcpu_count: r.u32(20)?,
            chunk_count: r.u64(24)?,
            stored_pages: r.u64(32)?,
            zero_pages: r.u64(40)?,
        };
        if u64::from(header.page_size) != PAGE_SIZE {
            return Err(SnapshotError::InvalidNote {
                note: "header",
                offset,
                reason: format!("page size {} is not 4096", header.page_size),
            });
        }
        Ok(header)
    }
}

/// Encodes the metadata note.
pub fn encode_metadata(metadata: &Metadata) -> Vec<u8> {
    let mut flags = 0;
    if metadata.domain_id.is_some() {
        flags |= METADATA_HAS_DOMAIN_ID;
    }
    if metadata.hypervisor_version.is_some() {
        flags |= METADATA_HAS_HYPERVISOR_VERSION;
    }
    if metadata.image_build_id.is_some() {
        flags |= METADATA_HAS_BUILD_ID;
    }
    let name = truncate_utf8(&metadata.target_name);
    let version = truncate_utf8(metadata.hypervisor_version.as_deref().unwrap_or(""));
    let build_id = metadata.image_build_id.as_deref().unwrap_or(&[]);
    let build_id = &build_id[..build_id.len().min(MAX_METADATA_STRING_LEN)];

    let mut b = RecordBuilder::stardump();
    b.u32(metadata.source_kind.to_u32())
        .u32(flags)
        .u32(metadata.domain_id.unwrap_or(0))
        .u32(metadata.page_size)
        .u64(metadata.capture_time_unix_us)
        .u64(metadata.pause_time_us)
        .u32(name.len() as u32)
        .u32(version.len() as u32)
        .u32(build_id.len() as u32)
        .u32(0)
        .bytes(name.as_bytes())
        .bytes(version.as_bytes())
        .bytes(build_id)
        .pad8();
    b.finish_stardump()
}

/// Cuts `text` to at most [`MAX_METADATA_STRING_LEN`] bytes on a character boundary.
fn truncate_utf8(text: &str) -> &str {
    if text.len() <= MAX_METADATA_STRING_LEN {
        return text;
    }
    let mut end = MAX_METADATA_STRING_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Decodes the metadata note.
pub fn decode_metadata(desc: &[u8], offset: u64) -> Result<Metadata, SnapshotError> {
    let r = RecordReader::new(desc, offset, "metadata");
    r.check_stardump(METADATA_FIXED_LEN)?;
    let invalid = |reason: String| SnapshotError::InvalidNote { note: "metadata", offset, reason };

    let source_value = r.u32(8)?;
    let source_kind =
        SourceKind::from_u32(source_value).ok_or_else(|| invalid(format!("unknown source kind {source_value}")))?;
    let flags = r.u32(12)?;
    let domain_id = r.u32(16)?;
    let page_size = r.u32(20)?;
    let capture_time_unix_us = r.u64(24)?;
    let pause_time_us = r.u64(32)?;
    let name_len = r.u32(40)? as usize;
    let version_len = r.u32(44)? as usize;
    let build_id_len = r.u32(48)? as usize;
    for (field, len) in [("target name", name_len), ("hypervisor version", version_len), ("build id", build_id_len)] {
        if len > MAX_METADATA_STRING_LEN {
            return Err(invalid(format!("{field} length {len} exceeds {MAX_METADATA_STRING_LEN}")));
        }
    }
    let mut at = METADATA_FIXED_LEN;
    let name = r.slice(at, name_len)?;
    at += name_len;
    let version = r.slice(at, version_len)?;
    at += version_len;
    let build_id = r.slice(at, build_id_len)?;

    let text = |field: &str, bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("{field} is not valid UTF-8")))
    };
    Ok(Metadata {
        source_kind,
        target_name: text("target name", name)?,
        domain_id: (flags & METADATA_HAS_DOMAIN_ID != 0).then_some(domain_id),
        hypervisor_version: if flags & METADATA_HAS_HYPERVISOR_VERSION != 0 {
            Some(text("hypervisor version", version)?)
        } else {
            None
        },
        capture_time_unix_us,
        pause_time_us,
        image_build_id: (flags & METADATA_HAS_BUILD_ID != 0).then(|| build_id.to_vec()),
        page_size,
    })
}

/// Returns the `pr_pid` of a vCPU's `NT_PRSTATUS` note. It is the thread id
/// when that is a positive `pid_t`, so gdb lists a process's threads by
/// their Linux thread ids. Otherwise it is the vCPU id plus one, because gdb
/// treats pid 0 as "no thread".
pub fn prstatus_pid(vcpu: &VcpuState) -> u32 {
    match vcpu.thread_id {
        Some(tid) if tid != 0 && tid <= i32::MAX as u64 => tid as u32,
        _ => vcpu.id.wrapping_add(1),
    }
}

/// Encodes the `NT_PRSTATUS` descriptor of a vCPU in the Linux x86_64
/// `struct elf_prstatus` layout, with [`prstatus_pid`] as `pr_pid`.
pub fn encode_prstatus(vcpu: &VcpuState) -> Vec<u8> {
    let mut b = RecordBuilder::default();
    // pr_info (12), pr_cursig (2), padding (2), pr_sigpend, pr_sighold.
    b.bytes(&[0; 12]).u16(0).u16(0).u64(0).u64(0);
    // pr_pid, pr_ppid, pr_pgrp, pr_sid.
    b.u32(prstatus_pid(vcpu)).u32(0).u32(0).u32(0);
    // pr_utime, pr_stime, pr_cutime, pr_cstime.
    b.bytes(&[0; 64]);
    // pr_reg: struct user_regs_struct.
    for value in [
        vcpu.r15,
        vcpu.r14,
        vcpu.r13,
        vcpu.r12,
        vcpu.rbp,
        vcpu.rbx,
        vcpu.r11,
        vcpu.r10,
        vcpu.r9,
        vcpu.r8,
        vcpu.rax,
        vcpu.rcx,
        vcpu.rdx,
        vcpu.rsi,
        vcpu.rdi,
        u64::MAX, // orig_rax: not in a system call
        vcpu.rip,
        vcpu.cs.into(),
        vcpu.rflags,
        vcpu.rsp,
        vcpu.ss.into(),
        vcpu.fs_base,
        vcpu.gs_base,
        vcpu.ds.into(),
        vcpu.es.into(),
        vcpu.fs.into(),
        vcpu.gs.into(),
    ] {
        b.u64(value);
    }
    // pr_fpvalid, padding.
    b.u32(0).u32(0);
    let bytes = b.finish_raw();
    debug_assert_eq!(bytes.len(), PRSTATUS_LEN);
    bytes
}

/// Encodes the stardump vCPU note.
pub fn encode_vcpu(vcpu: &VcpuState) -> Vec<u8> {
    let mut flags = 0;
    if vcpu.thread_id.is_some() {
        flags |= VCPU_HAS_THREAD_ID;
    }
    if vcpu.present.general {
        flags |= VCPU_GENERAL;
    }
    if vcpu.present.segment_bases {
        flags |= VCPU_SEGMENT_BASES;
    }
    if vcpu.present.control {
        flags |= VCPU_CONTROL;
    }
    let mut b = RecordBuilder::stardump();
    b.u32(vcpu.id).u32(flags).u64(vcpu.thread_id.unwrap_or(0));
    for value in [
        vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx, vcpu.rsi, vcpu.rdi, vcpu.rbp, vcpu.rsp, vcpu.r8, vcpu.r9, vcpu.r10,
        vcpu.r11, vcpu.r12, vcpu.r13, vcpu.r14, vcpu.r15, vcpu.rip, vcpu.rflags,
    ] {
        b.u64(value);
    }
    b.u16(vcpu.cs).u16(vcpu.ss).u16(vcpu.ds).u16(vcpu.es).u16(vcpu.fs).u16(vcpu.gs).u32(0);
    for value in [
        vcpu.fs_base,
        vcpu.gs_base,
        vcpu.kernel_gs_base,
        vcpu.cr0,
        vcpu.cr2,
        vcpu.cr3,
        vcpu.cr4,
        vcpu.cr8,
        vcpu.efer,
    ] {
        b.u64(value);
    }
    let bytes = b.finish_stardump();
    debug_assert_eq!(bytes.len(), VCPU_LEN);
    bytes
}

/// Decodes the stardump vCPU note.
pub fn decode_vcpu(desc: &[u8], offset: u64) -> Result<VcpuState, SnapshotError> {
    let r = RecordReader::new(desc, offset, "vcpu");
    r.check_stardump(VCPU_LEN)?;
    let flags = r.u32(12)?;
    let thread_id = r.u64(16)?;
    let mut general = [0u64; 18];
    for (i, value) in general.iter_mut().enumerate() {
        *value = r.u64(24 + i * 8)?;
    }
    let selectors_at = 24 + 18 * 8;
    let mut selectors = [0u16; 6];
    for (i, value) in selectors.iter_mut().enumerate() {
        *value = r.u16(selectors_at + i * 2)?;
    }
    let rest_at = selectors_at + 16;
    let mut rest = [0u64; 9];
    for (i, value) in rest.iter_mut().enumerate() {
        *value = r.u64(rest_at + i * 8)?;
    }
    let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] = general;
    let [cs, ss, ds, es, fs, gs] = selectors;
    let [fs_base, gs_base, kernel_gs_base, cr0, cr2, cr3, cr4, cr8, efer] = rest;
    Ok(VcpuState {
        id: r.u32(8)?,
        thread_id: (flags & VCPU_HAS_THREAD_ID != 0).then_some(thread_id),
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rbp,
        rsp,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
        rip,
        rflags,
        cs,
        ss,
        ds,
        es,
        fs,
        gs,
        fs_base,
        gs_base,
        kernel_gs_base,
        cr0,
        cr2,
        cr3,
        cr4,
        cr8,
        efer,
        present: RegisterGroups {
            general: flags & VCPU_GENERAL != 0,
            segment_bases: flags & VCPU_SEGMENT_BASES != 0,
            control: flags & VCPU_CONTROL != 0,
        },
    })
}

/// One entry of the chunk index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// First guest frame the chunk covers.
    pub first_pfn: u64,
    /// File offset of the compressed bytes.
    pub file_offset: u64,
    /// Length of the compressed bytes; 0 when every page is zero.
    pub compressed_len: u64,
    /// Number of consecutive frames the chunk covers, zero pages included.
    pub page_count: u32,
    /// CRC-32 (IEEE) of the compressed bytes.
    pub crc32: u32,
    /// Number of pages stored in the compressed data (the pages not marked zero).
    pub stored_pages: u32,
    /// Bit i (LSB first within each byte) set: frame `first_pfn + i` is all
    /// zero and not stored.
    pub zero_bitmap: Vec<u8>,
}

impl ChunkEntry {
    /// Returns whether page `i` of the chunk is recorded as all zero.
    pub fn is_zero(&self, i: u32) -> bool {
        let byte = self.zero_bitmap[(i / 8) as usize];
        byte & (1 << (i % 8)) != 0
    }

    /// Returns the position of page `i` among the stored pages of the chunk.
    pub fn stored_index(&self, i: u32) -> u32 {
        let full_bytes = (i / 8) as usize;
        let mut zeros: u32 = self.zero_bitmap[..full_bytes].iter().map(|b| b.count_ones()).sum();
        let partial = self.zero_bitmap[full_bytes] & ((1u8 << (i % 8)) - 1);
        zeros += partial.count_ones();
        i - zeros
    }

    /// Exclusive end frame of the chunk.
    pub fn end_pfn(&self) -> u64 {
        self.first_pfn + u64::from(self.page_count)
    }
}

/// Encodes the chunk-index note; entries must be sorted by `first_pfn`.
pub fn encode_chunk_index(entries: &[ChunkEntry]) -> Vec<u8> {
    let mut b = RecordBuilder::stardump();
    b.u64(entries.len() as u64).u64(0);
    for entry in entries {
        b.u64(entry.first_pfn)
            .u64(entry.file_offset)
            .u64(entry.compressed_len)
            .u32(entry.page_count)
            .u32(entry.crc32)
            .u32(entry.stored_pages)
            .u32(0)
            .bytes(&entry.zero_bitmap);
    }
    b.finish_stardump()
}

/// Decodes and validates the chunk-index note: entries sorted, not
/// overlapping, within the 52-bit physical address space, page counts and
/// zero bitmaps consistent. Compressed ranges are checked when a chunk is read.
pub fn decode_chunk_index(desc: &[u8], offset: u64) -> Result<Vec<ChunkEntry>, SnapshotError> {
    let r = RecordReader::new(desc, offset, "chunk index");
    r.check_stardump(INDEX_FIXED_LEN)?;
    let count = r.u64(8)?;
    // Each entry is at least INDEX_ENTRY_FIXED_LEN + 8 bytes, so the count is
    // bounded by the descriptor length before anything is allocated.
    let max_count = (r.len() - INDEX_FIXED_LEN) / (INDEX_ENTRY_FIXED_LEN + 8);
    if count > max_count as u64 {
        return Err(SnapshotError::InvalidNote {
            note: "chunk index",
            offset,
            reason: format!("entry count {count} does not fit in a {}-byte descriptor", r.len()),
        });
    }
    let mut entries: Vec<ChunkEntry> = Vec::with_capacity(count as usize);
    let mut at = INDEX_FIXED_LEN;
    for index in 0..count as usize {
        let entry_offset = offset + at as u64;
        let invalid =
            |reason: String| SnapshotError::InvalidChunkIndex { chunk: index, offset: entry_offset, reason };
        let first_pfn = r.u64(at)?;
        let file_offset = r.u64(at + 8)?;
        let compressed_len = r.u64(at + 16)?;
        let page_count = r.u32(at + 24)?;
        let crc32 = r.u32(at + 28)?;
        let stored_pages = r.u32(at + 32)?;
        if page_count == 0 || page_count > MAX_CHUNK_PAGES {
            return Err(invalid(format!("page count {page_count} is not in 1..={MAX_CHUNK_PAGES}")));
        }
        let end_pfn = first_pfn.checked_add(u64::from(page_count)).filter(|&end| end <= MAX_PFN);
        let Some(end_pfn) = end_pfn else {
            return Err(invalid(format!(
                "frames {first_pfn:#x} + {page_count} exceed the 52-bit physical address space"
            )));
        };
        let bitmap = r.slice(at + INDEX_ENTRY_FIXED_LEN, bitmap_len(page_count))?;
        let zero_count: u32 = bitmap.iter().map(|b| b.count_ones()).sum();
        if zero_count > page_count || page_count - zero_count != stored_pages {
            return Err(invalid(format!(
                "stored page count {stored_pages} does not match {page_count} pages with {zero_count} zero pages"
            )));
        }
        if let Some(previous) = entries.last() {
            if first_pfn < previous.end_pfn() {
                return Err(invalid(format!(
                    "frames {first_pfn:#x}..{end_pfn:#x} overlap or precede the previous chunk ending at {:#x}",
                    previous.end_pfn()
                )));
            }
        }
        entries.push(ChunkEntry {
            first_pfn,
            file_offset,
            compressed_len,
            page_count,
            crc32,
            stored_pages,
            zero_bitmap: bitmap.to_vec(),
        });
        at += INDEX_ENTRY_FIXED_LEN + bitmap.len();
    }
    Ok(entries)
}

/// Encodes the mapping-table note of one cr3.
pub fn encode_mappings(cr3: u64, mappings: &[Mapping]) -> Vec<u8> {
    let mut b = RecordBuilder::stardump();
    b.u64(cr3).u64(mappings.len() as u64);
    for mapping in mappings {
        let mut flags = 0;
        if mapping.flags.writable {
            flags |= MAPPING_WRITABLE;
        }
        if mapping.flags.user {
            flags |= MAPPING_USER;
        }
        if mapping.flags.no_execute {
            flags |= MAPPING_NO_EXECUTE;
        }
        b.u64(mapping.virtual_start)
            .u64(mapping.physical_start)
            .u64(mapping.len_bytes)
            .u32(flags)
            .u32(mapping.flags.page_size.try_into().unwrap_or(u32::MAX));
    }
    b.finish_stardump()
}

/// Decodes the mapping-table note of one cr3.
pub fn decode_mappings(desc: &[u8], offset: u64) -> Result<(u64, Vec<Mapping>), SnapshotError> {
    let r = RecordReader::new(desc, offset, "mappings");
    r.check_stardump(MAPPINGS_FIXED_LEN)?;
    let cr3 = r.u64(8)?;
    let count = r.u64(16)?;
    let max_count = (r.len() - MAPPINGS_FIXED_LEN) / MAPPING_ENTRY_LEN;
    if count > max_count as u64 {
        return Err(SnapshotError::InvalidNote {
            note: "mappings",
            offset,
            reason: format!("entry count {count} does not fit in a {}-byte descriptor", r.len()),
        });
    }
    let mut mappings = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = MAPPINGS_FIXED_LEN + i * MAPPING_ENTRY_LEN;
        let flags = r.u32(at + 24)?;
        mappings.push(Mapping {
            virtual_start: r.u64(at)?,
            physical_start: r.u64(at + 8)?,
            len_bytes: r.u64(at + 16)?,
            flags: MappingFlags {
                writable: flags & MAPPING_WRITABLE != 0,
                user: flags & MAPPING_USER != 0,
                no_execute: flags & MAPPING_NO_EXECUTE != 0,
                page_size: u64::from(r.u32(at + 28)?),
            },
        });
    }
    Ok((cr3, mappings))
}

/// Appends one ELF note (name and descriptor padded to 4 bytes) to `out`.
pub fn push_note(out: &mut Vec<u8>, name: &[u8], note_type: u32, desc: &[u8]) {
    let namesz = name.len() as u32 + 1;
    out.extend_from_slice(&namesz.to_le_bytes());
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

/// Encodes the ELF64 header.
pub fn encode_elf_header() -> Vec<u8> {
    let mut b = RecordBuilder::default();
    b.bytes(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).bytes(&[0; 8]);
    b.u16(ET_CORE).u16(EM_X86_64).u32(1); // e_type, e_machine, e_version
    b.u64(0).u64(ELF_HEADER_LEN).u64(0); // e_entry, e_phoff, e_shoff
    b.u32(0).u16(ELF_HEADER_LEN as u16).u16(PROGRAM_HEADER_LEN as u16); // e_flags, e_ehsize, e_phentsize
    b.u16(PROGRAM_HEADER_COUNT).u16(64).u16(0).u16(0); // e_phnum, e_shentsize, e_shnum, e_shstrndx
    b.finish_raw()
}

/// Encodes one ELF64 program header with zero addresses.
pub fn encode_program_header(p_type: u32, p_offset: u64, p_filesz: u64, p_align: u64) -> Vec<u8> {
    let mut b = RecordBuilder::default();
    b.u32(p_type).u32(PF_R).u64(p_offset).u64(0).u64(0).u64(p_filesz).u64(0).u64(p_align);
    b.finish_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prstatus_layout_matches_linux() {
        let vcpu = VcpuState { id: 2, rip: 0x1122_3344_5566_7788, rsp: 0xabcd, cs: 0x10, ..VcpuState::default() };
        let bytes = encode_prstatus(&vcpu);
        assert_eq!(bytes.len(), 336);
        // pr_pid at 32, pr_reg at 112; rip is register 16, cs 17, rsp 19.
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 3);
        assert_eq!(u64::from_le_bytes(bytes[112 + 16 * 8..112 + 17 * 8].try_into().unwrap()), vcpu.rip);
        assert_eq!(u64::from_le_bytes(bytes[112 + 17 * 8..112 + 18 * 8].try_into().unwrap()), 0x10);
        assert_eq!(u64::from_le_bytes(bytes[112 + 19 * 8..112 + 20 * 8].try_into().unwrap()), 0xabcd);
    }

    #[test]
    fn prstatus_pid_prefers_thread_id() {
        let pr_pid = |vcpu: &VcpuState| u32::from_le_bytes(encode_prstatus(vcpu)[32..36].try_into().unwrap());
        let thread = VcpuState { id: 1, thread_id: Some(31337), ..VcpuState::default() };
        assert_eq!(pr_pid(&thread), 31337);
        let no_thread_id = VcpuState { id: 1, thread_id: None, ..VcpuState::default() };
        assert_eq!(pr_pid(&no_thread_id), 2);
        let zero = VcpuState { id: 1, thread_id: Some(0), ..VcpuState::default() };
        assert_eq!(pr_pid(&zero), 2, "0 means no thread to gdb");
        let too_large = VcpuState { id: 1, thread_id: Some(1 << 31), ..VcpuState::default() };
        assert_eq!(pr_pid(&too_large), 2, "pr_pid is a signed 32-bit pid_t");
    }

    #[test]
    fn stored_index_skips_zero_pages() {
        let entry = ChunkEntry {
            first_pfn: 0,
            file_offset: 0,
            compressed_len: 0,
            page_count: 12,
            crc32: 0,
            stored_pages: 9,
            zero_bitmap: vec![0b0000_0101, 0b0000_1000, 0, 0, 0, 0, 0, 0],
        };
        assert!(entry.is_zero(0));
        assert!(!entry.is_zero(1));
        assert_eq!(entry.stored_index(1), 0);
        assert_eq!(entry.stored_index(3), 1);
        assert_eq!(entry.stored_index(10), 8);
        assert!(entry.is_zero(11));
    }

    #[test]
    fn metadata_round_trip() {
        let metadata = Metadata {
            source_kind: SourceKind::XenPv,
            target_name: "xen:web1".into(),
            domain_id: Some(7),
            hypervisor_version: Some("4.17".into()),
            capture_time_unix_us: 1_700_000_000_000_000,
            pause_time_us: 1234,
            image_build_id: Some(vec![0xde, 0xad, 0xbe, 0xef]),
            page_size: 4096,
        };
        let bytes = encode_metadata(&metadata);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(decode_metadata(&bytes, 0x100).unwrap(), metadata);
    }

    #[test]
    fn metadata_with_bad_checksum_is_rejected() {
        let mut bytes = encode_metadata(&Metadata::default());
        bytes[20] ^= 1;
        let error = decode_metadata(&bytes, 0x100).unwrap_err();
        assert!(matches!(error, SnapshotError::NoteChecksumMismatch { offset: 0x100, .. }), "{error}");
    }
}
