//! [`TracedProcess`]: every thread of a process seized and stopped with
//! ptrace, and detached again on every path, errors and signals included.
//!
//! Attaching seizes each thread listed in `/proc/PID/task` and interrupts
//! it, then lists the threads again, until a listing shows no new thread:
//! once every listed thread is stopped, none can create another.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::error::PtraceError;
use super::sys::{self, WaitStatus};

/// How long dropping the guard waits for a seized thread that has not
/// reported its stop yet, before it gives up detaching it. The kernel
/// detaches it anyway when this process exits.
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// Listing rounds after which attaching gives up, so that a process that
/// creates and ends threads faster than they are seized cannot keep the
/// capture looping.
const MAX_LISTING_ROUNDS: usize = 1000;

/// One thread of a traced process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedThread {
    /// Linux thread id.
    pub tid: i32,
    /// Whether the thread reported its ptrace stop; only a stopped thread
    /// can be read and detached.
    stopped: bool,
    /// Signal to deliver on detach: a thread that stopped for a signal
    /// (a signal-delivery stop) would otherwise lose it.
    pending_signal: i32,
}

/// A process whose threads this thread seized. Dropping it detaches every
/// thread unless [`TracedProcess::detach`] already did.
pub struct TracedProcess {
    pid: i32,
    threads: Vec<TracedThread>,
    stopped_at: Instant,
}

/// Returns an error when the cancel flag contains a signal number.
pub fn check_cancel(cancel: Option<&Arc<AtomicUsize>>) -> Result<(), PtraceError> {
    match cancel.map(|flag| flag.load(Ordering::Relaxed)) {
        Some(signal) if signal != 0 => Err(PtraceError::Interrupted { signal: signal as i32 }),
        _ => Ok(()),
    }
}

/// Returns the thread ids in `/proc/PID/task`.
pub fn list_threads(pid: i32) -> Result<BTreeSet<i32>, PtraceError> {
    let path = PathBuf::from(format!("/proc/{pid}/task"));
    let entries = std::fs::read_dir(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            PtraceError::ProcessExited { pid }
        } else {
            PtraceError::Proc { path: path.clone(), source }
        }
    })?;
    let mut tids = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|source| PtraceError::Proc { path: path.clone(), source })?;
        if let Some(tid) = entry.file_name().to_str().and_then(|name| name.parse().ok()) {
            tids.insert(tid);
        }
    }
    Ok(tids)
}

/// Returns whether thread `tid` of `pid` is a zombie (state `Z`), as the
/// thread group leader is after it calls `pthread_exit` while other
/// threads run. ptrace rejects zombies with EPERM.
fn is_zombie(pid: i32, tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself contain parentheses and spaces.
    stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next()) == Some('Z')
}

/// Bit of `CAP_SYS_PTRACE` in the capability sets of `/proc/PID/status`.
const CAP_SYS_PTRACE_BIT: u32 = 19;

/// Returns the value of `field` in `/proc/PID/status` (`TracerPid`,
/// `Uid`), or `None` when the file or field cannot be read.
fn status_field(pid: &str, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':').map(|value| value.trim().to_owned()))
}

/// Returns why the kernel denied `PTRACE_SEIZE` on process `pid`, from
/// the rules of `ptrace(2)` that can be checked from here: another tracer,
/// a different user without CAP_SYS_PTRACE, and the Yama scope.
fn attach_denied_reason(pid: i32) -> String {
    let target = pid.to_string();
    if let Some(tracer) = status_field(&target, "TracerPid").filter(|tracer| tracer != "0") {
        let name = std::fs::read_to_string(format!("/proc/{tracer}/comm")).unwrap_or_default();
        return format!("process {tracer} ({}) already traces it", name.trim());
    }
    let has_cap_sys_ptrace = status_field("self", "CapEff")
        .and_then(|mask| u64::from_str_radix(&mask, 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_SYS_PTRACE_BIT) != 0);
    if has_cap_sys_ptrace {
        return "this capture has CAP_SYS_PTRACE, so a security module may forbid it".to_owned();
    }
    // The real user ids: the first of the four on the Uid line.
    let uid = |pid: &str| status_field(pid, "Uid").and_then(|uids| uids.split_whitespace().next().map(str::to_owned));
    if let (Some(theirs), Some(ours)) = (uid(&target), uid("self")) {
        if theirs != ours {
            return format!("it runs as uid {theirs} and this capture as uid {ours}, without CAP_SYS_PTRACE");
        }
    }
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").map(|scope| scope.trim().to_owned()) {
        Ok(scope) if scope == "1" => {
            "kernel.yama.ptrace_scope is 1, which lets a process trace only its descendants without \
             CAP_SYS_PTRACE"
                .to_owned()
        }
        Ok(scope) if scope != "0" => format!("kernel.yama.ptrace_scope is {scope}, which forbids it"),
        _ => "the process may be setuid or not dumpable (prctl PR_SET_DUMPABLE)".to_owned(),
    }
}

