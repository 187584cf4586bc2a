//! Backtraces of Linux process cores, compared with gdb's on the same core.
//!
//! The programs in tests/fixtures/linux are built with their Makefile and
//! run to their crash twice. The first run leaves a kernel core: RLIMIT_CORE
//! is raised for the child only, and the machine's `core_pattern` must write
//! `core` into the working directory. The second runs under gdb, which
//! writes the core with `gcore`. For every core, `stardump bt --json` must list, for every
//! thread, the frames of gdb's `thread apply all bt`: the same function
//! and the same file:line per frame.
//!
//! Normalized, because the two print them differently:
//! - files are compared by base name, because gdb joins a DWARF 5 file name
//!   with its directory entry (`./nptl/pthread_kill.c`) where stardump
//!   shows the line table's name;
//! - gdb runs with `set backtrace past-main on`, so that it shows the
//!   frames of glibc's startup code that stardump shows too.
//!
//! stardump infers tail-call frames from `DW_TAG_call_site` as gdb does
//! (glibc's `pthread_kill` jumps to `__pthread_kill_implementation`), so
//! those count as frames like any other.
//! Each test prints its agreement per core (`--nocapture` shows it).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use stardump_tests::gdb::GdbThread;
use stardump_tests::linux::{
    build_program, core_backtraces, gdb_commands, gdb_core, kernel_core, output_text, require_libc_debug_info,
};
use stardump_tests::{require_program, workspace_root};

/// Frames stardump may print per thread; the deep fixture has about 305.
const FRAME_LIMIT: &str = "2000";

/// Mismatches listed per core; the count is always exact.
const MAX_LISTED_MISMATCHES: usize = 12;

/// Builds the corpus once and returns its directory.
fn corpus_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_program("gcc", "gcc");
        require_program("g++", "g++");
        require_program("make", "make");
        require_program("objcopy", "binutils");
        require_program("strip", "binutils");
        require_program("gdb", "gdb");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let out = target.join("linux-fixtures");
        let output = Command::new("make")
            .arg("-C")
            .arg(workspace_root().join("tests/fixtures/linux"))
            .arg(format!("OUT={}", out.display()))
            .output()
            .expect("running make");
        assert!(
            output.status.success(),
            "building the Linux fixtures failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

fn debug_dir() -> PathBuf {
    corpus_dir().join("debug")
}

/// Returns gdb's backtraces of every thread of `core`.
fn gdb_backtraces(program: &Path, core: &Path) -> (Vec<GdbThread>, String) {
    core_backtraces(program, core, &debug_dir())
}

/// stardump's threads of one core: LWP and compared frames.
type Threads = Vec<(Option<u64>, Vec<Compared>)>;

/// One frame reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compared {
    signal_frame: bool,
    /// Whether the frame line shows the pc.
    address_shown: bool,
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

impl std::fmt::Display for Compared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.signal_frame {
            return write!(f, "<signal handler called>");
        }
        if self.address_shown {
            write!(f, "0x… in ")?;
        }
        write!(f, "{}", self.function.as_deref().unwrap_or("??"))?;
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " at {file}:{line}")?;
        }
        Ok(())
    }
}

fn base_name(file: &str) -> String {
    file.rsplit('/').next().unwrap_or(file).to_owned()
}

/// Returns stardump's threads of `core`: LWP and frames.
fn stardump_backtraces(core: &Path) -> (Threads, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
        .arg("bt")
        .arg(core)
        .args(["--json", "--limit", FRAME_LIMIT, "--debug-dir"])
        .arg(debug_dir())
        .output()
        .expect("running stardump");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stardump bt printed no JSON ({error}):\n{}", output_text(&output)));
    let threads = report["threads"]
        .as_array()
        .expect("threads array")
        .iter()
        .map(|thread| {
            let frames = thread["frames"]
                .as_array()
                .expect("frames array")
                .iter()
                .map(|frame| {
                    let signal_frame = frame["kind"] == "trap";
                    let function = frame["function"].as_str().map(str::to_owned);
                    Compared {
                        signal_frame,
                        address_shown: frame["address_shown"] == true,
                        function: if signal_frame { None } else { function },
                        file: if signal_frame { None } else { frame["file"].as_str().map(base_name) },
                        line: if signal_frame { None } else { frame["line"].as_u64().map(|line| line as u32) },
                    }
                })
                .collect();
            (thread["lwp"].as_u64(), frames)
        })
        .collect::<Threads>();
    // The text for failure messages: stderr's warnings and the compared fields.
    let mut listing = String::from_utf8_lossy(&output.stderr).into_owned();
    for (index, (lwp, frames)) in threads.iter().enumerate() {
        listing.push_str(&format!("Thread {} (LWP {}):\n", index + 1, lwp.unwrap_or(0)));
        for (level, frame) in frames.iter().enumerate() {
            listing.push_str(&format!("#{level:<2} {frame}\n"));
        }
    }
    (threads, listing)
}

fn gdb_compared(thread: &GdbThread) -> Vec<Compared> {
    thread
        .frames
        .iter()
        .map(|frame| Compared {
            signal_frame: frame.signal_frame,
            address_shown: frame.pc.is_some(),
            function: frame.function.clone(),
            file: frame.file.as_deref().map(base_name),
            line: frame.line,
        })
        .collect()
}

/// Result of comparing the backtraces of one core.
#[derive(Debug, Default)]
struct Agreement {
    frames: usize,
    agreeing: usize,
    mismatches: Vec<String>,
}

