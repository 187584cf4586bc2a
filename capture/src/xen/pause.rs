//! [`PausedDomain`]: a pause reference on a domain that is dropped again
//! on every path, errors and signals included.

use std::time::Instant;

use tracing::{info, warn};

use super::bindings::ctrl::XenCtrl;
use super::domain::shutdown_reason;
use super::error::XenError;

/// A domain paused by this process. Dropping it unpauses the domain
/// unless [`PausedDomain::resume`], [`PausedDomain::leave_paused`] or
/// [`PausedDomain::release_for_destroy`] already handed the pause on.
///
/// Xen counts pauses: a domain the user paused before the capture stays
/// paused after it.
pub struct PausedDomain<'a> {
    ctrl: &'a XenCtrl,
    domid: u32,
    /// Whether this guard still holds a pause reference.
    holds_pause: bool,
    paused_at: Instant,
}

impl<'a> PausedDomain<'a> {
    /// Pauses domain `domid`. A shut-down domain (crashed with
    /// `on_crash = "preserve"`, say) no longer runs; if Xen refuses to
    /// pause it, the capture goes on without a pause reference.
    pub fn pause(ctrl: &'a XenCtrl, domid: u32) -> Result<PausedDomain<'a>, XenError> {
        let paused_at = Instant::now();
        let holds_pause = match ctrl.pause(domid) {
            Ok(()) => true,
            Err(error) if is_shut_down(ctrl, domid) => {
                info!(domid, %error, "the domain is shut down and cannot be paused; capturing it as it is");
                false
            }
            Err(error) => return Err(error),
        };
        if holds_pause {
            info!(domid, "domain paused");
        }
        Ok(PausedDomain { ctrl, domid, holds_pause, paused_at })
    }

    /// Returns when the domain was paused.
    pub fn paused_at(&self) -> Instant {
        self.paused_at
    }

    /// Drops the pause reference. EINVAL from a shut-down domain is not an
    /// error: Xen refuses to unpause a crashed domain, which never runs
    /// again anyway.
    pub fn resume(mut self) -> Result<(), XenError> {
        self.unpause()
    }

    /// Keeps the domain paused after this process exits.
    pub fn leave_paused(mut self) {
        if self.holds_pause {
            info!(domid = self.domid, "leaving the domain paused; `xl unpause` resumes it");
        }
        self.holds_pause = false;
    }

    /// Gives the pause reference up without unpausing, before the domain
    /// is destroyed.
    pub fn release_for_destroy(mut self) {
        self.holds_pause = false;
    }

    fn unpause(&mut self) -> Result<(), XenError> {
        if !self.holds_pause {
            return Ok(());
        }
        self.holds_pause = false;
        match self.ctrl.unpause(self.domid) {
            Ok(()) => Ok(()),
            Err(XenError::DomainCall { errno, .. }) if errno.0 == libc::EINVAL && is_shut_down(self.ctrl, self.domid) => {
                info!(domid = self.domid, "the domain is shut down; Xen does not unpause it");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

impl Drop for PausedDomain<'_> {
    fn drop(&mut self) {
        if !self.holds_pause {
            return;
        }
        match self.unpause() {
            Ok(()) => info!(domid = self.domid, "domain resumed"),
            Err(error) => warn!(domid = self.domid, %error, "cannot resume the domain; `xl unpause` resumes it"),
        }
    }
}

fn is_shut_down(ctrl: &XenCtrl, domid: u32) -> bool {
    matches!(ctrl.domain_info(domid), Ok(Some(info)) if shutdown_reason(info.flags).is_some())
}
