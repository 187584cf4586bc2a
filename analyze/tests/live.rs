//! `stardump` on a live QEMU guest (`gdb:127.0.0.1:PORT`), with gdb and a
//! snapshot of the same paused guest as oracles.
//!
//! Each guest runs the test unikernel on two vCPUs. `stardump-capture
//! --leave-paused` snapshots it and leaves it stopped, gdb prints its live
//! `thread apply all bt`, and `stardump --leave-paused` then reads the same
//! stopped guest. The live backtraces must name gdb's frames, and every
//! command must print what it prints from the snapshot. A last command
//! without `--leave-paused` must resume the guest, and SIGTERM or SIGINT
//! to a `stardump` reading a live guest must resume it too. A last test
//! reads a Linux process through gdbserver, whose stub has no physical
//! memory mode and no control registers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::gdb::{live_backtraces, GdbFrame, GdbThread};
use stardump_tests::qemu::{free_port, GuestConfig, Qemu};
use stardump_tests::require_program;

const SPIN_MARKER: &str = "stardust-test: reached mode=spin";
const HALTED_MARKER: &str = "stardust-test: halted in crash_halt";
const VCPUS: u32 = 2;
/// Maximum memory requests `bt` of both vCPUs may send to the stub. The
/// worker's stack, the idle stack, the page tables and the code compared
/// with the image spanned 11 to 13 pages in these guests, each fetched once.
const MAX_BT_REQUESTS: u64 = 64;

fn stardump(args: &[&str]) -> Output {
    Command::new(&binaries().stardump).args(args).output().expect("running stardump")
}