/// Compares one thread frame by frame. After a frame that only one side
/// has, the comparison realigns, so one missing frame is one mismatch.
fn compare_thread(label: &str, gdb: &[Compared], ours: &[Compared], agreement: &mut Agreement) {
    let (mut g, mut o) = (0, 0);
    let show = |frame: Option<&Compared>| frame.map_or("(none)".to_owned(), ToString::to_string);
    while g < gdb.len() || o < ours.len() {
        agreement.frames += 1;
        let (expected, found) = (gdb.get(g), ours.get(o));
        if expected.is_some() && expected == found {
            agreement.agreeing += 1;
            g += 1;
            o += 1;
            continue;
        }
        let missing = expected.is_some() && found.is_some() && gdb.get(g + 1) == found;
        let extra = !missing && expected.is_some() && found.is_some() && ours.get(o + 1) == expected;
        let what = if missing {
            "only gdb has"
        } else if extra {
            "only stardump has"
        } else {
            "differs"
        };
        agreement.mismatches.push(format!(
            "{label} frame #{g}/#{o} {what}: gdb {}, stardump {}",
            show(expected),
            show(found)
        ));
        g += usize::from(expected.is_some() && !extra);
        o += usize::from(found.is_some() && !missing);
    }
}

/// Compares every thread of `core` and returns the agreement, with the
/// frame lists of both for assertions.
fn compare_core(program: &Path, core: &Path) -> (Agreement, Vec<GdbThread>, Threads) {
    let (gdb_threads, gdb_text) = gdb_backtraces(program, core);
    let (our_threads, our_text) = stardump_backtraces(core);
    assert!(!gdb_threads.is_empty(), "gdb printed no backtrace for {}:\n{gdb_text}", core.display());
    assert_eq!(
        gdb_threads.len(),
        our_threads.len(),
        "thread count of {}\ngdb:\n{gdb_text}\nstardump:\n{our_text}",
        core.display()
    );
    let mut agreement = Agreement::default();
    // gdb numbers a core's threads in the order of their NT_PRSTATUS notes,
    // which is stardump's vCPU order.
    for (index, (lwp, ours)) in our_threads.iter().enumerate() {
        let gdb_thread = gdb_threads
            .iter()
            .find(|thread| thread.number as usize == index + 1)
            .unwrap_or_else(|| panic!("gdb has no thread {} for {}:\n{gdb_text}", index + 1, core.display()));
        let label = format!("thread {} (LWP {})", index + 1, lwp.unwrap_or(0));
        compare_thread(&label, &gdb_compared(gdb_thread), ours, &mut agreement);
    }
    if !agreement.mismatches.is_empty() {
        eprintln!("gdb:\n{gdb_text}\nstardump:\n{our_text}");
    }
    (agreement, gdb_threads, our_threads)
}

/// Gets both cores of `fixture`, compares each with gdb, prints the
/// agreement and fails on any mismatch. Returns stardump's threads of the
/// kernel core for fixture-specific checks.
fn check_fixture(fixture: &str) -> Threads {
    let program = corpus_dir().join(fixture);
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let kernel = kernel_core(&program, run_dir.path());
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));

    let mut failures = Vec::new();
    let mut kernel_threads = Vec::new();
    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let (agreement, _, ours) = compare_core(&program, core);
        eprintln!("{fixture} {kind}: {}/{} frames agree", agreement.agreeing, agreement.frames);
        for mismatch in agreement.mismatches.iter().take(MAX_LISTED_MISMATCHES) {
            eprintln!("  mismatch: {mismatch}");
        }
        if !agreement.mismatches.is_empty() {
            let listed: Vec<&str> =
                agreement.mismatches.iter().take(MAX_LISTED_MISMATCHES).map(String::as_str).collect();
            failures.push(format!(
                "{fixture} {kind}: {} mismatches, first:\n  {}",
                agreement.mismatches.len(),
                listed.join("\n  ")
            ));
        }
        if kind == "kernel core" {
            kernel_threads = ours;
        }
    }
    assert!(failures.is_empty(), "backtraces differ from gdb's:\n{}", failures.join("\n"));
    kernel_threads
}

fn functions(frames: &[Compared]) -> Vec<&str> {
    frames.iter().map(|frame| frame.function.as_deref().unwrap_or("")).collect()
}

#[test]
fn deep_recursion_matches_gdb() {
    for fixture in ["deep-O0-fp", "deep-O2-nofp", "deep-O3-nofp", "deep-O2-df", "deep-O2-buildid"] {
        let threads = check_fixture(fixture);
        let names = functions(&threads[0].1);
        assert_eq!(names.first(), Some(&"crash_here"), "{fixture}: {names:?}");
        let recursive = names.iter().filter(|&&name| name == "recurse").count();
        assert!(recursive > 300, "{fixture}: only {recursive} recurse frames");
        assert!(names.contains(&"main"), "{fixture}: {names:?}");
    }
}

#[test]
fn signal_handler_frame_matches_gdb() {
    for fixture in ["signal-O0-fp", "signal-O2-nofp", "signal-O2-df", "signal-O2-debuglink"] {
        let threads = check_fixture(fixture);
        let frames = &threads[0].1;
        let signal = frames.iter().position(|frame| frame.signal_frame);
        let signal = signal.unwrap_or_else(|| panic!("{fixture}: no signal frame in {:?}", functions(frames)));
        assert_eq!(frames[signal - 1].function.as_deref(), Some("on_usr1"), "{fixture}");
        let after: Vec<&str> = functions(&frames[signal + 1..]);
        assert!(after.contains(&"send_signal"), "{fixture}: {after:?}");
    }
}

#[test]
fn cpp_throw_matches_gdb() {
    for fixture in ["throw-O0-fp", "throw-O2-nofp"] {
        let threads = check_fixture(fixture);
        let names = functions(&threads[0].1);
        for expected in ["__cxa_throw", "thrower", "no_throw_zone", "main"] {
            assert!(
                names.iter().any(|name| name.starts_with(expected)),
                "{fixture}: no {expected} in {names:?}"
            );
        }
    }
}

#[test]
fn threads_match_gdb() {
    for fixture in ["threads-O0-fp", "threads-O2-nofp", "threads-O3-df"] {
        let threads = check_fixture(fixture);
        assert_eq!(threads.len(), 5, "{fixture}");
        assert!(threads.iter().all(|(lwp, _)| lwp.is_some()), "{fixture}: a thread without LWP");
        assert!(functions(&threads[0].1).contains(&"crash_main"), "{fixture}");
        for worker in ["worker_alpha_wait", "worker_beta_wait", "worker_gamma_wait", "worker_delta_wait"] {
            let found = threads.iter().any(|(_, frames)| functions(frames).contains(&worker));
            assert!(found, "{fixture}: no thread in {worker}");
        }
    }
}

