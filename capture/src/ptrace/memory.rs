//! Copies the readable mappings of a stopped process into a
//! [`MemoryCopy`], each page at its virtual address.
//!
//! Reads go through `process_vm_readv(2)` in blocks of [`BLOCK_BYTES`].
//! A block it cannot read whole is read again through `/proc/PID/mem`,
//! which works where a kernel built without CONFIG_CROSS_MEMORY_ATTACH
//! lacks `process_vm_readv`. A block that still fails is read page by
//! page, so one unreadable page (a file mapping past the end of its file,
//! device memory) costs only itself. Skipped mappings and pages are logged
//! with the reason.
//!
//! Private anonymous memory (the heap, stacks, `malloc`'s mmap'd blocks)
//! is often reserved far beyond what the process touched. A page of it
//! that `/proc/PID/pagemap` shows as neither resident nor swapped out reads
//! as zero, so it is recorded as an untouched zero page without reading
//! it. Reading it would make the kernel map the zero page into the stopped
//! process, one page at a time, which is slow for large reservations.
//! NOTE: a page registered with userfaultfd in missing mode reads as what
//! the process's handler supplies, but is recorded as zero here.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use stardump_format::{Mapping, MappingFlags, SnapshotWriter, WriteError};
use tracing::{debug, info, warn};

use super::attach::check_cancel;
use super::error::PtraceError;
use super::maps::MapEntry;
use super::sys::{self, Errno};
use crate::memory::{write_zero_pages, MemoryBudget, MemoryCopy, SpillError, PAGE_SIZE};

/// Bytes per read request.
const BLOCK_BYTES: u64 = 256 << 10;
/// Pages per block.
const BLOCK_PAGES: usize = (BLOCK_BYTES / PAGE_SIZE) as usize;
/// `/proc/PID/pagemap` bits: the page is resident, or swapped out.
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;

/// Reader of one process's memory.
pub struct ProcessMemory {
    pid: i32,
    /// `/proc/PID/mem`, when it could be opened.
    mem_file: Option<File>,
    /// `/proc/PID/pagemap`, when it could be opened.
    pagemap: Option<File>,
    /// Cleared after `process_vm_readv` fails with ENOSYS or EPERM, so the
    /// rest goes through `/proc/PID/mem` only.
    vm_readv_works: bool,
}

impl ProcessMemory {
    /// Opens the memory of process `pid`. A `/proc/PID/mem` that cannot be
    /// opened is logged: `process_vm_readv` may still work.
    pub fn open(pid: i32) -> ProcessMemory {
        let path = PathBuf::from(format!("/proc/{pid}/mem"));
        let mem_file = match File::open(&path) {
            Ok(file) => Some(file),
            Err(error) => {
                info!(path = %path.display(), %error, "cannot open; reading through process_vm_readv only");
                None
            }
        };
        let pagemap_path = format!("/proc/{pid}/pagemap");
        let pagemap = match File::open(&pagemap_path) {
            Ok(file) => Some(file),
            Err(error) => {
                info!(path = pagemap_path, %error, "cannot open; reading untouched anonymous memory too");
                None
            }
        };
        ProcessMemory { pid, mem_file, pagemap, vm_readv_works: true }
    }

    /// Returns, for each of `pages.len()` pages from `address` on, whether
    /// the page is resident or swapped out. Returns `false` when pagemap
    /// cannot be read, so that the caller reads every page.
    fn touched_pages(&self, address: u64, pages: &mut [bool]) -> bool {
        let Some(pagemap) = &self.pagemap else {
            return false;
        };
        let mut entries = vec![0u8; pages.len() * 8];
        if let Err(error) = pagemap.read_exact_at(&mut entries, address / PAGE_SIZE * 8) {
            debug!(address = format_args!("{address:#x}"), %error, "cannot read pagemap entries");
            return false;
        }
        for (touched, entry) in pages.iter_mut().zip(entries.chunks_exact(8)) {
            let entry = u64::from_le_bytes(entry.try_into().expect("chunks of 8 bytes"));
            *touched = entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0;
        }
        true
    }

    /// Reads `buf.len()` bytes at `address`, whole or not at all, and
    /// returns the errno of the last method tried when none read it all.
    pub fn read(&mut self, address: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut last_error = Errno(libc::EFAULT);
        if self.vm_readv_works {
            match sys::read_process_memory(self.pid, address, buf) {
                Ok(copied) if copied == buf.len() => return Ok(()),
                Ok(_) => {}
                Err(errno) if errno.0 == libc::ENOSYS || errno.0 == libc::EPERM => {
                    info!(pid = self.pid, %errno, "process_vm_readv failed; reading through /proc/PID/mem");
                    self.vm_readv_works = false;
                    last_error = errno;
                }
                Err(errno) => last_error = errno,
            }
        }
        if let Some(file) = &self.mem_file {
            match file.read_exact_at(buf, address) {
                Ok(()) => return Ok(()),
                Err(error) => last_error = error.raw_os_error().map_or(Errno(libc::EIO), Errno),
            }
        }
        Err(last_error)
    }
}

