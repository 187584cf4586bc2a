//! [`XenCtrl`]: an open libxenctrl interface, and [`M2p`]: Xen's
//! machine-to-physical table mapped read-only.

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::ptr::NonNull;

use super::{
    xc_domain_get_guest_width, xc_domain_getinfolist, xc_domain_hvm_getcontext, xc_domain_maximum_gpfn,
    xc_domain_pause, xc_domain_unpause, xc_get_pfn_type_batch, xc_interface_close, xc_interface_open,
    xc_map_m2p, xc_maximum_ram_page, xc_vcpu_getcontext, xc_vcpu_getinfo, xc_version, VcpuGuestContextAny,
    XcInterface, XenDomctlGetDomainInfo, XenDomctlGetVcpuInfo, XenPfn,
};
use crate::xen::error::{Errno, XenError};

/// `XENVER_version`: returns `major << 16 | minor`.
const XENVER_VERSION: c_int = 0;
/// `XENVER_extraversion`: fills a `char[16]`.
const XENVER_EXTRAVERSION: c_int = 1;
/// Frames per `xc_get_pfn_type_batch` call: `XEN_DOMCTL_getpageframeinfo3`
/// rejects more with E2BIG.
pub const PFN_TYPE_BATCH: usize = 1024;
/// Xen maps the M2P table in chunks of 2 MiB (`M2P_CHUNK_SIZE` in
/// libxenctrl's xc_private.h), so the mapping is the table size rounded
/// up to that.
const M2P_CHUNK_BYTES: u64 = 1 << 21;
/// `INVALID_M2P_ENTRY` and `SHARED_M2P_ENTRY` (public/xen.h): entries
/// that name no guest frame.
const INVALID_M2P_ENTRY: u64 = !0;
const SHARED_M2P_ENTRY: u64 = !0 - 1;

fn domain_error(call: &'static str, domid: u32) -> XenError {
    XenError::DomainCall { call, domid, errno: Errno::last() }
}

/// An open libxenctrl interface (`xc_interface *`), closed on drop.
pub struct XenCtrl {
    handle: NonNull<XcInterface>,
}