/// Runs `stardump bt` in text mode with `arguments` after the core.
fn stardump_text(core: &Path, arguments: &[&std::ffi::OsStr]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
        .arg("bt")
        .arg(core)
        .args(arguments)
        .output()
        .expect("running stardump");
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Returns the frame lines of the first thread of a `bt` text output,
/// without stardump's `[found_by]` suffix.
fn first_thread_frame_lines(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.starts_with("Thread "))
        .skip(1)
        .take_while(|line| !line.is_empty() && !line.starts_with("Thread "))
        .filter(|line| line.starts_with('#'))
        .map(|line| match line.rfind(" [") {
            Some(end) if line.ends_with(']') => line[..end].to_owned(),
            _ => line.to_owned(),
        })
        .collect()
}

#[test]
fn bt_text_matches_gdb_across_libraries() {
    require_libc_debug_info();
    // throw passes through libstdc++ and libgcc_s, which have no DWARF
    // here, so their frames are named from symbol tables and by library.
    let program = corpus_dir().join("throw-O2-nofp");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let kernel = kernel_core(&program, run_dir.path());
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));
    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let gdb = gdb_commands(&program, core, &["set width 0", "set backtrace past-main on", "thread apply 1 bt"]);
        let expected = first_thread_frame_lines(&gdb);
        assert!(expected.iter().any(|line| line.contains(" from /")), "{kind}: gdb printed\n{gdb}");
        let (text, warnings) = stardump("bt", core, &[]);
        let ours = first_thread_frame_lines(&text);
        assert_eq!(ours, expected, "{kind}\nstardump:\n{text}{warnings}\ngdb:\n{gdb}");

        // The JSON keeps the mapped path and adds the dynamic linker's name.
        let (json, _) = stardump("bt", core, &["--json".as_ref()]);
        let report: Value = serde_json::from_str(&json).expect("bt --json output");
        let libc = report["modules"]
            .as_array()
            .expect("modules")
            .iter()
            .find(|module| module["path"].as_str().is_some_and(|path| path.contains("/libc.so.6")))
            .unwrap_or_else(|| panic!("{kind}: no libc module: {json}"));
        let name = libc["name"].as_str().unwrap_or_else(|| panic!("{kind}: libc has no name: {libc}"));
        let libraries = gdb_commands(&program, core, &["info sharedlibrary"]);
        let gdb_libc = libraries.lines().find(|line| line.contains("libc.so.6")).unwrap_or_default();
        assert!(gdb_libc.ends_with(&format!(" {name}")), "{kind}: stardump names libc {name}, gdb lists\n{libraries}");
        let symbol_frame = report["threads"][0]["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .find(|frame| frame["symbol_offset"].as_u64().is_some_and(|offset| offset > 0))
            .unwrap_or_else(|| panic!("{kind}: no frame named from a symbol table: {json}"));
        assert!(symbol_frame["library_name"].as_str().is_some_and(|name| name.starts_with('/')), "{symbol_frame}");
    }
}

#[test]
fn text_output_like_gdb() {
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let core = kernel_core(&corpus_dir().join("deep-O2-nofp"), run_dir.path());
    // `--limit 0` walks to the end, as gdb's `set backtrace limit 0`.
    let (text, warnings) = stardump_text(&core, &["--limit".as_ref(), "0".as_ref()]);

    // gdb's lines on opening the core come first, then the thread.
    let mut lines = text.lines().skip_while(|line| !line.starts_with("Thread "));
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("Thread 1 (LWP "), "{first}");
    assert!(first.ends_with("):"), "{first}");
    assert!(text.starts_with("Core was generated by `"), "{text}");
    assert!(text.contains("\n_start ()") || text.contains(" in _start () "), "the walk reached _start:\n{text}");
    assert!(!text.contains("Backtrace stopped"), "{text}");
    let frame_zero = lines.next().unwrap_or_default();
    assert!(frame_zero.starts_with("#0  "), "{frame_zero}");
    assert!(frame_zero.contains(" crash_here (depth="), "{frame_zero}");
    // gdb keeps one space after a three-digit frame number.
    assert!(text.contains("\n#100 0x"), "{text}");
    assert_eq!(warnings, "", "the program and glibc are found by path");

    // Frames in glibc name it; the text shows it only without a line.
    let (json, _) = stardump_text(&core, &["--limit".as_ref(), "400".as_ref(), "--json".as_ref()]);
    let report: Value = serde_json::from_str(&json).expect("bt --json output");
    let frames = report["threads"][0]["frames"].as_array().expect("frames");
    let start = frames.iter().find(|frame| frame["function"] == "__libc_start_call_main").expect("glibc's startup frame");
    assert!(start["library"].as_str().is_some_and(|path| path.ends_with("/libc.so.6")), "{start}");
    let crash = &frames[0];
    assert!(crash.get("library").is_none(), "the program's frames name no library: {crash}");
}

#[test]
fn image_override_and_mismatch() {
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = corpus_dir().join("deep-O2-nofp");
    let core = kernel_core(&program, run_dir.path());

    let (text, warnings) = stardump_text(&core, &["--image".as_ref(), program.as_os_str()]);
    assert!(text.contains("crash_here"), "{text}");
    assert_eq!(warnings, "");

    // Another build of the same source is used as requested, with a warning.
    let other = corpus_dir().join("deep-O0-fp");
    let (_, warnings) = stardump_text(&core, &["--image".as_ref(), other.as_os_str()]);
    assert!(warnings.contains("has build id"), "{warnings}");
    assert!(warnings.contains("names and lines may be wrong"), "{warnings}");
}

