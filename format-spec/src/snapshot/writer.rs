//! Streaming snapshot writer.
//!
//! Chunks are compressed (on several threads) and appended as pages arrive;
//! the notes, which hold the chunk index, follow the chunk data, and the ELF
//! header and program headers are written last at the start of the file.
//! On Linux everything goes to an unnamed file in the snapshot's directory
//! (`O_TMPFILE`), which `finish` fsyncs, links as `<final_path>.tmp.<pid>`
//! and renames into place. An unfinished file has no name, so a writer that
//! is dropped or killed, even with SIGKILL, leaves nothing. Where the file
//! system has no `O_TMPFILE`, and on other systems, the file is named
//! `<final_path>.tmp.<pid>` from the start, and dropping an unfinished
//! writer deletes it. Creating a writer also deletes such files of
//! processes that no longer run, which a SIGKILL leaves behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tracing::{debug, warn};

use super::error::WriteError;
use super::layout::{self, ChunkEntry, HeaderRecord};
use super::process_notes;
use crate::model::{FileMapping, Metadata, VcpuState};
use crate::paging::Mapping;

/// Options of a [`SnapshotWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Maximum number of consecutive pages per chunk (1..=4096).
    pub chunk_pages: u32,
    /// zstd compression level.
    pub zstd_level: i32,
    /// Number of compression threads; 1 compresses on the calling thread.
    pub threads: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            chunk_pages: 256,
            zstd_level: 3,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }
}

/// Totals of a finished snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Length of the written file.
    pub file_len_bytes: u64,
    /// Pages stored compressed.
    pub stored_pages: u64,
    /// All-zero pages recorded in the index only.
    pub zero_pages: u64,
    /// Number of chunks.
    pub chunks: u64,
}

/// A chunk compressed and ready to be appended.
struct CompressedChunk {
    first_pfn: u64,
    page_count: u32,
    stored_pages: u32,
    zero_bitmap: Vec<u8>,
    data: Vec<u8>,
}

/// Writes a snapshot file; see the module documentation for the order of writes.
pub struct SnapshotWriter {
    final_path: PathBuf,
    /// Name of the file before the rename into place.
    temp_path: PathBuf,
    /// Whether `temp_path` names the file; false while it is unnamed.
    named: bool,
    /// `None` once finished; dropping with a file still open deletes it.
    file: Option<File>,
    options: WriterOptions,
    /// End of the chunk data written so far.
    position: u64,
    vcpus: Vec<VcpuState>,
    metadata: Metadata,
    mappings: Vec<(u64, Vec<Mapping>)>,
    file_mappings: Vec<FileMapping>,
    /// Thread names by vCPU id.
    thread_names: BTreeMap<u32, String>,
    chunks: Vec<ChunkEntry>,
    /// Frame ranges added so far, start -> exclusive end.
    added: BTreeMap<u64, u64>,
    stored_pages: u64,
    zero_pages: u64,
    /// Pages of a chunk not yet complete: first frame and page contents.
    pending: Option<(u64, Vec<u8>)>,
    /// Error of an earlier write, after which the writer accepts no more pages.
    failure: Option<String>,
    /// zstd contexts of earlier batches, at most one per thread.
    compressors: Mutex<Vec<Compressor>>,
}

type Compressor = zstd::bulk::Compressor<'static>;

