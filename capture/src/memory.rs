//! [`MemoryCopy`]: guest frames copied into the capture while the target
//! is paused, written to the snapshot after it resumes.
//!
//! All-zero pages are kept as counts, so a mostly empty guest costs little.
//! Non-zero pages are kept in memory up to a budget ([`MemoryBudget`]).
//! Past it they go to a spill file: an unnamed temporary file in the
//! snapshot's directory (`O_TMPFILE` through the tempfile crate). The file
//! disappears when the capture ends, however it ends. The capture's own
//! memory thus stays bounded by the budget whatever the target's size.
//!
//! The command's default budget is 0, so every non-zero page is spilled.
//! Writing into the page cache pauses the target no longer than filling
//! freshly allocated memory does, and on a 300 MiB process it paused it
//! less (scripts/bench-ptrace.py compares budgets side by side). Spilled
//! pages are freed from the file as they reach the snapshot, so the two
//! files do not add up against the kernel's dirty-page limit.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use stardump_format::{MemoryError, SnapshotWriter, WriteError};
use tracing::{debug, info};

/// Guest page size in bytes.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_BYTES: usize = PAGE_SIZE as usize;
/// Pages per `add_pages` call for zero and spilled runs; bounds the buffer
/// those calls use.
const WRITE_BATCH_PAGES: u64 = 256;
/// Bytes gathered before one write to the spill file.
const SPILL_BUFFER_BYTES: usize = 4 << 20;
/// Runs at least this long are written at once, without a copy into the
/// buffer.
const SPILL_DIRECT_BYTES: usize = 64 << 10;

/// How much page data a capture may hold in memory, and where the rest
/// goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Limit on the bytes of non-zero pages kept in memory before
    /// spilling. With `u64::MAX`, nothing is spilled.
    pub bytes: u64,
    /// Directory of the spill file: the snapshot's, which the capture
    /// already checked is writable.
    pub spill_directory: PathBuf,
}

impl MemoryBudget {
    /// Creates a budget of `bytes` that spills into `spill_directory`.
    pub fn new(bytes: u64, spill_directory: &Path) -> MemoryBudget {
        MemoryBudget { bytes, spill_directory: spill_directory.to_path_buf() }
    }

    /// Creates a budget that keeps every page in memory, for tests and
    /// small copies.
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget { bytes: u64::MAX, spill_directory: PathBuf::new() }
    }

    /// Returns the directory of the snapshot at `output`, made absolute so
    /// that errors name it whatever the working directory.
    pub fn directory_of(output: &Path) -> PathBuf {
        let directory = match output.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::path::absolute(directory).unwrap_or_else(|_| directory.to_path_buf())
    }
}

/// The spill file could not be created, written or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the spill file in {}: {source}", .directory.display())]
pub struct SpillError {
    /// The failed operation: "create", "write" or "read".
    pub action: &'static str,
    /// The spill file's directory.
    pub directory: PathBuf,
    /// The failure.
    #[source]
    pub source: std::io::Error,
}

/// A run of consecutive frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    /// Page contents, a multiple of [`PAGE_SIZE`] long.
    Data(Vec<u8>),
    /// This many pages, at `offset` in the spill file.
    Spilled { offset: u64, pages: u64 },
    /// This many all-zero pages.
    Zero(u64),
}

impl Run {
    fn page_count(&self) -> u64 {
        match self {
            Run::Data(bytes) => bytes.len() as u64 / PAGE_SIZE,
            Run::Spilled { pages, .. } | Run::Zero(pages) => *pages,
        }
    }
}

/// The spill file and the bytes not yet written to it.
#[derive(Debug)]
struct Spill {
    file: File,
    directory: PathBuf,
    /// Bytes written to the file.
    written: u64,
    /// Bytes that follow `written`, written when the buffer fills.
    buffer: Vec<u8>,
}