#[test]
fn missing_debug_file_warns() {
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = corpus_dir().join("deep-O2-buildid");
    let core = kernel_core(&program, run_dir.path());
    // Without --debug-dir the debug file under the corpus is not found.
    let (text, warnings) = stardump_text(&core, &["--limit".as_ref(), "400".as_ref()]);
    assert!(warnings.contains("no DWARF"), "{warnings}");
    assert!(warnings.contains("deep-O2-buildid"), "{warnings}");
    assert!(warnings.contains("by build id"), "{warnings}");
    // The stripped program exports no symbol for its own functions.
    assert!(!text.contains("crash_here"), "{text}");
    assert!(text.contains("__libc_start_call_main"), "glibc still has its names:\n{text}");
}

#[test]
fn frame_and_locals_on_process_core() {
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = corpus_dir().join("throw-O2-nofp");
    let core = kernel_core(&program, run_dir.path());
    let run = |command: &str, arguments: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
            .arg(command)
            .arg(&core)
            .args(arguments)
            .arg("--image")
            .arg(&program)
            .output()
            .expect("running stardump");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let backtrace = run("bt", &["--json"]);
    let report: Value = serde_json::from_str(&backtrace).expect("bt --json output");
    let frames = report["threads"][0]["frames"].as_array().expect("frames");
    let index = frames.iter().position(|frame| frame["function"] == "no_throw_zone").expect("no_throw_zone's frame");

    // `frame` numbers frames as `bt` does, tail-call frames included.
    let frame = run("frame", &["--frame", &index.to_string()]);
    assert!(frame.starts_with(&format!("#{index} ")), "{frame}");
    assert!(frame.contains("no_throw_zone (value=value@entry=41) at throw.cpp:16"), "{frame}");
    let value = run("print", &["--frame", &index.to_string(), "value"]);
    assert_eq!(value.trim(), "$1 = 41");

    // In a C++ frame, gdb types $pc as `void (*)(void)`.
    let gdb = gdb_commands(&program, &core, &[&format!("frame {index}"), "print $pc"]);
    let expected = gdb.lines().find(|line| line.starts_with("$1 = ")).unwrap_or_default();
    assert!(expected.starts_with("$1 = (void (*)(void)) 0x"), "gdb printed\n{gdb}");
    let pc = run("print", &["--frame", &index.to_string(), "$pc"]);
    assert_eq!(pc.trim(), expected);
}

/// Tries to catch the clock thread inside the vDSO this many times; it
/// spends most of its loop there.
const VDSO_ATTEMPTS: usize = 5;

#[test]
fn vdso_frame_matches_gdb() {
    for attempt in 1..=VDSO_ATTEMPTS {
        let threads = check_fixture("vdso-O2-nofp");
        let (_, frames) = threads
            .iter()
            .find(|(_, frames)| functions(frames).contains(&"read_clock"))
            .expect("no thread in read_clock");
        // The vDSO's symbol table names the function; it has no lines.
        if frames[0].function.as_deref() == Some("clock_gettime") {
            assert_eq!(frames[0].line, None);
            return;
        }
        eprintln!("attempt {attempt}: the clock thread was outside the vDSO: {:?}", functions(frames));
    }
    panic!("the clock thread was never in the vDSO in {VDSO_ATTEMPTS} cores");
}

#[test]
fn null_function_pointer_matches_gdb() {
    for fixture in ["nullcall-O0-fp", "nullcall-O2-nofp"] {
        let threads = check_fixture(fixture);
        let names = functions(&threads[0].1);
        assert_eq!(names.first(), Some(&""), "{fixture}: frame #0 at address 0 has no name: {names:?}");
        assert_eq!(names.get(1), Some(&"dispatch"), "{fixture}: {names:?}");
        assert_eq!(names.get(2), Some(&"main"), "{fixture}: {names:?}");
    }
}

#[test]
fn null_call_arguments_match_gdb() {
    require_libc_debug_info();
    // The frame at pc 0 ran no instruction, so the caller's caller-saved
    // registers, and the arguments they hold, are still known.
    for fixture in ["nullcall-O0-fp", "nullcall-O2-nofp"] {
        let program = corpus_dir().join(fixture);
        let run_dir = tempfile::tempdir().expect("creating a run directory");
        let kernel = kernel_core(&program, run_dir.path());
        let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));
        for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
            let gdb = gdb_commands(&program, core, &["set width 0", "set backtrace past-main on", "thread apply 1 bt"]);
            let expected = first_thread_frame_lines(&gdb);
            let (text, warnings) = stardump("bt", core, &[]);
            let ours = first_thread_frame_lines(&text);
            assert_eq!(ours, expected, "{fixture} {kind}\nstardump:\n{text}{warnings}\ngdb:\n{gdb}");
        }
    }
}

/// A program whose read-only data (the string `config.label` points to)
/// and whose libraries' code are file-backed pages that were never
/// written, so neither a kernel core nor gcore contains them.
const CONFIG_SOURCE: &str = r#"
#include <stdlib.h>

struct config {
	const char *label;
	int retries;
};

const struct config config = { "fixture label", 3 };
volatile int sink;

__attribute__((noinline)) void crash_with(const struct config *c)
{
	sink = c->retries;
	abort();
}

int main(void)
{
	crash_with(&config);
	return 0;
}
"#;

/// A C++ program built without DWARF, so its frames are named from the
/// ELF symbol table, whose names are mangled.
const MANGLED_SOURCE: &str = r#"
#include <cstdlib>

namespace fixture {
__attribute__((noinline)) void crash_in(int value)
{
	if (value > 0)
		std::abort();
}
}

int main()
{
	fixture::crash_in(1);
	return 0;
}
"#;

/// Runs `stardump COMMAND CORE ARGUMENTS...` and returns stdout and stderr.
fn stardump(command: &str, core: &Path, arguments: &[&std::ffi::OsStr]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
        .arg(command)
        .arg(core)
        .args(arguments)
        .output()
        .expect("running stardump");
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Returns the instruction text of gdb's or stardump's `x/Ni` lines,
/// without the `=>` marker and the `<symbol+offset>` labels.
fn instructions(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.trim_start_matches("=>").trim().strip_prefix("0x"))
        .map(|line| {
            let (address, rest) = line.split_once(':').unwrap_or((line, ""));
            let address = address.split(' ').next().unwrap_or(address);
            let rest = match rest.find(" <") {
                Some(start) if rest.trim_end().ends_with('>') => &rest[..start],
                _ => rest,
            };
            format!("0x{address}:{}", rest.trim_end())
        })
        .collect()
}

