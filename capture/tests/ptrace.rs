//! End-to-end tests of `stardump-capture pid:PID` on real processes: C
//! programs built with gcc in the test, started by the test, captured with
//! the built binary, and compared with gdb attached to the same process
//! after the capture.
//!
//! Needs gcc, gdb and readelf (Debian packages gcc, gdb, binutils), and
//! permission to ptrace the test's own children.

mod ptrace_common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use object::{Object as _, ObjectSymbol as _};
use ptrace_common::{
    build_program, capture_binary, readelf_build_id, status_field, thread_states, Program, CHURN_SOURCE, DATA_SOURCE,
    SIGNALS_SOURCE, THREADS_SOURCE,
};
use stardump_format::{Snapshot, SourceKind, Target};
use stardump_tests::require_program;

/// Registers of each thread as gdb prints them, by Linux thread id.
fn gdb_registers(pid: u32) -> BTreeMap<u64, (u64, u64)> {
    let gdb = require_program("gdb", "gdb");
    let output = Command::new("timeout")
        .args(["60", gdb.to_str().unwrap(), "-p", &pid.to_string(), "-batch", "-nx"])
        .args(["-ex", "info threads", "-ex", "thread apply all info registers rip rsp"])
        .output()
        .expect("running gdb");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gdb failed: {}\n{text}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let mut registers = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with("Thread ") {
            current = line
                .split("(LWP ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .and_then(|lwp| lwp.parse::<u64>().ok());
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(value), Some(tid)) = (words.next(), words.next(), current) else {
            continue;
        };
        let Some(value) = value.strip_prefix("0x").and_then(|hex| u64::from_str_radix(hex, 16).ok()) else {
            continue;
        };
        let entry = registers.entry(tid).or_insert((0, 0));
        match name {
            "rip" => entry.0 = value,
            "rsp" => entry.1 = value,
            _ => {}
        }
    }
    assert!(!registers.is_empty(), "gdb printed no registers:\n{text}");
    registers
}

/// Thread ids that gdb lists as `LWP N` for the core file `snapshot` of
/// `program`, in gdb's order.
fn gdb_core_threads(program: &std::path::Path, snapshot: &std::path::Path) -> Vec<u64> {
    let gdb = require_program("gdb", "gdb");
    let output = Command::new("timeout")
        .args(["60", gdb.to_str().unwrap(), "-batch", "-nx", "-ex", "info threads"])
        .args([program, snapshot])
        .output()
        .expect("running gdb");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "gdb failed: {}\n{text}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    text.lines()
        .filter(|line| line.trim_start().starts_with(|c: char| c == '*' || c.is_ascii_digit()))
        .filter_map(|line| line.split("LWP ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|lwp| lwp.parse().ok())
        .collect()
}

/// Returns the address of symbol `name` in the ELF file at `path`.
fn symbol_address(path: &std::path::Path, name: &str) -> u64 {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .unwrap_or_else(|| panic!("symbol {name} not in {}", path.display()))
        .address()
}

#[test]
fn threads_match_gdb_and_process_continues() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "threads", THREADS_SOURCE, &["-O0", "-g", "-pthread"]);
    let mut program = Program::start(&exe, &[]);
    program.wait_for_line("ready", Duration::from_secs(30));
    program.wait_until_blocked(4);
    let pid = program.pid();

    let output = dir.path().join("threads.sdump");
    let result =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).output().unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(status_field(pid, "TracerPid"), "0", "the process is still traced after the capture");

    let snapshot = Snapshot::open(&output).unwrap();
    assert_eq!(snapshot.metadata().source_kind, SourceKind::LinuxProcess);
    assert_eq!(snapshot.metadata().target_name, format!("pid:{pid}"));
    let vcpus = snapshot.vcpus();
    assert_eq!(vcpus.len(), 4, "main and three blocked threads");
    assert_eq!(vcpus[0].thread_id, Some(u64::from(pid)), "the thread group leader is vCPU 0");

    // gdb, attached after the capture, reports the same threads stopped at
    // the same places.
    let gdb = gdb_registers(pid);
    assert_eq!(gdb.len(), 4, "gdb threads: {gdb:x?}");
    for vcpu in vcpus {
        let tid = vcpu.thread_id.expect("every thread has its id");
        let (rip, rsp) = gdb.get(&tid).copied().unwrap_or_else(|| panic!("gdb has no thread {tid}: {gdb:x?}"));
        assert_eq!(vcpu.rip, rip, "rip of thread {tid}");
        assert_eq!(vcpu.rsp, rsp, "rsp of thread {tid}");
        assert!(vcpu.fs_base != 0, "fs_base of thread {tid} points to its TLS block");
    }

    // gdb reads the NT_PRSTATUS notes and lists the threads by their Linux
    // thread ids.
    let mut gdb_threads = gdb_core_threads(&exe, &output);
    gdb_threads.sort();
    let mut thread_ids: Vec<u64> = vcpus.iter().map(|vcpu| vcpu.thread_id.unwrap()).collect();
    thread_ids.sort();
    assert_eq!(gdb_threads, thread_ids, "threads gdb lists in the snapshot");

    let mut names: Vec<&str> = vcpus.iter().map(|vcpu| snapshot.thread_name(vcpu.id).unwrap()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma", "threads"]);

    // A global read back through the snapshot, at the PIE's load address.
    let exe_path = std::fs::canonicalize(&exe).unwrap();
    let exe_mapping = snapshot
        .file_mappings()
        .iter()
        .find(|mapping| mapping.file_offset == 0 && mapping.path == exe_path.to_str().unwrap())
        .expect("the executable's first mapping is recorded");
    let marker = exe_mapping.start + symbol_address(&exe, "stardump_marker");
    let mut value = [0u8; 8];
    snapshot.read_virtual(0, marker, &mut value).unwrap();
    assert_eq!(u64::from_le_bytes(value), 0x5354_4152_4455_4d50);

    // Build ids equal readelf's, for the executable and libc.
    assert_eq!(exe_mapping.build_id.as_deref(), Some(&readelf_build_id(&exe_path)[..]));
    assert_eq!(snapshot.metadata().image_build_id, exe_mapping.build_id);
    let libc = snapshot
        .file_mappings()
        .iter()
        .find(|mapping| mapping.file_offset == 0 && mapping.path.contains("/libc.so"))
        .expect("libc is mapped");
    assert_eq!(libc.build_id.as_deref(), Some(&readelf_build_id(libc.path.as_ref())[..]));

    // The process runs on and exits normally once released.
    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 42);
}

