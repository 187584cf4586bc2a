//! Copying a paused domain's memory into a [`MemoryCopy`]: every frame a
//! PV domain owns, placed and rewritten through the M2P table, or every
//! guest frame of an HVM or PVH domain up to its highest mapped one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use stardump_format::MemoryRange;
use tracing::{debug, info, warn};

use super::bindings::ctrl::{M2p, XenCtrl, PFN_TYPE_BATCH};
use super::bindings::foreign::ForeignMemory;
use super::error::XenError;
use super::frames::{canonicalize_page_table, CanonicalCounts, FrameMap};
use crate::memory::{MemoryBudget, MemoryCopy, SpillError, PAGE_SIZE};

const PAGE_BYTES: usize = PAGE_SIZE as usize;
/// Frames per foreign map call.
pub const MAP_BATCH: usize = 1024;

/// `XEN_DOMCTL_PFINFO_*` values, shifted down from bits 28-31: bits 0-2
/// are the page-table level, bit 3 marks a pinned table, and the values
/// 0xd-0xf are not page types. XALLOC (allocate-only) appears in Xen's
/// migration stream, not in `getpageframeinfo3` results, and is skipped.
mod pfinfo {
    pub const BROKEN: u64 = 0xd;
    pub const XALLOC: u64 = 0xe;
    pub const XTAB: u64 = 0xf;
    pub const LEVEL_MASK: u64 = 0x7;
}

/// Counts and ranges of what the copy read and what it left out.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Guest frame ranges copied, in order.
    pub ranges: Vec<MemoryRange>,
    /// Frames Xen refused to map; they are not in the snapshot.
    pub unmapped_frames: u64,
    /// PV: frames the domain owns that the M2P table gives no guest frame,
    /// or a guest frame another machine frame already holds.
    pub unplaced_frames: u64,
    /// PV: frames Xen marks broken.
    pub broken_frames: u64,
    /// PV: what rewriting the page tables did.
    pub page_tables: CanonicalCounts,
}

/// Returns the signal number the caller's handler stored, if any.
pub fn check_cancel(cancel: &Option<Arc<AtomicUsize>>) -> Result<(), XenError> {
    match cancel.as_ref().map(|flag| flag.load(Ordering::Relaxed)) {
        Some(signal) if signal != 0 => Err(XenError::Interrupted { signal: signal as i32 }),
        _ => Ok(()),
    }
}

/// Appends frame `pfn` to `ranges`, extending the last range when `pfn`
/// continues it.
fn note_frame(ranges: &mut Vec<MemoryRange>, pfn: u64) {
    let start = pfn * PAGE_SIZE;
    match ranges.last_mut() {
        Some(last) if last.start + last.len_bytes == start => last.len_bytes += PAGE_SIZE,
        _ => ranges.push(MemoryRange { start, len_bytes: PAGE_SIZE }),
    }
}

/// Consecutive copied pages, at most [`MAP_BATCH`], waiting to go into
/// the [`MemoryCopy`] as one insert.
struct Run {
    first_pfn: u64,
    bytes: Vec<u8>,
}

impl Run {
    fn push(&mut self, copy: &mut MemoryCopy, pfn: u64, page: &[u8]) -> Result<(), SpillError> {
        let next = self.first_pfn + (self.bytes.len() / PAGE_BYTES) as u64;
        if self.bytes.is_empty() || pfn != next || self.bytes.len() >= MAP_BATCH * PAGE_BYTES {
            self.flush(copy)?;
            self.first_pfn = pfn;
        }
        self.bytes.extend_from_slice(page);
        Ok(())
    }

    fn flush(&mut self, copy: &mut MemoryCopy) -> Result<(), SpillError> {
        if !self.bytes.is_empty() {
            copy.insert(self.first_pfn, &self.bytes)?;
            self.bytes.clear();
        }
        Ok(())
    }
}