impl TracedProcess {
    /// Seizes and stops every thread of process `pid`. A thread that has
    /// not stopped within `timeout` of its interrupt fails the attach.
    /// Every thread seized so far is detached when this returns an error.
    pub fn attach(
        pid: i32,
        timeout: Duration,
        cancel: Option<&Arc<AtomicUsize>>,
    ) -> Result<TracedProcess, PtraceError> {
        let mut process = TracedProcess { pid, threads: Vec::new(), stopped_at: Instant::now() };
        let mut known: BTreeSet<i32> = BTreeSet::new();
        for round in 0.. {
            if round == MAX_LISTING_ROUNDS {
                warn!(pid, rounds = round, "threads keep appearing; capturing the threads stopped so far");
                break;
            }
            check_cancel(cancel)?;
            let listed = list_threads(pid)?;
            let new: Vec<i32> = listed.difference(&known).copied().collect();
            if new.is_empty() {
                break;
            }
            known.extend(&new);
            debug!(pid, round, new = ?new, "seizing threads");
            let seized = process.seize_all(&new)?;
            if round == 0 {
                process.stopped_at = Instant::now();
            }
            for &tid in &seized {
                match sys::interrupt(tid) {
                    // The thread exited since it was seized; the wait below
                    // reports its exit.
                    Ok(()) | Err(sys::Errno(libc::ESRCH)) => {}
                    Err(errno) => return Err(PtraceError::Call { call: "PTRACE_INTERRUPT", tid, errno }),
                }
            }
            for &tid in &seized {
                process.wait_for_stop(tid, timeout, cancel)?;
            }
        }
        if process.threads.is_empty() {
            return Err(PtraceError::ProcessExited { pid });
        }
        info!(pid, threads = process.threads.len(), "process stopped");
        Ok(process)
    }

    /// Seizes each thread in `tids` and returns those it seized. Threads
    /// that exited since the listing, and zombie threads, are left out.
    fn seize_all(&mut self, tids: &[i32]) -> Result<Vec<i32>, PtraceError> {
        let mut seized = Vec::new();
        for &tid in tids {
            match sys::seize(tid) {
                Ok(()) => {
                    self.threads.push(TracedThread { tid, stopped: false, pending_signal: 0 });
                    seized.push(tid);
                }
                Err(errno) if errno.0 == libc::ESRCH => debug!(tid, "thread exited before it was seized"),
                Err(errno) if errno.0 == libc::EPERM && is_zombie(self.pid, tid) => {
                    info!(tid, "skipping a zombie thread, which has no registers left to read");
                }
                Err(errno) => {
                    let reason = attach_denied_reason(self.pid);
                    return Err(PtraceError::AttachDenied { pid: self.pid, tid, errno, reason });
                }
            }
        }
        Ok(seized)
    }

    /// Waits until seized thread `tid` reports a ptrace stop, polling so
    /// that a timeout and a signal to this process end the wait. A thread
    /// that exits instead is removed from the list.
    fn wait_for_stop(
        &mut self,
        tid: i32,
        timeout: Duration,
        cancel: Option<&Arc<AtomicUsize>>,
    ) -> Result<(), PtraceError> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_micros(50);
        loop {
            let status = match sys::wait(tid) {
                // ECHILD: the thread is no longer this process's tracee,
                // because it exited and was reaped.
                Err(sys::Errno(libc::ECHILD)) => WaitStatus::Gone,
                Err(errno) => return Err(PtraceError::Call { call: "waitpid", tid, errno }),
                Ok(status) => status,
            };
            match status {
                WaitStatus::Running => {}
                WaitStatus::Stopped { signal, event } => {
                    let thread = self.thread_mut(tid).expect("waited-for threads are in the list");
                    thread.stopped = true;
                    // PTRACE_EVENT_STOP: the interrupt, or a group stop
                    // (SIGSTOP) the thread stays in after the detach.
                    // Event 0: the thread stopped to receive `signal`.
                    if event == 0 {
                        debug!(tid, signal, "thread stopped with a pending signal, delivered on detach");
                        thread.pending_signal = signal;
                    } else if event != libc::PTRACE_EVENT_STOP {
                        debug!(tid, signal, event, "thread stopped at an unexpected ptrace event");
                    }
                    return Ok(());
                }
                WaitStatus::Gone => {
                    debug!(tid, "thread exited before it stopped");
                    self.threads.retain(|thread| thread.tid != tid);
                    return Ok(());
                }
            }
            check_cancel(cancel)?;
            if Instant::now() >= deadline {
                return Err(PtraceError::StopTimedOut { tid, timeout_ms: timeout.as_millis() as u64 });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(5));
        }
    }

    fn thread_mut(&mut self, tid: i32) -> Option<&mut TracedThread> {
        self.threads.iter_mut().find(|thread| thread.tid == tid)
    }

    /// Returns the process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Returns the thread ids, thread group leader first, then the others
    /// in ascending order.
    pub fn thread_ids(&self) -> Vec<i32> {
        let mut tids: Vec<i32> = self.threads.iter().map(|thread| thread.tid).collect();
        tids.sort_by_key(|&tid| (tid != self.pid, tid));
        tids
    }

    /// Returns when the first threads were stopped.
    pub fn stopped_at(&self) -> Instant {
        self.stopped_at
    }

    /// Detaches every thread and lets the process run. With
    /// `leave_stopped`, sends the process SIGSTOP first, so that it stays
    /// in a group stop that `kill -CONT` ends. Returns the first error
    /// after trying every thread.
    pub fn detach(mut self, leave_stopped: bool) -> Result<(), PtraceError> {
        if leave_stopped {
            sys::kill(self.pid, libc::SIGSTOP).map_err(|errno| PtraceError::Call {
                call: "kill(SIGSTOP)",
                tid: self.pid,
                errno,
            })?;
            info!(pid = self.pid, "leaving the process stopped; `kill -CONT {}` resumes it", self.pid);
        }
        self.detach_all()
    }

    fn detach_all(&mut self) -> Result<(), PtraceError> {
        let mut first_error = None;
        for thread in std::mem::take(&mut self.threads) {
            if let Err(error) = detach_thread(&thread) {
                warn!(tid = thread.tid, %error, "cannot detach thread");
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => {
                debug!(pid = self.pid, "detached");
                Ok(())
            }
        }
    }
}