#[test]
fn data_reads_back_through_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["4"]);
    let line = program.wait_for_line("ready", Duration::from_secs(30));
    let (address, len) = ptrace_common::parse_ready_line(&line);
    let pid = program.pid();

    let output = dir.path().join("data.sdump");
    let result = Command::new(capture_binary())
        .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(summary["vcpus"], 1);
    assert!(summary["pause_time_us"].as_u64().unwrap() > 0);

    let snapshot = Snapshot::open(&output).unwrap();
    assert!(snapshot.metadata().pause_time_us > 0, "the pause time is stored");
    let mut data = vec![0u8; len as usize];
    snapshot.read_virtual(0, address, &mut data).unwrap();
    let expected: Vec<u8> = (0..len).map(|i| ptrace_common::data_byte(i, len)).collect();
    let first_difference = data.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "the data differ at offset {first_difference:?}");
    assert!(snapshot.zero_page_count() >= 256, "the zeroed MiB is stored as zero pages");

    // Special mappings are left out: [vvar] reads as not captured.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    if let Some(vvar) = maps.lines().find(|line| line.ends_with("[vvar]")) {
        let start = u64::from_str_radix(vvar.split('-').next().unwrap(), 16).unwrap();
        assert!(snapshot.read_virtual(0, start, &mut [0u8; 8]).is_err(), "[vvar] is not captured");
    }

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
    assert_eq!(snapshot.verify().len(), 0);

    // A damaged file mappings note leaves the process without symbols. The
    // analyzer reports that instead of taking the snapshot for a unikernel's.
    let mut bytes = std::fs::read(&output).unwrap();
    let path = exe.to_str().unwrap().as_bytes();
    let at = bytes.windows(path.len()).position(|window| window == path).expect("the program's path in the notes");
    bytes[at + path.len() - 1] ^= 0x20;
    let damaged = dir.path().join("damaged.sdump");
    std::fs::write(&damaged, &bytes).unwrap();
    let result = Command::new(&stardump_tests::build::binaries().stardump).arg("bt").arg(&damaged).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("is a Linux process, but its mapped files are unknown"), "{stderr}");
    assert!(stderr.contains("checksum mismatch in file mappings note"), "{stderr}");
}