/// Totals of a memory copy, for the log and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyTotals {
    /// Mappings read, whole or in part.
    pub mappings_read: usize,
    /// Mappings left out, with the reason logged.
    pub mappings_skipped: usize,
    /// Pages of read mappings that could not be read.
    pub pages_unreadable: u64,
    /// Pages of private anonymous mappings that were never touched,
    /// recorded as zero without reading them.
    pub pages_untouched: u64,
}

/// The memory of a stopped process, as [`copy_mappings`] read it.
#[derive(Debug)]
pub struct ProcessCopy {
    /// Pages read, by frame number (virtual address / 4096).
    pub pages: MemoryCopy,
    /// Runs of untouched anonymous pages, as (first frame, page count), in
    /// address order. They are disjoint from `pages`.
    pub untouched: Vec<(u64, u64)>,
    /// One identity [`Mapping`] per mapping read: the snapshot's mapping
    /// table of a process.
    pub table: Vec<Mapping>,
    /// Totals for the log and the summary.
    pub totals: CopyTotals,
}

impl ProcessCopy {
    /// Returns the number of non-zero and all-zero pages, untouched pages
    /// counted as zero.
    pub fn page_counts(&self) -> (u64, u64) {
        let (data, zero) = self.pages.page_counts();
        (data, zero + self.totals.pages_untouched)
    }

    /// Passes every page to `writer`: the pages read, then the untouched
    /// pages as zero pages.
    pub fn write_to(&self, writer: &mut SnapshotWriter) -> Result<(), WriteError> {
        self.pages.write_to(writer)?;
        let mut zeroes = vec![0u8; 1 << 20];
        for &(first_pfn, count) in &self.untouched {
            write_zero_pages(writer, first_pfn, count, &mut zeroes)?;
        }
        Ok(())
    }

    /// Records `count` untouched pages from frame `first_pfn` on, joining
    /// them to the run before when they continue it.
    fn add_untouched(&mut self, first_pfn: u64, count: u64) {
        self.totals.pages_untouched += count;
        match self.untouched.last_mut() {
            Some((start, len)) if *start + *len == first_pfn => *len += count,
            _ => self.untouched.push((first_pfn, count)),
        }
    }
}

/// Returns whether a mapping is private anonymous memory, whose pages read
/// as zero until the process writes them. Shared memory is left out: its
/// pages may live in the page cache without being mapped.
fn is_private_anonymous(entry: &MapEntry) -> bool {
    let anonymous_name = entry.path.is_empty()
        || entry.path == "[heap]"
        || entry.path.starts_with("[stack")
        || entry.path.starts_with("[anon:");
    entry.inode == 0 && !entry.shared && anonymous_name
}

/// Copies every mapping of `maps` that [`MapEntry::skip_reason`] accepts,
/// holding up to `budget` of page data in memory.
pub fn copy_mappings(
    memory: &mut ProcessMemory,
    maps: &[MapEntry],
    budget: MemoryBudget,
    cancel: Option<&Arc<AtomicUsize>>,
) -> Result<ProcessCopy, PtraceError> {
    let mut copy = ProcessCopy {
        pages: MemoryCopy::new(budget),
        untouched: Vec::new(),
        table: Vec::new(),
        totals: CopyTotals::default(),
    };
    let mut block = Vec::new();
    let mut touched = [true; BLOCK_PAGES];
    for entry in maps {
        if let Some(reason) = entry.skip_reason() {
            info!(
                start = format_args!("{:#x}", entry.start),
                end = format_args!("{:#x}", entry.end),
                path = %entry.path,
                "skipping mapping: {reason}"
            );
            copy.totals.mappings_skipped += 1;
            continue;
        }
        debug!(start = format_args!("{:#x}", entry.start), len = entry.len_bytes(), path = %entry.path, "copying mapping");
        copy.totals.mappings_read += 1;
        let anonymous = is_private_anonymous(entry);
        let mut unreadable = UnreadablePages::default();
        let mut at = entry.start;
        while at < entry.end {
            check_cancel(cancel)?;
            let pages = ((entry.end - at).min(BLOCK_BYTES) / PAGE_SIZE) as usize;
            let touched = &mut touched[..pages];
            if !(anonymous && memory.touched_pages(at, touched)) {
                touched.fill(true);
            }
            // Read each run of touched pages; record the others as zero.
            let mut page = 0;
            while page < pages {
                let run_touched = touched[page];
                let run_end = touched[page..].iter().position(|&t| t != run_touched).map_or(pages, |len| page + len);
                let run_start = at + page as u64 * PAGE_SIZE;
                let run_pages = (run_end - page) as u64;
                if run_touched {
                    block.resize((run_pages * PAGE_SIZE) as usize, 0);
                    match memory.read(run_start, &mut block) {
                        Ok(()) => copy.pages.insert(run_start / PAGE_SIZE, &block)?,
                        Err(_) => copy_pages(memory, run_start, &mut block, &mut copy.pages, &mut unreadable)?,
                    }
                } else {
                    copy.add_untouched(run_start / PAGE_SIZE, run_pages);
                }
                page = run_end;
            }
            at += pages as u64 * PAGE_SIZE;
        }
        if let Some((first, errno)) = unreadable.first {
            warn!(
                path = %entry.path,
                start = format_args!("{:#x}", entry.start),
                pages = unreadable.count,
                first = format_args!("{first:#x}"),
                %errno,
                "skipped unreadable pages of a mapping"
            );
            copy.totals.pages_unreadable += unreadable.count;
        }
        copy.table.push(Mapping {
            virtual_start: entry.start,
            physical_start: entry.start,
            len_bytes: entry.len_bytes(),
            flags: MappingFlags {
                writable: entry.writable,
                user: true,
                no_execute: !entry.executable,
                page_size: PAGE_SIZE,
            },
        });
    }
    Ok(copy)
}

