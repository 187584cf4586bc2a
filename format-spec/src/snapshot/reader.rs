//! Snapshot reader: maps the file, validates the ELF container and the
//! stardump notes, and serves page reads by decompressing one chunk at a time.
//!
//! Damage that leaves the rest usable (a chunk whose bytes fail their
//! checksum, a vCPU or mapping note with a bad checksum, fewer vCPU notes
//! than the header's `vcpu_count`) does not stop `open`: reads of the
//! damaged part fail, [`Snapshot::note_damage`] lists the notes `open`
//! skipped, and [`Snapshot::verify`] adds the chunks. The skipped notes are
//! logged at debug level only, because the caller reports them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use tracing::debug;

use super::error::SnapshotError;
use super::layout::{self, ChunkEntry, HeaderRecord};
use super::process_notes;
use crate::model::{FileMapping, Metadata, SourceKind, VcpuState};
use crate::paging::{self, Mapping};
use crate::target::{MemoryError, MemoryRange, Target};

/// Number of decompressed chunks kept in memory (8 MiB with the default chunk size).
const CHUNK_CACHE_LEN: usize = 8;

/// An opened snapshot file.
pub struct Snapshot {
    path: PathBuf,
    map: Mmap,
    header: HeaderRecord,
    metadata: Metadata,
    vcpus: Vec<VcpuState>,
    mappings: Vec<(u64, Vec<Mapping>)>,
    /// File mappings of a Linux process, sorted by start address.
    file_mappings: Vec<FileMapping>,
    /// Thread names by vCPU id, sorted by id.
    thread_names: Vec<(u32, String)>,
    chunks: Vec<ChunkEntry>,
    /// File range of the chunk segment.
    chunk_segment: (u64, u64),
    /// Damage found by `open` that does not prevent reading the rest.
    note_damage: Vec<SnapshotError>,
    /// Most recently used decompressed chunks, newest last.
    cache: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
}

/// A program header's type, file offset and size.
struct Segment {
    p_type: u32,
    offset: u64,
    len: u64,
}

/// One note of the note segment.
struct Note<'a> {
    name: &'a [u8],
    note_type: u32,
    desc: &'a [u8],
    desc_offset: u64,
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Returns `file[offset..offset + len]`, or a truncation error naming `part`.
fn file_range(file: &[u8], part: impl Into<String>, offset: u64, len: u64) -> Result<&[u8], SnapshotError> {
    let file_len = file.len() as u64;
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(&file[offset as usize..end as usize]),
        _ => Err(SnapshotError::Truncated { part: part.into(), offset, needed: len, file_len }),
    }
}

