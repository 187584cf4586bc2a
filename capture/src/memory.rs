//! [`MemoryCopy`]: guest frames copied into the capture's memory while the
//! target is paused, written to the snapshot after it resumes.
//!
//! All-zero pages are kept as counts, so a mostly empty guest costs little
//! memory; the snapshot writer records them as zero pages.

use std::collections::BTreeMap;

use stardump_format::{MemoryError, SnapshotWriter, WriteError};

/// Guest page size in bytes.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_BYTES: usize = PAGE_SIZE as usize;
/// Pages per `add_pages` call for zero runs; bounds the zero buffer.
const ZERO_BATCH_PAGES: u64 = 256;

/// A run of consecutive frames.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    /// Page contents, a multiple of [`PAGE_SIZE`] long.
    Data(Vec<u8>),
    /// This many all-zero pages.
    Zero(u64),
}

impl Run {
    fn page_count(&self) -> u64 {
        match self {
            Run::Data(bytes) => bytes.len() as u64 / PAGE_SIZE,
            Run::Zero(pages) => *pages,
        }
    }
}

/// Guest frames by frame number (physical address / 4096).
#[derive(Debug, Default)]
pub struct MemoryCopy {
    runs: BTreeMap<u64, Run>,
}

impl MemoryCopy {
    /// Creates an empty copy.
    pub fn new() -> MemoryCopy {
        MemoryCopy::default()
    }

    /// Stores `data`, consecutive pages starting at frame `first_pfn`,
    /// splitting it into zero and non-zero runs.
    ///
    /// `data.len()` must be a multiple of [`PAGE_SIZE`]. Frames already
    /// stored keep their first contents, so two virtual ranges that map the
    /// same frames store them once.
    pub fn insert(&mut self, first_pfn: u64, data: &[u8]) {
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
            self.insert_new(first_pfn + start as u64, &data[start * PAGE_BYTES..page * PAGE_BYTES]);
        }
    }

    /// Stores frames none of which is stored yet.
    fn insert_new(&mut self, first_pfn: u64, data: &[u8]) {
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
                        Run::Data(data[run_start * PAGE_BYTES..page * PAGE_BYTES].to_vec())
                    };
                    self.runs.insert(pfn, run);
                }
                run_start = page;
                run_zero = is_zero;
            }
        }
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
            Run::Data(_) => (data + run.page_count(), zero),
            Run::Zero(pages) => (data, zero + pages),
        })
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
            match run {
                Run::Zero(_) => buf[done..done + part].fill(0),
                Run::Data(bytes) => {
                    let from = (pfn - start) as usize * PAGE_BYTES + offset_in_page;
                    buf[done..done + part].copy_from_slice(&bytes[from..from + part]);
                }
            }
            done += part;
        }
        Ok(())
    }

    /// Passes every stored frame to `writer`.
    pub fn write_to(&self, writer: &mut SnapshotWriter) -> Result<(), WriteError> {
        let zeroes = vec![0u8; (ZERO_BATCH_PAGES * PAGE_SIZE) as usize];
        for (&pfn, run) in &self.runs {
            match run {
                Run::Data(bytes) => writer.add_pages(pfn, bytes)?,
                Run::Zero(pages) => {
                    let mut done = 0u64;
                    while done < *pages {
                        let batch = (pages - done).min(ZERO_BATCH_PAGES);
                        writer.add_pages(pfn + done, &zeroes[..(batch * PAGE_SIZE) as usize])?;
                        done += batch;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(fill: &[u8]) -> Vec<u8> {
        fill.iter().flat_map(|&b| std::iter::repeat(b).take(PAGE_BYTES)).collect()
    }

    #[test]
    fn insert_splits_zero_runs() {
        let mut copy = MemoryCopy::new();
        copy.insert(10, &pages(&[1, 0, 0, 2, 3, 0]));
        assert_eq!(copy.page_counts(), (3, 3));
        assert_eq!(copy.runs.len(), 4);
        assert!(copy.contains(10));
        assert!(copy.contains(15));
        assert!(!copy.contains(9));
        assert!(!copy.contains(16));
    }

    #[test]
    fn insert_keeps_stored_frames() {
        let mut copy = MemoryCopy::new();
        copy.insert(2, &pages(&[1, 2]));
        copy.insert(1, &pages(&[9, 9, 9, 9]));
        assert_eq!(copy.page_counts(), (4, 0));
        let mut buf = [0u8; 4];
        for (pfn, expected) in [(1, 9), (2, 1), (3, 2), (4, 9)] {
            copy.read_physical(pfn * PAGE_SIZE, &mut buf).unwrap();
            assert_eq!(buf, [expected; 4], "frame {pfn}");
        }
    }

    #[test]
    fn read_crosses_runs() {
        let mut copy = MemoryCopy::new();
        copy.insert(1, &pages(&[0, 7]));
        let mut buf = [0xffu8; 8];
        copy.read_physical(2 * PAGE_SIZE - 4, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 7, 7, 7, 7]);
    }

    #[test]
    fn read_outside_copy_names_address() {
        let mut copy = MemoryCopy::new();
        copy.insert(1, &pages(&[5]));
        let mut buf = [0u8; 16];
        let error = copy.read_physical(2 * PAGE_SIZE - 8, &mut buf).unwrap_err();
        assert_eq!(error, MemoryError::NotCaptured { address: 2 * PAGE_SIZE, len: 16 });
    }
}