fn stdout_of(output: &Output, command: &str) -> String {
    assert!(
        output.status.code() == Some(0) || output.status.code() == Some(2),
        "{command} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Boots the unikernel `variant` with `mode` and waits for `marker`.
fn boot(variant: &str, mode: &str, marker: &str) -> Qemu {
    let mut qemu = Qemu::start(&GuestConfig {
        kernel: unikernel_image(variant),
        command_line: format!("mode={mode}"),
        memory_mib: 64,
        vcpus: VCPUS,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial(marker, Duration::from_secs(60)).unwrap_or_else(|error| panic!("{variant} {mode}: {error:#}"));
    qemu
}

/// Captures the guest into `snapshot` and leaves it paused.
fn capture_paused(qemu: &Qemu, image: &Path, snapshot: &Path) {
    let output = Command::new(&binaries().capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(snapshot)
        .arg("--leave-paused")
        .arg("--image")
        .arg(image)
        .output()
        .expect("running stardump-capture");
    assert!(output.status.success(), "stardump-capture failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Returns whether QEMU's VM was running when a client connected: QEMU 7.2
/// stops a running VM when a client connects and sends a stop reply
/// (`T02...`) on its own, but sends nothing for a VM that was stopped.
/// The probe detaches afterwards, which resumes the VM.
fn vm_was_running(port: u16) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the gdbstub");
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(700) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => received.extend_from_slice(&buf[..len]),
            Err(_) => {}
        }
    }
    stream.write_all(b"$D#44").expect("sending D");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(len) if buf[..len].windows(3).any(|window| window == b"$OK") => break,
            _ => {}
        }
    }
    received.windows(4).any(|window| window == b"$T02")
}

/// Reads the counter that `mode=spin` increments, through a live target.
fn spin_counter(target: &str, image: &str, leave_paused: bool) -> u64 {
    let mut args = vec!["print", target, "--image", image, "spin_counter"];
    if leave_paused {
        args.push("--leave-paused");
    }
    let text = stdout_of(&stardump(&args), "stardump print spin_counter");
    let value = text.trim().strip_prefix("$1 = ").unwrap_or_else(|| panic!("unexpected print output {text:?}"));
    value.parse().unwrap_or_else(|_| panic!("spin_counter is not a number: {text:?}"))
}

/// Removes the ANSI colour sequences that the log lines carry.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Returns the value of `field=N` in the live target's memory-read log line.
fn logged_count(stderr: &str, field: &str) -> u64 {
    let plain = strip_ansi(stderr);
    let line = plain
        .lines()
        .find(|line| line.contains("live target memory reads"))
        .unwrap_or_else(|| panic!("no memory-read log line in:\n{plain}"));
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {line:?}"));
    value.parse().unwrap_or_else(|_| panic!("{field} is not a number in {line:?}"))
}

/// Returns whether stardump's file names gdb's: gdb prints the DWARF name
/// (often relative), stardump the path joined with the compilation
/// directory.
fn same_file(stardump: Option<&str>, gdb: Option<&str>) -> bool {
    match (stardump, gdb) {
        (Some(ours), Some(theirs)) => ours == theirs || ours.ends_with(&format!("/{theirs}")),
        (None, None) => true,
        _ => false,
    }
}

fn describe_gdb(frame: &GdbFrame) -> String {
    if frame.signal_frame {
        return "<signal handler called>".to_owned();
    }
    format!("{} at {:?}:{:?}", frame.function.as_deref().unwrap_or("??"), frame.file, frame.line)
}

fn describe_stardump(frame: &Value) -> String {
    if frame["kind"] == "trap" {
        return "<signal handler called>".to_owned();
    }
    format!("{} at {}:{}", frame["function"].as_str().unwrap_or("??"), frame["file"], frame["line"])
}

/// Returns every difference between gdb's backtraces and `stardump bt
/// --json`'s threads.
fn differences_from_gdb(gdb: &[GdbThread], report: &Value) -> Vec<String> {
    let threads = report["threads"].as_array().expect("`threads` is an array");
    let mut differences = Vec::new();
    if threads.len() != gdb.len() {
        differences.push(format!("gdb printed {} threads, stardump {}", gdb.len(), threads.len()));
    }
    for gdb_thread in gdb {
        let vcpu = u64::from(gdb_thread.number - 1);
        let Some(ours) = threads.iter().find(|thread| thread["vcpu"] == vcpu) else {
            differences.push(format!("vCPU {vcpu} missing from stardump's output"));
            continue;
        };
        let frames = ours["frames"].as_array().expect("`frames` is an array");
        for index in 0..gdb_thread.frames.len().max(frames.len()) {
            let theirs = gdb_thread.frames.get(index);
            let mine = frames.get(index);
            let same = match (theirs, mine) {
                (Some(theirs), Some(mine)) => {
                    let trap = mine["kind"] == "trap";
                    theirs.signal_frame == trap
                        && (trap
                            || (theirs.function.as_deref() == mine["function"].as_str()
                                && same_file(mine["file"].as_str(), theirs.file.as_deref())
                                && theirs.line.map(u64::from) == mine["line"].as_u64()))
                }
                _ => false,
            };
            if !same {
                differences.push(format!(
                    "vCPU {vcpu} #{index}: gdb {:?}, stardump {:?}",
                    theirs.map(describe_gdb),
                    mine.map(describe_stardump)
                ));
            }
        }
    }
    differences
}

/// Drops the fields that name the file or the target, which differ between
/// a snapshot and a live target by design.
fn without_source(mut report: Value) -> Value {
    report.as_object_mut().expect("a JSON object").remove("snapshot");
    report
}

/// Compares `stardump bt` of the live, paused guest with gdb's live `bt`
/// and with `stardump bt` of its snapshot, then the other commands with
/// the snapshot's, and checks that the last command resumes the guest.
fn check_live_guest(variant: &str, mode: &str, marker: &str) {
    let qemu = boot(variant, mode, marker);
    let image = unikernel_image(variant);
    let image_arg = image.to_str().unwrap();
    let work_dir = tempfile::tempdir().unwrap();
    let snapshot = work_dir.path().join("guest.sdump");
    let snapshot_arg = snapshot.to_str().unwrap();
    let live = qemu.gdb_target();
    let live_arg = live.as_str();

    capture_paused(&qemu, &image, &snapshot);
    let gdb = live_backtraces(&image, qemu.gdb_port()).unwrap_or_else(|error| panic!("{variant} {mode}: {error:#}"));

    // The backtraces: live against gdb and against the snapshot, with the
    // stub requests they cost.
    let live_bt = Command::new(&binaries().stardump)
        .args(["bt", live_arg, "--image", image_arg, "--json", "--leave-paused"])
        .env("STARDUMP_LOG", "stardump::live=debug")
        .output()
        .expect("running stardump bt");
    let live_report: Value =
        serde_json::from_str(&stdout_of(&live_bt, "live bt")).expect("live bt printed invalid JSON");
    let differences = differences_from_gdb(&gdb, &live_report);
    assert!(differences.is_empty(), "{variant} {mode}: live bt differs from gdb:\n{}", differences.join("\n"));
    let names: Vec<&str> = live_report["threads"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|frame| frame["function"].as_str())
        .collect();
    assert!(names.contains(&"worker_main"), "{variant} {mode}: vCPU 0 does not run the worker: {names:?}");

    let stderr = String::from_utf8_lossy(&live_bt.stderr);
    let requests = logged_count(&stderr, "requests");
    let pages = logged_count(&stderr, "pages_fetched");
    eprintln!("{variant} {mode}: live bt of {VCPUS} vCPUs took {requests} memory requests for {pages} pages");
    assert!(requests <= MAX_BT_REQUESTS, "{variant} {mode}: live bt took {requests} memory requests");
    assert!(stderr.contains("left the target paused"), "{variant} {mode}: {stderr}");

    let snapshot_bt = stdout_of(&stardump(&["bt", snapshot_arg, "--image", image_arg, "--json"]), "snapshot bt");
    let snapshot_report: Value = serde_json::from_str(&snapshot_bt).expect("snapshot bt printed invalid JSON");
    assert_eq!(without_source(live_report), without_source(snapshot_report), "{variant} {mode}: bt --json");

    // Values, memory and threads print the same from the live guest and
    // from its snapshot.
    let commands: [&[&str]; 7] = [
        &["bt", "--full"],
        &["print", "worker_config"],
        &["print", "worker_stats"],
        &["print", "thread_list->next->name"],
        &["x/16xg", "&worker_stats"],
        &["frame", "--frame", "3"],
        &["threads"],
    ];
    for command in commands {
        let (name, rest) = command.split_first().unwrap();
        let mut from_snapshot = vec![*name, snapshot_arg, "--image", image_arg];
        from_snapshot.extend_from_slice(rest);
        let mut from_live = vec![*name, live_arg, "--image", image_arg, "--leave-paused"];
        from_live.extend_from_slice(rest);
        let expected = stardump(&from_snapshot);
        let actual = stardump(&from_live);
        assert_eq!(
            stdout_of(&actual, &command.join(" ")),
            stdout_of(&expected, &command.join(" ")),
            "{variant} {mode}: `{}` on the live guest",
            command.join(" ")
        );
        assert_eq!(
            actual.status.code(),
            expected.status.code(),
            "{variant} {mode}: `{}` exit status",
            command.join(" ")
        );
    }

    let info = stdout_of(&stardump(&["info", live_arg, "--json", "--leave-paused"]), "live info");
    let info: Value = serde_json::from_str(&info).expect("info printed invalid JSON");
    assert_eq!(info["live"], true);
    assert_eq!(info["format"], "live target");
    assert_eq!(info["vcpu_count"], VCPUS);

    // The guest is still stopped: no command so far resumed it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!vm_was_running(qemu.gdb_port()), "{variant} {mode}: the guest ran although every command left it paused");
    // The probe detached, which resumed the guest, so capture it again to
    // stop it for the checks below.
    capture_paused(&qemu, &image, &work_dir.path().join("again.sdump"));

    if mode == "spin" {
        let paused = spin_counter(live_arg, image_arg, true);
        assert_eq!(spin_counter(live_arg, image_arg, true), paused, "spin_counter moved while left paused");
        // Without --leave-paused the command resumes the guest at its end.
        assert_eq!(spin_counter(live_arg, image_arg, false), paused);
        std::thread::sleep(Duration::from_millis(300));
        let later = spin_counter(live_arg, image_arg, false);
        assert!(later > paused, "spin_counter did not advance after the live print: {paused} then {later}");
    } else {
        stdout_of(&stardump(&["bt", live_arg, "--image", image_arg]), "live bt that resumes");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(vm_was_running(qemu.gdb_port()), "{variant} {mode}: the guest was not resumed after the live command");
}

#[test]
fn live_spinning_guest_o2_fp() {
    check_live_guest("O2-fp", "spin", SPIN_MARKER);
}

#[test]
fn live_crashed_guest_o0_nofp() {
    check_live_guest("O0-nofp", "ud2", HALTED_MARKER);
}

/// A TCP proxy on 127.0.0.1 that delays each chunk from the stub by
/// `delay` before passing it on, so a live command takes long enough to be
/// interrupted while it reads memory. It records what the client sent.
struct SlowProxy {
    port: u16,
    from_client: Arc<Mutex<Vec<u8>>>,
}

impl SlowProxy {
    fn start(stub_port: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let from_client = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&from_client);
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else { return };
            let stub = TcpStream::connect(("127.0.0.1", stub_port)).expect("connecting the proxy to the stub");
            let (mut client_reader, mut stub_writer) = (client.try_clone().unwrap(), stub.try_clone().unwrap());
            let upstream = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(len @ 1..) = client_reader.read(&mut buf) {
                    recorded.lock().unwrap().extend_from_slice(&buf[..len]);
                    if stub_writer.write_all(&buf[..len]).is_err() {
                        break;
                    }
                }
                let _ = stub_writer.shutdown(Shutdown::Both);
            });
            let (mut stub_reader, mut client_writer) = (stub, client);
            let mut buf = [0u8; 4096];
            while let Ok(len @ 1..) = stub_reader.read(&mut buf) {
                std::thread::sleep(delay);
                if client_writer.write_all(&buf[..len]).is_err() {
                    break;
                }
            }
            let _ = client_writer.shutdown(Shutdown::Both);
            let _ = upstream.join();
        });
        SlowProxy { port, from_client }
    }

    fn client_sent(&self, needle: &[u8]) -> bool {
        self.from_client.lock().unwrap().windows(needle.len()).any(|window| window == needle)
    }
}