/// Detaches one thread. A thread that was seized but has not reported its
/// stop gets a short wait first, because ptrace detaches only stopped
/// threads. ESRCH means the thread is gone.
fn detach_thread(thread: &TracedThread) -> Result<(), PtraceError> {
    let tid = thread.tid;
    if !thread.stopped && !wait_briefly(tid) {
        return Ok(());
    }
    match sys::detach(tid, thread.pending_signal) {
        Ok(()) => Ok(()),
        Err(errno) if errno.0 == libc::ESRCH => {
            debug!(tid, "thread exited before the detach");
            Ok(())
        }
        Err(errno) => Err(PtraceError::Call { call: "PTRACE_DETACH", tid, errno }),
    }
}

/// Waits up to [`DROP_STOP_TIMEOUT`] for a seized thread's stop, and
/// returns whether it stopped.
fn wait_briefly(tid: i32) -> bool {
    let deadline = Instant::now() + DROP_STOP_TIMEOUT;
    while Instant::now() < deadline {
        match sys::wait(tid) {
            Ok(WaitStatus::Stopped { .. }) => return true,
            Ok(WaitStatus::Running) => std::thread::sleep(Duration::from_millis(1)),
            Ok(WaitStatus::Gone) | Err(_) => return false,
        }
    }
    warn!(tid, "thread did not stop; the kernel detaches it when stardump-capture exits");
    false
}

impl Drop for TracedProcess {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        match self.detach_all() {
            Ok(()) => info!(pid = self.pid, "process detached"),
            Err(error) => warn!(pid = self.pid, %error, "cannot detach every thread of the process"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_flag_interrupts() {
        let flag = Arc::new(AtomicUsize::new(0));
        assert!(check_cancel(Some(&flag)).is_ok());
        flag.store(15, Ordering::Relaxed);
        assert!(matches!(check_cancel(Some(&flag)), Err(PtraceError::Interrupted { signal: 15 })));
        assert!(check_cancel(None).is_ok());
    }

    #[test]
    fn own_threads_are_listed() {
        let tids = list_threads(std::process::id() as i32).unwrap();
        assert!(tids.contains(&(std::process::id() as i32)));
    }

    #[test]
    fn signal_stop_is_delivered_on_detach() {
        use std::os::unix::process::ExitStatusExt as _;

        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let mut process = TracedProcess { pid, threads: Vec::new(), stopped_at: Instant::now() };
        assert_eq!(process.seize_all(&[pid]).unwrap(), [pid]);
        // A seized thread stops for every signal it receives (a
        // signal-delivery stop), before the interrupt.
        sys::kill(pid, libc::SIGUSR1).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        sys::interrupt(pid).unwrap();
        process.wait_for_stop(pid, Duration::from_secs(10), None).unwrap();
        assert_eq!(process.threads[0].pending_signal, libc::SIGUSR1);

        // Detaching delivers SIGUSR1, whose default action ends `sleep`.
        process.detach(false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("sleep still runs: the detach lost SIGUSR1");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status}");
    }
}