/// Returns the machine frames that PV domain `domid` owns.
///
/// Xen's `XEN_DOMCTL_getpageframeinfo3` returns "invalid" for every
/// machine frame the domain does not own, so asking it about every frame
/// of the host finds the domain's frames without the P2M list the guest
/// may not have published. The scan stops once it has found as many
/// frames as the domain has (`tot_pages`). It can run before the pause,
/// because a domain's frames change only when it balloons;
/// [`classify_pv_frames`] checks the result while the domain is paused.
pub fn scan_owned_frames(
    ctrl: &XenCtrl,
    domid: u32,
    tot_pages: u64,
    cancel: &Option<Arc<AtomicUsize>>,
) -> Result<Vec<u64>, XenError> {
    let max_page = ctrl.maximum_ram_page()?;
    let mut owned = Vec::new();
    let mut batch: Vec<u64> = Vec::with_capacity(PFN_TYPE_BATCH);
    let mut mfn = 0u64;
    while mfn < max_page && (owned.len() as u64) < tot_pages {
        check_cancel(cancel)?;
        let end = mfn.saturating_add(PFN_TYPE_BATCH as u64).min(max_page);
        batch.clear();
        batch.extend(mfn..end);
        ctrl.frame_types(domid, &mut batch)?;
        for (frame, &value) in (mfn..end).zip(&batch) {
            if !matches!((value >> 28) & 0xf, pfinfo::XTAB | pfinfo::XALLOC) {
                owned.push(frame);
            }
        }
        mfn = end;
    }
    debug!(
        frames = owned.len(),
        scanned_to = format_args!("{mfn:#x}"),
        max_page = format_args!("{max_page:#x}"),
        "scanned the host's machine frames"
    );
    Ok(owned)
}

