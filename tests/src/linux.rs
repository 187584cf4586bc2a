//! Linux programs for the tests of process cores: building a test program
//! with gcc or g++, crashing it to a kernel core or to a `gcore` file
//! written by gdb, and gdb's backtraces and commands on a core.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::gdb::{parse_backtraces, GdbThread};

/// Seconds a fixture, gdb or stardump may run before it is killed.
pub const TIMEOUT_SECONDS: &str = "120";

/// Returns the stdout and stderr of `output`, for failure messages.
pub fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `program` in `dir` with RLIMIT_CORE raised for it alone and returns
/// the core the kernel wrote there.
pub fn kernel_core(program: &Path, dir: &Path) -> PathBuf {
    kernel_core_with_arguments(program, &[], dir)
}

/// Runs `program` with `arguments` in `dir`, with RLIMIT_CORE raised for
/// it alone, and returns the core the kernel wrote there. The arguments
/// are quoted for the shell and must not contain `'`.
pub fn kernel_core_with_arguments(program: &Path, arguments: &[&str], dir: &Path) -> PathBuf {
    let pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    assert!(
        !pattern.starts_with('|') && !pattern.contains('/'),
        "kernel.core_pattern is {pattern:?}: this test needs a pattern that writes the core into the \
         working directory, such as `core`"
    );
    assert!(arguments.iter().all(|argument| !argument.contains('\'')), "{arguments:?}");
    let quoted: String = arguments.iter().map(|argument| format!(" '{argument}'")).collect();
    let script = format!("ulimit -c unlimited && exec '{}'{quoted}", program.display());
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
    gdb_core_with_arguments(program, &[], core)
}

/// Runs `program` with `arguments` under gdb to its fatal signal and
/// writes `core` with gcore.
pub fn gdb_core_with_arguments(program: &Path, arguments: &[&str], core: &Path) -> PathBuf {
    let output = Command::new("timeout")
        .args(["-s", "KILL", TIMEOUT_SECONDS, "gdb", "-batch", "-nx"])
        .args(["-ex", "set startup-with-shell off", "-ex", "handle SIGUSR1 nostop noprint pass"])
        .args(["-ex", "run", "-ex", &format!("gcore {}", core.display()), "-ex", "kill"])
        .arg("--args")
        .arg(program)
        .args(arguments)
        .output()
        .expect("running gdb");
    assert!(core.is_file(), "gdb's gcore wrote no {}:\n{}", core.display(), output_text(&output));
    core.to_path_buf()
}

/// Writes `source` to `dir` and builds it with `compiler` and `flags`.
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

/// Runs gdb's `commands` on `core` and returns its stdout.
pub fn gdb_commands(program: &Path, core: &Path, commands: &[&str]) -> String {
    let mut command = Command::new("timeout");
    command.env("LC_ALL", "C").args(["-s", "KILL", TIMEOUT_SECONDS, "gdb", "-batch", "-nx"]);
    for line in commands {
        command.args(["-ex", line]);
    }
    let output = command.arg(program).arg(core).output().expect("running gdb");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails with the package to install when glibc's debug file is missing:
/// the tests of variables in glibc's frames need its DWARF, which gdb reads
/// from the same place.
pub fn require_libc_debug_info() {
    let found = fs::read_dir("/usr/lib/debug/.build-id").is_ok_and(|entries| entries.count() > 0)
        && Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", "libc6-dbg"])
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"));
    assert!(
        found,
        "glibc's DWARF is missing: install the Debian package `libc6-dbg` (apt-get install libc6-dbg), \
         or run scripts/install-test-deps.sh"
    );
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
