//! Hand-written bindings to the few calls of Xen 4.17's libxenctrl,
//! libxenguest, libxenforeignmemory, libxenstore and libxenlight that a
//! capture needs, and safe handle types over them.
//!
//! Every `unsafe` block of the Xen backend lives under this module. Each
//! handle closes itself on drop, and each failed call becomes a
//! [`XenError`](super::XenError) naming the C function and its errno. The
//! `#[repr(C)]` structures and the byte offsets in [`layout`] are checked
//! against the installed C headers by `capture/tests/xen_layout.rs`.

pub mod ctrl;
pub mod foreign;
pub mod layout;
pub mod light;
pub mod store;

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// `xen_pfn_t` on x86_64: a frame number (`unsigned long`).
pub type XenPfn = c_ulong;

/// `struct xen_arch_domainconfig` (x86, public/arch-x86/xen.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenArchDomainConfig {
    /// `XEN_X86_EMU_*` bits: which devices Xen emulates.
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED` and later flags.
    pub misc_flags: u32,
}

/// `struct xen_domctl_getdomaininfo` (`xc_domaininfo_t`), domctl
/// interface version 0x15 (Xen 4.17).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // The fields keep the header's names.
pub struct XenDomctlGetDomainInfo {
    pub domain: u16,
    pub pad1: u16,
    /// `XEN_DOMINF_*` bits and the shutdown reason in bits 16-23.
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shr_pages: u64,
    pub paged_pages: u64,
    pub shared_info_frame: u64,
    /// Nanoseconds of CPU time used.
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    /// `XEN_INVALID_MAX_VCPU_ID` (all ones) when the domain has no vCPU.
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    pub handle: [u8; 16],
    pub cpupool: u32,
    pub gpaddr_bits: u8,
    pub pad2: [u8; 7],
    pub arch_config: XenArchDomainConfig,
}

/// `struct xen_domctl_getvcpuinfo` (`xc_vcpuinfo_t`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // The fields keep the header's names.
pub struct XenDomctlGetVcpuInfo {
    pub vcpu: u32,
    pub online: u8,
    pub blocked: u8,
    pub running: u8,
    /// Nanoseconds of CPU time used.
    pub cpu_time: u64,
    pub cpu: u32,
}

/// `vcpu_guest_context_any_t` on x86_64: a union whose largest member is
/// the 64-bit `vcpu_guest_context`, which the xen-sys crate provides.
/// capture/tests/xen_layout.rs checks that the two have the same size.
pub type VcpuGuestContextAny = xen_sys::vcpu_guest_context;

#[repr(C)]
pub(crate) struct XcInterface {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct XenForeignMemoryHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct XsHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct LibxlCtx {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct XenToolLogger {
    _opaque: [u8; 0],
}

#[link(name = "xenctrl")]
extern "C" {
    pub(crate) fn xc_interface_open(
        logger: *mut XenToolLogger,
        dombuild_logger: *mut XenToolLogger,
        open_flags: c_uint,
    ) -> *mut XcInterface;
    pub(crate) fn xc_interface_close(xch: *mut XcInterface) -> c_int;
    pub(crate) fn xc_domain_getinfolist(
        xch: *mut XcInterface,
        first_domain: u32,
        max_domains: c_uint,
        info: *mut XenDomctlGetDomainInfo,
    ) -> c_int;
    pub(crate) fn xc_domain_pause(xch: *mut XcInterface, domid: u32) -> c_int;
    pub(crate) fn xc_domain_unpause(xch: *mut XcInterface, domid: u32) -> c_int;
    pub(crate) fn xc_domain_get_guest_width(xch: *mut XcInterface, domid: u32, guest_width: *mut c_uint) -> c_int;
    pub(crate) fn xc_vcpu_getinfo(xch: *mut XcInterface, domid: u32, vcpu: u32, info: *mut XenDomctlGetVcpuInfo) -> c_int;
    pub(crate) fn xc_vcpu_getcontext(xch: *mut XcInterface, domid: u32, vcpu: u32, ctxt: *mut VcpuGuestContextAny) -> c_int;
    pub(crate) fn xc_domain_hvm_getcontext(xch: *mut XcInterface, domid: u32, ctxt_buf: *mut u8, size: u32) -> c_int;
    pub(crate) fn xc_domain_maximum_gpfn(xch: *mut XcInterface, domid: u32, gpfns: *mut XenPfn) -> c_int;
    pub(crate) fn xc_maximum_ram_page(xch: *mut XcInterface, max_mfn: *mut c_ulong) -> c_int;
    pub(crate) fn xc_version(xch: *mut XcInterface, cmd: c_int, arg: *mut c_void) -> c_int;
    /// Declared in Xen's private tools/libs/ctrl/xc_private.h, but
    /// exported by libxenctrl 4.17 (symbol version VERS_4.17.0) because
    /// libxenguest's save code calls it. It runs
    /// `XEN_DOMCTL_getpageframeinfo3` on at most 1024 frames and replaces
    /// each frame number in `arr` with its `XEN_DOMCTL_PFINFO_*` type.
    pub(crate) fn xc_get_pfn_type_batch(xch: *mut XcInterface, dom: u32, num: c_uint, arr: *mut XenPfn) -> c_int;
}

#[link(name = "xenguest")]
extern "C" {
    pub(crate) fn xc_map_m2p(xch: *mut XcInterface, max_mfn: c_ulong, prot: c_int, mfn0: *mut c_ulong) -> *mut XenPfn;
}

#[link(name = "xenforeignmemory")]
extern "C" {
    pub(crate) fn xenforeignmemory_open(logger: *mut XenToolLogger, open_flags: c_uint) -> *mut XenForeignMemoryHandle;
    pub(crate) fn xenforeignmemory_close(fmem: *mut XenForeignMemoryHandle) -> c_int;
    pub(crate) fn xenforeignmemory_map(
        fmem: *mut XenForeignMemoryHandle,
        dom: u32,
        prot: c_int,
        pages: usize,
        arr: *const XenPfn,
        err: *mut c_int,
    ) -> *mut c_void;
    pub(crate) fn xenforeignmemory_unmap(fmem: *mut XenForeignMemoryHandle, addr: *mut c_void, pages: usize) -> c_int;
}

#[link(name = "xenstore")]
extern "C" {
    pub(crate) fn xs_open(flags: c_ulong) -> *mut XsHandle;
    pub(crate) fn xs_close(xsh: *mut XsHandle);
    pub(crate) fn xs_read(h: *mut XsHandle, t: u32, path: *const c_char, len: *mut c_uint) -> *mut c_void;
}

#[link(name = "xentoollog")]
extern "C" {
    pub(crate) fn xtl_createlogger_stdiostream(f: *mut libc::FILE, min_level: c_int, flags: c_uint) -> *mut XenToolLogger;
    pub(crate) fn xtl_logger_destroy(logger: *mut XenToolLogger);
}

#[link(name = "xenlight")]
extern "C" {
    pub(crate) fn libxl_ctx_alloc(pctx: *mut *mut LibxlCtx, version: c_int, flags: c_uint, lg: *mut XenToolLogger) -> c_int;
    pub(crate) fn libxl_ctx_free(ctx: *mut LibxlCtx) -> c_int;
    pub(crate) fn libxl_domain_destroy(ctx: *mut LibxlCtx, domid: u32, ao_how: *const c_void) -> c_int;
}
