//! The capture flow: attach and pause, copy every vCPU's registers and the
//! guest memory into a [`MemoryCopy`] (in memory up to the budget, then in
//! a spill file), resume, then compress and write the snapshot.
//!
//! The target is paused only while the copy runs; compression happens
//! after it resumes. The snapshot is written under a temporary name and
//! renamed into place by [`SnapshotWriter::finish`], so a failed or
//! interrupted capture leaves no file under the output name.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use stardump_format::{MemoryRange, SnapshotWriter, Target, WriteError, WriterOptions};
use tracing::{debug, info, info_span, warn};

use crate::gdb::{ClientOptions, GdbError};
use crate::memory::{MemoryBudget, MemoryCopy, SpillError, PAGE_SIZE};
use crate::ram::{probe_ram_end, ProbeError};
use crate::target::GdbTarget;
use crate::walk::{self, WalkError};

/// Bytes per physical read request; the client splits it into packets.
const BLOCK_BYTES: u64 = 1 << 20;

/// Strategy for finding and reading guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryStrategy {
    /// Read all guest RAM through physical addresses (QEMU's PhyMemMode),
    /// then walk the page tables over the copy.
    Physical,
    /// Read only the frames the page tables map, through virtual
    /// addresses.
    Walk,
}

/// Target, output and settings of one capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The stub's `HOST:PORT`.
    pub address: String,
    /// The snapshot's final path.
    pub output: PathBuf,
    /// Close the connection without resuming the target.
    pub leave_paused: bool,
    /// Memory strategy.
    pub memory: MemoryStrategy,
    /// How long to wait for any one reply from the stub.
    pub timeout: Duration,
    /// Set to a signal number by the caller's signal handler.
    pub cancel: Option<Arc<AtomicUsize>>,
    /// Compression settings.
    pub writer: WriterOptions,
    /// GNU build id of the unikernel image, stored so the analyzer can warn
    /// when it is given a different image.
    pub image_build_id: Option<Vec<u8>>,
    /// Bytes of page data held in memory before the rest is spilled to a
    /// file next to the output.
    pub memory_budget: u64,
}

/// Totals of a finished capture, for the one-line summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// The target as named in the metadata (`gdb:127.0.0.1:1234`).
    pub target: String,
    /// The snapshot's path.
    pub output: PathBuf,
    /// Number of vCPUs captured, or of threads for a process.
    pub vcpus: usize,
    /// RAM ranges read (physical strategy) or known (walk strategy), or
    /// the virtual address ranges of a process's captured mappings.
    pub memory_ranges: Vec<MemoryRange>,
    /// Page-table roots whose mappings were recorded.
    pub page_table_roots: usize,
    /// Pages stored compressed.
    pub stored_pages: u64,
    /// All-zero pages recorded in the index only.
    pub zero_pages: u64,
    /// Guest memory covered by the snapshot, in bytes.
    pub guest_memory_bytes: u64,
    /// Size of the snapshot file, in bytes.
    pub file_len_bytes: u64,
    /// How long the target was paused, in microseconds.
    pub pause_time_us: u64,
    /// How long the whole capture took, in microseconds.
    pub total_time_us: u64,
    /// Whether the target was left paused.
    pub left_paused: bool,
}

/// Words of the one-line summary: a unikernel has vCPUs and guest memory
/// and is paused, a process has threads and memory and is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryWording {
    /// A guest of a hypervisor or emulator (`gdb:` and `xen:` targets).
    Unikernel,
    /// A Linux process (`pid:` targets).
    Process,
}

impl CaptureSummary {
    /// Formats the one-line summary that `stardump-capture` prints, without
    /// a line break.
    pub fn text_line(&self, wording: SummaryWording) -> String {
        let (context, contexts, memory, paused, left) = match wording {
            SummaryWording::Unikernel => ("vCPU", "vCPUs", "guest memory", "paused", "left paused"),
            SummaryWording::Process => ("thread", "threads", "memory", "stopped", "left stopped"),
        };
        format!(
            "{}: {} {}, {} pages stored, {} zero, {:.1} MiB of {memory} in {:.1} MiB, {paused} {:.3} s, total {:.3} s{}",
            self.output.display(),
            self.vcpus,
            if self.vcpus == 1 { context } else { contexts },
            self.stored_pages,
            self.zero_pages,
            self.guest_memory_bytes as f64 / (1024.0 * 1024.0),
            self.file_len_bytes as f64 / (1024.0 * 1024.0),
            self.pause_time_us as f64 / 1e6,
            self.total_time_us as f64 / 1e6,
            if self.left_paused { format!(", {left}") } else { String::new() },
        )
    }
}

