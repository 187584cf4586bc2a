//! `stardump bt` on a `pid:` snapshot of a live fixture process prints the
//! same frames as gdb's `thread apply all bt` on that process.
//!
//! The threads fixture of tests/fixtures/linux parks four workers in
//! `sleep()` and the main thread in `usleep(200 ms)` before it crashes.
//! The test captures it inside that window with `--leave-paused`, so the
//! process stays stopped (SIGSTOP) after the capture, and gdb then attaches
//! to the same stopped threads. Frames are compared by function, source
//! file base name and line, per Linux thread id: gdb joins a DWARF 5 file
//! name with its directory (`./nptl/pthread_create.c`) where stardump
//! prints the line table's name.
//!
//! Needs gcc, make (Debian packages gcc, make) and gdb.

mod ptrace_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ptrace_common::{capture_binary, status_field};
use serde_json::Value;
use stardump_tests::gdb::parse_backtraces;
use stardump_tests::{require_program, workspace_root};

/// Fixture variants compared: with frame pointers at -O0, without at -O2.
const FIXTURES: [&str; 2] = ["threads-O0-fp", "threads-O2-nofp"];
/// Tries per fixture: the capture must start inside a 200 ms window.
const ATTEMPTS: usize = 3;

/// One frame as compared: function, source file base name, line.
type Frame = (Option<String>, Option<String>, Option<u64>);