#[test]
fn sigterm_while_stopped_detaches() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    // 1 GiB of touched memory keeps the process stopped for a few hundred
    // milliseconds while it is copied.
    let mut program = Program::start(&exe, &["1024"]);
    program.wait_for_line("ready", Duration::from_secs(60));
    let pid = program.pid();

    let output = dir.path().join("term.sdump");
    let mut capture = Command::new(capture_binary())
        .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopped = false;
    while Instant::now() < deadline && capture.try_wait().unwrap().is_none() {
        // "t (tracing stop)": the capture seized and stopped the process.
        if status_field(pid, "TracerPid") != "0" && status_field(pid, "State").starts_with('t') {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    if !stopped {
        let _ = capture.kill();
        panic!("the capture never stopped the process");
    }
    // SAFETY: kill takes no pointers; the pid is the capture this test started.
    assert_eq!(unsafe { libc::kill(capture.id() as i32, libc::SIGTERM) }, 0);
    let status = ptrace_common::wait_with_timeout(&mut capture, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(capture.stderr.as_mut().unwrap(), &mut stderr).unwrap();

    assert_eq!(status.code(), Some(143), "exit status after SIGTERM; stderr: {stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(status_field(pid, "TracerPid"), "0", "the process is still traced");
    assert!(!output.exists(), "no snapshot is left under the output name");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).map(|entry| entry.file_name()).collect();
    assert!(!leftovers.iter().any(|name| name.to_string_lossy().contains(".tmp.")), "{leftovers:?}");

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn missing_pid_names_it() {
    let output =
        Command::new(capture_binary()).args(["pid:99999999", "-o", "/tmp/never-written.sdump"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("process 99999999 not found"), "{stderr}");
}

#[test]
fn missing_output_directory_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    let output = dir.path().join("missing").join("x.sdump");
    let result = Command::new(capture_binary())
        .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap(), "-vv"])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    let expected = format!("cannot write --output {}: directory {} does not exist", output.display(), output.parent().unwrap().display());
    assert!(stderr.contains(&expected), "{stderr}");
    // An attach logs "seizing threads" at debug level before it stops any.
    assert!(!stderr.contains("seizing threads"), "the capture reached the process: {stderr}");
    assert_eq!(status_field(pid, "TracerPid"), "0");

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn unwritable_output_is_checked_before_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    // A regular file where the directory should be: creating the temporary
    // file fails, as it does in a read-only directory (which root could
    // still write to).
    let not_directory = dir.path().join("file");
    std::fs::write(&not_directory, b"").unwrap();
    let output = not_directory.join("x.sdump");
    let result =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).output().unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains(&format!("cannot write --output {}", output.display())), "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
    assert_eq!(status_field(pid, "TracerPid"), "0");

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn traced_process_names_its_tracer() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid() as i32;

    // This test's thread becomes the tracer, as a debugger would.
    // SAFETY: PTRACE_SEIZE takes no pointers here; the pid is this test's child.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0usize, 0usize) };
    assert_eq!(seized, 0, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
    let output = dir.path().join("x.sdump");
    let result =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).output().unwrap();

    // Release the program before any assertion can fail.
    // SAFETY: as above; waitpid writes only the status integer.
    unsafe {
        libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0usize, 0usize);
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize);
    }
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("PTRACE_SEIZE failed"), "{stderr}");
    // TracerPid names the tracing thread, which is this test's.
    // SAFETY: gettid has no arguments.
    let tracer = unsafe { libc::gettid() };
    assert!(stderr.contains(&format!("process {tracer} (")), "{stderr}");
    assert!(stderr.contains("already traces it"), "{stderr}");
    assert!(!output.exists());

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn gdb_target_checks_output_first() {
    // Port 1 on loopback has no listener: a capture that contacted it would
    // fail with "connection refused" instead.
    let output = Command::new(capture_binary())
        .args(["gdb:127.0.0.1:1", "-o", "/nonexistent-stardump-dir/x.sdump"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write --output /nonexistent-stardump-dir/x.sdump: directory /nonexistent-stardump-dir does not exist"),
        "{stderr}"
    );
}

#[test]
fn summary_names_threads() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    let output = dir.path().join("summary.sdump");
    let result =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).output().unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    let line = String::from_utf8_lossy(&result.stdout);
    assert!(line.starts_with(&format!("{}: 1 thread, ", output.display())), "{line}");
    assert!(line.contains(" MiB of memory in "), "{line}");
    assert!(line.contains(", stopped "), "{line}");
    assert!(!line.contains("vCPU"), "{line}");
    assert!(!line.contains("guest"), "{line}");

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn invalid_pid_is_rejected() {
    let cases = [
        ("pid:abc", "invalid process id \"abc\": expected a positive decimal number"),
        ("pid:0", "invalid process id \"0\": expected a positive decimal number"),
        ("pid:99999999999", "invalid process id \"99999999999\": larger than any process id"),
    ];
    for (target, expected) in cases {
        let output = Command::new(capture_binary()).args([target, "-o", "/tmp/never-written.sdump"]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{target}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{target}: {stderr}");
    }
}

#[test]
fn leave_paused_stops_process() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    let output = dir.path().join("stopped.sdump");
    let result = Command::new(capture_binary())
        .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap(), "--leave-paused"])
        .output()
        .unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(status_field(pid, "TracerPid"), "0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status_field(pid, "State").starts_with('T') {
        assert!(Instant::now() < deadline, "the process did not enter a group stop: {}", status_field(pid, "State"));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(thread_states(pid), vec!['T']);

    // SAFETY: kill takes no pointers; the pid is the program this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn stopped_process_stays_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1"]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();
    // SAFETY: kill takes no pointers; the pid is the program this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status_field(pid, "State").starts_with('T') {
        assert!(Instant::now() < deadline, "SIGSTOP did not stop the program");
        std::thread::sleep(Duration::from_millis(2));
    }

    let output = dir.path().join("stopped.sdump");
    let result =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).output().unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(status_field(pid, "TracerPid"), "0");
    assert!(status_field(pid, "State").starts_with('T'), "a stopped process stays stopped after the capture");
    assert_eq!(Snapshot::open(&output).unwrap().vcpus().len(), 1);

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}