#[test]
fn read_only_file_pages_read_from_files() {
    require_program("gcc", "gcc");
    require_program("gdb", "gdb");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = build_program(run_dir.path(), "config", "gcc", CONFIG_SOURCE, &["-g", "-O0"]);
    let kernel = kernel_core(&program, run_dir.path());
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));

    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        // The string is in the program's .rodata, which the core lacks.
        let expected = gdb_commands(&program, core, &["print config"]);
        let expected = expected.lines().find(|line| line.starts_with("$1 = ")).unwrap_or_default();
        assert!(expected.contains("\"fixture label\""), "{kind}: gdb printed {expected:?}");
        for image in [None, Some(program.as_os_str())] {
            let mut arguments: Vec<&std::ffi::OsStr> = Vec::new();
            if let Some(image) = image {
                arguments.extend(["--image".as_ref(), image]);
            }
            arguments.push("config".as_ref());
            let (value, warnings) = stardump("print", core, &arguments);
            assert_eq!(value.trim(), expected, "{kind}, --image {image:?}: {warnings}");
            assert!(warnings.contains("read from the mapped file"), "{kind}: {warnings}");
            assert!(warnings.contains("config"), "{kind}: the warning names the program: {warnings}");
        }

        // The code of libc's abort, which the core lacks as well.
        let (backtrace, _) = stardump("bt", core, &["--json".as_ref()]);
        let report: Value = serde_json::from_str(&backtrace).expect("bt --json output");
        let frames = report["threads"][0]["frames"].as_array().expect("frames");
        let abort = frames
            .iter()
            .find(|frame| frame["library"].as_str().is_some_and(|path| path.ends_with("/libc.so.6")) && frame["function"] == "__GI_abort")
            .unwrap_or_else(|| panic!("{kind}: no frame in libc's abort: {backtrace}"));
        let pc = abort["pc"].as_str().expect("pc");
        let expected = gdb_commands(&program, core, &[&format!("x/2i {pc}")]);
        let (listing, warnings) = stardump("x/2i", core, &[pc.as_ref()]);
        assert!(!listing.contains("unreadable"), "{kind}: {listing}");
        assert_eq!(instructions(&listing), instructions(&expected), "{kind}\nstardump:\n{listing}\ngdb:\n{expected}");
        assert_eq!(instructions(&listing).len(), 2, "{kind}: {listing}");
        assert!(warnings.contains("libc.so.6"), "{kind}: the warning names libc: {warnings}");

        // `frame` finds the program from the mappings too.
        let index = frames.iter().position(|frame| frame["function"] == "crash_with").expect("crash_with's frame");
        let (frame, warnings) = stardump("frame", core, &["--frame".as_ref(), index.to_string().as_ref()]);
        assert!(frame.starts_with(&format!("#{index} ")), "{kind}: {frame}{warnings}");
        assert!(frame.contains("crash_with (c=0x"), "{kind}: {frame}");
        assert!(frame.contains("<config>"), "{kind}: {frame}");
    }
}

#[test]
fn symbol_table_names_demangled() {
    require_program("g++", "g++");
    require_program("gdb", "gdb");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = build_program(run_dir.path(), "mangled", "g++", MANGLED_SOURCE, &["-O0", "-fno-omit-frame-pointer"]);
    let core = kernel_core(&program, run_dir.path());

    let gdb = gdb_commands(&program, &core, &["bt"]);
    assert!(gdb.contains(" fixture::crash_in(int) ()"), "gdb:\n{gdb}");
    let (text, _) = stardump("bt", &core, &[]);
    assert!(text.contains(" fixture::crash_in(int) ()"), "{text}");
    assert!(!text.contains("_ZN7fixture8crash_inEi"), "{text}");
    let (json, _) = stardump("bt", &core, &["--json".as_ref()]);
    let report: Value = serde_json::from_str(&json).expect("bt --json output");
    let frames = report["threads"][0]["frames"].as_array().expect("frames");
    assert!(frames.iter().any(|frame| frame["function"] == "fixture::crash_in(int)"), "{json}");
}

/// Returns `x/Ni` lines without the `=> ` marker, with their labels.
fn labelled_instructions(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(|line| line.trim_start_matches("=>").trim())
        .filter(|line| line.starts_with("0x"))
        .map(str::to_owned)
        .collect()
}

/// Builds CONFIG_SOURCE with `flags` in a new directory and crashes it,
/// returning the directory, the program and its kernel core.
fn config_kernel_core(flags: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    require_program("gcc", "gcc");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = build_program(run_dir.path(), "config", "gcc", CONFIG_SOURCE, flags);
    let core = kernel_core(&program, run_dir.path());
    (run_dir, program, core)
}

#[test]
fn truncated_core_warns_once() {
    let (run_dir, _program, core) = config_kernel_core(&["-g", "-O0"]);
    let bytes = fs::read(&core).expect("reading the core");
    let truncated = run_dir.path().join("truncated.core");
    fs::write(&truncated, &bytes[..bytes.len() - 3 * 4096]).expect("writing the truncated core");

    let output = Command::new(env!("CARGO_BIN_EXE_stardump")).arg("bt").arg(&truncated).output().expect("running stardump");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("warning: {}: the file is truncated: {} bytes long", truncated.display(), bytes.len() - 3 * 4096);
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line of warnings: {stderr}");
    assert_eq!(output.status.code(), Some(2), "a truncated core gives an incomplete report");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The cut pages are the stack's, so the frames stop early, but the
    // threads and their registers are all there.
    assert!(stdout.contains("\n\nThread 1 (LWP "), "{stdout}");
}

#[test]
fn process_info_uses_process_terms() {
    let (_run_dir, _program, core) = config_kernel_core(&["-g", "-O0"]);
    let output = Command::new(env!("CARGO_BIN_EXE_stardump")).arg("info").arg(&core).output().expect("running stardump");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("\nThreads:         1\n"), "{text}");
    assert!(text.contains("\nProgram build id: "), "{text}");
    assert!(!text.contains("vCPU"), "{text}");
    assert!(!text.contains("cr3"), "{text}");
}