impl SnapshotWriter {
    /// Creates the snapshot's temporary file next to `final_path`.
    pub fn create(final_path: &Path, options: WriterOptions) -> Result<SnapshotWriter, WriteError> {
        if options.chunk_pages == 0 || options.chunk_pages > layout::MAX_CHUNK_PAGES {
            return Err(WriteError::InvalidOptions {
                reason: format!("chunk_pages {} is not in 1..={}", options.chunk_pages, layout::MAX_CHUNK_PAGES),
            });
        }
        remove_stale_temp_files(final_path);
        let mut temp_name = final_path.file_name().unwrap_or_default().to_os_string();
        temp_name.push(format!(".tmp.{}", std::process::id()));
        let temp_path = final_path.with_file_name(temp_name);
        let (mut file, named) = match create_unnamed(final_path) {
            Some(file) => (file, false),
            None => {
                // The temporary name is an implementation detail: the
                // error names the output, whose directory is the problem.
                let file = File::create(&temp_path).map_err(|source| WriteError::Io {
                    action: "create a temporary file next to".into(),
                    path: final_path.to_path_buf(),
                    source,
                })?;
                (file, true)
            }
        };
        let mut writer = SnapshotWriter {
            final_path: final_path.to_path_buf(),
            temp_path,
            named,
            file: None,
            options,
            position: layout::CHUNK_DATA_OFFSET,
            vcpus: Vec::new(),
            metadata: Metadata::default(),
            mappings: Vec::new(),
            file_mappings: Vec::new(),
            thread_names: BTreeMap::new(),
            chunks: Vec::new(),
            added: BTreeMap::new(),
            stored_pages: 0,
            zero_pages: 0,
            pending: None,
            failure: None,
            compressors: Mutex::new(Vec::new()),
        };
        // Reserve the ELF header and program headers, written by `finish`.
        let placeholder = vec![0u8; layout::CHUNK_DATA_OFFSET as usize];
        let result = file.write_all(&placeholder);
        writer.file = Some(file);
        result.map_err(|source| writer.io_error("write the ELF header of", source))?;
        Ok(writer)
    }

    fn io_error(&self, action: &str, source: std::io::Error) -> WriteError {
        if self.named {
            WriteError::Io { action: action.into(), path: self.temp_path.clone(), source }
        } else {
            let action = format!("{action} the unnamed temporary file of");
            WriteError::Io { action, path: self.final_path.clone(), source }
        }
    }

    /// Records the register state of a vCPU.
    pub fn add_vcpu(&mut self, vcpu: &VcpuState) {
        self.vcpus.push(vcpu.clone());
    }