#[test]
fn thread_churn_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "churn", CHURN_SOURCE, &["-O2", "-pthread"]);
    let mut program = Program::start(&exe, &[]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    for run in 0..5 {
        let output = dir.path().join(format!("churn-{run}.sdump"));
        let result = Command::new(capture_binary())
            .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(result.status.success(), "capture {run} failed: {}", String::from_utf8_lossy(&result.stderr));
        assert_eq!(status_field(pid, "TracerPid"), "0", "capture {run} left the process traced");
        // main, the sleeper, the stdin reader, and at most one short-lived thread.
        let threads = Snapshot::open(&output).unwrap().vcpus().len();
        assert!((3..=4).contains(&threads), "capture {run}: {threads} threads");
    }

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 5);
}

#[test]
fn signals_during_capture_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "signals", SIGNALS_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &[]);
    program.wait_for_line("ready", Duration::from_secs(30));
    let pid = program.pid();

    // Real-time signals queue, so every one sent while captures stop and
    // resume the process must arrive. The signal-delivery stop itself is
    // tested in the attach module, because its window is too short to
    // reach from here reliably.
    // The sender runs until the captures are done, so however slow a
    // capture is on a loaded machine, all of them overlap the signals.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: kill takes no pointers; the pid is the program this test started.
                if unsafe { libc::kill(pid as i32, libc::SIGRTMIN()) } == 0 {
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            sent
        }
    });
    let output = dir.path().join("signals.sdump");
    for capture in 0..5 {
        let result = Command::new(capture_binary())
            .args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(result.status.success(), "capture {capture} failed: {}", String::from_utf8_lossy(&result.stderr));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(sent > 0, "no signal was sent");
    assert_eq!(status_field(pid, "TracerPid"), "0");

    program.release();
    let line = program.wait_for_line("count", Duration::from_secs(30));
    assert_eq!(line, format!("count {sent}"), "signals sent: {sent}");
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 0);
}

#[test]
fn sigkill_while_stopped_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_program(dir.path(), "data", DATA_SOURCE, &["-O2"]);
    let mut program = Program::start(&exe, &["1024"]);
    program.wait_for_line("ready", Duration::from_secs(60));
    let pid = program.pid();

    let output = dir.path().join("killed.sdump");
    let mut capture =
        Command::new(capture_binary()).args([&format!("pid:{pid}"), "-o", output.to_str().unwrap()]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(status_field(pid, "TracerPid") != "0" && status_field(pid, "State").starts_with('t')) {
        if Instant::now() >= deadline || capture.try_wait().unwrap().is_some() {
            let _ = capture.kill();
            panic!("the capture never stopped the process");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // SIGKILL leaves no chance to detach: the kernel detaches the seized
    // threads of a tracer that exits, and they run on.
    capture.kill().unwrap();
    capture.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_field(pid, "TracerPid") != "0" {
        assert!(Instant::now() < deadline, "the process is still traced");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!output.exists(), "no snapshot is left under the output name");
    // The unfinished snapshot and the spill file have no names.
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).map(|entry| entry.file_name()).collect();
    assert!(!leftovers.iter().any(|name| name.to_string_lossy().contains(".tmp.")), "{leftovers:?}");

    program.release();
    assert_eq!(program.wait_for_exit(Duration::from_secs(30)), 7);
}
