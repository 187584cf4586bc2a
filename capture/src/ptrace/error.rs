//! [`PtraceError`]: why a capture of a Linux process failed.

use std::path::PathBuf;

use stardump_format::WriteError;

use crate::memory::SpillError;

pub use super::sys::Errno;

/// Errors of a ptrace capture. Each names the process or thread, and the
/// system call or `/proc` file involved.
#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    /// No process has this id.
    #[error("process {pid} not found: /proc/{pid} does not exist")]
    ProcessNotFound {
        /// The process id given.
        pid: i32,
    },
    /// The id names a thread that is not a thread group leader.
    #[error("{pid} is a thread of process {tgid}; capture pid:{tgid}")]
    NotProcess {
        /// The id given.
        pid: i32,
        /// The id of its process (`Tgid` in `/proc/PID/status`).
        tgid: i32,
    },
    /// The process has exited and waits for its parent to reap it.
    #[error("process {pid} is a zombie: it has exited and has no threads left to capture")]
    Zombie {
        /// The process id given.
        pid: i32,
    },
    /// The process is this capture's own process, which ptrace cannot trace.
    #[error("process {pid} is stardump-capture itself")]
    OwnProcess {
        /// The process id given.
        pid: i32,
    },
    /// A file under `/proc` could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line of `/proc/PID/maps` is not in the kernel's format.
    #[error("invalid line {line_number} of {path}: {reason}: {line:?}")]
    InvalidMapsLine {
        /// The maps file.
        path: PathBuf,
        /// Line number, from 1.
        line_number: usize,
        /// The line.
        line: String,
        /// The problem found.
        reason: String,
    },
    /// `PTRACE_SEIZE` was denied.
    #[error("cannot attach to thread {tid} of process {pid}: PTRACE_SEIZE failed: {errno}: {reason}")]
    AttachDenied {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The errno PTRACE_SEIZE left.
        errno: Errno,
        /// The likely cause, from the process's status and the Yama scope.
        reason: String,
    },
    /// A system call on one thread failed.
    #[error("{call} on thread {tid} failed: {errno}")]
    Call {
        /// The call (`PTRACE_INTERRUPT`, `PTRACE_GETREGS`, `waitpid`).
        call: &'static str,
        /// The thread.
        tid: i32,
        /// The errno it left.
        errno: Errno,
    },
    /// A thread did not stop in time after `PTRACE_INTERRUPT`, for example
    /// because it waits in uninterruptible sleep (state D).
    #[error("thread {tid} did not stop within {timeout_ms} ms of PTRACE_INTERRUPT; raise --timeout")]
    StopTimedOut {
        /// The thread.
        tid: i32,
        /// How long the capture waited, in milliseconds.
        timeout_ms: u64,
    },
    /// Every thread of the process exited before the capture could stop it.
    #[error("process {pid} exited during the capture")]
    ProcessExited {
        /// The process.
        pid: i32,
    },
    /// The snapshot could not be written.
    #[error("writing the snapshot: {0}")]
    Write(#[from] WriteError),
    /// Pages past the memory budget could not be spilled.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// A signal stopped the capture.
    #[error("interrupted by {}", crate::gdb::error::signal_name(*.signal))]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}
