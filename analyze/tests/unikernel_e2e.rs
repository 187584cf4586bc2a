//! `stardump bt` on snapshots of the test unikernel taken by
//! `stardump-capture` from a QEMU guest that executed `ud2`: the walk must
//! reach the worker thread's entry through the exception stub's trap frame
//! by CFI alone, with and without frame pointers.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::qemu::{GuestConfig, Qemu};

/// Captures the unikernel `variant` halted after `mode=ud2` and returns
/// `stardump bt --json` of the boot vCPU, with the exit status.
fn backtrace_after_ud2(variant: &str) -> (Option<i32>, Value, String) {
    let binaries = binaries();
    let image = unikernel_image(variant);
    let work_dir = tempfile::tempdir().unwrap();
    let snapshot = work_dir.path().join(format!("{variant}.sdump"));

    let mut qemu = Qemu::start(&GuestConfig {
        kernel: image.clone(),
        command_line: "mode=ud2".to_owned(),
        memory_mib: 64,
        vcpus: 1,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial("stardust-test: halted in crash_halt", Duration::from_secs(60))
        .unwrap_or_else(|error| panic!("{variant}: {error:#}"));
    let capture = Command::new(&binaries.capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(&snapshot)
        .output()
        .expect("running stardump-capture");
    qemu.kill();
    assert!(
        capture.status.success(),
        "{variant}: stardump-capture failed: {}",
        String::from_utf8_lossy(&capture.stderr)
    );

    let run = |json: bool| {
        let mut command = Command::new(&binaries.stardump);
        command.arg("bt").arg(&snapshot).arg("--image").arg(&image).args(["--vcpu", "0"]);
        if json {
            command.arg("--json");
        }
        command.output().expect("running stardump bt")
    };
    let json = run(true);
    let text = run(false);
    assert_eq!(String::from_utf8_lossy(&json.stderr), "", "{variant}: stardump bt printed warnings");
    let report: Value = serde_json::from_slice(&json.stdout).expect("stardump bt --json printed invalid JSON");
    (json.status.code(), report, String::from_utf8_lossy(&text.stdout).into_owned())
}

/// `function [kind, found_by]` per frame, stable across edits of the
/// unikernel's line numbers and addresses.
fn frame_names(report: &Value) -> String {
    report["threads"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| {
            let function = if frame["kind"] == "trap" { "<signal handler called>" } else { frame["function"].as_str().unwrap_or("??") };
            format!("{function} [{}, {}]", frame["kind"].as_str().unwrap(), frame["found_by"].as_str().unwrap())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_reaches_thread_entry(variant: &str) -> String {
    let (status, report, text) = backtrace_after_ud2(variant);
    assert_eq!(status, Some(0), "{variant}: backtrace incomplete:\n{text}");
    let thread = &report["threads"][0];
    assert_eq!(thread["complete"], true, "{variant}:\n{text}");
    let frames = thread["frames"].as_array().unwrap();
    assert!(frames.iter().all(|frame| frame["line"].is_u64()), "{variant}: a frame has no line:\n{text}");
    assert!(
        frames[1..].iter().all(|frame| frame["found_by"] == "cfi"),
        "{variant}: a frame was not found by CFI:\n{text}"
    );
    assert!(text.contains("<signal handler called> [cfi]\n"), "{variant}:\n{text}");
    frame_names(&report)
}

#[test]
fn o0_fp_ud2_reaches_thread_entry() {
    insta::assert_snapshot!(check_reaches_thread_entry("O0-fp"));
}

#[test]
fn o2_nofp_ud2_reaches_thread_entry() {
    insta::assert_snapshot!(check_reaches_thread_entry("O2-nofp"));
}
