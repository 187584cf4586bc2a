//! The Xen backend: captures a 64-bit PV, HVM or PVH domain from dom0
//! through libxenctrl and libxenforeignmemory (Xen 4.17), behind the cargo
//! feature `xen`.
//!
//! Flow ([`capture::capture_domain`]): find the domain by id or by its
//! xenstore name, pause it, read every vCPU, copy its memory, release it,
//! then rewrite, walk, compress and write. [`pause::PausedDomain`] unpauses
//! the domain on every error path and after Ctrl-C or SIGTERM (the
//! caller's signal handler sets the cancel flag that the copy loops poll).
//!
//! vCPUs: a PV vCPU comes from `xc_vcpu_getcontext`; its cr3 is a machine
//! address and becomes a guest-physical one through the domain's frame
//! map. An HVM or PVH vCPU comes from the `CPU` record of the domain's
//! save context. Xen writes no record for a vCPU that is down (after
//! `cli; hlt`, or in a domain shut down with its memory kept), so such a
//! vCPU comes from `xc_vcpu_getcontext`. That context carries no EFER, and
//! the capture infers it from cr0 and cr4.
//!
//! Memory of an HVM or PVH domain: every guest frame from 0 up to
//! `xc_domain_maximum_gpfn` that Xen reports as present, mapped 1024
//! frames per call. The page types that find them are read before the
//! pause, and read again while paused when the domain's size changed.
//! Holes and frames Xen cannot map are counted and left out of the
//! snapshot, so a reader reports them as not captured instead of reading
//! zeroes.
//!
//! Memory of a PV domain: stardump does not rely on the P2M list, because
//! a guest that never published it in its shared_info (a small unikernel
//! usually does not) makes `xl dump-core` fail. Instead it requests the
//! page type of every machine frame of the host
//! (`XEN_DOMCTL_getpageframeinfo3`, 1024 frames per call). Xen reports the
//! frames the domain does not own as invalid, so the domain's frames are
//! exactly those with another type. The scan stops once it has found
//! `tot_pages` of them, and it runs before the pause because it costs one
//! hypercall per 4 MiB of host memory. While the domain is paused, Xen
//! reports the current types of the frames found, and a domain that
//! gained frames in between is scanned again. Xen's M2P table gives each
//! frame's guest frame number.
//!
//! The same types show which frames are page tables. The copy rewrites
//! their entries from machine to guest frames (see [`frames`]), so the
//! snapshot's page tables, cr3 values and mapping tables are all
//! guest-physical, like those of an HVM capture.

pub mod bindings;
pub mod capture;
pub mod context;
pub mod domain;
pub mod error;
pub mod frames;
pub mod memory;
pub mod pause;

pub use capture::{capture_domain, AfterCapture, XenCaptureOptions};
pub use domain::{list_domains, DomainEntry, DomainKind};
pub use error::XenError;
