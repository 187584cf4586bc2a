//! [`destroy_domain`]: destroys a domain the way `xl destroy` does, through
//! libxenlight, so the toolstack's xenstore entries and backends go too.

use std::ffi::c_int;

use super::{
    libxl_ctx_alloc, libxl_ctx_free, libxl_domain_destroy, xtl_createlogger_stdiostream, xtl_logger_destroy,
    LibxlCtx,
};
use crate::xen::error::{Errno, XenError};

/// `LIBXL_VERSION` in libxl.h.
const LIBXL_VERSION: c_int = 0;
/// `XTL_ERROR` in xentoollog.h: log errors and worse.
const XTL_ERROR: c_int = 8;

/// Destroys domain `domid` and waits until it is gone.
pub fn destroy_domain(domid: u32) -> Result<(), XenError> {
    // libxl logs through a xentoollog logger; give it a stdio stream on a
    // duplicate of stderr, closed again below.
    // SAFETY: dup and fdopen on the process's own stderr; the results are
    // checked.
    let stream = unsafe {
        let fd = libc::dup(2);
        if fd < 0 {
            return Err(XenError::Call { call: "dup", errno: Errno::last() });
        }
        let stream = libc::fdopen(fd, c"w".as_ptr());
        if stream.is_null() {
            let errno = Errno::last();
            libc::close(fd);
            return Err(XenError::Call { call: "fdopen", errno });
        }
        stream
    };
    // SAFETY: `stream` is an open FILE; a null result is checked.
    let logger = unsafe { xtl_createlogger_stdiostream(stream, XTL_ERROR, 0) };
    if logger.is_null() {
        // SAFETY: `stream` is open and not used again.
        unsafe { libc::fclose(stream) };
        return Err(XenError::Call { call: "xtl_createlogger_stdiostream", errno: Errno::last() });
    }

    let mut ctx: *mut LibxlCtx = std::ptr::null_mut();
    // SAFETY: `ctx` is a valid out pointer and `logger` a live logger
    // (the stdiostream logger starts with the generic logger structure).
    let result = unsafe { libxl_ctx_alloc(&mut ctx, LIBXL_VERSION, 0, logger) };
    let outcome = if result != 0 || ctx.is_null() {
        Err(XenError::Call { call: "libxl_ctx_alloc", errno: Errno::last() })
    } else {
        // SAFETY: `ctx` is a live context; a null `ao_how` makes the call
        // synchronous.
        let destroyed = unsafe { libxl_domain_destroy(ctx, domid, std::ptr::null()) };
        let outcome = if destroyed == 0 {
            Ok(())
        } else {
            Err(XenError::Libxl { call: "libxl_domain_destroy", domid, code: destroyed })
        };
        // SAFETY: `ctx` is freed once, before the logger it uses.
        unsafe { libxl_ctx_free(ctx) };
        outcome
    };
    // SAFETY: the logger and then the stream are released once, after the
    // context that used them.
    unsafe {
        xtl_logger_destroy(logger);
        libc::fclose(stream);
    }
    outcome
}
