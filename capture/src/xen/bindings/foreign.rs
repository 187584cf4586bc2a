//! [`ForeignMemory`]: an open libxenforeignmemory handle, and
//! [`ForeignMapping`]: a batch of another domain's frames mapped read-only
//! into this process.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use super::{
    xenforeignmemory_close, xenforeignmemory_map, xenforeignmemory_open, xenforeignmemory_unmap,
    XenForeignMemoryHandle, XenPfn,
};
use crate::xen::error::{Errno, XenError};

const PAGE_BYTES: usize = 4096;

/// An open libxenforeignmemory handle, closed on drop.
pub struct ForeignMemory {
    handle: NonNull<XenForeignMemoryHandle>,
}

impl ForeignMemory {
    /// Opens the handle (/dev/xen/privcmd).
    pub fn open() -> Result<ForeignMemory, XenError> {
        // SAFETY: a null logger makes the library log to stderr.
        let handle = unsafe { xenforeignmemory_open(std::ptr::null_mut(), 0) };
        NonNull::new(handle)
            .map(|handle| ForeignMemory { handle })
            .ok_or_else(|| XenError::Unavailable { call: "xenforeignmemory_open", errno: Errno::last() })
    }

    /// Maps `frames` of domain `domid` read-only, one page each, in order.
    ///
    /// The frames are guest frame numbers for an HVM or PVH domain and
    /// machine frame numbers for a PV domain. A frame that cannot be mapped
    /// does not fail the call: [`ForeignMapping::copy_page`] reports it.
    pub fn map(&self, domid: u32, frames: &[u64]) -> Result<ForeignMapping<'_>, XenError> {
        let mut errors: Vec<c_int> = vec![0; frames.len()];
        if frames.is_empty() {
            return Ok(ForeignMapping { memory: self, address: None, errors });
        }
        // SAFETY: `frames` and `errors` both hold `frames.len()` elements;
        // xen_pfn_t is u64 on x86_64. The result is checked for null.
        let address = unsafe {
            xenforeignmemory_map(
                self.handle.as_ptr(),
                domid,
                libc::PROT_READ,
                frames.len(),
                frames.as_ptr() as *const XenPfn,
                errors.as_mut_ptr(),
            )
        };
        let address = NonNull::new(address)
            .ok_or_else(|| XenError::DomainCall { call: "xenforeignmemory_map", domid, errno: Errno::last() })?;
        Ok(ForeignMapping { memory: self, address: Some(address), errors })
    }
}

impl Drop for ForeignMemory {
    fn drop(&mut self) {
        // SAFETY: the handle came from xenforeignmemory_open and every
        // mapping borrowed it, so all were unmapped before this runs.
        unsafe {
            xenforeignmemory_close(self.handle.as_ptr());
        }
    }
}

/// Frames of another domain mapped read-only, unmapped on drop.
pub struct ForeignMapping<'a> {
    memory: &'a ForeignMemory,
    address: Option<NonNull<c_void>>,
    errors: Vec<c_int>,
}

impl ForeignMapping<'_> {
    /// Returns the number of frames requested.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Returns whether no frame was requested.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Copies page `index` into `out` (4096 bytes) and returns `Ok(())`,
    /// or returns the errno with which Xen refused to map that frame.
    pub fn copy_page(&self, index: usize, out: &mut [u8]) -> Result<(), Errno> {
        assert_eq!(out.len(), PAGE_BYTES, "copy_page copies whole pages");
        let error = *self.errors.get(index).expect("page index inside the mapping");
        if error != 0 {
            // libxenforeignmemory reports per-frame errors as negative or
            // positive errno values depending on the kernel interface.
            return Err(Errno(error.abs()));
        }
        let address = self.address.expect("a mapping of at least one frame");
        // SAFETY: the mapping covers `len()` pages from `address`, and the
        // frame at `index` mapped without error, so its page is readable.
        // Touching a frame that failed would raise SIGBUS, which the check
        // above rules out. The guest may write the page concurrently
        // unless paused, so the bytes are copied, never borrowed.
        unsafe {
            std::ptr::copy_nonoverlapping(
                address.as_ptr().cast::<u8>().add(index * PAGE_BYTES),
                out.as_mut_ptr(),
                PAGE_BYTES,
            );
        }
        Ok(())
    }
}

impl Drop for ForeignMapping<'_> {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            // SAFETY: `address` and the page count come from the
            // xenforeignmemory_map call that created this mapping.
            unsafe {
                xenforeignmemory_unmap(self.memory.handle.as_ptr(), address.as_ptr(), self.errors.len());
            }
        }
    }
}