#[test]
fn unused_library_without_dwarf_is_quiet() {
    // libgcc_s has no DWARF on a machine without its debug package, and no
    // frame of this program is in it.
    let (_run_dir, _program, core) = config_kernel_core(&["-g", "-O0", "-Wl,--no-as-needed", "-lgcc_s"]);
    let (json, warnings) = stardump("bt", &core, &["--json".as_ref()]);
    let report: Value = serde_json::from_str(&json).expect("bt --json output");
    let modules = report["modules"].as_array().expect("modules");
    assert!(
        modules.iter().any(|module| module["path"].as_str().is_some_and(|path| path.contains("libgcc_s"))),
        "libgcc_s is loaded: {json}"
    );
    let all = format!("{warnings}{}", report["warnings"]);
    assert!(!all.contains("libgcc_s"), "{all}");
}

#[test]
fn debug_only_image_warns() {
    require_program("objcopy", "binutils");
    let (run_dir, program, core) = config_kernel_core(&["-g", "-O0"]);
    let debug_file = run_dir.path().join("config.debug");
    let status = Command::new("objcopy")
        .arg("--only-keep-debug")
        .args([&program, &debug_file])
        .status()
        .expect("running objcopy");
    assert!(status.success(), "objcopy --only-keep-debug failed");

    let (_, warnings) = stardump_text(&core, &["--image".as_ref(), debug_file.as_os_str()]);
    let expected = format!("no code: {} has no bytes in its code sections", debug_file.display());
    assert!(warnings.contains(&expected), "{warnings}");
    let (_, warnings) = stardump_text(&core, &["--image".as_ref(), program.as_os_str()]);
    assert!(!warnings.contains("no code"), "{warnings}");
}

#[test]
fn shared_object_symbols_match_gdb() {
    require_program("gcc", "gcc");
    require_program("gdb", "gdb");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = build_program(run_dir.path(), "config", "gcc", CONFIG_SOURCE, &["-g", "-O0"]);
    let kernel = kernel_core(&program, run_dir.path());
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));

    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let (backtrace, _) = stardump("bt", core, &["--json".as_ref()]);
        let report: Value = serde_json::from_str(&backtrace).expect("bt --json output");
        let frames = report["threads"][0]["frames"].as_array().expect("frames");
        let abort = frames
            .iter()
            .position(|frame| {
                frame["library"].as_str().is_some_and(|path| path.ends_with("/libc.so.6")) && frame["function"] == "__GI_abort"
            })
            .unwrap_or_else(|| panic!("{kind}: no frame in libc's abort: {backtrace}"));
        let frame_command = format!("frame {abort}");
        let expected = gdb_commands(&program, core, &[&frame_command, "x/2i $pc", "info symbol $pc"]);
        let pc = frames[abort]["pc"].as_str().expect("pc");

        let gdb_listing = labelled_instructions(&expected);
        assert_eq!(gdb_listing.len(), 2, "{kind}: gdb printed\n{expected}");
        assert!(gdb_listing[0].contains(" <__GI_abort+"), "{kind}: gdb printed\n{expected}");
        let (listing, warnings) = stardump("x/2i", core, &[pc.as_ref()]);
        assert_eq!(labelled_instructions(&listing), gdb_listing, "{kind}\nstardump:\n{listing}{warnings}\ngdb:\n{expected}");

        let gdb_symbol = expected.lines().find(|line| line.contains(" in section ")).unwrap_or_default();
        assert!(gdb_symbol.starts_with("abort + "), "{kind}: gdb printed\n{expected}");
        // gdb names the file by the path the dynamic linker opened it by.
        let (symbol, warnings) = stardump("info-symbol", core, &[pc.as_ref()]);
        assert_eq!(symbol.trim(), gdb_symbol.trim(), "{kind}: {warnings}");

        // The call that abort's frame returns to, a 5-byte `call rel32` to
        // raise, has its target labelled too.
        let call_listing = gdb_commands(&program, core, &[&frame_command, "x/1i $pc-5"]);
        let call = labelled_instructions(&call_listing).into_iter().find(|line| line.contains("\tcall "));
        assert!(call.is_some(), "{kind}: no call before abort's return address:\n{call_listing}");
        if let Some(call) = call {
            assert!(call.ends_with('>'), "{kind}: gdb printed {call}");
            let address = call.split([' ', ':']).next().expect("address");
            let (ours, _) = stardump("x/1i", core, &[address.as_ref()]);
            assert_eq!(labelled_instructions(&ours), vec![call.clone()], "{kind}: gdb printed {call}");
        }
    }
}

/// One frame as `frame N`, `info args` and `info locals` print it.
#[derive(Debug, Default, PartialEq, Eq)]
struct FrameScope {
    line: String,
    arguments: Vec<String>,
    locals: Vec<String>,
}

/// Marker lines that separate the output of gdb's commands.
const FRAME_MARKER: &str = "@@frame ";
const ARGS_MARKER: &str = "@@args";
const LOCALS_MARKER: &str = "@@locals";

/// Returns gdb's `frame N`, `info args` and `info locals` for each of
/// `levels` of thread `thread` (gdb's number, from 1) of `core`.
fn gdb_frame_scopes(program: &Path, core: &Path, thread: usize, levels: &[usize]) -> Vec<FrameScope> {
    let mut commands = vec![
        "set width 0".to_owned(),
        "set pagination off".to_owned(),
        "set backtrace past-main on".to_owned(),
        format!("thread {thread}"),
    ];
    for level in levels {
        commands.push(format!("echo {FRAME_MARKER}{level}\\n"));
        commands.push(format!("frame {level}"));
        commands.push(format!("echo {ARGS_MARKER}\\n"));
        commands.push("info args".to_owned());
        commands.push(format!("echo {LOCALS_MARKER}\\n"));
        commands.push("info locals".to_owned());
    }
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    let output = gdb_commands(program, core, &commands);
    let mut scopes = Vec::new();
    let mut section = "";
    for line in output.lines() {
        if line.starts_with(FRAME_MARKER) {
            scopes.push(FrameScope::default());
            section = "frame";
            continue;
        }
        let Some(scope) = scopes.last_mut() else { continue };
        match line {
            ARGS_MARKER => section = "args",
            LOCALS_MARKER => section = "locals",
            // The source line gdb prints after the frame line is not compared.
            _ if section == "frame" => {
                if line.starts_with('#') {
                    scope.line = line.to_owned();
                }
            }
            _ if section == "args" => scope.arguments.push(line.to_owned()),
            _ => scope.locals.push(line.to_owned()),
        }
    }
    scopes
}

