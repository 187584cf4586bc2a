//! The signal that ended a process, from a Linux core's `pr_cursig` and
//! `NT_SIGINFO`, named as gdb names it (`SIGSEGV, Segmentation fault`).
//!
//! The names and descriptions are those gdb 13 prints for Linux x86_64
//! signal numbers; the `si_code` names are those of `<asm-generic/siginfo.h>`
//! and `sigaction(2)`. Written out here because no maintained crate maps
//! raw numbers from a foreign core to these strings without the host's libc.

use std::io::Write;

use serde::Serialize;
use stardump_format::{Core, Target as _};

/// The signal a Linux core records, in the form `info` and `bt` print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalReport {
    /// Linux signal number.
    pub number: u32,
    /// `SIGSEGV`, or `SIG40` for a real-time signal.
    pub name: String,
    /// gdb's description, `Segmentation fault`.
    pub description: String,
    /// Linux thread id of the thread that took the signal.
    pub lwp: Option<u64>,
    /// `si_code`, when the core has `NT_SIGINFO` for this signal.
    pub code: Option<i32>,
    /// The code's name, `SEGV_MAPERR`.
    pub code_name: Option<&'static str>,
    /// The code's meaning, `address not mapped to object`.
    pub code_description: Option<&'static str>,
    /// The faulting address (`si_addr`), for a fault the kernel raised.
    pub fault_address: Option<String>,
    /// The sender's process id, for a signal sent with `kill`, `tgkill`
    /// or `sigqueue`.
    pub sender_pid: Option<u32>,
    /// The sender's real user id, with `sender_pid`.
    pub sender_uid: Option<u32>,
}

impl SignalReport {
    /// Creates the report of signal `number` taken by thread `lwp`, with
    /// nothing from a siginfo yet.
    fn new(number: u32, lwp: Option<u64>) -> SignalReport {
        let (name, description) = name_and_description(number);
        SignalReport {
            number,
            name,
            description,
            lwp,
            code: None,
            code_name: None,
            code_description: None,
            fault_address: None,
            sender_pid: None,
            sender_uid: None,
        }
    }

    /// Returns the label and text of the siginfo's detail, the fault
    /// address or the sender, with the code: `("Fault address", "0x0
    /// (SEGV_MAPERR, address not mapped to object)")`.
    pub fn detail(&self) -> Option<(&'static str, String)> {
        let code = match (self.code_name, self.code_description) {
            (Some(name), Some(description)) => format!(" ({name}, {description})"),
            _ => String::new(),
        };
        if let Some(address) = &self.fault_address {
            return Some(("Fault address", format!("{address}{code}")));
        }
        let (pid, uid) = (self.sender_pid?, self.sender_uid?);
        Some(("Sent by", format!("pid {pid}, uid {uid}{code}")))
    }
}

const SIGILL: u32 = 4;
const SIGTRAP: u32 = 5;
const SIGBUS: u32 = 7;
const SIGFPE: u32 = 8;
const SIGSEGV: u32 = 11;
/// First and last real-time signal numbers of the Linux kernel.
const SIGRTMIN: u32 = 32;
const SIGRTMAX: u32 = 64;

/// Returns the signal that ended the process of a Linux core: the first
/// thread's `pr_cursig`, which the kernel sets in every thread. A gcore
/// of a process stopped at a signal records that signal. `None` for other
/// formats and for a core without a signal (a gcore of a running process).
pub fn report(core: &Core) -> Option<SignalReport> {
    let Core::LinuxCore(linux) = core else { return None };
    let number = u32::from(*linux.thread_signals().first()?);
    if number == 0 {
        return None;
    }
    let mut report = SignalReport::new(number, core.vcpus().first().and_then(|vcpu| vcpu.thread_id));
    // The siginfo describes the same signal only when the numbers agree.
    let Some(info) = linux.signal_info().filter(|info| info.signal == number) else { return Some(report) };
    report.code = Some(info.code);
    if let Some((code_name, code_description)) = code_name(number, info.code) {
        report.code_name = Some(code_name);
        report.code_description = Some(code_description);
    }
    if info.code > 0 && matches!(number, SIGILL | SIGTRAP | SIGBUS | SIGFPE | SIGSEGV) {
        report.fault_address = Some(format!("{:#x}", info.address));
    } else if matches!(info.code, SI_USER | SI_QUEUE | SI_TKILL) {
        report.sender_pid = Some(info.sender_pid);
        report.sender_uid = Some(info.sender_uid);
    }
    Some(report)
}

