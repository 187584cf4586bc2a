//! gdb as the oracle: runs `thread apply all bt` against a live gdbstub and
//! parses what gdb prints into frames that tests compare with stardump's.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::require_program;

/// One frame of a gdb backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbFrame {
    /// Frame number, `#N`.
    pub level: u32,
    /// The program counter gdb printed; gdb omits it for frame #0 at the
    /// start of a line and for inlined frames.
    pub pc: Option<u64>,
    /// Function name, `None` for `??` and for the signal frame.
    pub function: Option<String>,
    /// Names of the arguments the frame line shows, in order. With
    /// `set print frame-arguments none` gdb still prints each name
    /// (`v=...`).
    pub arguments: Vec<String>,
    /// Source file as gdb printed it (the DWARF name, often relative).
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// Whether this is gdb's `<signal handler called>` frame.
    pub signal_frame: bool,
}

/// The backtrace of one gdb thread, which for QEMU's gdbstub is one vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbThread {
    /// gdb's thread number; vCPU number plus one for QEMU.
    pub number: u32,
    /// Frames, innermost first.
    pub frames: Vec<GdbFrame>,
    /// The reason gdb gave after `Backtrace stopped:`, if any.
    pub stopped: Option<String>,
}

/// Returns a gdb command, killed after 120 s, that runs in batch mode
/// without pagination, line wrapping, confirmations or frame arguments and
/// connects to the gdbstub at 127.0.0.1:`port`. The caller adds its own
/// `-ex` commands, ends them with `disconnect` so the target stays paused,
/// and adds the image as the last argument. Fails when gdb is missing.
pub fn batch_command(port: u16) -> Command {
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    command
        .env("LC_ALL", "C")
        .args(["-s", "KILL", "120", "gdb", "-batch", "-nx"])
        .args(["-ex", "set pagination off", "-ex", "set width 0", "-ex", "set confirm off"])
        .args(["-ex", "set print frame-arguments none"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")]);
    command
}

/// Runs gdb against the gdbstub at 127.0.0.1:`port` with symbols from
/// `image`, and returns the backtrace of every thread, sorted by thread
/// number. gdb disconnects without resuming the target.
pub fn live_backtraces(image: &Path, port: u16) -> Result<Vec<GdbThread>> {
    let output = batch_command(port)
        .args(["-ex", "thread apply all bt"])
        .args(["-ex", "disconnect"])
        .arg(image)
        .output()
        .context("running gdb")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "gdb failed with {}:\n{}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let threads = parse_backtraces(&stdout);
    if threads.is_empty() {
        bail!(
            "gdb printed no backtrace:\n{}\n{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(threads)
}

/// Parses the output of `thread apply all bt` (or of a single `bt`, which
/// becomes thread 1), with `set print frame-arguments none` in effect.
pub fn parse_backtraces(text: &str) -> Vec<GdbThread> {
    let mut threads: Vec<GdbThread> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("Thread ") {
            let number = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|digits| digits.parse().ok());
            if let Some(number) = number {
                threads.push(GdbThread {
                    number,
                    frames: Vec::new(),
                    stopped: None,
                });
            }
            continue;
        }
        if let Some(reason) = line.strip_prefix("Backtrace stopped: ") {
            if let Some(thread) = threads.last_mut() {
                thread.stopped = Some(reason.to_string());
            }
            continue;
        }
        if let Some(frame) = parse_frame(line) {
            if threads.is_empty() {
                threads.push(GdbThread {
                    number: 1,
                    frames: Vec::new(),
                    stopped: None,
                });
            }
            threads.last_mut().expect("pushed above").frames.push(frame);
        }
    }
    threads.sort_by_key(|thread| thread.number);
    threads
}

/// Parses one `#N  ...` line of a gdb backtrace.
fn parse_frame(line: &str) -> Option<GdbFrame> {
    let rest = line.strip_prefix('#')?;
    let digits_len = rest.find(|c: char| !c.is_ascii_digit())?;
    let level = rest[..digits_len].parse().ok()?;
    let mut rest = rest[digits_len..].trim_start();

    if rest.starts_with("<signal handler called>") {
        return Some(GdbFrame {
            level,
            pc: None,
            function: None,
            arguments: Vec::new(),
            file: None,
            line: None,
            signal_frame: true,
        });
    }

    let mut pc = None;
    if let Some(hex) = rest.strip_prefix("0x") {
        let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
        pc = u64::from_str_radix(&hex[..end], 16).ok();
        rest = hex[end..].trim_start().strip_prefix("in ").unwrap_or(&hex[end..]).trim_start();
    }

    let (name, arguments) = match split_argument_list(rest) {
        Some((name, list)) => (name, argument_names(list)),
        None => (&rest[..rest.find(" (").unwrap_or(rest.len())], Vec::new()),
    };
    let function = (name != "??").then(|| name.to_string());

    let (file, line_number) = match rest.rfind(" at ") {
        Some(at) => {
            let location = &rest[at + 4..];
            match location.rsplit_once(':') {
                Some((file, number)) => (Some(file.to_string()), number.parse().ok()),
                None => (Some(location.to_string()), None),
            }
        }
        None => (None, None),
    };

    Some(GdbFrame {
        level,
        pc,
        function,
        arguments,
        file,
        line: line_number,
        signal_frame: false,
    })
}

/// Splits the rest of a frame line after its address into the function
/// name and the text inside the argument list. A C++ name may contain
/// ` (` itself (`std::function<void (int)>::operator()`), so the argument
/// list is the first parenthesized group that is followed by the end of
/// the line, ` at ` or ` from `. `None` when no group is.
fn split_argument_list(rest: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(offset) = rest[from..].find(" (") {
        let open = from + offset + 1;
        let mut depth = 0usize;
        for (index, character) in rest[open..].char_indices() {
            match character {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth > 0 {
                        continue;
                    }
                    let close = open + index;
                    let tail = &rest[close + 1..];
                    if tail.is_empty() || tail.starts_with(" at ") || tail.starts_with(" from ") {
                        return Some((&rest[..open - 1], &rest[open + 1..close]));
                    }
                    break;
                }
                _ => {}
            }
        }
        from = open;
    }
    None
}

/// Returns the names in an argument list printed as `a=..., b=...`.
fn argument_names(list: &str) -> Vec<String> {
    if list.is_empty() || list == "..." {
        return Vec::new();
    }
    list.split(", ").filter_map(|argument| argument.split_once('=')).map(|(name, _)| name.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Thread 2 (Thread 1.2 (CPU#1 [halted ])):
#0  ap_idle () at smp.c:40
#1  0xffffffff80100e21 in ap_main (...) at smp.c:55

Thread 1 (Thread 1.1 (CPU#0 [halted ])):
#0  crash_halt () at trap.c:12
#1  0xffffffff80101010 in trap_handler (...) at trap.c:30
#2  <signal handler called>
#3  0xffffffff80100abc in level5 (...) at chain.c:70
#4  level4 (...) at chain.c:60
#5  0x00000000deadbeef in ?? ()
Backtrace stopped: previous frame inner to this frame (corrupt stack?)
";

    #[test]
    fn parse_sorts_threads() {
        let threads = parse_backtraces(SAMPLE);
        assert_eq!(threads.len(), 2);
        assert_eq!(threads[0].number, 1);
        assert_eq!(threads[1].number, 2);
    }

    #[test]
    fn parse_frame_fields() {
        let threads = parse_backtraces(SAMPLE);
        let frames = &threads[0].frames;
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0].function.as_deref(), Some("crash_halt"));
        assert_eq!(frames[0].pc, None);
        assert_eq!(frames[0].file.as_deref(), Some("trap.c"));
        assert_eq!(frames[0].line, Some(12));
        assert_eq!(frames[1].pc, Some(0xffffffff80101010));
        assert!(frames[2].signal_frame);
        assert_eq!(frames[4].function.as_deref(), Some("level4"));
        assert_eq!(frames[4].pc, None);
        assert_eq!(frames[5].function, None);
        assert_eq!(frames[5].file, None);
    }

    #[test]
    fn parse_cpp_frame_names() {
        let text = "\
#0  0x00007f in std::function<void (int)>::operator()(int) const (__args#0=..., this=...) at std_function.h:591
#1  operator() (__closure=...) at names.cpp:61
#2  std::__invoke_impl<void, main()::<lambda()> > (__f=...) at invoke.h:61
#3  0x00007f in ?? () from /lib/x86_64-linux-gnu/libstdc++.so.6
#4  0x00007f in main () at names.cpp:64
";
        let frames = &parse_backtraces(text)[0].frames;
        assert_eq!(frames[0].function.as_deref(), Some("std::function<void (int)>::operator()(int) const"));
        assert_eq!(frames[0].arguments, ["__args#0", "this"]);
        assert_eq!(frames[0].line, Some(591));
        assert_eq!(frames[1].function.as_deref(), Some("operator()"));
        assert_eq!(frames[1].arguments, ["__closure"]);
        assert_eq!(frames[2].function.as_deref(), Some("std::__invoke_impl<void, main()::<lambda()> >"));
        assert_eq!(frames[3].function, None);
        assert_eq!(frames[3].file, None);
        assert_eq!(frames[4].function.as_deref(), Some("main"));
        assert!(frames[4].arguments.is_empty());
    }

    #[test]
    fn parse_stop_reason() {
        let threads = parse_backtraces(SAMPLE);
        assert_eq!(
            threads[0].stopped.as_deref(),
            Some("previous frame inner to this frame (corrupt stack?)")
        );
        assert_eq!(threads[1].stopped, None);
    }
}