/// Returns stardump's `frame N --json` for thread `thread` (gdb's number,
/// from 1) as gdb's commands print it.
fn stardump_frame_scope(core: &Path, thread: usize, level: usize) -> FrameScope {
    let vcpu = (thread - 1).to_string();
    let level_text = level.to_string();
    let arguments: [&std::ffi::OsStr; 5] =
        ["--vcpu".as_ref(), vcpu.as_ref(), "--frame".as_ref(), level_text.as_ref(), "--json".as_ref()];
    let (json, warnings) = stardump("frame", core, &arguments);
    let report: Value =
        serde_json::from_str(&json).unwrap_or_else(|error| panic!("frame {level} printed no JSON ({error}): {warnings}"));
    let has_debug_info = report["has_debug_info"].as_bool().expect("has_debug_info");
    let variables = |field: &str, none: &str| -> Vec<String> {
        if !has_debug_info {
            return vec!["No symbol table info available.".to_owned()];
        }
        let lines: Vec<String> = report[field]
            .as_array()
            .expect("variables array")
            .iter()
            .map(|variable| format!("{} = {}", variable["name"].as_str().unwrap_or(""), variable["value"].as_str().unwrap_or("")))
            .collect();
        if lines.is_empty() {
            vec![none.to_owned()]
        } else {
            lines
        }
    };
    FrameScope {
        line: report["text"].as_str().expect("frame text").to_owned(),
        arguments: variables("arguments", "No arguments."),
        locals: variables("locals", "No locals."),
    }
}

/// A program that aborts from main's callee, so glibc's abort and raise
/// frames are on the crashing thread. Its globals point into glibc's code
/// and data.
const ABORT_SOURCE: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

volatile int sink;
void (*volatile exit_function)(int) = exit;
FILE *volatile out_stream;

static void on_abort(int signal_number)
{
	sink = signal_number;
}

__attribute__((noinline)) void give_up(int code)
{
	sink = code;
	out_stream = stdout;
	signal(SIGUSR2, on_abort);
	abort();
}

int main(void)
{
	give_up(7);
	return 0;
}
"#;

/// Returns the frame levels of thread `thread` (gdb's number, from 1) of
/// `core` that have a source line, so DWARF describes their function,
/// except trap frames.
fn frames_with_lines(core: &Path, thread: usize) -> Vec<usize> {
    let (json, warnings) = stardump("bt", core, &["--json".as_ref()]);
    let report: Value = serde_json::from_str(&json).unwrap_or_else(|error| panic!("bt printed no JSON ({error}): {warnings}"));
    let frames = report["threads"][thread - 1]["frames"].as_array().expect("frames");
    frames
        .iter()
        .enumerate()
        .filter(|(_, frame)| frame["kind"] != "trap" && frame["line"].is_u64())
        .map(|(level, _)| level)
        .collect()
}

#[test]
fn shared_object_frame_scopes_match_gdb() {
    require_libc_debug_info();
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let abort_program = build_program(run_dir.path(), "give-up", "gcc", ABORT_SOURCE, &["-g", "-O2"]);
    // Thread 2 of threads sleeps in glibc, called from the program, whose
    // call sites give the entry values of glibc's arguments.
    let programs = [
        (corpus_dir().join("signal-O2-nofp"), 1),
        (corpus_dir().join("throw-O2-nofp"), 1),
        (abort_program, 1),
        (corpus_dir().join("threads-O2-nofp"), 2),
    ];
    let mut failures = Vec::new();
    let mut libc_frames = 0;
    for (program, thread) in &programs {
        let thread = *thread;
        let name = program.file_name().expect("program name").to_string_lossy().into_owned();
        let core_dir = run_dir.path().join(format!("{name}.cores"));
        fs::create_dir_all(&core_dir).expect("creating the core directory");
        let kernel = kernel_core(program, &core_dir);
        let gcore = gdb_core(program, &core_dir.join("gcore.core"));
        for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
            let levels = frames_with_lines(core, thread);
            let expected = gdb_frame_scopes(program, core, thread, &levels);
            assert_eq!(expected.len(), levels.len(), "{name} {kind}: gdb printed {expected:?}");
            for (&level, expected) in levels.iter().zip(&expected) {
                let ours = stardump_frame_scope(core, thread, level);
                if ours.line.contains(".c:") && !ours.line.contains(&name) && ours.line.contains("../") {
                    libc_frames += 1;
                }
                if &ours != expected {
                    failures.push(format!(
                        "{name} {kind} thread {thread} frame {level}:\n  gdb:      {expected:?}\n  stardump: {ours:?}"
                    ));
                }
            }
        }
    }
    assert!(libc_frames > 0, "no glibc frame with a source line was compared");
    assert!(failures.is_empty(), "{} frames differ from gdb's:\n{}", failures.len(), failures.join("\n"));
}

/// Returns the `$1 = …` line of gdb's `print EXPRESSION` in frame `level`.
fn gdb_print(program: &Path, core: &Path, level: usize, expression: &str) -> String {
    let output = gdb_commands(program, core, &[&format!("frame {level}"), &format!("print {expression}")]);
    output.lines().find(|line| line.starts_with("$1 = ")).unwrap_or_default().to_owned()
}

