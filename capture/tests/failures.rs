//! Captures that fail: nothing listening, a server that is not a GDB stub,
//! a stub that drops the connection, a QEMU killed mid-capture, and SIGTERM.
//! Each must print one line naming the target, exit non-zero and leave no
//! file behind.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::fake_stub::FakeStub;
use common::*;

/// Asserts a failed run: the exit code, one line of stderr containing
/// `expected`, and an empty output directory.
fn assert_failed(output: &std::process::Output, code: i32, expected: &str, dir: &std::path::Path) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "expected one line of stderr, got: {stderr}");
    assert!(stderr.starts_with("stardump-capture: gdb:127.0.0.1:"), "stderr: {stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in: {stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(files_in(dir), Vec::<String>::new(), "files left behind");
}

#[test]
fn nothing_listening_is_refused() {
    let port = stardump_tests::qemu::free_port();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let result = run_capture(&[&format!("gdb:127.0.0.1:{port}"), "-o", output.to_str().unwrap()]);
    assert_failed(&result, 1, &format!("gdb:127.0.0.1:{port}: connection refused"), dir.path());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(stderr.trim_end(), format!("stardump-capture: gdb:127.0.0.1:{port}: connection refused"));
}

#[test]
fn http_server_is_not_a_stub() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 512];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let result = run_capture(&[&format!("gdb:127.0.0.1:{port}"), "-o", output.to_str().unwrap()]);
    server.join().unwrap();
    assert_failed(
        &result,
        1,
        "not a GDB remote stub: received 'HTTP/1.1 400 Bad Request' instead of a packet",
        dir.path(),
    );
}

#[test]
fn silent_stub_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Accept the request and never reply, until the client gives up.
        let mut request = [0u8; 512];
        while matches!(stream.read(&mut request), Ok(len) if len > 0) {}
    });
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let started = std::time::Instant::now();
    let result = run_capture(&[&format!("gdb:127.0.0.1:{port}"), "-o", output.to_str().unwrap(), "--timeout", "0.5"]);
    server.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout was not honoured");
    assert_failed(&result, 1, "timed out after 0.5 s while waiting for the reply to 'qSupported", dir.path());
}

#[test]
fn stub_dropping_connection_mid_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stub = FakeStub {
        drop_after_memory_reads: Some(3),
        ..FakeStub::default()
    };
    let server = std::thread::spawn(move || stub.serve(listener));
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let result = run_capture(&[&format!("gdb:127.0.0.1:{port}"), "-o", output.to_str().unwrap()]);
    server.join().unwrap();
    // The stub closes with requests still unread, so its TCP stack resets
    // the connection and the replies already sent may be lost: the error
    // names the oldest read in flight, which is not always the fourth.
    assert_failed(&result, 1, "connection closed while reading memory at 0x", dir.path());
}

#[test]
fn qemu_killed_mid_capture() {
    // 512 MiB take several seconds to read, so the kill lands mid-copy.
    let mut qemu = start_spinning_guest(512, 1);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let capture = Command::new(capture_binary())
        .args([&qemu.gdb_target(), "-o", output.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    qemu.kill();
    let result = capture.wait_with_output().unwrap();
    assert_failed(&result, 1, "connection closed while reading memory at 0x", dir.path());
}

#[test]
fn sigterm_resumes_guest() {
    let qemu = start_spinning_guest(512, 1);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.snap");
    let capture = Command::new(capture_binary())
        .args([&qemu.gdb_target(), "-o", output.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let status = Command::new("kill").args(["-TERM", &capture.id().to_string()]).status().unwrap();
    assert!(status.success());
    let result = capture.wait_with_output().unwrap();
    assert_failed(&result, 143, "interrupted by SIGTERM; the target was released in the state it had before the capture", dir.path());

    std::thread::sleep(Duration::from_millis(300));
    assert!(vm_was_running(qemu.gdb_port()), "the guest was left stopped after SIGTERM");
}
