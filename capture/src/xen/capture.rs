//! The Xen capture flow: find and pause the domain, read every vCPU's
//! context and copy its memory, resume it (or leave it paused, or destroy
//! it), then rewrite, walk, compress and write the snapshot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use stardump_format::{Mapping, Metadata, SnapshotWriter, SourceKind, VcpuState, WriterOptions};
use tracing::{debug, info, info_span, warn};

use super::bindings::ctrl::{M2p, XenCtrl};
use super::bindings::foreign::ForeignMemory;
use super::bindings::light::destroy_domain;
use super::bindings::XenDomctlGetDomainInfo;
use super::context::{
    context_online, missing_vcpu_ids, vcpu_from_hvm_vcpu_context, vcpu_from_pv_context, vcpus_from_hvm_context,
};
use super::domain::{dominf, find_domain, DomainKind};
use super::error::XenError;
use super::frames::FrameMap;
use super::memory::{
    check_cancel, classify_pv_frames, copy_hvm, copy_pv, scan_hvm_frames, scan_owned_frames, CopyReport,
};
use super::pause::PausedDomain;
use crate::capture::CaptureSummary;
use crate::memory::{MemoryBudget, MemoryCopy, PAGE_SIZE};
use crate::walk;

/// `XEN_INVALID_MAX_VCPU_ID`: the domain has no vCPU.
const INVALID_MAX_VCPU_ID: u32 = !0;

/// The action taken on the domain once its memory is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCapture {
    /// Unpause it.
    Resume,
    /// Keep it paused.
    LeavePaused,
    /// Destroy it, as `xl destroy` does.
    Destroy,
}

/// Options of one Xen capture.
#[derive(Debug, Clone)]
pub struct XenCaptureOptions {
    /// The domain: an id or a xenstore name.
    pub domain: String,
    /// The snapshot's final path.
    pub output: PathBuf,
    /// The action taken on the domain after the copy.
    pub after: AfterCapture,
    /// Set to a signal number by the caller's signal handler.
    pub cancel: Option<Arc<AtomicUsize>>,
    /// Compression settings.
    pub writer: WriterOptions,
    /// Bytes of page data held in memory before the rest is spilled to a
    /// file next to the output.
    pub memory_budget: u64,
}