impl XenCtrl {
    /// Opens the interface; this needs root in dom0 (/dev/xen/privcmd).
    pub fn open() -> Result<XenCtrl, XenError> {
        // SAFETY: null loggers make libxenctrl log to stderr; the call has
        // no other preconditions.
        let handle = unsafe { xc_interface_open(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        NonNull::new(handle)
            .map(|handle| XenCtrl { handle })
            .ok_or_else(|| XenError::Unavailable { call: "xc_interface_open", errno: Errno::last() })
    }

    fn raw(&self) -> *mut XcInterface {
        self.handle.as_ptr()
    }

    /// Returns the information of up to `max` domains with ids from
    /// `first` up, in id order.
    pub fn domain_info_list(&self, first: u32, max: usize) -> Result<Vec<XenDomctlGetDomainInfo>, XenError> {
        let mut infos = vec![XenDomctlGetDomainInfo::default(); max];
        let max = c_uint::try_from(max).unwrap_or(c_uint::MAX);
        // SAFETY: `infos` has room for `max` entries of the type the
        // function fills.
        let count = unsafe { xc_domain_getinfolist(self.raw(), first, max, infos.as_mut_ptr()) };
        if count < 0 {
            return Err(XenError::Call { call: "xc_domain_getinfolist", errno: Errno::last() });
        }
        infos.truncate(count as usize);
        Ok(infos)
    }

    /// Returns the information of domain `domid`, or `None` when no domain
    /// has that id.
    pub fn domain_info(&self, domid: u32) -> Result<Option<XenDomctlGetDomainInfo>, XenError> {
        let infos = self.domain_info_list(domid, 1)?;
        Ok(infos.into_iter().next().filter(|info| u32::from(info.domain) == domid))
    }

    /// Pauses the domain; Xen counts pauses, so each needs one unpause.
    pub fn pause(&self, domid: u32) -> Result<(), XenError> {
        // SAFETY: plain hypercall wrapper on a valid handle.
        match unsafe { xc_domain_pause(self.raw(), domid) } {
            0 => Ok(()),
            _ => Err(domain_error("xc_domain_pause", domid)),
        }
    }

    /// Drops one pause reference of the domain.
    pub fn unpause(&self, domid: u32) -> Result<(), XenError> {
        // SAFETY: plain hypercall wrapper on a valid handle.
        match unsafe { xc_domain_unpause(self.raw(), domid) } {
            0 => Ok(()),
            _ => Err(domain_error("xc_domain_unpause", domid)),
        }
    }

    /// Returns the guest's word size in bytes (8 for 64-bit guests).
    pub fn guest_width(&self, domid: u32) -> Result<u32, XenError> {
        let mut width: c_uint = 0;
        // SAFETY: `width` is a valid out pointer.
        match unsafe { xc_domain_get_guest_width(self.raw(), domid, &mut width) } {
            0 => Ok(width),
            _ => Err(domain_error("xc_domain_get_guest_width", domid)),
        }
    }

    /// Returns the scheduling state of one vCPU.
    pub fn vcpu_info(&self, domid: u32, vcpu: u32) -> Result<XenDomctlGetVcpuInfo, XenError> {
        let mut info = XenDomctlGetVcpuInfo::default();
        // SAFETY: `info` is a valid out pointer of the type the call fills.
        match unsafe { xc_vcpu_getinfo(self.raw(), domid, vcpu, &mut info) } {
            0 => Ok(info),
            _ => Err(domain_error("xc_vcpu_getinfo", domid)),
        }
    }

    /// Returns the raw bytes of one vCPU's `vcpu_guest_context`, which
    /// stardump_format's `xen_context` converts. Xen fails with ENODATA for
    /// a vCPU that was never initialised.
    pub fn vcpu_context(&self, domid: u32, vcpu: u32) -> Result<Vec<u8>, XenError> {
        let size = std::mem::size_of::<VcpuGuestContextAny>();
        let mut context = Box::new(std::mem::MaybeUninit::<VcpuGuestContextAny>::zeroed());
        // SAFETY: `context` is an aligned, zeroed `vcpu_guest_context_any_t`
        // (same size, checked by the layout test), the most the call writes.
        if unsafe { xc_vcpu_getcontext(self.raw(), domid, vcpu, context.as_mut_ptr()) } != 0 {
            return Err(domain_error("xc_vcpu_getcontext", domid));
        }
        // SAFETY: the structure holds only integers, so all `size` bytes are
        // initialised (zeroed, then written by the call) and any value is valid.
        let bytes = unsafe { std::slice::from_raw_parts(context.as_ptr().cast::<u8>(), size) };
        Ok(bytes.to_vec())
    }

    /// Returns the domain's HVM context: a sequence of save records.
    pub fn hvm_context(&self, domid: u32) -> Result<Vec<u8>, XenError> {
        // SAFETY: with a null buffer the call returns the size and writes nothing.
        let size = unsafe { xc_domain_hvm_getcontext(self.raw(), domid, std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(domain_error("xc_domain_hvm_getcontext", domid));
        }
        let mut buffer = vec![0u8; size as usize];
        // SAFETY: `buffer` has `size` bytes, the size passed.
        let written = unsafe { xc_domain_hvm_getcontext(self.raw(), domid, buffer.as_mut_ptr(), size as u32) };
        if written < 0 {
            return Err(domain_error("xc_domain_hvm_getcontext", domid));
        }
        buffer.truncate(written as usize);
        Ok(buffer)
    }

    /// Returns the highest guest frame number the domain's P2M maps (HVM),
    /// or the guest-published `arch.max_pfn` minus one (PV).
    pub fn maximum_gpfn(&self, domid: u32) -> Result<u64, XenError> {
        let mut gpfn: XenPfn = 0;
        // SAFETY: `gpfn` is a valid out pointer.
        match unsafe { xc_domain_maximum_gpfn(self.raw(), domid, &mut gpfn) } {
            0 => Ok(gpfn),
            _ => Err(domain_error("xc_domain_maximum_gpfn", domid)),
        }
    }

    /// Returns the host's `max_page`: one more than its highest machine
    /// frame number.
    pub fn maximum_ram_page(&self) -> Result<u64, XenError> {
        let mut max_mfn: c_ulong = 0;
        // SAFETY: `max_mfn` is a valid out pointer.
        match unsafe { xc_maximum_ram_page(self.raw(), &mut max_mfn) } {
            0 => Ok(max_mfn),
            _ => Err(XenError::Call { call: "xc_maximum_ram_page", errno: Errno::last() }),
        }
    }

    /// Replaces each frame number in `frames` (at most [`PFN_TYPE_BATCH`])
    /// with its `XEN_DOMCTL_PFINFO_*` type for domain `domid`. A frame the
    /// domain does not own gets `XEN_DOMCTL_PFINFO_XTAB`.
    pub fn frame_types(&self, domid: u32, frames: &mut [u64]) -> Result<(), XenError> {
        assert!(frames.len() <= PFN_TYPE_BATCH, "at most {PFN_TYPE_BATCH} frames per call");
        // SAFETY: `frames` contains `frames.len()` xen_pfn_t values (u64 on
        // x86_64) that the call reads and overwrites in place.
        match unsafe { xc_get_pfn_type_batch(self.raw(), domid, frames.len() as c_uint, frames.as_mut_ptr()) } {
            0 => Ok(()),
            _ => Err(domain_error("xc_get_pfn_type_batch", domid)),
        }
    }

    /// Returns the hypervisor's version, such as `4.17.5-pre`.
    pub fn version(&self) -> Result<String, XenError> {
        // SAFETY: XENVER_version takes no argument.
        let version = unsafe { xc_version(self.raw(), XENVER_VERSION, std::ptr::null_mut()) };
        if version < 0 {
            return Err(XenError::Call { call: "xc_version", errno: Errno::last() });
        }
        let mut extra = [0u8; 16];
        // SAFETY: XENVER_extraversion fills a char[16], the size of `extra`.
        let result = unsafe { xc_version(self.raw(), XENVER_EXTRAVERSION, extra.as_mut_ptr().cast::<c_void>()) };
        if result < 0 {
            return Err(XenError::Call { call: "xc_version", errno: Errno::last() });
        }
        let extra_len = extra.iter().position(|&b| b == 0).unwrap_or(extra.len());
        Ok(format!(
            "{}.{}{}",
            version >> 16,
            version & 0xffff,
            String::from_utf8_lossy(&extra[..extra_len])
        ))
    }

    /// Maps Xen's machine-to-physical table read-only.
    pub fn map_m2p(&self) -> Result<M2p, XenError> {
        let max_mfn = self.maximum_ram_page()?;
        // The same size as libxenctrl's M2P_SIZE(max_mfn), so that the
        // munmap in `Drop` covers exactly what xc_map_m2p mapped.
        let size_bytes = max_mfn
            .checked_mul(8)
            .and_then(|bytes| bytes.checked_next_multiple_of(M2P_CHUNK_BYTES))
            .ok_or(XenError::OutOfRange { domid: 0, what: "maximum machine frame", value: max_mfn })?;
        let mut mfn0: c_ulong = 0;
        // SAFETY: `mfn0` is a valid out pointer; the result is checked for
        // null below.
        let table = unsafe { xc_map_m2p(self.raw(), max_mfn, libc::PROT_READ, &mut mfn0) };
        let table = NonNull::new(table).ok_or_else(|| XenError::Call { call: "xc_map_m2p", errno: Errno::last() })?;
        Ok(M2p {
            table,
            size_bytes: size_bytes as usize,
            entries: max_mfn,
        })
    }
}

impl Drop for XenCtrl {
    fn drop(&mut self) {
        // SAFETY: the handle came from xc_interface_open and is closed once.
        unsafe {
            xc_interface_close(self.raw());
        }
    }
}

/// Xen's machine-to-physical table, mapped read-only: entry `mfn` is the
/// guest frame number that the owning guest gave machine frame `mfn`.
pub struct M2p {
    table: NonNull<XenPfn>,
    size_bytes: usize,
    entries: u64,
}

impl M2p {
    /// Returns the guest frame recorded for machine frame `mfn`, or `None`
    /// past the table's end or for an invalid or shared entry.
    pub fn pfn_of(&self, mfn: u64) -> Option<u64> {
        if mfn >= self.entries || mfn >= (self.size_bytes / 8) as u64 {
            return None;
        }
        // SAFETY: `mfn` is inside the mapping (checked above); Xen updates
        // entries concurrently, so the read is volatile and may see either
        // value.
        let pfn = unsafe { std::ptr::read_volatile(self.table.as_ptr().add(mfn as usize)) };
        (pfn != INVALID_M2P_ENTRY && pfn != SHARED_M2P_ENTRY).then_some(pfn)
    }

    /// Returns the number of machine frames the table covers.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Returns whether the table covers no frame.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

impl Drop for M2p {
    fn drop(&mut self) {
        // SAFETY: xc_map_m2p mapped exactly `size_bytes` at `table`
        // (M2P_SIZE in libxenctrl: entries times 8, rounded up to 2 MiB).
        unsafe {
            libc::munmap(self.table.as_ptr().cast(), self.size_bytes);
        }
    }
}