/// Places the machine frames `mfns` of PV domain `domid` by their M2P
/// entries and finds which are page tables, with the types Xen reports
/// now. Run it while the domain is paused.
///
/// Returns the frame map, the page-table level of each page-table frame,
/// and how many of `mfns` the domain still owns (broken frames included).
pub fn classify_pv_frames(
    ctrl: &XenCtrl,
    m2p: &M2p,
    domid: u32,
    mfns: &[u64],
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<(FrameMap, HashMap<u64, u32>, u64), XenError> {
    let mut frames = FrameMap::new();
    let mut table_levels: HashMap<u64, u32> = HashMap::new();
    let mut owned = 0u64;
    let mut batch: Vec<u64> = Vec::with_capacity(PFN_TYPE_BATCH);
    for chunk in mfns.chunks(PFN_TYPE_BATCH) {
        check_cancel(cancel)?;
        batch.clear();
        batch.extend_from_slice(chunk);
        ctrl.frame_types(domid, &mut batch)?;
        for (&frame, &value) in chunk.iter().zip(&batch) {
            let kind = (value >> 28) & 0xf;
            match kind {
                pfinfo::XTAB | pfinfo::XALLOC => continue,
                pfinfo::BROKEN => {
                    owned += 1;
                    report.broken_frames += 1;
                    continue;
                }
                _ => owned += 1,
            }
            let Some(pfn) = m2p.pfn_of(frame) else {
                debug!(mfn = format_args!("{frame:#x}"), "owned frame has no M2P entry");
                report.unplaced_frames += 1;
                continue;
            };
            if let Err(known) = frames.insert(frame, pfn) {
                debug!(
                    mfn = format_args!("{frame:#x}"),
                    pfn = format_args!("{pfn:#x}"),
                    known = format_args!("{known:#x}"),
                    "guest frame already held by another machine frame"
                );
                report.unplaced_frames += 1;
                continue;
            }
            let level = (kind & pfinfo::LEVEL_MASK) as u32;
            if (1..=4).contains(&level) {
                table_levels.insert(frame, level);
            }
        }
    }
    info!(frames = frames.len(), page_tables = table_levels.len(), "placed the domain's machine frames");
    Ok((frames, table_levels, owned))
}

/// Copies the frames of PV domain `domid` in guest frame order, rewriting
/// page tables from machine to guest frames.
pub fn copy_pv(
    foreign: &ForeignMemory,
    domid: u32,
    frames: &FrameMap,
    table_levels: &HashMap<u64, u32>,
    budget: MemoryBudget,
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<MemoryCopy, XenError> {
    let mut copy = MemoryCopy::new(budget);
    let mut run = Run { first_pfn: 0, bytes: Vec::new() };
    let mut page = vec![0u8; PAGE_BYTES];
    let pairs: Vec<(u64, u64)> = frames.frames().collect();
    for batch in pairs.chunks(MAP_BATCH) {
        check_cancel(cancel)?;
        let mfns: Vec<u64> = batch.iter().map(|&(_, mfn)| mfn).collect();
        let mapping = foreign.map(domid, &mfns)?;
        for (index, &(pfn, mfn)) in batch.iter().enumerate() {
            if let Err(errno) = mapping.copy_page(index, &mut page) {
                debug!(pfn = format_args!("{pfn:#x}"), mfn = format_args!("{mfn:#x}"), %errno, "frame not mapped");
                report.unmapped_frames += 1;
                continue;
            }
            if let Some(&level) = table_levels.get(&mfn) {
                report.page_tables.add(canonicalize_page_table(&mut page, level, frames));
            }
            run.push(&mut copy, pfn, &page)?;
            note_frame(&mut report.ranges, pfn);
        }
    }
    run.flush(&mut copy)?;
    Ok(copy)
}

/// Returns the guest frames `0..=max_gpfn` of HVM or PVH domain `domid`
/// that Xen reports as present, or `None` when Xen does not report page
/// types for the domain.
///
/// The types come 1024 frames per call, so that holes (the MMIO hole
/// below 4 GiB, say) cost no mapping attempt. The scan can run before the
/// pause, because a domain's physical map changes only when it balloons;
/// [`copy_hvm`] reports frames that fail to map by then.
///
/// NOTE: Xen 4.17 looks frames up for their types with `P2M_ALLOC`
/// (xen/arch/x86/domctl.c), so a populate-on-demand guest gets its
/// untouched frames populated by the scan.
pub fn scan_hvm_frames(
    ctrl: &XenCtrl,
    domid: u32,
    max_gpfn: u64,
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<Option<Vec<u64>>, XenError> {
    let end = max_gpfn.checked_add(1).ok_or(XenError::OutOfRange { domid, what: "maximum guest frame", value: max_gpfn })?;
    let mut present = Vec::new();
    let mut types: Vec<u64> = Vec::with_capacity(PFN_TYPE_BATCH);
    let mut first = 0u64;
    while first < end {
        check_cancel(cancel)?;
        let batch_end = first.saturating_add(PFN_TYPE_BATCH as u64).min(end);
        types.clear();
        types.extend(first..batch_end);
        if let Err(error) = ctrl.frame_types(domid, &mut types) {
            warn!(%error, "cannot read page types; mapping every frame instead");
            return Ok(None);
        }
        for (gfn, &value) in (first..batch_end).zip(&types) {
            match (value >> 28) & 0xf {
                pfinfo::XTAB | pfinfo::XALLOC => {}
                pfinfo::BROKEN => report.broken_frames += 1,
                _ => present.push(gfn),
            }
        }
        first = batch_end;
    }
    debug!(frames = present.len(), max_gpfn = format_args!("{max_gpfn:#x}"), "scanned the guest frames");
    Ok(Some(present))
}

/// Copies guest frames `gfns` of HVM or PVH domain `domid`, 1024 per map
/// call. Frames Xen cannot map are counted and left out.
pub fn copy_hvm(
    foreign: &ForeignMemory,
    domid: u32,
    gfns: impl IntoIterator<Item = u64>,
    budget: MemoryBudget,
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<MemoryCopy, XenError> {
    let mut copy = MemoryCopy::new(budget);
    let mut run = Run { first_pfn: 0, bytes: Vec::new() };
    let mut page = vec![0u8; PAGE_BYTES];
    let mut gfns = gfns.into_iter();
    let mut batch: Vec<u64> = Vec::with_capacity(MAP_BATCH);
    loop {
        batch.clear();
        batch.extend(gfns.by_ref().take(MAP_BATCH));
        if batch.is_empty() {
            break;
        }
        check_cancel(cancel)?;
        let mapping = foreign.map(domid, &batch)?;
        for (index, &gfn) in batch.iter().enumerate() {
            if let Err(errno) = mapping.copy_page(index, &mut page) {
                debug!(gfn = format_args!("{gfn:#x}"), %errno, "frame not mapped");
                report.unmapped_frames += 1;
                continue;
            }
            run.push(&mut copy, gfn, &page)?;
            note_frame(&mut report.ranges, gfn);
        }
    }
    run.flush(&mut copy)?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_consecutive_frames() {
        let mut ranges = Vec::new();
        for pfn in [0, 1, 2, 5, 6, 9] {
            note_frame(&mut ranges, pfn);
        }
        assert_eq!(
            ranges,
            vec![
                MemoryRange { start: 0, len_bytes: 3 * PAGE_SIZE },
                MemoryRange { start: 5 * PAGE_SIZE, len_bytes: 2 * PAGE_SIZE },
                MemoryRange { start: 9 * PAGE_SIZE, len_bytes: PAGE_SIZE },
            ]
        );
    }

    #[test]
    fn run_inserts_consecutive_pages_together() {
        let mut copy = MemoryCopy::new(MemoryBudget::unlimited());
        let mut run = Run { first_pfn: 0, bytes: Vec::new() };
        for (pfn, fill) in [(4u64, 1u8), (5, 2), (7, 3)] {
            run.push(&mut copy, pfn, &vec![fill; PAGE_BYTES]).unwrap();
        }
        run.flush(&mut copy).unwrap();
        let mut byte = [0u8; 1];
        for (pfn, fill) in [(4u64, 1u8), (5, 2), (7, 3)] {
            copy.read_physical(pfn * PAGE_SIZE, &mut byte).unwrap();
            assert_eq!(byte[0], fill, "frame {pfn}");
        }
        assert!(!copy.contains(6));
    }
}