/// Errors of a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The stub failed or did not speak the protocol.
    #[error(transparent)]
    Gdb(GdbError),
    /// The page tables could not be walked or copied.
    #[error(transparent)]
    Walk(WalkError),
    /// The RAM layout could not be found.
    #[error("finding guest RAM: {0}")]
    Ram(String),
    /// Physical reads were requested from a stub that has none.
    #[error("the stub cannot read physical memory (no Qqemu.PhyMemMode); use --memory walk")]
    NoPhysicalMemory,
    /// The snapshot could not be written.
    #[error("writing the snapshot: {0}")]
    Write(#[from] WriteError),
    /// Pages past the memory budget could not be spilled.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// A signal stopped the capture.
    #[error("interrupted by {}", crate::gdb::error::signal_name(*.signal))]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}

impl From<GdbError> for CaptureError {
    fn from(error: GdbError) -> Self {
        match error {
            GdbError::Interrupted { signal } => CaptureError::Interrupted { signal },
            other => CaptureError::Gdb(other),
        }
    }
}

impl From<WalkError> for CaptureError {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::Gdb(gdb) => gdb.into(),
            WalkError::Spill(spill) => CaptureError::Spill(spill),
            other => CaptureError::Walk(other),
        }
    }
}

fn check_cancel(cancel: &Option<Arc<AtomicUsize>>) -> Result<(), CaptureError> {
    match cancel.as_ref().map(|flag| flag.load(Ordering::Relaxed)) {
        Some(signal) if signal != 0 => Err(CaptureError::Interrupted { signal: signal as i32 }),
        _ => Ok(()),
    }
}

/// Captures the target at `options.address` into `options.output`.
pub fn capture(options: &CaptureOptions) -> Result<CaptureSummary, CaptureError> {
    let span = info_span!("capture", target = %options.address);
    let _entered = span.enter();
    let started = Instant::now();

    // Create the output before pausing, so an unwritable path costs the
    // guest no pause. Dropping the writer on an error deletes its
    // temporary file.
    let mut writer = SnapshotWriter::create(&options.output, options.writer.clone())?;

    let client_options = ClientOptions {
        timeout: options.timeout,
        cancel: options.cancel.clone(),
    };
    let mut target = GdbTarget::attach(&options.address, client_options)?;
    let budget = MemoryBudget::new(options.memory_budget, &MemoryBudget::directory_of(&options.output));
    let (copy, mut tables) = match options.memory {
        MemoryStrategy::Physical => (copy_physical(&mut target, budget)?, Vec::new()),
        MemoryStrategy::Walk => walk::copy_mapped_memory(&target, &target.memory_map(), budget)?,
    };

    // The copy is complete: let the guest run before compressing.
    if options.leave_paused {
        target.leave_paused()?;
    } else {
        target.resume()?;
    }
    let pause_time_us = target.paused_at().elapsed().as_micros() as u64;
    info!(pause_ms = pause_time_us / 1000, left_paused = options.leave_paused, "target released");

    if options.memory == MemoryStrategy::Physical {
        tables = walk_copy(&target, &copy);
    }

    check_cancel(&options.cancel)?;
    let mut metadata = target.metadata().clone();
    metadata.pause_time_us = pause_time_us;
    metadata.image_build_id = options.image_build_id.clone();
    for vcpu in target.vcpus() {
        writer.add_vcpu(vcpu);
    }
    writer.set_metadata(metadata.clone());
    for (cr3, mappings) in &tables {
        writer.add_mappings(*cr3, mappings);
    }
    copy.write_to(&mut writer)?;
    check_cancel(&options.cancel)?;
    let written = writer.finish()?;
    if let Err(error) = check_cancel(&options.cancel) {
        // The signal arrived while the file was being finished: honour it
        // by removing what was written.
        let _ = std::fs::remove_file(&options.output);
        return Err(error);
    }

    let (data_pages, zero_pages) = copy.page_counts();
    debug!(data_pages, zero_pages, "pages copied");
    Ok(CaptureSummary {
        target: metadata.target_name,
        output: options.output.clone(),
        vcpus: target.vcpus().len(),
        memory_ranges: target.memory_map(),
        page_table_roots: tables.len(),
        stored_pages: written.stored_pages,
        zero_pages: written.zero_pages,
        guest_memory_bytes: (data_pages + zero_pages) * PAGE_SIZE,
        file_len_bytes: written.file_len_bytes,
        pause_time_us,
        total_time_us: started.elapsed().as_micros() as u64,
        left_paused: options.leave_paused,
    })
}

