//! The whole path, with gdb as the oracle: boot the test unikernel under
//! QEMU, capture it with `stardump-capture` and leave it paused, take gdb's
//! live `thread apply all bt` of the same paused guest, end QEMU, and check
//! that `stardump bt` on the snapshot alone prints the same frames for every
//! vCPU (function, file and line of each frame, and the trap frames).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::gdb::{live_backtraces, GdbFrame, GdbThread};
use stardump_tests::qemu::{GuestConfig, Qemu};

/// End modes that leave the guest in a state worth a backtrace, with the
/// serial line the guest prints when it gets there.
const END_MODES: [(&str, &str); 4] = [
    ("spin", "stardust-test: reached mode=spin"),
    ("ud2", "stardust-test: halted in crash_halt"),
    ("null", "stardust-test: halted in crash_halt"),
    ("div0", "stardust-test: halted in crash_halt"),
];

/// vCPUs each guest runs with: the boot CPU runs the threads, the second
/// one idles in its own loop, so the test compares two distinct backtraces.
const VCPUS: u32 = 2;

/// One frame as stardump printed it in `bt --json`.
#[derive(Debug)]
struct StardumpFrame {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    trap: bool,
    found_by: String,
}

/// One vCPU's backtrace as stardump printed it.
#[derive(Debug)]
struct StardumpThread {
    vcpu: u64,
    complete: bool,
    stop_reason: Option<String>,
    frames: Vec<StardumpFrame>,
}

fn parse_stardump_json(text: &str) -> Vec<StardumpThread> {
    let report: Value = serde_json::from_str(text).expect("stardump bt --json printed invalid JSON");
    let threads = report["threads"].as_array().expect("`threads` is an array");
    threads
        .iter()
        .map(|thread| StardumpThread {
            vcpu: thread["vcpu"].as_u64().expect("`vcpu` is a number"),
            complete: thread["complete"].as_bool().expect("`complete` is a boolean"),
            stop_reason: thread["stop_reason"].as_str().map(str::to_string),
            frames: thread["frames"]
                .as_array()
                .expect("`frames` is an array")
                .iter()
                .map(|frame| StardumpFrame {
                    function: frame["function"].as_str().map(str::to_string),
                    file: frame["file"].as_str().map(str::to_string),
                    line: frame["line"].as_u64().map(|line| line as u32),
                    trap: frame["kind"] == "trap",
                    found_by: frame["found_by"].as_str().unwrap_or_default().to_string(),
                })
                .collect(),
        })
        .collect()
}

/// Returns whether stardump's file names the same file as gdb's: gdb prints
/// the DWARF name (often relative), stardump the path joined with the
/// compilation directory.
fn same_file(stardump: Option<&str>, gdb: Option<&str>) -> bool {
    match (stardump, gdb) {
        (Some(ours), Some(theirs)) => ours == theirs || ours.ends_with(&format!("/{theirs}")),
        (None, None) => true,
        _ => false,
    }
}

fn describe_gdb_frame(frame: &GdbFrame) -> String {
    if frame.signal_frame {
        return "<signal handler called>".to_string();
    }
    format!(
        "{} at {}:{}",
        frame.function.as_deref().unwrap_or("??"),
        frame.file.as_deref().unwrap_or("?"),
        frame.line.map_or("?".to_string(), |line| line.to_string())
    )
}

fn describe_stardump_frame(frame: &StardumpFrame) -> String {
    if frame.trap {
        return "<signal handler called>".to_string();
    }
    format!(
        "{} at {}:{} [{}]",
        frame.function.as_deref().unwrap_or("??"),
        frame.file.as_deref().unwrap_or("?"),
        frame.line.map_or("?".to_string(), |line| line.to_string()),
        frame.found_by
    )
}

/// Compares one vCPU's backtraces and returns a description of every
/// difference.
fn compare_thread(gdb: &GdbThread, ours: &StardumpThread) -> Vec<String> {
    let mut differences = Vec::new();
    let count = gdb.frames.len().max(ours.frames.len());
    for index in 0..count {
        let theirs = gdb.frames.get(index);
        let mine = ours.frames.get(index);
        let same = match (theirs, mine) {
            (Some(theirs), Some(mine)) => {
                theirs.signal_frame == mine.trap
                    && (theirs.signal_frame
                        || (theirs.function == mine.function
                            && same_file(mine.file.as_deref(), theirs.file.as_deref())
                            && theirs.line == mine.line))
            }
            _ => false,
        };
        if !same {
            differences.push(format!(
                "  #{index}: gdb {:?}, stardump {:?}",
                theirs.map(describe_gdb_frame),
                mine.map(describe_stardump_frame)
            ));
        }
    }
    if gdb.stopped.is_none() != ours.complete {
        differences.push(format!(
            "  gdb stop reason {:?}, stardump stop reason {:?}",
            gdb.stopped, ours.stop_reason
        ));
    }
    differences
}

