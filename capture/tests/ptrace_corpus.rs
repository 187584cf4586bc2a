//! Every program of tests/fixtures/linux, captured live at its crash with
//! `stardump-capture pid:`, has the backtraces that gdb prints for a
//! `gcore` core of the same stopped process.
//!
//! With `STARDUMP_FIXTURE_STOP=1` in its environment, a fixture stops
//! itself with SIGSTOP in a handler of its crash signal (SIGSEGV, or
//! SIGABRT for the C++ throw). Below the kernel's signal frame its stack
//! is the one it crashes with. The test waits until every thread of the
//! process is stopped (state T), captures it with `stardump-capture pid:`,
//! checks that it is still stopped, writes a core of it with gdb's
//! `gcore`, and kills it by its pid. Then `stardump bt --json` on the
//! snapshot must list, for every thread (matched by LWP), the frames of
//! gdb's `thread apply all bt` on the core: the same function, source file
//! base name and line per frame, and the signal frame at the same place.
//!
//! Files are compared by base name because gdb joins a DWARF 5 file name
//! with its directory entry (`./nptl/pthread_kill.c`) where stardump prints
//! the line table's name. gdb runs with `set backtrace past-main on`, so
//! that it shows glibc's startup frames as stardump does. Each test prints
//! its agreement per fixture (`--nocapture` shows it).
//!
//! Needs gcc, g++, make, binutils and gdb (Debian packages of those names).

mod ptrace_common;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ptrace_common::capture_binary;
use serde_json::Value;
use stardump_tests::{require_program, workspace_root};

/// The environment variable that makes a fixture stop at its crash.
const STOP_VARIABLE: &str = "STARDUMP_FIXTURE_STOP";

/// Seconds that gdb, gcore, the capture or stardump may run before `timeout`
/// kills it.
const TIMEOUT_SECONDS: &str = "120";

/// Time a fixture has to reach its crash and stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames stardump may print per thread. The deep fixture has about 310.
const FRAME_LIMIT: &str = "2000";

/// Mismatches listed per fixture. The message always gives their exact count.
const MAX_LISTED_MISMATCHES: usize = 12;

/// Builds the whole corpus once per test process and returns its directory.
/// It is not the directory of analyze's corpus test, so that two test
/// processes never run make on the same files.
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
        let out = target.join("ptrace-corpus-fixtures");
        let output = Command::new("make")
            .arg("-C")
            .arg(workspace_root().join("tests/fixtures/linux"))
            .arg(format!("OUT={}", out.display()))
            .output()
            .expect("running make");
        assert!(
            output.status.success(),
            "building the Linux fixtures failed:\n{}",
            text(&output)
        );
        out
    })
}

fn debug_dir() -> PathBuf {
    corpus_dir().join("debug")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn base_name(file: &str) -> String {
    file.rsplit('/').next().unwrap_or(file).to_owned()
}

/// A fixture process started by the test. Dropping it sends SIGKILL to its
/// pid and reaps it.
struct Fixture {
    child: Child,
    name: String,
}

impl Fixture {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process by its pid and reaps it.
    fn kill(mut self) {
        self.child.kill().unwrap_or_else(|error| panic!("{}: SIGKILL to {}: {error}", self.name, self.pid()));
        self.child.wait().unwrap_or_else(|error| panic!("{}: reaping {}: {error}", self.name, self.pid()));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the state letter (R, S, T, t...) of every thread of `pid`, by
/// thread id, or an empty map when the process is gone.
fn thread_states(pid: u32) -> BTreeMap<u64, char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // The command name in brackets may contain spaces and `)`.
            let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
            Some((tid, state))
        })
        .collect()
}