#[test]
fn pointers_into_modules_named_like_gdb() {
    require_libc_debug_info();
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let program = build_program(run_dir.path(), "give-up", "gcc", ABORT_SOURCE, &["-g", "-O2"]);
    let kernel = kernel_core(&program, run_dir.path());
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));
    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let (json, _) = stardump("bt", core, &["--json".as_ref()]);
        let report: Value = serde_json::from_str(&json).expect("bt --json output");
        let frames = report["threads"][0]["frames"].as_array().expect("frames");
        let level_of = |function: &str| {
            frames
                .iter()
                .position(|frame| frame["function"] == function)
                .unwrap_or_else(|| panic!("{kind}: no {function} frame: {json}"))
        };
        let give_up = level_of("give_up");
        let abort = level_of("__GI_abort");
        let cases = [
            // From the program's frame into glibc's code and data.
            (give_up, "exit_function"),
            (give_up, "out_stream"),
            (give_up, "&sink"),
            // From glibc's frame, whose DWARF lacks the program's globals,
            // into glibc and into the program.
            (abort, "exit_function"),
            (abort, "$pc"),
            (abort, "stdout"),
            (abort, "on_abort"),
        ];
        for (level, expression) in cases {
            let expected = gdb_print(&program, core, level, expression);
            assert!(expected.ends_with('>'), "{kind}: gdb printed {expected:?} for {expression}");
            let (ours, warnings) =
                stardump("print", core, &["--frame".as_ref(), level.to_string().as_ref(), expression.as_ref()]);
            assert_eq!(ours.trim(), expected, "{kind}: print {expression} in frame {level}: {warnings}");
        }
    }
}

/// Returns the value of gdb's `print EXPR` line `$N = VALUE`.
fn gdb_value(line: &str) -> &str {
    line.split_once(" = ").map_or(line, |(_, value)| value.trim())
}

#[test]
fn crash_signal_matches_gdb() {
    let mut checked = 0;
    for fixture in ["deep-O2-nofp", "throw-O2-nofp", "threads-O2-nofp"] {
        let program = corpus_dir().join(fixture);
        let run_dir = tempfile::tempdir().expect("creating a run directory");
        let kernel = kernel_core(&program, run_dir.path());
        let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));
        for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
            let label = format!("{fixture} {kind}");
            let gdb = gdb_commands(
                &program,
                core,
                &[
                    "print $_siginfo.si_signo",
                    "print $_siginfo.si_code",
                    "print $_siginfo._sifields._sigfault.si_addr",
                    "print $_siginfo._sifields._kill.si_pid",
                ],
            );
            let lines: Vec<&str> = gdb.lines().collect();
            let header: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| line.starts_with("Core was generated by") || line.starts_with("Program terminated"))
                .collect();
            let values: Vec<&str> = lines.iter().copied().filter(|line| line.starts_with('$')).map(gdb_value).collect();
            assert_eq!(values.len(), 4, "{label}: gdb printed no siginfo:\n{gdb}");

            // The text starts with gdb's lines, then the fault or the sender.
            let (bt, _) = stardump("bt", core, &[]);
            let ours: Vec<&str> = bt.lines().take(header.len()).collect();
            assert_eq!(ours, header, "{label}: bt's first lines differ from gdb's:\n{bt}");
            assert!(header.iter().any(|line| line.starts_with("Program terminated")), "{label}: gdb:\n{gdb}");

            let (json, _) = stardump("info", core, &["--json".as_ref()]);
            let info: Value = serde_json::from_str(&json).expect("info --json output");
            let signal = &info["signal"];
            assert_eq!(signal["number"].to_string(), values[0], "{label}: {signal}");
            assert_eq!(signal["code"].to_string(), values[1], "{label}: {signal}");
            let code: i32 = values[1].parse().expect("si_code");
            if code > 0 {
                // `(void *) 0x0`
                let address = values[2].rsplit(' ').next().unwrap();
                assert_eq!(signal["fault_address"], address, "{label}: {signal}");
                assert!(bt.contains(&format!("Fault address: {address} (")), "{label}:\n{bt}");
            } else {
                assert_eq!(signal["sender_pid"].to_string(), values[3], "{label}: {signal}");
                assert!(bt.contains(&format!("Sent by: pid {}, ", values[3])), "{label}:\n{bt}");
            }
            let first_lwp = info["signal"]["lwp"].as_u64().expect("the signal's thread");
            assert!(bt.contains(&format!("Thread 1 (LWP {first_lwp})")), "{label}:\n{bt}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn threads_selected_like_gdb() {
    let program = corpus_dir().join("threads-O2-nofp");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let core = kernel_core(&program, run_dir.path());
    let (all, _) = stardump("bt", &core, &[]);
    let blocks: Vec<&str> = all.split("\n\n").filter(|block| block.starts_with("Thread ")).collect();
    assert!(blocks.len() >= 3, "{all}");

    // `--thread N` is gdb's thread number, `--lwp` the Linux thread id.
    let (second, _) = stardump("bt", &core, &["--thread".as_ref(), "2".as_ref()]);
    let thread_block = |text: &str| text.split("\n\n").find(|block| block.starts_with("Thread ")).map(|block| block.trim_end().to_owned());
    assert_eq!(thread_block(&second).as_deref(), Some(blocks[1].trim_end()));
    let lwp = blocks[2].split("LWP ").nth(1).and_then(|rest| rest.split(')').next()).expect("an LWP");
    let (third, _) = stardump("bt", &core, &["--lwp".as_ref(), lwp.as_ref()]);
    assert_eq!(thread_block(&third).as_deref(), Some(blocks[2].trim_end()));

    // `frame N` prints the frame and its source line, as gdb's does.
    let gdb = gdb_commands(&program, &core, &["frame 1"]);
    let gdb_lines: Vec<&str> = gdb.lines().skip_while(|line| !line.starts_with("#1 ")).take(2).collect();
    let (ours, _) = stardump("frame", &core, &["1".as_ref()]);
    let our_lines: Vec<String> = ours.lines().map(|line| line.trim_end_matches(" [cfi]").to_owned()).collect();
    assert_eq!(our_lines, gdb_lines, "gdb:\n{gdb}");
}