/// Writes gdb's lines for the signal, `Program terminated with signal
/// SIGSEGV, Segmentation fault.`, and a line with the fault address or
/// the sender when the core records one.
pub fn write_text(report: &SignalReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Program terminated with signal {}, {}.", report.name, report.description)?;
    if let Some((label, text)) = report.detail() {
        writeln!(out, "{label}: {text}.")?;
    }
    Ok(())
}

/// Returns the signal's name and gdb's description of it.
fn name_and_description(number: u32) -> (String, String) {
    let known = match number {
        1 => ("SIGHUP", "Hangup"),
        2 => ("SIGINT", "Interrupt"),
        3 => ("SIGQUIT", "Quit"),
        4 => ("SIGILL", "Illegal instruction"),
        5 => ("SIGTRAP", "Trace/breakpoint trap"),
        6 => ("SIGABRT", "Aborted"),
        7 => ("SIGBUS", "Bus error"),
        8 => ("SIGFPE", "Arithmetic exception"),
        9 => ("SIGKILL", "Killed"),
        10 => ("SIGUSR1", "User defined signal 1"),
        11 => ("SIGSEGV", "Segmentation fault"),
        12 => ("SIGUSR2", "User defined signal 2"),
        13 => ("SIGPIPE", "Broken pipe"),
        14 => ("SIGALRM", "Alarm clock"),
        15 => ("SIGTERM", "Terminated"),
        16 => ("SIGSTKFLT", "Stack fault"),
        17 => ("SIGCHLD", "Child status changed"),
        18 => ("SIGCONT", "Continued"),
        19 => ("SIGSTOP", "Stopped (signal)"),
        20 => ("SIGTSTP", "Stopped (user)"),
        21 => ("SIGTTIN", "Stopped (tty input)"),
        22 => ("SIGTTOU", "Stopped (tty output)"),
        23 => ("SIGURG", "Urgent I/O condition"),
        24 => ("SIGXCPU", "CPU time limit exceeded"),
        25 => ("SIGXFSZ", "File size limit exceeded"),
        26 => ("SIGVTALRM", "Virtual timer expired"),
        27 => ("SIGPROF", "Profiling timer expired"),
        28 => ("SIGWINCH", "Window size changed"),
        29 => ("SIGIO", "I/O possible"),
        30 => ("SIGPWR", "Power fail/restart"),
        31 => ("SIGSYS", "Bad system call"),
        _ => {
            return if (SIGRTMIN..=SIGRTMAX).contains(&number) {
                (format!("SIG{number}"), format!("Real-time event {number}"))
            } else {
                (format!("signal {number}"), "Unknown signal".to_owned())
            };
        }
    };
    (known.0.to_owned(), known.1.to_owned())
}

/// `si_code` values shared by all signals.
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
const SI_QUEUE: i32 = -1;
const SI_TIMER: i32 = -2;
const SI_MESGQ: i32 = -3;
const SI_ASYNCIO: i32 = -4;
const SI_SIGIO: i32 = -5;
const SI_TKILL: i32 = -6;

