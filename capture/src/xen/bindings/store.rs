//! [`XenStore`]: a connection to xenstored, used to read domain names.

use std::ffi::{c_uint, CString};
use std::ptr::NonNull;

use super::{xs_close, xs_open, xs_read, XsHandle};
use crate::xen::error::{Errno, XenError};

/// `XBT_NULL`: no transaction.
const XBT_NULL: u32 = 0;

/// An open xenstore connection (`struct xs_handle *`), closed on drop.
pub struct XenStore {
    handle: NonNull<XsHandle>,
}

impl XenStore {
    /// Connects to xenstored (its socket, or /dev/xen/xenbus).
    pub fn open() -> Result<XenStore, XenError> {
        // SAFETY: flags 0 opens a read-write connection; no other
        // preconditions.
        let handle = unsafe { xs_open(0) };
        NonNull::new(handle)
            .map(|handle| XenStore { handle })
            .ok_or_else(|| XenError::Call { call: "xs_open", errno: Errno::last() })
    }

    /// Reads the value at `path`, or `None` when the path does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, XenError> {
        let Ok(c_path) = CString::new(path) else {
            return Ok(None);
        };
        let mut len: c_uint = 0;
        // SAFETY: `c_path` is NUL-terminated and `len` a valid out pointer.
        let value = unsafe { xs_read(self.handle.as_ptr(), XBT_NULL, c_path.as_ptr(), &mut len) };
        if value.is_null() {
            let errno = Errno::last();
            if errno.0 == libc::ENOENT {
                return Ok(None);
            }
            return Err(XenError::Call { call: "xs_read", errno });
        }
        // SAFETY: xs_read returns a malloc'ed buffer of `len` bytes (plus a
        // NUL), which is copied and then freed once.
        let bytes = unsafe {
            let bytes = std::slice::from_raw_parts(value.cast::<u8>(), len as usize).to_vec();
            libc::free(value);
            bytes
        };
        Ok(Some(bytes))
    }
}

impl Drop for XenStore {
    fn drop(&mut self) {
        // SAFETY: the handle came from xs_open and is closed once.
        unsafe { xs_close(self.handle.as_ptr()) }
    }
}
