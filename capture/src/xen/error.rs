//! [`XenError`]: why a Xen call or a Xen capture failed.

use std::fmt;

use stardump_format::WriteError;

/// An errno value, printed as its text and number (`Invalid argument (os
/// error 22)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// Returns the calling thread's errno.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Errors of the Xen bindings and of a Xen capture.
#[derive(Debug, thiserror::Error)]
pub enum XenError {
    /// A library call that takes no domain failed.
    #[error("{call} failed: {errno}")]
    Call {
        /// The C function that failed.
        call: &'static str,
        /// The errno it left.
        errno: Errno,
    },
    /// A Xen interface could not be opened: this is not dom0, or not root.
    #[error("{call} failed: {errno}; run stardump-capture as root in a Xen dom0 (it needs /dev/xen/privcmd)")]
    Unavailable {
        /// The C function that failed.
        call: &'static str,
        /// The errno it left.
        errno: Errno,
    },
    /// A library call on one domain failed.
    #[error("{call} for domain {domid} failed: {errno}")]
    DomainCall {
        /// The C function that failed.
        call: &'static str,
        /// The domain it was called for.
        domid: u32,
        /// The errno it left.
        errno: Errno,
    },
    /// A libxenlight call failed; libxl returns its own `ERROR_*` codes
    /// (libxl.h), not errno values.
    #[error("{call} for domain {domid} failed with libxl error code {code}")]
    Libxl {
        /// The C function that failed.
        call: &'static str,
        /// The domain it was called for.
        domid: u32,
        /// The negative `ERROR_*` code.
        code: i32,
    },
    /// No domain has this id.
    #[error("no domain with id {domid}")]
    MissingDomain {
        /// The requested id.
        domid: u32,
    },
    /// No domain has this name in xenstore.
    #[error("no domain named {name:?} in xenstore (see `stardump-capture --list`)")]
    MissingName {
        /// The requested name.
        name: String,
    },
    /// The domain is dom0, which runs this process and cannot pause itself.
    #[error("domain {domid} is the control domain that runs stardump-capture and cannot be paused; capture a guest domain")]
    ControlDomain {
        /// The domain.
        domid: u32,
    },
    /// The domain is being destroyed; its memory is going away.
    #[error("domain {domid} is dying and cannot be captured")]
    Dying {
        /// The domain.
        domid: u32,
    },
    /// The domain is a 32-bit PV guest, whose context layout is not handled.
    #[error("domain {domid} is a {width_bytes}-byte PV guest; only 64-bit PV guests are supported")]
    UnsupportedGuestWidth {
        /// The domain.
        domid: u32,
        /// The guest's word size in bytes, as Xen reports it.
        width_bytes: u32,
    },
    /// The domain has no vCPU whose context Xen returned.
    #[error("domain {domid} has no initialised vCPU")]
    MissingVcpus {
        /// The domain.
        domid: u32,
    },
    /// The HVM context blob did not parse.
    #[error("invalid HVM context of domain {domid} at offset {offset:#x}: {reason}")]
    InvalidHvmContext {
        /// The domain.
        domid: u32,
        /// Byte offset in the blob where the problem is.
        offset: usize,
        /// The problem found.
        reason: String,
    },
    /// A value computed from Xen's replies overflowed.
    #[error("domain {domid}: {what} {value:#x} is out of range")]
    OutOfRange {
        /// The domain.
        domid: u32,
        /// Name of the quantity that overflowed.
        what: &'static str,
        /// The value that overflowed.
        value: u64,
    },
    /// The snapshot could not be written.
    #[error("writing the snapshot: {0}")]
    Write(#[from] WriteError),
    /// Pages past the memory budget could not be spilled.
    #[error(transparent)]
    Spill(#[from] crate::memory::SpillError),
    /// A signal stopped the capture.
    #[error("interrupted by {}", crate::gdb::error::signal_name(*.signal))]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}