/// Returns the name and meaning of `code` for signal `number`.
fn code_name(number: u32, code: i32) -> Option<(&'static str, &'static str)> {
    let generic = match code {
        SI_USER => Some(("SI_USER", "sent by kill")),
        SI_KERNEL => Some(("SI_KERNEL", "sent by the kernel")),
        SI_QUEUE => Some(("SI_QUEUE", "sent by sigqueue")),
        SI_TIMER => Some(("SI_TIMER", "POSIX timer expired")),
        SI_MESGQ => Some(("SI_MESGQ", "POSIX message queue state changed")),
        SI_ASYNCIO => Some(("SI_ASYNCIO", "AIO completed")),
        SI_SIGIO => Some(("SI_SIGIO", "queued SIGIO")),
        SI_TKILL => Some(("SI_TKILL", "sent by tkill or tgkill")),
        _ => None,
    };
    if code <= 0 || code == SI_KERNEL {
        return generic;
    }
    match (number, code) {
        (SIGSEGV, 1) => Some(("SEGV_MAPERR", "address not mapped to object")),
        (SIGSEGV, 2) => Some(("SEGV_ACCERR", "invalid permissions for mapped object")),
        (SIGSEGV, 3) => Some(("SEGV_BNDERR", "failed address bound checks")),
        (SIGSEGV, 4) => Some(("SEGV_PKUERR", "access denied by memory protection keys")),
        (SIGBUS, 1) => Some(("BUS_ADRALN", "invalid address alignment")),
        (SIGBUS, 2) => Some(("BUS_ADRERR", "nonexistent physical address")),
        (SIGBUS, 3) => Some(("BUS_OBJERR", "object-specific hardware error")),
        (SIGBUS, 4) => Some(("BUS_MCEERR_AR", "hardware memory error consumed on a machine check")),
        (SIGBUS, 5) => Some(("BUS_MCEERR_AO", "hardware memory error detected in the process")),
        (SIGILL, 1) => Some(("ILL_ILLOPC", "illegal opcode")),
        (SIGILL, 2) => Some(("ILL_ILLOPN", "illegal operand")),
        (SIGILL, 3) => Some(("ILL_ILLADR", "illegal addressing mode")),
        (SIGILL, 4) => Some(("ILL_ILLTRP", "illegal trap")),
        (SIGILL, 5) => Some(("ILL_PRVOPC", "privileged opcode")),
        (SIGILL, 6) => Some(("ILL_PRVREG", "privileged register")),
        (SIGILL, 7) => Some(("ILL_COPROC", "coprocessor error")),
        (SIGILL, 8) => Some(("ILL_BADSTK", "internal stack error")),
        (SIGFPE, 1) => Some(("FPE_INTDIV", "integer divide by zero")),
        (SIGFPE, 2) => Some(("FPE_INTOVF", "integer overflow")),
        (SIGFPE, 3) => Some(("FPE_FLTDIV", "floating-point divide by zero")),
        (SIGFPE, 4) => Some(("FPE_FLTOVF", "floating-point overflow")),
        (SIGFPE, 5) => Some(("FPE_FLTUND", "floating-point underflow")),
        (SIGFPE, 6) => Some(("FPE_FLTRES", "floating-point inexact result")),
        (SIGFPE, 7) => Some(("FPE_FLTINV", "floating-point invalid operation")),
        (SIGFPE, 8) => Some(("FPE_FLTSUB", "subscript out of range")),
        (SIGTRAP, 1) => Some(("TRAP_BRKPT", "process breakpoint")),
        (SIGTRAP, 2) => Some(("TRAP_TRACE", "process trace trap")),
        (SIGTRAP, 3) => Some(("TRAP_BRANCH", "process taken branch trap")),
        (SIGTRAP, 4) => Some(("TRAP_HWBKPT", "hardware breakpoint or watchpoint")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(report: &SignalReport) -> String {
        let mut out = Vec::new();
        write_text(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn plain(number: u32) -> SignalReport {
        SignalReport::new(number, Some(7))
    }

    #[test]
    fn names_match_gdb() {
        assert_eq!(name_and_description(11), ("SIGSEGV".to_owned(), "Segmentation fault".to_owned()));
        assert_eq!(name_and_description(6), ("SIGABRT".to_owned(), "Aborted".to_owned()));
        assert_eq!(name_and_description(8), ("SIGFPE".to_owned(), "Arithmetic exception".to_owned()));
        assert_eq!(name_and_description(34), ("SIG34".to_owned(), "Real-time event 34".to_owned()));
        assert_eq!(name_and_description(99), ("signal 99".to_owned(), "Unknown signal".to_owned()));
    }

    #[test]
    fn codes_depend_on_the_signal() {
        assert_eq!(code_name(SIGSEGV, 1).unwrap().0, "SEGV_MAPERR");
        assert_eq!(code_name(SIGBUS, 1).unwrap().0, "BUS_ADRALN");
        assert_eq!(code_name(6, SI_TKILL).unwrap().0, "SI_TKILL");
        assert_eq!(code_name(SIGSEGV, SI_KERNEL).unwrap().0, "SI_KERNEL");
        assert_eq!(code_name(6, 1), None);
    }

    #[test]
    fn text_names_the_fault_or_the_sender() {
        let mut fault = plain(11);
        fault.code_name = Some("SEGV_MAPERR");
        fault.code_description = Some("address not mapped to object");
        fault.fault_address = Some("0x0".to_owned());
        assert_eq!(
            text(&fault),
            "Program terminated with signal SIGSEGV, Segmentation fault.\n\
             Fault address: 0x0 (SEGV_MAPERR, address not mapped to object).\n"
        );
        let mut sent = plain(6);
        sent.code_name = Some("SI_TKILL");
        sent.code_description = Some("sent by tkill or tgkill");
        sent.sender_pid = Some(31215);
        sent.sender_uid = Some(1000);
        assert_eq!(
            text(&sent),
            "Program terminated with signal SIGABRT, Aborted.\n\
             Sent by: pid 31215, uid 1000 (SI_TKILL, sent by tkill or tgkill).\n"
        );
        assert_eq!(text(&plain(9)), "Program terminated with signal SIGKILL, Killed.\n");
    }
}