    /// Records the capture metadata, replacing any set before.
    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = metadata;
    }

    /// Records the mapping table of the page tables rooted at `cr3`.
    pub fn add_mappings(&mut self, cr3: u64, mappings: &[Mapping]) {
        self.mappings.push((cr3, mappings.to_vec()));
    }

    /// Records the file mappings of a Linux process, appended to those
    /// recorded before. The writer stores them sorted by start address.
    pub fn add_file_mappings(&mut self, mappings: &[FileMapping]) {
        self.file_mappings.extend_from_slice(mappings);
    }

    /// Records the name of the thread captured as vCPU `vcpu_id`,
    /// replacing a name recorded before.
    pub fn set_thread_name(&mut self, vcpu_id: u32, name: &str) {
        self.thread_names.insert(vcpu_id, name.to_owned());
    }

    /// Compresses and appends pages. `data` contains consecutive pages
    /// starting at frame `first_pfn`, and its length must be a multiple of 4096. Calls need
    /// not be ordered but must not overlap.
    pub fn add_pages(&mut self, first_pfn: u64, data: &[u8]) -> Result<(), WriteError> {
        let page_size = layout::PAGE_SIZE as usize;
        if data.len() % page_size != 0 {
            return Err(WriteError::InvalidPageData { first_pfn, len_bytes: data.len() });
        }
        let page_count = (data.len() / page_size) as u64;
        if page_count == 0 {
            return Ok(());
        }
        let end_pfn = first_pfn
            .checked_add(page_count)
            .filter(|&end| end <= layout::MAX_PFN)
            .ok_or(WriteError::FrameOutOfRange { first_pfn, page_count })?;
        self.check_overlap(first_pfn, end_pfn)?;

        self.check_usable()?;
        self.added.insert(first_pfn, end_pfn);
        let result = self.store_pages(first_pfn, data);
        if let Err(error) = &result {
            self.failure = Some(error.to_string());
        }
        debug!(first_pfn = format_args!("{first_pfn:#x}"), page_count, "added pages");
        result
    }

    /// Returns an error if an earlier write failed, because the file may
    /// then miss chunks that the index would list.
    fn check_usable(&self) -> Result<(), WriteError> {
        match &self.failure {
            Some(reason) => Err(WriteError::Failed { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Compresses every whole chunk that `data` completes and keeps the
    /// pages after the last chunk boundary pending, so that consecutive calls
    /// with a few pages each still fill whole chunks.
    fn store_pages(&mut self, first_pfn: u64, mut data: &[u8]) -> Result<(), WriteError> {
        let page_size = layout::PAGE_SIZE as usize;
        let chunk_pages = u64::from(self.options.chunk_pages);
        let mut pfn = first_pfn;

        if self.pending.as_ref().is_some_and(|(start, pages)| start + (pages.len() / page_size) as u64 != pfn) {
            self.flush_pending()?;
        }
        if let Some((start, pages)) = &mut self.pending {
            // Complete the pending chunk up to the next boundary.
            let pending_end = *start + (pages.len() / page_size) as u64;
            let boundary = (pending_end / chunk_pages + 1) * chunk_pages;
            let take = ((boundary - pending_end) as usize * page_size).min(data.len());
            pages.extend_from_slice(&data[..take]);
            data = &data[take..];
            pfn += (take / page_size) as u64;
            if pfn == boundary {
                self.flush_pending()?;
            }
        }

        // Split the rest at multiples of chunk_pages so that chunks line up
        // with frame numbers, whatever frame the call starts at.
        let mut pieces = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            let next_boundary = (pfn / chunk_pages + 1) * chunk_pages;
            let len = ((next_boundary - pfn) as usize * page_size).min(data.len() - offset);
            pieces.push((pfn, &data[offset..offset + len]));
            offset += len;
            pfn += (len / page_size) as u64;
        }
        // A last piece that does not reach a boundary waits for the next call.
        if let Some(&(last_pfn, last)) = pieces.last() {
            if (last_pfn + (last.len() / page_size) as u64) % chunk_pages != 0 {
                self.pending = Some((last_pfn, last.to_vec()));
                pieces.pop();
            }
        }
        self.compress_and_append(&pieces)
    }

    /// Compresses and writes the pending pages, if any.
    fn flush_pending(&mut self) -> Result<(), WriteError> {
        if let Some((first_pfn, pages)) = self.pending.take() {
            self.compress_and_append(&[(first_pfn, &pages)])?;
        }
        Ok(())
    }

    /// Compresses `pieces` in batches, so at most a few chunks per thread
    /// are held in memory, and appends them in order.
    fn compress_and_append(&mut self, pieces: &[(u64, &[u8])]) -> Result<(), WriteError> {
        let threads = self.options.threads.max(1);
        for batch in pieces.chunks(threads * 4) {
            let compressed = compress_batch(batch, self.options.zstd_level, threads, &self.compressors)?;
            for chunk in compressed {
                self.append_chunk(chunk)?;
            }
        }
        Ok(())
    }

    fn check_overlap(&self, first_pfn: u64, end_pfn: u64) -> Result<(), WriteError> {
        let before = self.added.range(..end_pfn).next_back();
        if let Some((&start, &end)) = before {
            if end > first_pfn {
                return Err(WriteError::OverlappingPages {
                    first_pfn,
                    end_pfn,
                    existing_first_pfn: start,
                    existing_end_pfn: end,
                });
            }
        }
        Ok(())
    }

    fn append_chunk(&mut self, chunk: CompressedChunk) -> Result<(), WriteError> {
        let file_offset = self.position;
        if !chunk.data.is_empty() {
            let file = self.file.as_mut().expect("file is open until finish");
            if let Err(source) = file.write_all(&chunk.data) {
                return Err(self.io_error("write chunk data to", source));
            }
        }
        self.position += chunk.data.len() as u64;
        self.stored_pages += u64::from(chunk.stored_pages);
        self.zero_pages += u64::from(chunk.page_count - chunk.stored_pages);
        self.chunks.push(ChunkEntry {
            first_pfn: chunk.first_pfn,
            file_offset,
            compressed_len: chunk.data.len() as u64,
            page_count: chunk.page_count,
            crc32: crc32fast::hash(&chunk.data),
            stored_pages: chunk.stored_pages,
            zero_bitmap: chunk.zero_bitmap,
        });
        Ok(())
    }

    /// Writes the index and notes, fsyncs, and renames the file to its final path.
    pub fn finish(mut self) -> Result<WriteSummary, WriteError> {
        self.check_usable()?;
        self.flush_pending()?;
        self.chunks.sort_by_key(|chunk| chunk.first_pfn);
        self.vcpus.sort_by_key(|vcpu| vcpu.id);

        let notes_offset = layout::align_up(self.position, 8).expect("file offsets fit in u64");
        let padding = vec![0u8; (notes_offset - self.position) as usize];
        let notes = self.encode_notes()?;
        let header = layout::encode_elf_header();
        let chunk_segment = layout::encode_program_header(
            layout::PT_STARDUMP_CHUNKS,
            layout::CHUNK_DATA_OFFSET,
            self.position - layout::CHUNK_DATA_OFFSET,
            1,
        );
        let note_segment = layout::encode_program_header(layout::PT_NOTE, notes_offset, notes.len() as u64, 4);

        let mut file = self.file.take().expect("file is open until finish");
        let result = (|| {
            file.write_all(&padding)?;
            file.write_all(&notes)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header)?;
            file.write_all(&note_segment)?;
            file.write_all(&chunk_segment)?;
            file.sync_all()
        })();
        // Keep the file in `self` so a failure below still deletes it on drop.
        self.file = Some(file);
        result.map_err(|source| self.io_error("write the notes and headers of", source))?;
        if !self.named {
            let file = self.file.as_ref().expect("file is open until finish");
            link_unnamed(file, &self.temp_path).map_err(|source| self.io_error("link", source))?;
            self.named = true;
        }

        std::fs::rename(&self.temp_path, &self.final_path).map_err(|source| WriteError::Io {
            action: format!("rename {} to", self.temp_path.display()),
            path: self.final_path.clone(),
            source,
        })?;
        self.file = None;
        sync_parent_directory(&self.final_path);

        let summary = WriteSummary {
            file_len_bytes: notes_offset + notes.len() as u64,
            stored_pages: self.stored_pages,
            zero_pages: self.zero_pages,
            chunks: self.chunks.len() as u64,
        };
        debug!(path = %self.final_path.display(), ?summary, "wrote snapshot");
        Ok(summary)
    }

    /// Encodes the note segment: header, metadata, NT_PRSTATUS and vCPU
    /// notes, mapping tables, file mappings, thread names, and the chunk
    /// index last.
    fn encode_notes(&self) -> Result<Vec<u8>, WriteError> {
        let header = HeaderRecord {
            format_major: layout::FORMAT_MAJOR,
            format_minor: layout::FORMAT_MINOR,
            page_size: layout::PAGE_SIZE as u32,
            chunk_pages: self.options.chunk_pages,
            vcpu_count: self.vcpus.len() as u32,
            chunk_count: self.chunks.len() as u64,
            stored_pages: self.stored_pages,
            zero_pages: self.zero_pages,
        };
        let name = layout::STARDUMP_NOTE_NAME;
        let mut notes = Vec::new();
        layout::push_note(&mut notes, name, layout::NT_STARDUMP_HEADER, &header.encode());
        layout::push_note(&mut notes, name, layout::NT_STARDUMP_METADATA, &layout::encode_metadata(&self.metadata));
        for vcpu in &self.vcpus {
            layout::push_note(&mut notes, layout::CORE_NOTE_NAME, layout::NT_PRSTATUS, &layout::encode_prstatus(vcpu));
        }
        for vcpu in &self.vcpus {
            layout::push_note(&mut notes, name, layout::NT_STARDUMP_VCPU, &layout::encode_vcpu(vcpu));
        }
        for (cr3, mappings) in &self.mappings {
            let desc = layout::encode_mappings(*cr3, mappings);
            check_note_len("mappings", &desc)?;
            layout::push_note(&mut notes, name, layout::NT_STARDUMP_MAPPINGS, &desc);
        }
        if !self.file_mappings.is_empty() {
            let mut file_mappings = self.file_mappings.clone();
            file_mappings.sort_by_key(|mapping| mapping.start);
            let desc = process_notes::encode_file_mappings(&file_mappings);
            check_note_len("file mappings", &desc)?;
            layout::push_note(&mut notes, name, process_notes::NT_STARDUMP_FILE_MAPPINGS, &desc);
        }
        for (&vcpu_id, thread_name) in &self.thread_names {
            let desc = process_notes::encode_thread_name(vcpu_id, thread_name);
            layout::push_note(&mut notes, name, process_notes::NT_STARDUMP_THREAD_NAME, &desc);
        }
        let index = layout::encode_chunk_index(&self.chunks);
        check_note_len("chunk index", &index)?;
        layout::push_note(&mut notes, name, layout::NT_STARDUMP_CHUNK_INDEX, &index);
        Ok(notes)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() && self.named {
            if let Err(error) = std::fs::remove_file(&self.temp_path) {
                warn!(path = %self.temp_path.display(), %error, "cannot delete unfinished snapshot");
            }
        }
    }
}

/// Checks that a descriptor fits the 32-bit `descsz` field of an ELF note.
fn check_note_len(note: &'static str, desc: &[u8]) -> Result<(), WriteError> {
    if u32::try_from(desc.len()).is_err() {
        return Err(WriteError::NoteTooLarge { note, len_bytes: desc.len() });
    }
    Ok(())
}

/// Fsyncs the directory holding `path` so the rename survives a crash; a
/// failure only weakens that guarantee, so it is logged.
/// Opens an unnamed file in the directory of `final_path`. Returns `None`
/// where the file system has no `O_TMPFILE` or the directory rejects the
/// file, so that creating a named file reports the reason.
#[cfg(target_os = "linux")]
fn create_unnamed(final_path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;

    let directory = match final_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::OpenOptions::new().read(true).write(true).mode(0o666).custom_flags(libc::O_TMPFILE).open(directory) {
        Ok(file) => Some(file),
        Err(error) => {
            debug!(directory = %directory.display(), %error, "cannot create an unnamed temporary file, creating a named one");
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn create_unnamed(_final_path: &Path) -> Option<File> {
    None
}

/// Gives the unnamed `file` the name `path`, replacing a file of that name
/// left by a dead process with the same id.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &File, path: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::ffi::OsStrExt as _;

    let target = CString::new(path.as_os_str().as_bytes())?;
    // linkat through /proc needs no privilege, unlike AT_EMPTY_PATH.
    let source = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let link = || {
        // SAFETY: both paths are NUL-terminated strings that outlive the call.
        let result = unsafe {
            libc::linkat(libc::AT_FDCWD, source.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    };
    match link() {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            link()
        }
        other => other,
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &File, _path: &Path) -> std::io::Result<()> {
    unreachable!("files are named from the start outside Linux")
}

fn sync_parent_directory(path: &Path) {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Err(error) = File::open(parent).and_then(|dir| dir.sync_all()) {
        warn!(directory = %parent.display(), %error, "cannot fsync the snapshot's directory");
    }
}

/// Compresses `pieces` on up to `threads` threads and returns them in order.
fn compress_batch(
    pieces: &[(u64, &[u8])],
    level: i32,
    threads: usize,
    compressors: &Mutex<Vec<Compressor>>,
) -> Result<Vec<CompressedChunk>, WriteError> {
    let results: Vec<Mutex<Option<Result<CompressedChunk, WriteError>>>> =
        pieces.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        // A zstd context is large, so reuse those of earlier batches.
        let mut compressor = compressors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(first_pfn, data)) = pieces.get(i) else { break };
            let result = compress_chunk(&mut compressor, level, first_pfn, data);
            *results[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
        }
        if let Some(compressor) = compressor {
            compressors.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(compressor);
        }
    };
    let threads = threads.min(pieces.len()).max(1);
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .expect("every piece was compressed")
        })
        .collect()
}

/// Separates the zero pages of one chunk and compresses the others.
fn compress_chunk(
    compressor: &mut Option<Compressor>,
    level: i32,
    first_pfn: u64,
    data: &[u8],
) -> Result<CompressedChunk, WriteError> {
    let page_size = layout::PAGE_SIZE as usize;
    let page_count = (data.len() / page_size) as u32;
    let mut zero_bitmap = vec![0u8; layout::bitmap_len(page_count)];
    let mut zero_pages = 0u32;
    for (i, page) in data.chunks_exact(page_size).enumerate() {
        if is_zero(page) {
            zero_bitmap[i / 8] |= 1 << (i % 8);
            zero_pages += 1;
        }
    }
    // Gather the non-zero pages only when some are zero. A chunk without
    // zero pages, the common case for dense memory, is compressed in place.
    let gathered: Vec<u8>;
    let stored: &[u8] = if zero_pages == 0 {
        data
    } else {
        gathered = data
            .chunks_exact(page_size)
            .enumerate()
            .filter(|&(i, _)| zero_bitmap[i / 8] & (1 << (i % 8)) == 0)
            .flat_map(|(_, page)| page)
            .copied()
            .collect();
        &gathered
    };
    let stored_pages = page_count - zero_pages;
    let compressed = if stored.is_empty() {
        Vec::new()
    } else {
        let error = |source| WriteError::Compression { first_pfn, source };
        if compressor.is_none() {
            *compressor = Some(zstd::bulk::Compressor::new(level).map_err(error)?);
        }
        compressor.as_mut().expect("set above").compress(stored).map_err(error)?
    };
    Ok(CompressedChunk { first_pfn, page_count, stored_pages, zero_bitmap, data: compressed })
}

/// Returns whether `page` is all zero bytes.
fn is_zero(page: &[u8]) -> bool {
    let (prefix, words, suffix) = unsafe {
        // SAFETY: every bit pattern is a valid u64, and align_to only puts
        // correctly aligned u64s in the middle slice.
        page.align_to::<u64>()
    };
    prefix.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && suffix.iter().all(|&b| b == 0)
}
/// Deletes `<final_path>.tmp.<pid>` files left by writers whose process no
/// longer runs, such as a capture killed with SIGKILL, which no cleanup
/// can catch. A file whose process is alive is another capture's and stays.
fn remove_stale_temp_files(final_path: &Path) {
    let Some(name) = final_path.file_name().and_then(|name| name.to_str()) else { return };
    let prefix = format!("{name}.tmp.");
    let dir = match final_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|file_name| file_name.strip_prefix(&prefix)) else { continue };
        if pid.is_empty() || !pid.bytes().all(|byte| byte.is_ascii_digit()) || process_alive(pid) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => tracing::warn!(path = %entry.path().display(), "removed the temporary file of an interrupted capture"),
            Err(error) => tracing::debug!(path = %entry.path().display(), %error, "cannot remove a stale temporary file"),
        }
    }
}

/// Returns whether process `pid` exists. Where /proc is missing, every
/// process counts as alive, so nothing is removed.
fn process_alive(pid: &str) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid).exists()
}