/// Sends `signal` to a live `stardump bt` once it reads memory, and checks
/// that it exits with 128 + `signal` after detaching, and that the guest
/// runs again. With `leave_paused`, it checks that the guest stays stopped
/// instead.
fn check_signal_releases_guest(signal: i32, signal_name: &str, leave_paused: bool) {
    let qemu = boot("O0-fp", "spin", SPIN_MARKER);
    let image = unikernel_image("O0-fp");
    let proxy = SlowProxy::start(qemu.gdb_port(), Duration::from_millis(100));

    let mut command = Command::new(&binaries().stardump);
    command.args(["bt", &format!("gdb:127.0.0.1:{}", proxy.port), "--image", image.to_str().unwrap()]);
    if leave_paused {
        command.arg("--leave-paused");
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting stardump bt");

    // The first memory read comes after the attach, once the guest is
    // paused and its registers are read.
    let started = Instant::now();
    while !proxy.client_sent(b"$m") {
        assert!(started.elapsed() < Duration::from_secs(60), "stardump sent no memory read through the proxy");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("stardump exited with {status} before it read memory");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: the child has not been waited for, so its PID is still ours.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill failed");

    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("stardump did not exit within 30 s of {signal_name}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(128 + signal), "exit status after {signal_name}: {stderr}");
    assert!(stderr.contains(&format!("interrupted by {signal_name}")), "{stderr}");

    std::thread::sleep(Duration::from_millis(300));
    if leave_paused {
        assert!(stderr.contains("left paused"), "{stderr}");
        assert!(!proxy.client_sent(b"$D"), "stardump detached despite --leave-paused: {stderr}");
        assert!(!vm_was_running(qemu.gdb_port()), "the guest ran after {signal_name} with --leave-paused: {stderr}");
    } else {
        assert!(proxy.client_sent(b"$D"), "stardump did not detach after {signal_name}: {stderr}");
        assert!(vm_was_running(qemu.gdb_port()), "the guest was not resumed after {signal_name}: {stderr}");
    }
}

#[test]
fn sigterm_resumes_live_guest() {
    check_signal_releases_guest(libc::SIGTERM, "SIGTERM", false);
}

#[test]
fn sigint_resumes_live_guest() {
    check_signal_releases_guest(libc::SIGINT, "SIGINT", false);
}

#[test]
fn sigterm_with_leave_paused_keeps_guest_stopped() {
    check_signal_releases_guest(libc::SIGTERM, "SIGTERM", true);
}

#[test]
fn live_target_errors_name_target() {
    let image = unikernel_image("O0-fp");
    let image_arg = image.to_str().unwrap();
    // Nothing listens on a port that was free a moment ago.
    let closed = format!("gdb:127.0.0.1:{}", free_port());
    let cases = [
        (closed.clone(), format!("stardump: cannot attach to {closed}: connection refused\n")),
        (
            "gdb:localhost".to_owned(),
            "stardump: invalid live target 'gdb:localhost': expected gdb:HOST:PORT, such as gdb:127.0.0.1:1234\n"
                .to_owned(),
        ),
    ];
    for (target, expected) in cases {
        let output = stardump(&["bt", &target, "--image", image_arg]);
        assert_eq!(output.status.code(), Some(1), "{target}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected, "{target}");
        assert!(output.stdout.is_empty(), "{target}");
    }
}

/// A child process that is waited for on drop, and killed by PID if it has
/// not exited within `grace`.
struct ChildGuard {
    child: std::process::Child,
    grace: Duration,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let started = Instant::now();
        while started.elapsed() < self.grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts gdbserver attached to `pid` on a free port, waits until it
/// listens, and returns it with the `gdb:` target. gdbserver serves one
/// client and exits when it detaches, and `timeout` ends it after 60 s in
/// any case.
fn start_gdbserver(pid: u32, work_dir: &Path) -> (ChildGuard, String) {
    require_program("gdbserver", "gdbserver");
    let port = free_port();
    let log = work_dir.join(format!("gdbserver-{port}.log"));
    let child = Command::new("timeout")
        .args(["-s", "KILL", "60", "gdbserver", "--attach", &format!("127.0.0.1:{port}"), &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting gdbserver");
    let guard = ChildGuard { child, grace: Duration::from_secs(5) };
    let started = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("Listening on port") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gdbserver did not listen: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, format!("gdb:127.0.0.1:{port}"))
}

#[test]
fn live_process_under_gdbserver() {
    require_program("gcc", "gcc");
    let work_dir = tempfile::tempdir().unwrap();
    let program = work_dir.path().join("live_spin");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live_spin.c");
    let built = Command::new("gcc")
        .args(["-g", "-O1", "-static", "-no-pie", "-fno-omit-frame-pointer", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .expect("running gcc");
    assert!(built.status.success(), "gcc failed: {}", String::from_utf8_lossy(&built.stderr));
    let program_arg = program.to_str().unwrap();
    let process =
        ChildGuard { child: Command::new(&program).spawn().expect("starting the fixture"), grace: Duration::ZERO };
    let pid = process.child.id();

    // gdb's frames of the process's own functions are the oracle.
    let (_gdbserver, target) = start_gdbserver(pid, work_dir.path());
    let gdb = Command::new("timeout")
        .args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set pagination off"])
        .args(["-ex", &format!("target remote {}", target.trim_start_matches("gdb:")), "-ex", "bt", "-ex", "detach"])
        .arg(&program)
        .output()
        .expect("running gdb");
    let gdb_text = String::from_utf8_lossy(&gdb.stdout);
    let gdb_threads = stardump_tests::gdb::parse_backtraces(&gdb_text);
    let gdb_frames: Vec<(Option<String>, Option<u32>)> = gdb_threads
        .first()
        .map(|thread| thread.frames.iter().take(3).map(|frame| (frame.function.clone(), frame.line)).collect())
        .unwrap_or_default();
    assert_eq!(gdb_frames.len(), 3, "gdb printed:\n{gdb_text}");

    let (_gdbserver, target) = start_gdbserver(pid, work_dir.path());
    let bt = stardump(&["bt", &target, "--image", program_arg, "--json"]);
    let report: Value = serde_json::from_str(&stdout_of(&bt, "bt through gdbserver")).expect("bt printed invalid JSON");
    let ours: Vec<(Option<String>, Option<u32>)> = report["threads"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|frame| (frame["function"].as_str().map(str::to_owned), frame["line"].as_u64().map(|line| line as u32)))
        .collect();
    assert_eq!(ours, gdb_frames, "the process's own frames");

    // Each attach reads the counter, and the process counts on after each
    // detach.
    let mut values = Vec::new();
    for _ in 0..2 {
        let (_gdbserver, target) = start_gdbserver(pid, work_dir.path());
        let text = stdout_of(
            &stardump(&["print", &target, "--image", program_arg, "spin_counter"]),
            "print through gdbserver",
        );
        let value: u64 = text
            .trim()
            .strip_prefix("$1 = ")
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("unexpected print output {text:?}"));
        values.push(value);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(values[1] > values[0], "spin_counter did not advance between attaches: {values:?}");

    let (_gdbserver, target) = start_gdbserver(pid, work_dir.path());
    let origin = stdout_of(&stardump(&["print", &target, "--image", program_arg, "origin"]), "print origin");
    assert_eq!(origin, "$1 = {x = 7, y = -3}\n");
}