/// Starts `program` in `run_dir` with the stop variable set and waits until
/// all its `threads` threads are stopped (state T).
fn start_stopped(program: &Path, run_dir: &Path, threads: usize) -> Fixture {
    let name = program.file_name().expect("a fixture file name").to_string_lossy().into_owned();
    let child = Command::new(program)
        .env(STOP_VARIABLE, "1")
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", program.display()));
    let mut fixture = Fixture { child, name };
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = fixture.child.try_wait().expect("polling the fixture") {
            panic!("{} exited with {status} instead of stopping at its crash", fixture.name);
        }
        let states = thread_states(fixture.pid());
        if states.len() == threads && states.values().all(|&state| state == 'T') {
            return fixture;
        }
        assert!(
            Instant::now() < deadline,
            "{}: not all {threads} threads stopped within {STOP_TIMEOUT:?}: {states:?}",
            fixture.name
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Captures the stopped `fixture` into `snapshot` with `stardump-capture
/// pid:`, and checks that the process is still stopped afterwards.
fn capture_stopped(fixture: &Fixture, snapshot: &Path) {
    let pid = fixture.pid();
    let output = Command::new("timeout")
        .args(["-s", "KILL", TIMEOUT_SECONDS])
        .arg(capture_binary())
        .arg(format!("pid:{pid}"))
        .arg("-o")
        .arg(snapshot)
        .output()
        .expect("running stardump-capture");
    assert!(output.status.success(), "{}: stardump-capture pid:{pid} failed:\n{}", fixture.name, text(&output));
    let states = thread_states(pid);
    assert!(
        states.values().all(|&state| state == 'T'),
        "{}: the process did not stay stopped after the capture: {states:?}",
        fixture.name
    );
}

/// Writes a core of the stopped `fixture` into `core` with gdb's `gcore`.
fn gcore(fixture: &Fixture, core: &Path) {
    let output = Command::new("timeout")
        .env("LC_ALL", "C")
        .args(["-s", "KILL", TIMEOUT_SECONDS, "gdb", "-batch", "-nx"])
        .args(["-p", &fixture.pid().to_string()])
        .args(["-ex", &format!("gcore {}", core.display())])
        .output()
        .expect("running gdb");
    assert!(core.is_file(), "{}: gcore wrote no {}:\n{}", fixture.name, core.display(), text(&output));
}

/// One frame reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Compared {
    signal_frame: bool,
    function: Option<String>,
    file: Option<String>,
    line: Option<u64>,
}

impl fmt::Display for Compared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.signal_frame {
            return write!(f, "<signal handler called>");
        }
        write!(f, "{}", self.function.as_deref().unwrap_or("??"))?;
        if let (Some(file), Some(line)) = (&self.file, self.line) {
            write!(f, " at {file}:{line}")?;
        }
        Ok(())
    }
}

/// Frames per LWP.
type Threads = BTreeMap<u64, Vec<Compared>>;