/// Builds the fixtures with their Makefile and returns the output directory.
fn build_fixtures() -> PathBuf {
    require_program("gcc", "gcc");
    require_program("make", "make");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let out = target.join("ptrace-fixtures");
    let output = Command::new("make")
        .arg("-C")
        .arg(workspace_root().join("tests/fixtures/linux"))
        .arg(format!("OUT={}", out.display()))
        .args(FIXTURES.iter().map(|fixture| out.join(fixture)))
        .output()
        .expect("running make");
    assert!(
        output.status.success(),
        "building the fixtures failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

fn base_name(file: &str) -> String {
    file.rsplit('/').next().unwrap_or(file).to_owned()
}

/// A fixture process, killed (by its pid) when dropped.
struct Fixture(Child);

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` and waits until its five threads sleep.
fn start_parked(program: &Path) -> Fixture {
    // In the fixture directory, so a core dumped by a missed window lands there.
    let directory = program.parent().expect("the fixture is in a directory");
    let fixture = Fixture(Command::new(program).current_dir(directory).spawn().expect("starting the fixture"));
    let pid = fixture.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sleeping = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
                    .filter(|stat| stat.rfind(')').is_some_and(|end| stat[end + 1..].trim_start().starts_with('S')))
                    .count()
            })
            .unwrap_or(0);
        if sleeping == 5 {
            // Past the barrier, into sleep() and usleep().
            std::thread::sleep(Duration::from_millis(20));
            return fixture;
        }
        assert!(Instant::now() < deadline, "the fixture's threads did not park");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Captures the parked fixture, leaving it stopped. Returns `None` when
/// the capture missed the window and the process crashed first.
fn capture_parked(program: &Path, output: &Path) -> Option<Fixture> {
    let fixture = start_parked(program);
    let pid = fixture.0.id();
    let result = Command::new(capture_binary())
        .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap(), "--leave-paused"])
        .output()
        .expect("running stardump-capture");
    if !result.status.success() {
        eprintln!("capture of {pid} failed, retrying: {}", String::from_utf8_lossy(&result.stderr));
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status_field(pid, "State").starts_with('T') {
        assert!(Instant::now() < deadline, "the fixture did not stop: {}", status_field(pid, "State"));
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(fixture)
}

/// Returns gdb's frames per LWP of the live process `pid`, and gdb's text.
fn gdb_frames(program: &Path, pid: u32) -> (BTreeMap<u64, Vec<Frame>>, String) {
    let gdb = require_program("gdb", "gdb");
    let output = Command::new("timeout")
        .env("LC_ALL", "C")
        .args(["-s", "KILL", "120", gdb.to_str().unwrap(), "-batch", "-nx"])
        .args(["-ex", "set width 0", "-ex", "set pagination off"])
        .args(["-ex", "set backtrace past-main on", "-ex", "set print frame-arguments none"])
        .args(["-ex", "thread apply all bt"])
        .arg(program)
        .arg(pid.to_string())
        .output()
        .expect("running gdb");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let backtraces = text.find("\nThread ").map_or("", |start| &text[start..]);

    // parse_backtraces numbers the threads; the headers give their LWPs.
    let mut lwps = BTreeMap::new();
    for line in backtraces.lines().filter(|line| line.starts_with("Thread ")) {
        let number = line["Thread ".len()..].split(' ').next().and_then(|n| n.parse::<u32>().ok());
        let lwp =
            line.split("(LWP ").nth(1).and_then(|rest| rest.split(')').next()).and_then(|l| l.parse::<u64>().ok());
        if let (Some(number), Some(lwp)) = (number, lwp) {
            lwps.insert(number, lwp);
        }
    }
    let threads = parse_backtraces(backtraces)
        .into_iter()
        .filter_map(|thread| {
            let lwp = *lwps.get(&thread.number)?;
            let frames = thread
                .frames
                .iter()
                .map(|frame| (frame.function.clone(), frame.file.as_deref().map(base_name), frame.line.map(u64::from)))
                .collect();
            Some((lwp, frames))
        })
        .collect();
    (threads, format!("{text}{}", String::from_utf8_lossy(&output.stderr)))
}

/// Returns stardump's frames per LWP of `snapshot`, and its text.
fn stardump_frames(snapshot: &Path) -> (BTreeMap<u64, Vec<Frame>>, String) {
    let stardump = &stardump_tests::build::binaries().stardump;
    let output = Command::new("timeout")
        .args(["-s", "KILL", "120"])
        .arg(stardump)
        .arg("bt")
        .arg(snapshot)
        .arg("--json")
        .output()
        .expect("running stardump");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stardump bt printed no JSON ({error}):\n{text}"));
    let mut threads = BTreeMap::new();
    for thread in report["threads"].as_array().expect("threads array") {
        let lwp = thread["lwp"].as_u64().expect("every thread of a process has its LWP");
        let frames = thread["frames"]
            .as_array()
            .expect("frames array")
            .iter()
            .map(|frame| {
                (
                    frame["function"].as_str().map(str::to_owned),
                    frame["file"].as_str().map(base_name),
                    frame["line"].as_u64(),
                )
            })
            .collect();
        threads.insert(lwp, frames);
    }
    (threads, text)
}

#[test]
fn bt_matches_gdb_on_live_fixture() {
    let out = build_fixtures();
    let dir = tempfile::tempdir().unwrap();
    for fixture in FIXTURES {
        let program = out.join(fixture);
        let snapshot = dir.path().join(format!("{fixture}.sdump"));
        let process = (0..ATTEMPTS)
            .find_map(|_| capture_parked(&program, &snapshot))
            .unwrap_or_else(|| panic!("no capture of {fixture} within {ATTEMPTS} attempts"));
        let pid = process.0.id();

        let (ours, our_text) = stardump_frames(&snapshot);
        let (gdb, gdb_text) = gdb_frames(&program, pid);
        drop(process);

        assert_eq!(gdb.len(), 5, "{fixture}: gdb threads\n{gdb_text}");
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            gdb.keys().collect::<Vec<_>>(),
            "{fixture}: thread ids\ngdb:\n{gdb_text}\nstardump:\n{our_text}"
        );
        for (lwp, gdb_thread) in &gdb {
            assert_eq!(
                &ours[lwp], gdb_thread,
                "{fixture}: frames of LWP {lwp}\ngdb:\n{gdb_text}\nstardump:\n{our_text}"
            );
        }
        let workers = ours
            .values()
            .filter(|frames| frames.iter().any(|frame| frame.0.as_deref().is_some_and(|f| f.ends_with("_wait"))))
            .count();
        assert_eq!(workers, 4, "{fixture}: four workers sleep in their own functions\n{our_text}");
    }
}
