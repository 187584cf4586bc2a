//! Safe wrappers over the system calls of a ptrace capture: `ptrace(2)`
//! (seize, interrupt, get registers, detach), `waitpid(2)`, `kill(2)` and
//! `process_vm_readv(2)`. Each returns the errno of a failed call; the
//! caller adds the call's name and the thread id.
//!
//! ptrace binds a tracee to the tracing *thread*, so every call on a tracee
//! must come from the thread that seized it.

use std::fmt;

/// An errno value, printed as its text and number (`No such process (os
/// error 3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// Returns the calling thread's errno.
    fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

/// Turns the return value of a call that returns -1 on failure into a result.
fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Attaches to thread `tid` with `PTRACE_SEIZE`, without stopping it.
///
/// Unlike `PTRACE_ATTACH`, seizing sends no SIGSTOP, and the kernel resumes
/// a seized thread when its tracer exits, even when the tracer is killed.
pub fn seize(tid: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_SEIZE reads no memory: addr must be 0 and data contains
    // the option flags, none here.
    let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, std::ptr::null_mut::<libc::c_void>(), 0usize) };
    check(rc).map(drop)
}

/// Asks seized thread `tid` to stop (`PTRACE_INTERRUPT`); [`wait`] reports
/// the stop.
pub fn interrupt(tid: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_INTERRUPT ignores addr and data.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_INTERRUPT,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    check(rc).map(drop)
}

/// Returns the general registers of stopped thread `tid`, fs_base and
/// gs_base included (`PTRACE_GETREGS`).
pub fn get_registers(tid: i32) -> Result<libc::user_regs_struct, Errno> {
    // SAFETY: user_regs_struct is plain integers, so all zeroes is a valid value.
    let mut registers: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes exactly one user_regs_struct to data,
    // which points to one that lives until the call returns.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut registers as *mut libc::user_regs_struct as *mut libc::c_void,
        )
    };
    check(rc).map(|_| registers)
}

/// Detaches from stopped thread `tid` and resumes it, delivering `signal`
/// (0 for none).
pub fn detach(tid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: PTRACE_DETACH ignores addr and takes the signal number as data.
    let rc = unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, std::ptr::null_mut::<libc::c_void>(), signal as usize) };
    check(rc).map(drop)
}

/// A state change of one thread, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    /// The thread has not changed state.
    Running,
    /// The thread is in a ptrace stop. `event` is the `PTRACE_EVENT_*`
    /// value (`PTRACE_EVENT_STOP` for a stop that `PTRACE_INTERRUPT` or a
    /// group stop caused, 0 for a signal-delivery stop) and `signal` the
    /// stop signal.
    Stopped {
        /// The stop signal (`WSTOPSIG`).
        signal: i32,
        /// The ptrace event (`status >> 16`).
        event: i32,
    },
    /// The thread exited, or a signal killed it.
    Gone,
}

/// Reports a state change of traced thread `tid` without blocking
/// (`waitpid(tid, WNOHANG | __WALL)`).
pub fn wait(tid: i32) -> Result<WaitStatus, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes one int to status, which lives until it returns.
    let rc = unsafe { libc::waitpid(tid, &mut status, libc::WNOHANG | libc::__WALL) };
    check(rc.into())?;
    if rc == 0 {
        return Ok(WaitStatus::Running);
    }
    if libc::WIFSTOPPED(status) {
        return Ok(WaitStatus::Stopped { signal: libc::WSTOPSIG(status), event: (status >> 16) & 0xff });
    }
    Ok(WaitStatus::Gone)
}

/// Sends `signal` to process `pid` (`kill(2)`).
pub fn kill(pid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: kill takes no pointers.
    let rc = unsafe { libc::kill(pid, signal) };
    check(rc.into()).map(drop)
}

/// Copies `buf.len()` bytes at `address` in process `pid` into `buf` with
/// `process_vm_readv(2)` and returns how many bytes it copied: fewer than
/// requested when the range reaches an unreadable page.
pub fn read_process_memory(pid: i32, address: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: address as usize as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the local iovec covers exactly `buf`, which lives until the
    // call returns; the kernel checks the remote range in the other process.
    let rc = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    check(rc as libc::c_long).map(|copied| copied as usize)
}