/// Captures one guest and returns a description of every difference
/// between gdb's and stardump's backtraces (empty when they agree).
fn check_case(variant: &str, mode: &str, marker: &str, work_dir: &Path) -> Vec<String> {
    let binaries = binaries();
    let image = unikernel_image(variant);
    let snapshot = work_dir.join(format!("{variant}-{mode}.sdump"));

    let mut qemu = Qemu::start(&GuestConfig {
        kernel: image.clone(),
        command_line: format!("mode={mode}"),
        memory_mib: 64,
        vcpus: VCPUS,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial(marker, Duration::from_secs(60))
        .unwrap_or_else(|error| panic!("{variant} mode={mode}: {error:#}"));

    let capture = Command::new(&binaries.capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(&snapshot)
        .arg("--leave-paused")
        .arg("--image")
        .arg(&image)
        .output()
        .expect("running stardump-capture");
    assert!(
        capture.status.success(),
        "{variant} mode={mode}: stardump-capture failed: {}",
        String::from_utf8_lossy(&capture.stderr)
    );

    let gdb_threads = live_backtraces(&image, qemu.gdb_port())
        .unwrap_or_else(|error| panic!("{variant} mode={mode}: {error:#}"));
    qemu.kill();

    let bt = Command::new(&binaries.stardump)
        .arg("bt")
        .arg(&snapshot)
        .arg("--image")
        .arg(&image)
        .arg("--json")
        .output()
        .expect("running stardump bt");
    let stdout = String::from_utf8_lossy(&bt.stdout);
    assert!(
        bt.status.code() == Some(0) || bt.status.code() == Some(2),
        "{variant} mode={mode}: stardump bt failed with {}: {}",
        bt.status,
        String::from_utf8_lossy(&bt.stderr)
    );
    let our_threads = parse_stardump_json(&stdout);

    let mut differences = Vec::new();
    if gdb_threads.len() != VCPUS as usize {
        differences.push(format!("  gdb printed {} threads, expected {VCPUS}", gdb_threads.len()));
    }
    if our_threads.len() != gdb_threads.len() {
        differences.push(format!(
            "  gdb printed {} threads, stardump {}",
            gdb_threads.len(),
            our_threads.len()
        ));
    }
    for gdb_thread in &gdb_threads {
        let vcpu = u64::from(gdb_thread.number - 1);
        match our_threads.iter().find(|thread| thread.vcpu == vcpu) {
            Some(ours) => {
                let thread_differences = compare_thread(gdb_thread, ours);
                if !thread_differences.is_empty() {
                    differences.push(format!("  vCPU {vcpu}:"));
                    differences.extend(thread_differences);
                }
            }
            None => differences.push(format!("  vCPU {vcpu}: missing from stardump's output")),
        }
    }
    if differences.is_empty() {
        // Also reject the case where both agree on a trivial backtrace: every
        // end mode is reached through the worker's call chain.
        let boot_cpu = &gdb_threads[0];
        let names: Vec<_> = boot_cpu.frames.iter().filter_map(|frame| frame.function.as_deref()).collect();
        if !names.contains(&"dispatch_end_mode") || !names.contains(&"worker_main") {
            differences.push(format!("  vCPU 0 backtrace does not run through the worker chain: {names:?}"));
        }
    }
    if !differences.is_empty() {
        differences.insert(0, format!("{variant} mode={mode}:"));
    }
    differences
}

fn check_variant(variant: &str) {
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let mut failures = Vec::new();
    for (mode, marker) in END_MODES {
        failures.extend(check_case(variant, mode, marker, work_dir.path()));
    }
    assert!(failures.is_empty(), "stardump and gdb disagree:\n{}", failures.join("\n"));
}

#[test]
fn backtraces_match_gdb_o0_fp() {
    check_variant("O0-fp");
}

#[test]
fn backtraces_match_gdb_o0_nofp() {
    check_variant("O0-nofp");
}

#[test]
fn backtraces_match_gdb_o2_fp() {
    check_variant("O2-fp");
}

#[test]
fn backtraces_match_gdb_o2_nofp() {
    check_variant("O2-nofp");
}
