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

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use stardump_format::{Mapping, MappingFlags};
use tracing::{debug, info, warn};

use super::attach::check_cancel;
use super::error::PtraceError;
use super::maps::MapEntry;
use super::sys::{self, Errno};
use crate::memory::{MemoryCopy, PAGE_SIZE};

/// Bytes per read request.
const BLOCK_BYTES: u64 = 1 << 20;

/// Reader of one process's memory.
pub struct ProcessMemory {
    pid: i32,
    /// `/proc/PID/mem`, when it could be opened.
    mem_file: Option<File>,
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
        ProcessMemory { pid, mem_file, vm_readv_works: true }
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
}

/// Copies every mapping of `maps` that [`MapEntry::skip_reason`] accepts.
/// Returns the copy, one identity [`Mapping`] per mapping read (the
/// snapshot's mapping table of a process), and the totals.
pub fn copy_mappings(
    memory: &mut ProcessMemory,
    maps: &[MapEntry],
    cancel: Option<&Arc<AtomicUsize>>,
) -> Result<(MemoryCopy, Vec<Mapping>, CopyTotals), PtraceError> {
    let mut copy = MemoryCopy::new();
    let mut table = Vec::new();
    let mut totals = CopyTotals::default();
    let mut block = Vec::new();
    for entry in maps {
        if let Some(reason) = entry.skip_reason() {
            info!(
                start = format_args!("{:#x}", entry.start),
                end = format_args!("{:#x}", entry.end),
                path = %entry.path,
                "skipping mapping: {reason}"
            );
            totals.mappings_skipped += 1;
            continue;
        }
        debug!(start = format_args!("{:#x}", entry.start), len = entry.len_bytes(), path = %entry.path, "copying mapping");
        totals.mappings_read += 1;
        let mut unreadable = UnreadablePages::default();
        let mut at = entry.start;
        while at < entry.end {
            check_cancel(cancel)?;
            let len = (entry.end - at).min(BLOCK_BYTES);
            block.resize(len as usize, 0);
            match memory.read(at, &mut block) {
                Ok(()) => copy.insert(at / PAGE_SIZE, &block),
                Err(_) => copy_pages(memory, at, &mut block, &mut copy, &mut unreadable),
            }
            at += len;
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
            totals.pages_unreadable += unreadable.count;
        }
        table.push(Mapping {
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
    Ok((copy, table, totals))
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
) {
    for (index, page) in block.chunks_exact_mut(PAGE_SIZE as usize).enumerate() {
        let address = start + index as u64 * PAGE_SIZE;
        match memory.read(address, page) {
            Ok(()) => copy.insert(address / PAGE_SIZE, page),
            Err(errno) => {
                unreadable.count += 1;
                unreadable.first.get_or_insert((address, errno));
            }
        }
    }
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
}