impl Spill {
    fn create(directory: &Path) -> Result<Spill, SpillError> {
        let file = tempfile::tempfile_in(directory).map_err(|source| SpillError {
            action: "create",
            directory: directory.to_path_buf(),
            source,
        })?;
        info!(directory = %directory.display(), "spilling pages past the memory budget to an unnamed file");
        Ok(Spill { file, directory: directory.to_path_buf(), written: 0, buffer: Vec::new() })
    }

    fn error(&self, action: &'static str, source: std::io::Error) -> SpillError {
        SpillError { action, directory: self.directory.clone(), source }
    }

    /// Appends `data` and returns its offset in the file.
    fn append(&mut self, data: &[u8]) -> Result<u64, SpillError> {
        let direct = data.len() >= SPILL_DIRECT_BYTES;
        if direct || self.buffer.len() + data.len() > SPILL_BUFFER_BYTES {
            self.flush()?;
        }
        let offset = self.written + self.buffer.len() as u64;
        if direct {
            self.file.write_all_at(data, self.written).map_err(|source| self.error("write", source))?;
            self.written += data.len() as u64;
        } else {
            self.buffer.extend_from_slice(data);
        }
        Ok(offset)
    }

    fn flush(&mut self) -> Result<(), SpillError> {
        if !self.buffer.is_empty() {
            self.file.write_all_at(&self.buffer, self.written).map_err(|source| self.error("write", source))?;
            self.written += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Frees `len` bytes at `offset` that were written to the snapshot.
    ///
    /// Without this, the spill's dirty pages count against the kernel's
    /// dirty-page limit together with the snapshot's, and the kernel makes
    /// the snapshot's writes wait for spill pages to reach the disk,
    /// pages that are never read again. Filesystems without hole punching
    /// keep the pages until the file is closed.
    fn release(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.written);
        if offset >= end {
            return;
        }
        // SAFETY: fallocate takes an open descriptor and plain integers.
        let result = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                (end - offset) as libc::off_t,
            )
        };
        if result != 0 {
            debug!(error = %std::io::Error::last_os_error(), "cannot punch a hole in the spill file");
        }
    }

    /// Reads `buf.len()` bytes at `offset`, from the file or the buffer.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), SpillError> {
        if offset >= self.written {
            let start = (offset - self.written) as usize;
            buf.copy_from_slice(&self.buffer[start..start + buf.len()]);
            Ok(())
        } else {
            self.file.read_exact_at(buf, offset).map_err(|source| self.error("read", source))
        }
    }
}

/// Guest frames by frame number (physical address / 4096).
#[derive(Debug)]
pub struct MemoryCopy {
    runs: BTreeMap<u64, Run>,
    budget: MemoryBudget,
    /// Bytes of `Run::Data` held in memory.
    held_bytes: u64,
    /// Created when the budget is first exceeded.
    spill: Option<Spill>,
}

impl MemoryCopy {
    /// Creates an empty copy that holds up to `budget` in memory.
    pub fn new(budget: MemoryBudget) -> MemoryCopy {
        MemoryCopy { runs: BTreeMap::new(), budget, held_bytes: 0, spill: None }
    }

    /// Stores `data`, consecutive pages starting at frame `first_pfn`,
    /// splitting it into zero and non-zero runs.
    ///
    /// `data.len()` must be a multiple of [`PAGE_SIZE`]. Frames already
    /// stored keep their first contents, so two virtual ranges that map the
    /// same frames store them once.
    pub fn insert(&mut self, first_pfn: u64, data: &[u8]) -> Result<(), SpillError> {
        debug_assert_eq!(data.len() % PAGE_BYTES, 0);
        let pages = data.len() / PAGE_BYTES;
        let mut page = 0usize;
        while page < pages {
            if self.contains(first_pfn + page as u64) {
                page += 1;
                continue;
            }
            let start = page;
            while page < pages && !self.contains(first_pfn + page as u64) {
                page += 1;
            }
            self.insert_new(first_pfn + start as u64, &data[start * PAGE_BYTES..page * PAGE_BYTES])?;
        }
        Ok(())
    }