/// Parses the ELF header and returns the program headers.
fn parse_segments(file: &[u8]) -> Result<Vec<Segment>, SnapshotError> {
    let header = file_range(file, "ELF header", 0, layout::ELF_HEADER_LEN)?;
    let invalid = |offset: u64, field, value: u64, expected| SnapshotError::InvalidElfHeader {
        offset,
        field,
        value,
        expected,
    };
    if header[0..4] != [0x7f, b'E', b'L', b'F'] {
        return Err(invalid(0, "e_ident[EI_MAG]", u64::from(read_u32(header, 0)), "0x464c457f (\\x7fELF)"));
    }
    if header[4] != 2 {
        return Err(invalid(4, "e_ident[EI_CLASS]", header[4].into(), "2 (ELFCLASS64)"));
    }
    if header[5] != 1 {
        return Err(invalid(5, "e_ident[EI_DATA]", header[5].into(), "1 (ELFDATA2LSB)"));
    }
    if read_u16(header, 16) != layout::ET_CORE {
        return Err(invalid(16, "e_type", read_u16(header, 16).into(), "4 (ET_CORE)"));
    }
    if read_u16(header, 18) != layout::EM_X86_64 {
        return Err(invalid(18, "e_machine", read_u16(header, 18).into(), "62 (EM_X86_64)"));
    }
    let phoff = read_u64(header, 32);
    let phentsize = read_u16(header, 54);
    let phnum = read_u16(header, 56);
    if u64::from(phentsize) != layout::PROGRAM_HEADER_LEN {
        return Err(invalid(54, "e_phentsize", phentsize.into(), "56"));
    }
    let table_len = u64::from(phnum) * layout::PROGRAM_HEADER_LEN;
    let table = file_range(file, "program header table", phoff, table_len)?;
    let file_len = file.len() as u64;
    let mut segments = Vec::with_capacity(phnum.into());
    for index in 0..phnum as usize {
        let entry = &table[index * layout::PROGRAM_HEADER_LEN as usize..];
        let entry_offset = phoff + index as u64 * layout::PROGRAM_HEADER_LEN;
        let segment = Segment { p_type: read_u32(entry, 0), offset: read_u64(entry, 8), len: read_u64(entry, 32) };
        let known = segment.p_type == layout::PT_NOTE || segment.p_type == layout::PT_STARDUMP_CHUNKS;
        if known && segment.offset.checked_add(segment.len).map_or(true, |end| end > file_len) {
            return Err(SnapshotError::Truncated {
                part: format!("segment of program header {index} (type {:#x})", segment.p_type),
                offset: segment.offset,
                needed: segment.len,
                file_len,
            });
        }
        if !known {
            debug!(index, p_type = format_args!("{:#x}", segment.p_type), entry_offset, "ignoring program header");
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Splits the note segment into notes; stops at the first malformed note.
fn parse_notes(segment: &[u8], segment_offset: u64) -> Result<Vec<Note<'_>>, SnapshotError> {
    let mut notes = Vec::new();
    let mut at = 0usize;
    while at < segment.len() {
        let note_offset = segment_offset + at as u64;
        let invalid = |reason: String| SnapshotError::InvalidNote { note: "ELF", offset: note_offset, reason };
        if segment.len() - at < 12 {
            return Err(invalid(format!("{} bytes left, a note header needs 12", segment.len() - at)));
        }
        let namesz = read_u32(segment, at) as usize;
        let descsz = read_u32(segment, at + 4) as usize;
        let note_type = read_u32(segment, at + 8);
        let name_at = at + 12;
        let desc_at = layout::align_up((name_at + namesz) as u64, 4).map(|v| v as usize);
        let end = desc_at.and_then(|d| d.checked_add(descsz)).and_then(|e| layout::align_up(e as u64, 4));
        let (Some(desc_at), Some(end)) = (desc_at, end) else {
            return Err(invalid(format!("name size {namesz} and descriptor size {descsz} overflow")));
        };
        // The last note's padding may be missing if a writer did not pad it.
        if desc_at + descsz > segment.len() {
            return Err(invalid(format!(
                "name size {namesz} and descriptor size {descsz} extend past the segment end at {:#x}",
                segment_offset + segment.len() as u64
            )));
        }
        let name = &segment[name_at..name_at + namesz];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        notes.push(Note {
            name,
            note_type,
            desc: &segment[desc_at..desc_at + descsz],
            desc_offset: segment_offset + desc_at as u64,
        });
        at = (end as usize).min(segment.len());
    }
    Ok(notes)
}

impl Snapshot {
    /// Opens and validates a snapshot; the file is memory-mapped.
    pub fn open(path: &Path) -> Result<Snapshot, SnapshotError> {
        let io_error = |source| SnapshotError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the mapping is read-only, and stardump never modifies a
        // finished snapshot in place because the writer renames a temporary
        // file into place.
        // NOTE: another program truncating the file while it is mapped makes
        // reads of the lost pages fault (SIGBUS); nothing here guards that.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        Snapshot::from_map(path, map)
    }

    fn from_map(path: &Path, map: Mmap) -> Result<Snapshot, SnapshotError> {
        let file: &[u8] = &map;
        let segments = parse_segments(file)?;
        let note_segment = segments
            .iter()
            .find(|s| s.p_type == layout::PT_NOTE)
            .ok_or(SnapshotError::MissingSegment { segment: "PT_NOTE", offset: layout::ELF_HEADER_LEN })?;
        let chunk_segment = segments
            .iter()
            .find(|s| s.p_type == layout::PT_STARDUMP_CHUNKS)
            .ok_or(SnapshotError::MissingSegment { segment: "PT_STARDUMP_CHUNKS", offset: layout::ELF_HEADER_LEN })?;
        let chunk_segment = (chunk_segment.offset, chunk_segment.offset + chunk_segment.len);
        let notes_bytes = &file[note_segment.offset as usize..(note_segment.offset + note_segment.len) as usize];
        let notes = parse_notes(notes_bytes, note_segment.offset)?;

        let mut header = None;
        let mut metadata = None;
        let mut vcpus = Vec::new();
        let mut mappings = Vec::new();
        let mut file_mappings = Vec::new();
        let mut thread_names = Vec::new();
        let mut chunks = None;
        let mut note_damage = Vec::new();
        let mut header_offset = note_segment.offset;
        // Every vCPU note, decoded or damaged, to compare with the header's `vcpu_count`.
        let mut vcpu_notes = 0u64;
        for note in notes.iter().filter(|note| note.name == layout::STARDUMP_NOTE_NAME) {
            match note.note_type {
                layout::NT_STARDUMP_HEADER => {
                    header = Some(HeaderRecord::decode(note.desc, note.desc_offset)?);
                    header_offset = note.desc_offset;
                }
                layout::NT_STARDUMP_METADATA => metadata = Some(layout::decode_metadata(note.desc, note.desc_offset)?),
                layout::NT_STARDUMP_VCPU => match layout::decode_vcpu(note.desc, note.desc_offset) {
                    Ok(vcpu) => {
                        vcpu_notes += 1;
                        vcpus.push(vcpu);
                    }
                    Err(error) => {
                        vcpu_notes += 1;
                        debug!(%error, "skipping damaged vCPU note");
                        note_damage.push(error);
                    }
                },
                layout::NT_STARDUMP_MAPPINGS => match layout::decode_mappings(note.desc, note.desc_offset) {
                    Ok(table) => mappings.push(table),
                    Err(error) => {
                        debug!(%error, "skipping damaged mappings note");
                        note_damage.push(error);
                    }
                },
                process_notes::NT_STARDUMP_FILE_MAPPINGS => {
                    match process_notes::decode_file_mappings(note.desc, note.desc_offset) {
                        Ok(table) => file_mappings.extend(table),
                        Err(error) => {
                            debug!(%error, "skipping damaged file mappings note");
                            note_damage.push(error);
                        }
                    }
                }
                process_notes::NT_STARDUMP_THREAD_NAME => {
                    match process_notes::decode_thread_name(note.desc, note.desc_offset) {
                        Ok(entry) => thread_names.push(entry),
                        Err(error) => {
                            debug!(%error, "skipping damaged thread name note");
                            note_damage.push(error);
                        }
                    }
                }
                layout::NT_STARDUMP_CHUNK_INDEX => {
                    chunks = Some(layout::decode_chunk_index(note.desc, note.desc_offset)?)
                }
                other => debug!(note_type = other, offset = note.desc_offset, "ignoring unknown stardump note"),
            }
            // The header comes first so that a file of an unknown major
            // version is rejected before its other notes are decoded.
            if header.is_none() {
                return Err(SnapshotError::MissingNote { note: "header", offset: note_segment.offset });
            }
        }
        let missing = |note| SnapshotError::MissingNote { note, offset: note_segment.offset };
        let header = header.ok_or(missing("header"))?;
        let metadata = metadata.ok_or(missing("metadata"))?;
        let chunks = chunks.ok_or(missing("chunk index"))?;
        // A vCPU note whose type field is damaged reads as an unknown note,
        // so only the header's count reveals that it is gone.
        if vcpu_notes != u64::from(header.vcpu_count) {
            let error = SnapshotError::InvalidNote {
                note: "header",
                offset: header_offset,
                reason: format!(
                    "vcpu_count is {}, but the note segment has {vcpu_notes} vCPU note{}",
                    header.vcpu_count,
                    if vcpu_notes == 1 { "" } else { "s" }
                ),
            };
            debug!(%error, "vCPU notes missing");
            note_damage.push(error);
        }
        vcpus.sort_by_key(|vcpu| vcpu.id);
        file_mappings.sort_by_key(|mapping| mapping.start);
        // A later note for the same vCPU wins, as the writer keeps one per id.
        thread_names.reverse();
        thread_names.sort_by_key(|(id, _)| *id);
        thread_names.dedup_by_key(|(id, _)| *id);
        debug!(
            path = %path.display(),
            version = format_args!("{}.{}", header.format_major, header.format_minor),
            vcpus = vcpus.len(),
            chunks = chunks.len(),
            "opened snapshot"
        );
        Ok(Snapshot {
            path: path.to_path_buf(),
            map,
            header,
            metadata,
            vcpus,
            mappings,
            file_mappings,
            thread_names,
            chunks,
            chunk_segment,
            note_damage,
            cache: Mutex::new(Vec::new()),
        })
    }

    /// Path the snapshot was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Guest-virtual mapping tables recorded at capture time, per cr3.
    pub fn mappings(&self) -> &[(u64, Vec<Mapping>)] {
        &self.mappings
    }

    /// File mappings of a Linux process (path, file offset and build id of
    /// each mapped file), sorted by start address. Empty for other sources.
    pub fn file_mappings(&self) -> &[FileMapping] {
        &self.file_mappings
    }

    /// Returns the name of the thread recorded as vCPU `vcpu_id` (a
    /// Linux thread's `comm`), when the snapshot records one.
    pub fn thread_name(&self, vcpu_id: u32) -> Option<&str> {
        let index = self.thread_names.binary_search_by_key(&vcpu_id, |(id, _)| *id).ok()?;
        Some(&self.thread_names[index].1)
    }

    /// Format version of the file, (major, minor).
    pub fn format_version(&self) -> (u16, u16) {
        (self.header.format_major, self.header.format_minor)
    }

    /// Number of vCPUs the header note records; [`Target::vcpus`] has
    /// fewer when vCPU notes are missing or damaged.
    pub fn recorded_vcpu_count(&self) -> u32 {
        self.header.vcpu_count
    }

    /// Number of chunks in the index.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Number of pages stored compressed.
    pub fn stored_page_count(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.stored_pages)).sum()
    }

    /// Number of all-zero pages recorded only in the index.
    pub fn zero_page_count(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.page_count - c.stored_pages)).sum()
    }

    /// Damage that `open` found and skipped: notes that failed their
    /// checksum or did not decode, and a vCPU note count that differs from
    /// the header's `vcpu_count`. [`Snapshot::verify`] adds the chunks.
    pub fn note_damage(&self) -> &[SnapshotError] {
        &self.note_damage
    }

    /// Checks every chunk (range, checksum, decompressed size) and returns
    /// all damage found, including damaged notes that `open` skipped.
    pub fn verify(&self) -> Vec<SnapshotError> {
        let mut damage: Vec<SnapshotError> = self.note_damage.iter().map(clone_error).collect();
        for index in 0..self.chunks.len() {
            if let Err(error) = self.decompress_chunk(index) {
                damage.push(error);
            }
        }
        damage
    }

    /// Returns the compressed bytes of chunk `index` after checking their
    /// range and checksum.
    fn compressed_chunk(&self, index: usize) -> Result<&[u8], SnapshotError> {
        let chunk = &self.chunks[index];
        let (segment_start, segment_end) = self.chunk_segment;
        let inside = chunk.file_offset >= segment_start
            && chunk.file_offset.checked_add(chunk.compressed_len).is_some_and(|end| end <= segment_end);
        if !inside {
            return Err(SnapshotError::ChunkOutsideSegment {
                chunk: index,
                offset: chunk.file_offset,
                len: chunk.compressed_len,
                segment_start,
                segment_end,
            });
        }
        let bytes = file_range(&self.map, format!("chunk {index}"), chunk.file_offset, chunk.compressed_len)?;
        let computed = crc32fast::hash(bytes);
        if computed != chunk.crc32 {
            return Err(SnapshotError::ChunkChecksumMismatch {
                chunk: index,
                offset: chunk.file_offset,
                stored: chunk.crc32,
                computed,
            });
        }
        Ok(bytes)
    }

    /// Decompresses chunk `index`, whose stored pages must decompress to
    /// exactly `stored_pages * 4096` bytes.
    fn decompress_chunk(&self, index: usize) -> Result<Vec<u8>, SnapshotError> {
        let chunk = &self.chunks[index];
        let compressed = self.compressed_chunk(index)?;
        let expected = chunk.stored_pages as usize * layout::PAGE_SIZE as usize;
        if expected == 0 {
            return Ok(Vec::new());
        }
        let failed = |reason: String| SnapshotError::ChunkDecompression { chunk: index, offset: chunk.file_offset, reason };
        // The capacity caps the output: zstd fails rather than write more.
        let data = zstd::bulk::decompress(compressed, expected).map_err(|error| failed(error.to_string()))?;
        if data.len() != expected {
            return Err(failed(format!("{} bytes, the index expects {expected}", data.len())));
        }
        Ok(data)
    }

    /// Returns chunk `index` decompressed, from the cache when possible.
    fn cached_chunk(&self, index: usize) -> Result<Arc<Vec<u8>>, SnapshotError> {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(position) = cache.iter().position(|(i, _)| *i == index) {
            let entry = cache.remove(position);
            let data = entry.1.clone();
            cache.push(entry);
            return Ok(data);
        }
        drop(cache);
        let data = Arc::new(self.decompress_chunk(index)?);
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CHUNK_CACHE_LEN {
            cache.remove(0);
        }
        cache.push((index, data.clone()));
        Ok(data)
    }

    /// Returns the index of the chunk covering frame `pfn`.
    fn find_chunk(&self, pfn: u64) -> Option<usize> {
        let after = self.chunks.partition_point(|chunk| chunk.first_pfn <= pfn);
        let index = after.checked_sub(1)?;
        (pfn < self.chunks[index].end_pfn()).then_some(index)
    }

    /// Copies the physical page `pfn`, from `offset_in_page`, into `out`.
    fn read_page(&self, pfn: u64, offset_in_page: usize, out: &mut [u8], request: (u64, usize)) -> Result<(), MemoryError> {
        let (request_address, request_len) = request;
        let page_address = pfn * layout::PAGE_SIZE;
        let address = page_address + offset_in_page as u64;
        let Some(index) = self.find_chunk(pfn) else {
            return Err(MemoryError::NotCaptured { address: address.max(request_address), len: request_len });
        };
        let chunk = &self.chunks[index];
        let page_in_chunk = (pfn - chunk.first_pfn) as u32;
        if chunk.is_zero(page_in_chunk) {
            out.fill(0);
            return Ok(());
        }
        let data = self.cached_chunk(index).map_err(|error| MemoryError::Corrupt {
            address: address.max(request_address),
            len: request_len,
            reason: error.to_string(),
        })?;
        let start = chunk.stored_index(page_in_chunk) as usize * layout::PAGE_SIZE as usize + offset_in_page;
        out.copy_from_slice(&data[start..start + out.len()]);
        Ok(())
    }

    /// Translates `address` through the captured page tables, falling back
    /// to the recorded mapping table when a page-table page was not captured.
    fn translate(&self, cr3: u64, address: u64) -> Result<u64, MemoryError> {
        let mut read = |physical: u64, buf: &mut [u8]| self.read_physical(physical, buf);
        match paging::translate(&mut read, cr3, address) {
            Err(MemoryError::PageTableNotCaptured { entry_address, .. }) => {
                let table = self.mappings.iter().find(|(table_cr3, _)| same_root(*table_cr3, cr3));
                let physical = table.and_then(|(_, mappings)| {
                    let after = mappings.partition_point(|m| m.virtual_start <= address);
                    mappings[..after].iter().rev().find_map(|m| m.translate(address))
                });
                physical.ok_or(MemoryError::PageTableNotCaptured { address, entry_address })
            }
            other => other,
        }
    }
}