/// Captures the domain `options.domain` into `options.output`.
pub fn capture_domain(options: &XenCaptureOptions) -> Result<CaptureSummary, XenError> {
    let span = info_span!("capture", target = %format_args!("xen:{}", options.domain));
    let _entered = span.enter();
    let started = Instant::now();

    // Create the output before pausing, so an unwritable path costs the
    // guest no pause. Dropping the writer on an error deletes its
    // temporary file.
    let mut writer = SnapshotWriter::create(&options.output, options.writer.clone())?;

    let ctrl = XenCtrl::open()?;
    let foreign = ForeignMemory::open()?;
    let (domid, info) = find_domain(&ctrl, &options.domain)?;
    if domid == 0 {
        return Err(XenError::ControlDomain { domid });
    }
    if info.flags & dominf::DYING != 0 {
        return Err(XenError::Dying { domid });
    }
    let kind = DomainKind::of(&info);
    if kind == DomainKind::Pv {
        let width_bytes = ctrl.guest_width(domid)?;
        if width_bytes != 8 {
            return Err(XenError::UnsupportedGuestWidth { domid, width_bytes });
        }
    }
    let hypervisor_version = match ctrl.version() {
        Ok(version) => Some(version),
        Err(error) => {
            warn!(%error, "cannot read the hypervisor's version");
            None
        }
    };
    info!(domid, kind = kind.name(), tot_pages = info.tot_pages, "capturing");

    // Finding a domain's frames scans the whole host (PV) or the whole
    // guest-physical space (HVM), so it runs before the pause and is
    // checked after it.
    let mut report = CopyReport::default();
    let (m2p, scanned, max_gpfn) = match kind {
        DomainKind::Pv => {
            let scanned = scan_owned_frames(&ctrl, domid, info.tot_pages, &options.cancel)?;
            (Some(ctrl.map_m2p()?), Some(scanned), 0)
        }
        DomainKind::Hvm | DomainKind::Pvh => {
            let max_gpfn = ctrl.maximum_gpfn(domid)?;
            (None, scan_hvm_frames(&ctrl, domid, max_gpfn, &options.cancel, &mut report)?, max_gpfn)
        }
    };

    let paused_unix = SystemTime::now();
    let budget = || MemoryBudget::new(options.memory_budget, &MemoryBudget::directory_of(&options.output));
    let paused = PausedDomain::pause(&ctrl, domid)?;
    let (mut vcpus, copy, frames) = match (kind, &m2p) {
        (DomainKind::Pv, Some(m2p)) => {
            let vcpus = read_pv_vcpus(&ctrl, domid, &info)?;
            let scanned = scanned.unwrap_or_default();
            let (frames, table_levels) = place_pv_frames(&ctrl, m2p, domid, scanned, &options.cancel, &mut report)?;
            let copy = copy_pv(&foreign, domid, &frames, &table_levels, budget(), &options.cancel, &mut report)?;
            (vcpus, copy, Some(frames))
        }
        _ => {
            let vcpus = read_hvm_vcpus(&ctrl, domid, &info)?;
            let copy = match recheck_hvm_frames(&ctrl, domid, max_gpfn, scanned, &options.cancel, &mut report)? {
                HvmFrames::Listed(gfns) => copy_hvm(&foreign, domid, gfns, budget(), &options.cancel, &mut report)?,
                HvmFrames::UpTo(max_gpfn) => {
                    copy_hvm(&foreign, domid, 0..=max_gpfn, budget(), &options.cancel, &mut report)?
                }
            };
            (vcpus, copy, None)
        }
    };

    // The copy is complete: release the domain before compressing. The
    // pause time ends at the unpause, or at the copy's end when the domain
    // stays paused or is destroyed.
    let paused_at = paused.paused_at();
    let pause_time_us = match options.after {
        AfterCapture::Resume => {
            paused.resume()?;
            paused_at.elapsed().as_micros() as u64
        }
        AfterCapture::LeavePaused => {
            paused.leave_paused();
            paused_at.elapsed().as_micros() as u64
        }
        AfterCapture::Destroy => {
            let pause_time_us = paused_at.elapsed().as_micros() as u64;
            paused.release_for_destroy();
            destroy_domain(domid)?;
            info!(domid, "domain destroyed");
            pause_time_us
        }
    };
    info!(pause_ms = pause_time_us / 1000, "domain released");
    log_report(&report);

    if let Some(frames) = &frames {
        translate_pv_cr3(&mut vcpus, frames);
    }
    let tables = walk_copy(&vcpus, &copy);

    check_cancel(&options.cancel)?;
    let metadata = Metadata {
        source_kind: if kind == DomainKind::Pv { SourceKind::XenPv } else { SourceKind::XenHvm },
        target_name: format!("xen:{}", options.domain),
        domain_id: Some(domid),
        hypervisor_version,
        capture_time_unix_us: paused_unix.duration_since(UNIX_EPOCH).map(|since| since.as_micros() as u64).unwrap_or(0),
        pause_time_us,
        ..Metadata::default()
    };
    for vcpu in &vcpus {
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
    Ok(CaptureSummary {
        target: metadata.target_name,
        output: options.output.clone(),
        vcpus: vcpus.len(),
        memory_ranges: report.ranges,
        page_table_roots: tables.len(),
        stored_pages: written.stored_pages,
        zero_pages: written.zero_pages,
        guest_memory_bytes: (data_pages + zero_pages) * PAGE_SIZE,
        file_len_bytes: written.file_len_bytes,
        pause_time_us,
        total_time_us: started.elapsed().as_micros() as u64,
        left_paused: options.after == AfterCapture::LeavePaused,
    })
}

/// Places the frames found by the scan before the pause. When the paused
/// domain owns frames the scan did not see (it ballooned in between),
/// scans the host again while paused.
fn place_pv_frames(
    ctrl: &XenCtrl,
    m2p: &M2p,
    domid: u32,
    scanned: Vec<u64>,
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<(FrameMap, HashMap<u64, u32>), XenError> {
    let tot_pages = ctrl.domain_info(domid)?.ok_or(XenError::MissingDomain { domid })?.tot_pages;
    let (frames, table_levels, owned) = classify_pv_frames(ctrl, m2p, domid, &scanned, cancel, report)?;
    if owned >= tot_pages {
        return Ok((frames, table_levels));
    }
    warn!(found = owned, tot_pages, "the domain's frames changed before the pause; scanning the host again");
    *report = CopyReport::default();
    let rescanned = scan_owned_frames(ctrl, domid, tot_pages, cancel)?;
    let (frames, table_levels, owned) = classify_pv_frames(ctrl, m2p, domid, &rescanned, cancel, report)?;
    if owned < tot_pages {
        warn!(found = owned, tot_pages, "found fewer frames than the domain has");
    }
    Ok((frames, table_levels))
}

/// The guest frames of an HVM or PVH domain to copy.
enum HvmFrames {
    /// The frames Xen reported as present.
    Listed(Vec<u64>),
    /// Every frame up to this one, when Xen reports no page types.
    UpTo(u64),
}

/// Checks the HVM frames scanned before the pause against the paused
/// domain: when its highest frame moved or it has more frames than the
/// scan found (it ballooned in between), scans again while paused.
fn recheck_hvm_frames(
    ctrl: &XenCtrl,
    domid: u32,
    scanned_max_gpfn: u64,
    scanned: Option<Vec<u64>>,
    cancel: &Option<Arc<AtomicUsize>>,
    report: &mut CopyReport,
) -> Result<HvmFrames, XenError> {
    let max_gpfn = ctrl.maximum_gpfn(domid)?;
    let Some(scanned) = scanned else {
        return Ok(HvmFrames::UpTo(max_gpfn));
    };
    let info = ctrl.domain_info(domid)?.ok_or(XenError::MissingDomain { domid })?;
    if max_gpfn == scanned_max_gpfn && scanned.len() as u64 >= info.tot_pages {
        return Ok(HvmFrames::Listed(scanned));
    }
    warn!(
        found = scanned.len(),
        tot_pages = info.tot_pages,
        max_gpfn = format_args!("{max_gpfn:#x}"),
        "the domain's memory changed before the pause; scanning it again"
    );
    report.broken_frames = 0;
    Ok(match scan_hvm_frames(ctrl, domid, max_gpfn, cancel, report)? {
        Some(gfns) => HvmFrames::Listed(gfns),
        None => HvmFrames::UpTo(max_gpfn),
    })
}

/// Reads the context of every initialised vCPU of a 64-bit PV domain.
fn read_pv_vcpus(ctrl: &XenCtrl, domid: u32, info: &XenDomctlGetDomainInfo) -> Result<Vec<VcpuState>, XenError> {
    let mut vcpus = Vec::new();
    if info.max_vcpu_id != INVALID_MAX_VCPU_ID {
        for id in 0..=info.max_vcpu_id {
            let span = info_span!("vcpu", id);
            let _entered = span.enter();
            let bytes = match ctrl.vcpu_context(domid, id) {
                Ok(bytes) => bytes,
                // Xen returns ENODATA for a vCPU that was never brought up.
                Err(XenError::DomainCall { errno, .. }) if errno.0 == libc::ENODATA => {
                    debug!("vCPU not initialised, left out");
                    continue;
                }
                Err(error) => return Err(error),
            };
            match ctrl.vcpu_info(domid, id) {
                Ok(state) => debug!(online = state.online, running = state.running, "vCPU state"),
                Err(error) => debug!(%error, "cannot read the vCPU's scheduling state"),
            }
            let vcpu = vcpu_from_pv_context(id, &bytes).expect("the context buffer has the structure's size");
            debug!(rip = format_args!("{:#x}", vcpu.rip), cr3 = format_args!("{:#x}", vcpu.cr3), "vCPU read");
            vcpus.push(vcpu);
        }
    }
    if vcpus.is_empty() {
        return Err(XenError::MissingVcpus { domid });
    }
    Ok(vcpus)
}

/// Reads the vCPUs of an HVM or PVH domain: the `CPU` records of its save
/// context, then, through `xc_vcpu_getcontext`, every vCPU up to the
/// domain's maximum vCPU id that the save context leaves out because it is
/// down (a guest that ran `cli; hlt`, or a domain shut down with its memory
/// kept). vCPUs that were never initialised are left out.
fn read_hvm_vcpus(ctrl: &XenCtrl, domid: u32, info: &XenDomctlGetDomainInfo) -> Result<Vec<VcpuState>, XenError> {
    let blob = ctrl.hvm_context(domid)?;
    let mut vcpus = vcpus_from_hvm_context(&blob)
        .map_err(|error| XenError::InvalidHvmContext { domid, offset: error.offset, reason: error.reason })?;
    if info.max_vcpu_id != INVALID_MAX_VCPU_ID {
        for id in missing_vcpu_ids(&vcpus, info.max_vcpu_id) {
            if let Some(vcpu) = read_down_hvm_vcpu(ctrl, domid, id)? {
                vcpus.push(vcpu);
            }
        }
        vcpus.sort_by_key(|vcpu| vcpu.id);
    }
    if vcpus.is_empty() {
        return Err(XenError::MissingVcpus { domid });
    }
    Ok(vcpus)
}

/// Reads HVM or PVH vCPU `id`, missing from the save context, with
/// `xc_vcpu_getcontext`. Returns `None` for a vCPU that was never
/// initialised.
fn read_down_hvm_vcpu(ctrl: &XenCtrl, domid: u32, id: u32) -> Result<Option<VcpuState>, XenError> {
    let span = info_span!("vcpu", id);
    let _entered = span.enter();
    let bytes = match ctrl.vcpu_context(domid, id) {
        Ok(bytes) => bytes,
        // Xen returns ENODATA for a vCPU that was never brought up.
        Err(XenError::DomainCall { errno, .. }) if errno.0 == libc::ENODATA => {
            info!("vCPU not initialised, left out");
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let vcpu = vcpu_from_hvm_vcpu_context(id, &bytes).expect("the context buffer has the structure's size");
    let online = context_online(&bytes).unwrap_or(false);
    info!(
        online,
        rip = format_args!("{:#x}", vcpu.rip),
        cr3 = format_args!("{:#x}", vcpu.cr3),
        "vCPU missing from the save context, read with xc_vcpu_getcontext"
    );
    Ok(Some(vcpu))
}

/// Replaces each PV vCPU's machine cr3 with the guest-physical address of
/// the same table. A cr3 outside the domain's frames is cleared, with the
/// control registers marked absent, so no reader walks a machine address
/// as a guest-physical one.
fn translate_pv_cr3(vcpus: &mut [VcpuState], frames: &FrameMap) {
    for vcpu in vcpus {
        match frames.translate_cr3(vcpu.cr3) {
            Some(cr3) => vcpu.cr3 = cr3,
            None => {
                warn!(vcpu = vcpu.id, cr3 = format_args!("{:#x}", vcpu.cr3), "cr3 is not one of the domain's frames");
                vcpu.cr3 = 0;
                vcpu.present.control = false;
            }
        }
    }
}

/// Walks each vCPU's page tables over the copy. A root that cannot be
/// walked is logged and left out: the memory is still worth keeping.
fn walk_copy(vcpus: &[VcpuState], copy: &MemoryCopy) -> Vec<(u64, Vec<Mapping>)> {
    let mut tables = Vec::new();
    for (cr3, _) in walk::page_table_roots(vcpus) {
        let mut read = |address: u64, buf: &mut [u8]| copy.read_physical(address, buf);
        match walk::walk(cr3, &mut read) {
            Ok(mappings) => tables.push((cr3, mappings)),
            Err(error) => warn!(%error, "mapping table left out"),
        }
    }
    tables
}

fn log_report(report: &CopyReport) {
    if report.unmapped_frames > 0 {
        info!(frames = report.unmapped_frames, "frames Xen could not map are not in the snapshot");
    }
    if report.unplaced_frames > 0 {
        warn!(frames = report.unplaced_frames, "machine frames without a unique guest frame in the M2P table are not in the snapshot");
    }
    if report.broken_frames > 0 {
        warn!(frames = report.broken_frames, "broken frames are not in the snapshot");
    }
    let tables = report.page_tables;
    if tables.translated > 0 || tables.foreign > 0 {
        info!(
            translated = tables.translated,
            hypervisor = tables.hypervisor,
            foreign = tables.foreign,
            large_pages = tables.large_pages,
            "page-table entries rewritten to guest frames"
        );
    }
}