    /// Stores frames none of which is stored yet.
    fn insert_new(&mut self, first_pfn: u64, data: &[u8]) -> Result<(), SpillError> {
        let mut run_start = 0usize;
        let mut run_zero: Option<bool> = None;
        let pages = data.len() / PAGE_BYTES;
        for page in 0..=pages {
            let is_zero = (page < pages).then(|| data[page * PAGE_BYTES..(page + 1) * PAGE_BYTES].iter().all(|&b| b == 0));
            if is_zero != run_zero {
                if let Some(zero) = run_zero {
                    let pfn = first_pfn + run_start as u64;
                    let run = if zero {
                        Run::Zero((page - run_start) as u64)
                    } else {
                        self.data_run(&data[run_start * PAGE_BYTES..page * PAGE_BYTES])?
                    };
                    self.runs.insert(pfn, run);
                }
                run_start = page;
                run_zero = is_zero;
            }
        }
        Ok(())
    }

    /// Keeps `bytes` in memory while the budget allows, and spills them
    /// otherwise.
    fn data_run(&mut self, bytes: &[u8]) -> Result<Run, SpillError> {
        let len = bytes.len() as u64;
        if self.held_bytes.saturating_add(len) <= self.budget.bytes {
            self.held_bytes += len;
            return Ok(Run::Data(bytes.to_vec()));
        }
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(Spill::create(&self.budget.spill_directory)?),
        };
        let offset = spill.append(bytes)?;
        Ok(Run::Spilled { offset, pages: len / PAGE_SIZE })
    }

    /// Returns whether frame `pfn` is stored.
    pub fn contains(&self, pfn: u64) -> bool {
        self.run_at(pfn).is_some()
    }

    fn run_at(&self, pfn: u64) -> Option<(u64, &Run)> {
        let (&start, run) = self.runs.range(..=pfn).next_back()?;
        (pfn - start < run.page_count()).then_some((start, run))
    }

    /// Returns the number of non-zero and all-zero pages stored.
    pub fn page_counts(&self) -> (u64, u64) {
        self.runs.values().fold((0, 0), |(data, zero), run| match run {
            Run::Data(_) | Run::Spilled { .. } => (data + run.page_count(), zero),
            Run::Zero(pages) => (data, zero + pages),
        })
    }

    /// Returns the bytes of page data in memory and in the spill file.
    pub fn held_and_spilled_bytes(&self) -> (u64, u64) {
        let spilled = self.spill.as_ref().map_or(0, |spill| spill.written + spill.buffer.len() as u64);
        (self.held_bytes, spilled)
    }

    /// Copies guest physical memory at `address` into `buf`, whole or not at
    /// all.
    pub fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let not_captured = |at: u64| MemoryError::NotCaptured { address: at, len };
        let mut done = 0usize;
        while done < buf.len() {
            let at = address.checked_add(done as u64).ok_or_else(|| not_captured(address))?;
            let pfn = at / PAGE_SIZE;
            let offset_in_page = (at % PAGE_SIZE) as usize;
            let part = (PAGE_BYTES - offset_in_page).min(buf.len() - done);
            let (start, run) = self.run_at(pfn).ok_or_else(|| not_captured(at))?;
            let from = (pfn - start) * PAGE_SIZE + offset_in_page as u64;
            match run {
                Run::Zero(_) => buf[done..done + part].fill(0),
                Run::Data(bytes) => {
                    let from = from as usize;
                    buf[done..done + part].copy_from_slice(&bytes[from..from + part]);
                }
                Run::Spilled { offset, .. } => {
                    let spill = self.spill.as_ref().expect("spilled runs have a spill file");
                    spill.read(offset + from, &mut buf[done..done + part]).map_err(|error| MemoryError::Corrupt {
                        address: at,
                        len,
                        reason: error.to_string(),
                    })?;
                }
            }
            done += part;
        }
        Ok(())
    }

    /// Passes every stored frame to `writer`.
    pub fn write_to(&self, writer: &mut SnapshotWriter) -> Result<(), WriteError> {
        let mut buffer = vec![0u8; (WRITE_BATCH_PAGES * PAGE_SIZE) as usize];
        for (&pfn, run) in &self.runs {
            match run {
                Run::Data(bytes) => writer.add_pages(pfn, bytes)?,
                Run::Zero(pages) => write_zero_pages(writer, pfn, *pages, &mut buffer)?,
                Run::Spilled { offset, pages } => {
                    let spill = self.spill.as_ref().expect("spilled runs have a spill file");
                    let mut done = 0u64;
                    while done < *pages {
                        let batch = (pages - done).min(WRITE_BATCH_PAGES);
                        let bytes = &mut buffer[..(batch * PAGE_SIZE) as usize];
                        spill.read(offset + done * PAGE_SIZE, bytes).map_err(|error| WriteError::Io {
                            action: "read the spill file in".into(),
                            path: error.directory,
                            source: error.source,
                        })?;
                        writer.add_pages(pfn + done, bytes)?;
                        spill.release(offset + done * PAGE_SIZE, batch * PAGE_SIZE);
                        done += batch;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Passes `pages` all-zero pages from frame `first_pfn` on to `writer`, in
/// batches of `buffer`'s length, which this overwrites with zeros.
pub fn write_zero_pages(writer: &mut SnapshotWriter, first_pfn: u64, pages: u64, buffer: &mut [u8]) -> Result<(), WriteError> {
    let batch_pages = buffer.len() as u64 / PAGE_SIZE;
    buffer.fill(0);
    let mut done = 0u64;
    while done < pages {
        let batch = (pages - done).min(batch_pages);
        writer.add_pages(first_pfn + done, &buffer[..(batch * PAGE_SIZE) as usize])?;
        done += batch;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(fill: &[u8]) -> Vec<u8> {
        fill.iter().flat_map(|&b| std::iter::repeat(b).take(PAGE_BYTES)).collect()
    }

    #[test]
    fn insert_splits_zero_runs() {
        let mut copy = MemoryCopy::new(MemoryBudget::unlimited());
        copy.insert(10, &pages(&[1, 0, 0, 2, 3, 0])).unwrap();
        assert_eq!(copy.page_counts(), (3, 3));
        assert_eq!(copy.runs.len(), 4);
        assert!(copy.contains(10));
        assert!(copy.contains(15));
        assert!(!copy.contains(9));
        assert!(!copy.contains(16));
    }

    #[test]
    fn insert_keeps_stored_frames() {
        let mut copy = MemoryCopy::new(MemoryBudget::unlimited());
        copy.insert(2, &pages(&[1, 2])).unwrap();
        copy.insert(1, &pages(&[9, 9, 9, 9])).unwrap();
        assert_eq!(copy.page_counts(), (4, 0));
        let mut buf = [0u8; 4];
        for (pfn, expected) in [(1, 9), (2, 1), (3, 2), (4, 9)] {
            copy.read_physical(pfn * PAGE_SIZE, &mut buf).unwrap();
            assert_eq!(buf, [expected; 4], "frame {pfn}");
        }
    }

    #[test]
    fn read_crosses_runs() {
        let mut copy = MemoryCopy::new(MemoryBudget::unlimited());
        copy.insert(1, &pages(&[0, 7])).unwrap();
        let mut buf = [0xffu8; 8];
        copy.read_physical(2 * PAGE_SIZE - 4, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 7, 7, 7, 7]);
    }

    #[test]
    fn read_outside_copy_names_address() {
        let mut copy = MemoryCopy::new(MemoryBudget::unlimited());
        copy.insert(1, &pages(&[5])).unwrap();
        let mut buf = [0u8; 16];
        let error = copy.read_physical(2 * PAGE_SIZE - 8, &mut buf).unwrap_err();
        assert_eq!(error, MemoryError::NotCaptured { address: 2 * PAGE_SIZE, len: 16 });
    }

    /// Returns pages filled with the given bytes, each non-zero page with
    /// its index in its second byte so that pages differ.
    fn distinct_pages(fills: &[u8]) -> Vec<u8> {
        let mut data = pages(fills);
        for (index, page) in data.chunks_exact_mut(PAGE_BYTES).enumerate() {
            if page[0] != 0 {
                page[1] = index as u8;
            }
        }
        data
    }

    #[test]
    fn spill_past_budget_reads_back() {
        let directory = tempfile::tempdir().unwrap();
        let mut copy = MemoryCopy::new(MemoryBudget::new(2 * PAGE_SIZE, directory.path()));
        let data = distinct_pages(&[1, 2, 0, 3, 4, 5]);
        copy.insert(100, &data[..3 * PAGE_BYTES]).unwrap();
        copy.insert(103, &data[3 * PAGE_BYTES..]).unwrap();
        assert_eq!(copy.page_counts(), (5, 1));
        assert_eq!(copy.held_and_spilled_bytes(), (2 * PAGE_SIZE, 3 * PAGE_SIZE));
        // The spill file has no name in the directory.
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 0);

        let mut buf = vec![0u8; data.len()];
        copy.read_physical(100 * PAGE_SIZE, &mut buf).unwrap();
        assert!(buf == data, "pages read back differ");
        // Reads that start and end inside spilled pages.
        let mut part = [0u8; 8];
        copy.read_physical(104 * PAGE_SIZE - 4, &mut part).unwrap();
        assert_eq!(part, [3, 3, 3, 3, 4, 4, 4, 4]);
    }

    #[test]
    fn spill_buffer_and_file_read() {
        let directory = tempfile::tempdir().unwrap();
        let mut copy = MemoryCopy::new(MemoryBudget::new(0, directory.path()));
        // More than the spill buffer, so part of it goes to the file.
        let pages_count = SPILL_BUFFER_BYTES / PAGE_BYTES + 3;
        let fills: Vec<u8> = (0..pages_count).map(|index| (index % 250) as u8 + 1).collect();
        let data = distinct_pages(&fills);
        for (index, page) in data.chunks_exact(PAGE_BYTES).enumerate() {
            copy.insert(index as u64, page).unwrap();
        }
        let spill = copy.spill.as_ref().unwrap();
        assert!(spill.written > 0, "nothing written to the spill file");
        assert!(!spill.buffer.is_empty(), "nothing left in the spill buffer");
        let mut buf = vec![0u8; data.len()];
        copy.read_physical(0, &mut buf).unwrap();
        assert!(buf == data, "pages read back differ");
    }

    #[test]
    fn spilled_pages_reach_snapshot() {
        use stardump_format::{Snapshot, Target as _, WriterOptions};

        let directory = tempfile::tempdir().unwrap();
        let output = directory.path().join("spilled.sdump");
        let mut copy = MemoryCopy::new(MemoryBudget::new(PAGE_SIZE, directory.path()));
        let data = distinct_pages(&[7, 0, 8, 9, 0, 10]);
        copy.insert(0x40, &data).unwrap();
        let options = WriterOptions { chunk_pages: 2, zstd_level: 1, threads: 1 };
        let mut writer = SnapshotWriter::create(&output, options).unwrap();
        copy.write_to(&mut writer).unwrap();
        let summary = writer.finish().unwrap();
        assert_eq!((summary.stored_pages, summary.zero_pages), (4, 2));

        let snapshot = Snapshot::open(&output).unwrap();
        let mut buf = vec![0u8; data.len()];
        snapshot.read_physical(0x40 * PAGE_SIZE, &mut buf).unwrap();
        assert!(buf == data, "pages in the snapshot differ");
    }

    #[test]
    fn missing_spill_directory_is_named() {
        let mut copy = MemoryCopy::new(MemoryBudget::new(0, Path::new("/nonexistent-stardump-directory")));
        let error = copy.insert(1, &pages(&[1])).unwrap_err();
        assert_eq!(error.action, "create");
        assert!(error.to_string().starts_with("cannot create the spill file in /nonexistent-stardump-directory: "), "{error}");
    }
}