/// Reads all guest RAM through physical addresses.
fn copy_physical(target: &mut GdbTarget, budget: MemoryBudget) -> Result<MemoryCopy, CaptureError> {
    if !target.has_physical_memory() {
        return Err(CaptureError::NoPhysicalMemory);
    }
    let mut ranges = target.memory_map();
    if ranges.is_empty() {
        ranges = vec![probe_ram(target)?];
        target.set_memory_map(ranges.clone());
    }

    let mut copy = MemoryCopy::new(budget);
    let mut block = Vec::new();
    for range in &ranges {
        // Whole pages: round the start down and the end up.
        let start = range.start / PAGE_SIZE * PAGE_SIZE;
        let end = range
            .start
            .checked_add(range.len_bytes)
            .and_then(|end| end.checked_next_multiple_of(PAGE_SIZE))
            .ok_or_else(|| CaptureError::Ram(format!("range at {:#x} ends past 2^64", range.start)))?;
        debug!(start = format_args!("{start:#x}"), end = format_args!("{end:#x}"), "copying RAM");
        let mut at = start;
        while at < end {
            let len = (end - at).min(BLOCK_BYTES);
            block.resize(len as usize, 0);
            target.read_physical_memory(at, &mut block)?;
            copy.insert(at / PAGE_SIZE, &block)?;
            at += len;
        }
    }
    Ok(copy)
}

fn probe_ram(target: &GdbTarget) -> Result<MemoryRange, CaptureError> {
    let mut byte = [0u8; 1];
    let result = probe_ram_end(&mut |address| match target.read_physical_memory(address, &mut byte) {
        Ok(()) => Ok(true),
        Err(GdbError::ErrorReply { .. }) => Ok(false),
        Err(error) => Err(error),
    });
    match result {
        Ok(range) => Ok(range),
        Err(ProbeError::Read(error)) => Err(error.into()),
        Err(other) => Err(CaptureError::Ram(other.to_string())),
    }
}

/// Walks each page-table root over the copied memory. A root that cannot
/// be walked is logged and left out: the memory is still worth keeping.
fn walk_copy(target: &GdbTarget, copy: &MemoryCopy) -> Vec<walk::MappingTable> {
    let mut tables = Vec::new();
    for (cr3, _) in walk::page_table_roots(target.vcpus()) {
        let mut read = |address: u64, buf: &mut [u8]| copy.read_physical(address, buf);
        match walk::walk(cr3, &mut read) {
            Ok(mappings) => tables.push((cr3, mappings)),
            Err(error) => warn!(%error, "mapping table left out"),
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(vcpus: usize, left_paused: bool) -> CaptureSummary {
        CaptureSummary {
            target: "pid:42".to_owned(),
            output: PathBuf::from("out.sdump"),
            vcpus,
            memory_ranges: Vec::new(),
            page_table_roots: 0,
            stored_pages: 10,
            zero_pages: 2,
            guest_memory_bytes: 3 << 20,
            file_len_bytes: 1 << 20,
            pause_time_us: 4_700,
            total_time_us: 81_000,
            left_paused,
        }
    }

    #[test]
    fn summary_line_uses_process_words() {
        assert_eq!(
            summary(4, false).text_line(SummaryWording::Process),
            "out.sdump: 4 threads, 10 pages stored, 2 zero, 3.0 MiB of memory in 1.0 MiB, stopped 0.005 s, total 0.081 s"
        );
        assert_eq!(
            summary(1, true).text_line(SummaryWording::Process),
            "out.sdump: 1 thread, 10 pages stored, 2 zero, 3.0 MiB of memory in 1.0 MiB, stopped 0.005 s, total 0.081 s, left stopped"
        );
    }

    #[test]
    fn summary_line_uses_unikernel_words() {
        assert_eq!(
            summary(2, true).text_line(SummaryWording::Unikernel),
            "out.sdump: 2 vCPUs, 10 pages stored, 2 zero, 3.0 MiB of guest memory in 1.0 MiB, paused 0.005 s, total 0.081 s, left paused"
        );
        assert_eq!(
            summary(1, false).text_line(SummaryWording::Unikernel),
            "out.sdump: 1 vCPU, 10 pages stored, 2 zero, 3.0 MiB of guest memory in 1.0 MiB, paused 0.005 s, total 0.081 s"
        );
    }
}