/// Returns the LWP in a gdb thread header, `Thread 2 (Thread 0x7f… (LWP
/// 1234))` or `Thread 1 (LWP 1234)`.
fn header_lwp(header: &str) -> Option<u64> {
    let rest = header.split("(LWP ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Returns gdb's frames per LWP of `core`, and gdb's output.
fn gdb_backtraces(program: &Path, core: &Path) -> (Threads, String) {
    let (gdb_threads, gdb_text) = stardump_tests::linux::core_backtraces(program, core, &debug_dir());

    // parse_backtraces keeps gdb's thread numbers; the headers give the LWPs.
    let mut lwps = BTreeMap::new();
    for line in gdb_text.lines().filter(|line| line.starts_with("Thread ")) {
        let number = line["Thread ".len()..].split(' ').next().and_then(|n| n.parse::<u32>().ok());
        if let (Some(number), Some(lwp)) = (number, header_lwp(line)) {
            lwps.insert(number, lwp);
        }
    }
    let mut threads = Threads::new();
    for thread in gdb_threads {
        let lwp = *lwps
            .get(&thread.number)
            .unwrap_or_else(|| panic!("gdb's thread {} has no LWP in its header:\n{gdb_text}", thread.number));
        let frames = thread
            .frames
            .iter()
            .map(|frame| Compared {
                signal_frame: frame.signal_frame,
                function: frame.function.clone(),
                file: frame.file.as_deref().map(base_name),
                line: frame.line.map(u64::from),
            })
            .collect();
        threads.insert(lwp, frames);
    }
    (threads, gdb_text)
}

/// Returns stardump's frames per LWP of `snapshot`, and a listing of them
/// with stardump's warnings.
fn stardump_backtraces(snapshot: &Path) -> (Threads, String) {
    let stardump = &stardump_tests::build::binaries().stardump;
    let output = Command::new("timeout")
        .args(["-s", "KILL", TIMEOUT_SECONDS])
        .arg(stardump)
        .arg("bt")
        .arg(snapshot)
        .args(["--json", "--limit", FRAME_LIMIT, "--debug-dir"])
        .arg(debug_dir())
        .output()
        .expect("running stardump");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stardump bt printed no JSON ({error}):\n{}", text(&output)));
    let mut threads = Threads::new();
    let mut listing = String::from_utf8_lossy(&output.stderr).into_owned();
    for thread in report["threads"].as_array().expect("threads array") {
        let lwp = thread["lwp"].as_u64().expect("every thread of a process has its LWP");
        let frames: Vec<Compared> = thread["frames"]
            .as_array()
            .expect("frames array")
            .iter()
            .map(|frame| {
                let signal_frame = frame["kind"] == "trap";
                Compared {
                    signal_frame,
                    function: if signal_frame { None } else { frame["function"].as_str().map(str::to_owned) },
                    file: if signal_frame { None } else { frame["file"].as_str().map(base_name) },
                    line: if signal_frame { None } else { frame["line"].as_u64() },
                }
            })
            .collect();
        listing.push_str(&format!("LWP {lwp}:\n"));
        for (level, frame) in frames.iter().enumerate() {
            listing.push_str(&format!("#{level:<2} {frame}\n"));
        }
        threads.insert(lwp, frames);
    }
    (threads, listing)
}

/// Result of comparing the backtraces of one fixture.
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

/// stardump's threads of one snapshot: LWP and frames, the thread group
/// leader first.
type Ordered = Vec<(u64, Vec<Compared>)>;

/// Stops `fixture` at its crash, captures it live and with gcore, kills
/// it, compares every thread with gdb's and prints the agreement. Returns
/// stardump's threads, or the mismatches with both backtraces.
fn check_fixture(fixture: &str, threads: usize) -> Result<Ordered, String> {
    let program = corpus_dir().join(fixture);
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let snapshot = run_dir.path().join(format!("{fixture}.sdump"));
    let core = run_dir.path().join(format!("{fixture}.core"));

    let process = start_stopped(&program, run_dir.path(), threads);
    let pid = u64::from(process.pid());
    capture_stopped(&process, &snapshot);
    gcore(&process, &core);
    process.kill();

    let (gdb, gdb_text) = gdb_backtraces(&program, &core);
    let (ours, our_text) = stardump_backtraces(&snapshot);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        gdb.keys().collect::<Vec<_>>(),
        "{fixture}: thread ids\ngdb:\n{gdb_text}\nstardump:\n{our_text}"
    );
    assert_eq!(ours.len(), threads, "{fixture}: thread count\n{our_text}");

    let mut agreement = Agreement::default();
    for (lwp, gdb_frames) in &gdb {
        compare_thread(&format!("LWP {lwp}"), gdb_frames, &ours[lwp], &mut agreement);
    }
    eprintln!("{fixture} live capture: {}/{} frames agree with gcore", agreement.agreeing, agreement.frames);
    for mismatch in agreement.mismatches.iter().take(MAX_LISTED_MISMATCHES) {
        eprintln!("  mismatch: {mismatch}");
    }
    if !agreement.mismatches.is_empty() {
        return Err(format!(
            "{fixture}: {} frames differ from gdb's, first:\n  {}\ngdb:\n{gdb_text}\nstardump:\n{our_text}",
            agreement.mismatches.len(),
            agreement.mismatches.iter().take(MAX_LISTED_MISMATCHES).cloned().collect::<Vec<_>>().join("\n  ")
        ));
    }

    // The thread group leader is the thread that crashed in every fixture,
    // so it comes first.
    let mut ordered: Ordered = ours.into_iter().collect();
    ordered.sort_by_key(|(lwp, _)| *lwp != pid);
    Ok(ordered)
}

/// Checks every fixture of `fixtures`, which have `threads` threads each,
/// and runs `check` on the threads of those that agree with gdb. Fails
/// after the last fixture when any disagreed.
fn check_fixtures(fixtures: &[&str], threads: usize, check: impl Fn(&str, &Ordered)) {
    let mut failures = Vec::new();
    for &fixture in fixtures {
        match check_fixture(fixture, threads) {
            Ok(ordered) => check(fixture, &ordered),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "backtraces differ from gdb's:\n{}", failures.join("\n"));
}

fn functions(frames: &[Compared]) -> Vec<&str> {
    frames.iter().map(|frame| frame.function.as_deref().unwrap_or("")).collect()
}

/// Returns the frames below the first signal frame: the crashed program's.
fn crashed_frames<'a>(fixture: &str, frames: &'a [Compared]) -> &'a [Compared] {
    let signal = frames.iter().position(|frame| frame.signal_frame);
    let signal = signal.unwrap_or_else(|| panic!("{fixture}: no signal frame in {:?}", functions(frames)));
    &frames[signal + 1..]
}