/// Pages of one mapping that could not be read: how many, and the first
/// with its errno.
#[derive(Default)]
struct UnreadablePages {
    count: u64,
    first: Option<(u64, Errno)>,
}

/// Reads the block at `start` page by page, storing the pages that read.
fn copy_pages(
    memory: &mut ProcessMemory,
    start: u64,
    block: &mut [u8],
    copy: &mut MemoryCopy,
    unreadable: &mut UnreadablePages,
) -> Result<(), SpillError> {
    for (index, page) in block.chunks_exact_mut(PAGE_SIZE as usize).enumerate() {
        let address = start + index as u64 * PAGE_SIZE;
        match memory.read(address, page) {
            Ok(()) => copy.insert(address / PAGE_SIZE, page)?,
            Err(errno) => {
                unreadable.count += 1;
                unreadable.first.get_or_insert((address, errno));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_reads_back() {
        let data: Vec<u8> = (0..3 * PAGE_SIZE as usize).map(|i| (i % 251) as u8).collect();
        let mut memory = ProcessMemory::open(std::process::id() as i32);
        let mut buf = vec![0u8; data.len()];
        memory.read(data.as_ptr() as u64, &mut buf).unwrap();
        assert_eq!(buf, data);
    }

    #[test]
    fn unmapped_address_fails() {
        let mut memory = ProcessMemory::open(std::process::id() as i32);
        let mut buf = [0u8; 16];
        // Page 0 is never mapped: vm.mmap_min_addr keeps it free.
        assert!(memory.read(0, &mut buf).is_err());
    }

    #[test]
    fn untouched_anonymous_pages_are_not_read() {
        const LEN: usize = 16 << 20;
        // SAFETY: a fresh private anonymous mapping, unmapped below; no
        // Rust reference points into it except the slices made here.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(start, libc::MAP_FAILED);
        // Without this, transparent huge pages ("always" mode) would make a
        // write fault in 512 pages at once.
        // SAFETY: madvise takes the mapping made above.
        assert_eq!(unsafe { libc::madvise(start, LEN, libc::MADV_NOHUGEPAGE) }, 0);
        // SAFETY: the mapping is LEN bytes long and writable.
        let bytes = unsafe { std::slice::from_raw_parts_mut(start.cast::<u8>(), LEN) };
        bytes[5 * PAGE_SIZE as usize] = 0xa5;
        bytes[LEN - 1] = 0x5a;

        let start = start as u64;
        let entry = MapEntry {
            start,
            end: start + LEN as u64,
            readable: true,
            writable: true,
            executable: false,
            shared: false,
            file_offset: 0,
            inode: 0,
            path: String::new(),
        };
        let mut memory = ProcessMemory::open(std::process::id() as i32);
        let copy = copy_mappings(&mut memory, &[entry], MemoryBudget::unlimited(), None).unwrap();
        // SAFETY: the mapping is not used after this.
        unsafe { libc::munmap(start as *mut libc::c_void, LEN) };

        let total_pages = LEN as u64 / PAGE_SIZE;
        assert_eq!(copy.totals.pages_untouched, total_pages - 2);
        assert_eq!(copy.page_counts(), (2, total_pages - 2));
        assert_eq!(copy.untouched, vec![(start / PAGE_SIZE, 5), (start / PAGE_SIZE + 6, total_pages - 7)]);
        let mut byte = [0u8; 1];
        copy.pages.read_physical(start + 5 * PAGE_SIZE, &mut byte).unwrap();
        assert_eq!(byte, [0xa5]);
        copy.pages.read_physical(start + LEN as u64 - 1, &mut byte).unwrap();
        assert_eq!(byte, [0x5a]);
    }
}
