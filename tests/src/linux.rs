//! Linux process cores for the tests: building a program, crashing it
//! into a kernel core or a gcore file, and gdb's backtraces of a core.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::gdb::{parse_backtraces, GdbThread};

/// Seconds a program, gdb or stardump may run before it is killed.
pub const TIMEOUT_SECONDS: &str = "120";

/// Returns a command's stdout followed by its stderr, for failure messages.
pub fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Writes `source` to `dir` and builds it with `compiler` (`gcc` or
/// `g++`) and `flags` into `dir/name`.
pub fn build_program(dir: &Path, name: &str, compiler: &str, source: &str, flags: &[&str]) -> PathBuf {
    let extension = if compiler == "g++" { "cpp" } else { "c" };
    let source_path = dir.join(format!("{name}.{extension}"));
    fs::write(&source_path, source).expect("writing the test program");
    let program = dir.join(name);
    let output = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&program)
        .arg(&source_path)
        .output()
        .expect("running the compiler");
    assert!(output.status.success(), "building {name} failed:\n{}", output_text(&output));
    program
}

/// Runs `program` in `dir` with RLIMIT_CORE raised for it alone and returns
/// the core the kernel wrote there.
pub fn kernel_core(program: &Path, dir: &Path) -> PathBuf {
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    assert!(
        !pattern.starts_with('|') && !pattern.contains('/'),
        "kernel.core_pattern is {pattern:?}: this test needs a pattern that writes the core into the \
         working directory, such as `core`"
    );
    let script = format!("ulimit -c unlimited && exec '{}'", program.display());
    let output = Command::new("timeout")
        .args(["-s", "KILL", TIMEOUT_SECONDS, "sh", "-c", &script])
        .current_dir(dir)
        .output()
        .expect("running the fixture");
    assert!(!output.status.success(), "{} did not crash:\n{}", program.display(), output_text(&output));
    let core = fs::read_dir(dir)
        .expect("reading the run directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("core")));
    core.unwrap_or_else(|| {
        panic!(
            "{} crashed ({}) but left no core in {} (core_pattern {pattern:?})",
            program.display(),
            output.status,
            dir.display()
        )
    })
}

/// Runs `program` under gdb to its fatal signal and writes `core` with gcore.
pub fn gdb_core(program: &Path, core: &Path) -> PathBuf {
    let output = Command::new("timeout")
        .args(["-s", "KILL", TIMEOUT_SECONDS, "gdb", "-batch", "-nx"])
        .args(["-ex", "set startup-with-shell off", "-ex", "handle SIGUSR1 nostop noprint pass"])
        .args(["-ex", "run", "-ex", &format!("gcore {}", core.display()), "-ex", "kill"])
        .arg(program)
        .output()
        .expect("running gdb");
    assert!(core.is_file(), "gdb's gcore wrote no {}:\n{}", core.display(), output_text(&output));
    core.to_path_buf()
}

/// Returns gdb's `thread apply all bt` of every thread of `core`, with
/// `set backtrace past-main on` and argument values left out, and gdb's
/// whole output for failure messages. Separate debug files are searched
/// in `debug_dir`, then in /usr/lib/debug.
pub fn core_backtraces(program: &Path, core: &Path, debug_dir: &Path) -> (Vec<GdbThread>, String) {
    let debug_dirs = format!("set debug-file-directory {}:/usr/lib/debug", debug_dir.display());
    let output = Command::new("timeout")
        .env("LC_ALL", "C")
        .args(["-s", "KILL", TIMEOUT_SECONDS, "gdb", "-batch", "-nx"])
        // -iex runs before gdb loads the program, which is when it looks
        // for the debug file.
        .args(["-iex", &debug_dirs, "-ex", "set width 0", "-ex", "set pagination off"])
        .args(["-ex", "set backtrace past-main on", "-ex", "set print frame-arguments none"])
        .args(["-ex", "thread apply all bt"])
        .arg(program)
        .arg(core)
        .output()
        .expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // gdb prints the current frame when it loads the core, before the first
    // `Thread N` header, and that line is not part of any backtrace.
    let backtraces = stdout.find("\nThread ").map_or("", |start| &stdout[start..]);
    (parse_backtraces(backtraces), output_text(&output))
}