/// Returns whether two cr3 values point to the same top-level table.
fn same_root(a: u64, b: u64) -> bool {
    const ROOT_MASK: u64 = 0x000f_ffff_ffff_f000;
    a & ROOT_MASK == b & ROOT_MASK
}

/// Copies an error for `verify`, which returns owned errors while the
/// snapshot keeps its own list. `Io` cannot occur in the stored damage.
fn clone_error(error: &SnapshotError) -> SnapshotError {
    match error {
        SnapshotError::NoteChecksumMismatch { note, offset, stored, computed } => {
            SnapshotError::NoteChecksumMismatch { note, offset: *offset, stored: *stored, computed: *computed }
        }
        SnapshotError::InvalidNote { note, offset, reason } => {
            SnapshotError::InvalidNote { note, offset: *offset, reason: reason.clone() }
        }
        other => SnapshotError::InvalidNote { note: "stardump", offset: 0, reason: other.to_string() },
    }
}

impl Target for Snapshot {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let request = (address, buf.len());
        let page_size = layout::PAGE_SIZE as usize;
        if address.checked_add(buf.len() as u64).is_none() {
            return Err(MemoryError::NotCaptured { address, len: buf.len() });
        }
        let mut done = 0;
        while done < buf.len() {
            let current = address + done as u64;
            let offset_in_page = (current % layout::PAGE_SIZE) as usize;
            let len = (page_size - offset_in_page).min(buf.len() - done);
            self.read_page(current / layout::PAGE_SIZE, offset_in_page, &mut buf[done..done + len], request)?;
            done += len;
        }
        Ok(())
    }

    /// Reads guest virtual memory. A Linux process snapshot stores each page
    /// at its virtual address and has no page tables, so it ignores `cr3`.
    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.metadata.source_kind == SourceKind::LinuxProcess {
            return self.read_physical(address, buf);
        }
        let request_len = buf.len();
        let page_size = layout::PAGE_SIZE as usize;
        let mut done = 0;
        while done < buf.len() {
            let current = address.wrapping_add(done as u64);
            let offset_in_page = (current % layout::PAGE_SIZE) as usize;
            let len = (page_size - offset_in_page).min(buf.len() - done);
            let physical = self.translate(cr3, current).map_err(|error| match error {
                MemoryError::NotMapped { address, cr3, .. } => MemoryError::NotMapped { address, len: request_len, cr3 },
                // A damaged chunk holding a page-table entry: name the
                // virtual address first, then the entry that failed.
                MemoryError::Corrupt { address: entry_address, reason, .. } => MemoryError::Corrupt {
                    address: current,
                    len: request_len,
                    reason: format!("page-table entry at physical {entry_address:#x}: {reason}"),
                },
                other => other,
            })?;
            self.read_physical(physical, &mut buf[done..done + len]).map_err(|error| match error {
                // Name the virtual address the caller asked for, not the physical one.
                MemoryError::NotCaptured { .. } => MemoryError::NotCaptured { address: current, len: request_len },
                MemoryError::Corrupt { reason, .. } => MemoryError::Corrupt { address: current, len: request_len, reason },
                other => other,
            })?;
            done += len;
        }
        Ok(())
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        let mut ranges: Vec<MemoryRange> = Vec::new();
        for chunk in &self.chunks {
            let start = chunk.first_pfn * layout::PAGE_SIZE;
            let len_bytes = u64::from(chunk.page_count) * layout::PAGE_SIZE;
            match ranges.last_mut() {
                Some(last) if last.start + last.len_bytes == start => last.len_bytes += len_bytes,
                _ => ranges.push(MemoryRange { start, len_bytes }),
            }
        }
        ranges
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("path", &self.path)
            .field("format_version", &self.format_version())
            .field("vcpus", &self.vcpus.len())
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{SnapshotWriter, WriterOptions};

    /// Writes a snapshot with vCPUs 0 and 1 and one page, and returns its bytes.
    fn two_vcpu_bytes(dir: &Path) -> Vec<u8> {
        let path = dir.join("two.sdump");
        let options = WriterOptions { chunk_pages: 16, zstd_level: 3, threads: 1 };
        let mut writer = SnapshotWriter::create(&path, options).unwrap();
        writer.set_metadata(Metadata::default());
        for id in 0..2 {
            writer.add_vcpu(&VcpuState { id, rip: 0x1000 + u64::from(id), ..VcpuState::default() });
        }
        writer.add_pages(0, &[0x5a; 4096]).unwrap();
        writer.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    /// Returns the file offset of the type field of the `nth` vCPU note.
    fn vcpu_note_type_offset(bytes: &[u8], nth: usize) -> usize {
        let segments = parse_segments(bytes).unwrap();
        let segment = segments.iter().find(|segment| segment.p_type == layout::PT_NOTE).unwrap();
        let notes_bytes = &bytes[segment.offset as usize..(segment.offset + segment.len) as usize];
        let notes = parse_notes(notes_bytes, segment.offset).unwrap();
        let note = notes
            .iter()
            .filter(|note| note.name == layout::STARDUMP_NOTE_NAME && note.note_type == layout::NT_STARDUMP_VCPU)
            .nth(nth)
            .unwrap();
        // The type field is the last word of the 12-byte note header, and
        // the name "STARDUMP\0" is padded to 12 bytes before the descriptor.
        note.desc_offset as usize - 12 - 4
    }

    fn open_bytes(dir: &Path, bytes: &[u8]) -> Snapshot {
        let path = dir.join("damaged.sdump");
        std::fs::write(&path, bytes).unwrap();
        Snapshot::open(&path).unwrap()
    }

    #[test]
    fn intact_snapshot_has_no_note_damage() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = open_bytes(dir.path(), &two_vcpu_bytes(dir.path()));
        assert_eq!(snapshot.vcpus().len(), 2);
        assert_eq!(snapshot.recorded_vcpu_count(), 2);
        assert!(snapshot.note_damage().is_empty(), "{:?}", snapshot.note_damage());
    }

    #[test]
    fn vcpu_note_with_damaged_type_is_counted_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = two_vcpu_bytes(dir.path());
        let type_offset = vcpu_note_type_offset(&bytes, 1);
        assert_eq!(read_u32(&bytes, type_offset), layout::NT_STARDUMP_VCPU);
        bytes[type_offset] ^= 0xff;
        let snapshot = open_bytes(dir.path(), &bytes);
        assert_eq!(snapshot.vcpus().len(), 1);
        assert_eq!(snapshot.recorded_vcpu_count(), 2);
        let damage = snapshot.note_damage();
        assert_eq!(damage.len(), 1, "{damage:?}");
        let message = damage[0].to_string();
        assert!(message.starts_with("invalid header note at file offset 0x"), "{message}");
        assert!(message.ends_with(": vcpu_count is 2, but the note segment has 1 vCPU note"), "{message}");
        assert_eq!(snapshot.verify().len(), 1);
    }

    #[test]
    fn bad_checksum_vcpu_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = two_vcpu_bytes(dir.path());
        // The descriptor starts with its CRC-32.
        let crc_offset = vcpu_note_type_offset(&bytes, 0) + 4 + 12;
        bytes[crc_offset] ^= 0xff;
        let snapshot = open_bytes(dir.path(), &bytes);
        assert_eq!(snapshot.vcpus().len(), 1);
        let damage = snapshot.note_damage();
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert!(matches!(damage[0], SnapshotError::NoteChecksumMismatch { note: "vcpu", .. }), "{}", damage[0]);
    }

    #[test]
    fn damaged_page_table_names_virtual_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.sdump");
        let options = WriterOptions { chunk_pages: 16, zstd_level: 3, threads: 1 };
        let mut writer = SnapshotWriter::create(&path, options).unwrap();
        writer.set_metadata(Metadata::default());
        // Page tables in frames 1..=4 (chunk 0) map virtual 0x40_0000 to
        // frame 0x20 (chunk 2), which stays intact.
        let mut tables = vec![0u8; 4 * 4096];
        tables[0..8].copy_from_slice(&(0x2000u64 | 3).to_le_bytes());
        tables[4096..4096 + 8].copy_from_slice(&(0x3000u64 | 3).to_le_bytes());
        tables[2 * 4096 + 2 * 8..2 * 4096 + 3 * 8].copy_from_slice(&(0x4000u64 | 3).to_le_bytes());
        tables[3 * 4096..3 * 4096 + 8].copy_from_slice(&(0x20_000u64 | 3).to_le_bytes());
        writer.add_pages(1, &tables).unwrap();
        writer.add_pages(0x20, &[0x77; 4096]).unwrap();
        writer.finish().unwrap();

        let clean = Snapshot::open(&path).unwrap();
        let mut word = [0u8; 8];
        clean.read_virtual(0x1000, 0x40_0000, &mut word).unwrap();
        assert_eq!(word, [0x77; 8]);

        let mut bytes = std::fs::read(&path).unwrap();
        let first_chunk = clean.chunks[0].file_offset as usize;
        bytes[first_chunk + 20] ^= 0xff;
        let snapshot = open_bytes(dir.path(), &bytes);
        let error = snapshot.read_virtual(0x1000, 0x40_0000, &mut word).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("cannot read 8 bytes at 0x400000: page-table entry at physical 0x1000: chunk 0 at file offset 0x"),
            "{message}"
        );
    }
}
