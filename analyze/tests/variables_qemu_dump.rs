//! The variable commands read any core file the Target trait opens, not
//! only snapshots: the test unikernel is halted after `ud2`, captured by
//! `stardump-capture` (left paused), then dumped by QEMU's own
//! `dump-guest-memory` through QMP. Every frame's arguments and locals and
//! a few globals must print the same from both files.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::qemu::free_port;
use stardump_tests::require_program;

/// A QEMU guest started by this test under coreutils `timeout`, ended by
/// PID on drop: SIGTERM to `timeout`, which passes it on to QEMU (SIGKILL
/// would end `timeout` alone and leave QEMU running).
struct Guest {
    child: Child,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// Sends one QMP command and returns its response, skipping events.
fn qmp(stream: &mut UnixStream, reader: &mut BufReader<UnixStream>, command: &str) -> Value {
    stream.write_all(command.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading QMP");
        assert!(!line.is_empty(), "QMP closed the connection after {command}");
        let response: Value = serde_json::from_str(&line).expect("QMP sent invalid JSON");
        if response.get("event").is_none() {
            return response;
        }
    }
}

fn wait_for(path: &Path, marker: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(path).unwrap_or_default().contains(marker) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {marker:?} in {}", path.display());
}

fn stardump_json(args: &[&str]) -> Value {
    let output = Command::new(&binaries().stardump).args(args).output().expect("running stardump");
    assert!(
        matches!(output.status.code(), Some(0 | 2)),
        "stardump {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stardump printed invalid JSON")
}

#[test]
fn qemu_dump_matches_snapshot() {
    let qemu = require_program("qemu-system-x86_64", "qemu-system-x86");
    let image = unikernel_image("O2-nofp");
    let work_dir = tempfile::tempdir().unwrap();
    let serial = work_dir.path().join("serial.log");
    let qmp_path = work_dir.path().join("qmp.sock");
    let snapshot = work_dir.path().join("guest.sdump");
    let dump = work_dir.path().join("guest.qemu-dump");
    let port = free_port();

    let child = Command::new("timeout")
        .args(["-s", "KILL", "300"])
        .arg(qemu)
        .args(["-machine", "microvm", "-accel", "tcg", "-cpu", "qemu64,+pdpe1gb", "-m", "64M", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
        .arg("-kernel")
        .arg(&image)
        .args(["-append", "mode=ud2", "-gdb", &format!("tcp:127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting QEMU");
    let _guest = Guest { child };
    wait_for(&serial, "stardust-test: halted in crash_halt");

    let capture = Command::new(&binaries().capture)
        .arg(format!("gdb:127.0.0.1:{port}"))
        .arg("-o")
        .arg(&snapshot)
        .arg("--leave-paused")
        .output()
        .expect("running stardump-capture");
    assert!(capture.status.success(), "capture failed: {}", String::from_utf8_lossy(&capture.stderr));

    let mut stream = UnixStream::connect(&qmp_path).expect("connecting to QMP");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(qmp(&mut stream, &mut reader, r#"{"execute": "qmp_capabilities"}"#).get("return").is_some());
    let command = serde_json::json!({
        "execute": "dump-guest-memory",
        "arguments": {"paging": false, "protocol": format!("file:{}", dump.display())}
    });
    let response = qmp(&mut stream, &mut reader, &command.to_string());
    assert!(response.get("return").is_some(), "dump-guest-memory failed: {response}");

    let image_arg = image.to_str().unwrap();
    let bt = stardump_json(&["bt", snapshot.to_str().unwrap(), "--image", image_arg, "--json"]);
    let frame_count = bt["threads"][0]["frames"].as_array().unwrap().len();
    assert!(frame_count > 8, "short backtrace: {bt}");
    for frame in 0..frame_count {
        let frame_arg = frame.to_string();
        let read = |file: &Path| {
            let report = stardump_json(&[
                "frame",
                file.to_str().unwrap(),
                "--image",
                image_arg,
                "--frame",
                &frame_arg,
                "--args",
                "--locals",
                "--json",
            ]);
            (report["arguments"].clone(), report["locals"].clone(), report["frame"]["function"].clone())
        };
        assert_eq!(read(&snapshot), read(&dump), "frame {frame} differs between the snapshot and QEMU's dump");
    }
    for global in ["worker_config", "worker_stats", "mode_names", "$rip", "$eflags"] {
        let print = |file: &Path| {
            stardump_json(&["print", file.to_str().unwrap(), "--image", image_arg, "--json", global])["value"].clone()
        };
        assert_eq!(print(&snapshot), print(&dump), "print {global} differs between the snapshot and QEMU's dump");
    }
}