#[test]
fn live_deep_recursion_matches_gcore() {
    let fixtures = ["deep-O0-fp", "deep-O2-nofp", "deep-O3-nofp", "deep-O2-df", "deep-O2-buildid"];
    check_fixtures(&fixtures, 1, |fixture, threads| {
        let names = functions(crashed_frames(fixture, &threads[0].1));
        assert_eq!(names.first(), Some(&"crash_here"), "{fixture}: {names:?}");
        let recursive = names.iter().filter(|&&name| name == "recurse").count();
        assert!(recursive > 300, "{fixture}: only {recursive} recurse frames");
        assert!(names.contains(&"main"), "{fixture}: {names:?}");
    });
}

#[test]
fn live_signal_handler_matches_gcore() {
    let fixtures = ["signal-O0-fp", "signal-O2-nofp", "signal-O2-df", "signal-O2-debuglink"];
    check_fixtures(&fixtures, 1, |fixture, threads| {
        let crashed = crashed_frames(fixture, &threads[0].1);
        let names = functions(crashed);
        assert_eq!(names.first(), Some(&"crash_in_handler"), "{fixture}: {names:?}");
        // The SIGUSR1 handler's own signal frame is further down.
        let usr1 = crashed_frames(fixture, crashed);
        assert!(functions(usr1).contains(&"send_signal"), "{fixture}: {:?}", functions(usr1));
    });
}

#[test]
fn live_cpp_throw_matches_gcore() {
    check_fixtures(&["throw-O0-fp", "throw-O2-nofp"], 1, |fixture, threads| {
        let names = functions(crashed_frames(fixture, &threads[0].1));
        // glibc's abort is `__GI_abort` in its debug information.
        assert!(names.iter().any(|name| name.ends_with("abort")), "{fixture}: no abort in {names:?}");
        for expected in ["__cxa_throw", "thrower", "no_throw_zone", "main"] {
            assert!(names.iter().any(|name| name.starts_with(expected)), "{fixture}: no {expected} in {names:?}");
        }
    });
}

#[test]
fn live_threads_match_gcore() {
    check_fixtures(&["threads-O0-fp", "threads-O2-nofp", "threads-O3-df"], 5, |fixture, threads| {
        let names = functions(crashed_frames(fixture, &threads[0].1));
        assert_eq!(names.first(), Some(&"crash_main"), "{fixture}: {names:?}");
        for worker in ["worker_alpha_wait", "worker_beta_wait", "worker_gamma_wait", "worker_delta_wait"] {
            let found = threads.iter().any(|(_, frames)| functions(frames).contains(&worker));
            assert!(found, "{fixture}: no thread in {worker}");
        }
    });
}

/// Tries to catch the clock thread inside the vDSO this many times,
/// because it spends most but not all of its loop there.
const VDSO_ATTEMPTS: usize = 5;

#[test]
fn live_vdso_frame_matches_gcore() {
    for attempt in 1..=VDSO_ATTEMPTS {
        let threads = check_fixture("vdso-O2-nofp", 2).unwrap_or_else(|failure| panic!("{failure}"));
        let names = functions(crashed_frames("vdso-O2-nofp", &threads[0].1));
        assert_eq!(names.first(), Some(&"main"), "{names:?}");
        let clock = &threads[1].1;
        assert!(functions(clock).contains(&"read_clock"), "no read_clock in {:?}", functions(clock));
        // The vDSO's symbol table names the function, but it has no lines.
        if clock[0].function.as_deref() == Some("clock_gettime") {
            assert_eq!(clock[0].line, None);
            return;
        }
        eprintln!("attempt {attempt}: the clock thread was outside the vDSO: {:?}", functions(clock));
    }
    panic!("the clock thread was never in the vDSO in {VDSO_ATTEMPTS} live captures");
}

// The signal interrupted pc 0, the call through the null pointer. Like gdb,
// stardump shows that frame as `0x0 in ?? ()` and goes on to its caller,
// instead of taking pc 0 for the end of the stack.
#[test]
fn live_null_function_pointer_matches_gcore() {
    check_fixtures(&["nullcall-O0-fp", "nullcall-O2-nofp"], 1, |fixture, threads| {
        let names = functions(crashed_frames(fixture, &threads[0].1));
        assert_eq!(names.first(), Some(&""), "{fixture}: the frame at address 0 has no name: {names:?}");
        assert_eq!(names.get(1), Some(&"dispatch"), "{fixture}: {names:?}");
        assert_eq!(names.get(2), Some(&"main"), "{fixture}: {names:?}");
    });
}
