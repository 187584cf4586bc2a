//! `stardump threads` with gdb as the oracle. Each gdb test boots the test
//! unikernel under QEMU to `mode=ud2` on two vCPUs, captures it and leaves
//! it paused. On the paused guest gdb walks `thread_list` itself and, for
//! every sleeping thread, runs `set $rsp = SP`, `set $pc = IP` and `bt`,
//! then restores the registers, as tests/unikernel/check-gdb.sh does.
//!
//! Every sleeping thread's backtrace from the snapshot alone must name the
//! same function, file and line in every frame. Each running thread's
//! backtrace must equal gdb's backtrace of its vCPU and `stardump bt` of
//! that vCPU. A last test damages the list in the guest before capturing.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::gdb::{batch_command, parse_backtraces, GdbFrame, GdbThread};
use stardump_tests::qemu::{GuestConfig, Qemu};

const HALTED: &str = "stardust-test: halted in crash_halt";
/// vCPUs of each guest: vCPU 0 runs the worker, vCPU 1 its idle thread.
const VCPUS: u32 = 2;
/// Threads of the test unikernel with two vCPUs, in list order.
const THREAD_NAMES: [&str; 5] = ["idle0", "logger", "waiter", "worker", "idle1"];

/// One thread as gdb read it from `thread_list`.
#[derive(Debug, PartialEq, Eq)]
struct GdbListEntry {
    name: String,
    sp: u64,
    ip: u64,
}

/// What gdb printed for one guest.
struct GdbView {
    list: Vec<GdbListEntry>,
    /// Backtrace of each sleeping thread, by list index.
    sleeping: Vec<(usize, GdbThread)>,
    /// `thread apply all bt` after the registers were restored.
    vcpus: Vec<GdbThread>,
}

fn run_stardump(args: &[&str]) -> Output {
    Command::new(&binaries().stardump).args(args).output().expect("running stardump")
}

fn parse_hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not a hex number: {text:?}"))
}

/// Asks gdb, on the paused guest, for the thread list and the backtraces of
/// the threads at `sleeping` (list index, saved sp, saved ip).
fn gdb_view(image: &Path, port: u16, sleeping: &[(usize, u64, u64)]) -> GdbView {
    let mut command = batch_command(port);
    // gdb follows the links itself, independently of stardump's walk.
    let mut expression = "thread_list".to_owned();
    for _ in 0..THREAD_NAMES.len() {
        command.args(["-ex", &format!("printf \"@@LIST %s %#lx %#lx\\n\", {expression}->name, {expression}->sp, {expression}->ip")]);
        expression.push_str("->next");
    }
    command.args(["-ex", &format!("printf \"@@LISTEND %#lx\\n\", {expression}")]);
    command.args(["-ex", "set $saved_rsp = $rsp", "-ex", "set $saved_pc = $pc"]);
    for (index, sp, ip) in sleeping {
        command.args(["-ex", &format!("echo @@SLEEPING {index}\\n")]);
        command.args(["-ex", &format!("set $rsp = {sp:#x}"), "-ex", &format!("set $pc = {ip:#x}"), "-ex", "bt"]);
    }
    command.args(["-ex", "set $rsp = $saved_rsp", "-ex", "set $pc = $saved_pc"]);
    command.args(["-ex", "echo @@VCPUS\\n", "-ex", "thread apply all bt", "-ex", "echo @@END\\n", "-ex", "disconnect"]);
    let output = command.arg(image).output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "gdb failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let mut list = Vec::new();
    let mut sleeping_traces = Vec::new();
    let mut vcpus = Vec::new();
    let mut section: Option<String> = None;
    let mut lines: Vec<&str> = Vec::new();
    let mut flush = |section: &Option<String>, lines: &mut Vec<&str>| {
        let text = lines.join("\n");
        match section.as_deref() {
            Some("VCPUS") => vcpus = parse_backtraces(&text),
            Some(other) => {
                if let Some(index) = other.strip_prefix("SLEEPING ").and_then(|index| index.parse().ok()) {
                    let mut threads = parse_backtraces(&text);
                    assert_eq!(threads.len(), 1, "gdb printed no backtrace for sleeping thread {index}:\n{text}");
                    sleeping_traces.push((index, threads.remove(0)));
                }
            }
            None => {}
        }
        lines.clear();
    };
    for line in stdout.lines() {
        if let Some(entry) = line.strip_prefix("@@LIST ") {
            let fields: Vec<&str> = entry.split(' ').collect();
            assert_eq!(fields.len(), 3, "unexpected gdb list line {line:?}");
            list.push(GdbListEntry { name: fields[0].to_owned(), sp: parse_hex(fields[1]), ip: parse_hex(fields[2]) });
            continue;
        }
        if let Some(end) = line.strip_prefix("@@LISTEND ") {
            assert_eq!(parse_hex(end), 0, "gdb found more than {} threads", THREAD_NAMES.len());
            continue;
        }
        if let Some(marker) = line.strip_prefix("@@") {
            flush(&section, &mut lines);
            section = Some(marker.to_owned());
            continue;
        }
        lines.push(line);
    }
    flush(&section, &mut lines);
    GdbView { list, sleeping: sleeping_traces, vcpus }
}

/// Returns whether stardump's file (joined with the compilation directory)
/// names the file gdb printed.
fn same_file(ours: Option<&str>, theirs: Option<&str>) -> bool {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) => ours == theirs || ours.ends_with(&format!("/{theirs}")),
        (None, None) => true,
        _ => false,
    }
}

fn describe_gdb(frame: Option<&GdbFrame>) -> String {
    match frame {
        None => "nothing".to_owned(),
        Some(frame) if frame.signal_frame => "<signal handler called>".to_owned(),
        Some(frame) => format!("{} at {:?}:{:?}", frame.function.as_deref().unwrap_or("??"), frame.file, frame.line),
    }
}

fn describe_ours(frame: Option<&Value>) -> String {
    match frame {
        None => "nothing".to_owned(),
        Some(frame) if frame["kind"] == "trap" => "<signal handler called>".to_owned(),
        Some(frame) => format!(
            "{} at {}:{} [{}]",
            frame["function"].as_str().unwrap_or("??"),
            frame["file"].as_str().unwrap_or("?"),
            frame["line"],
            frame["found_by"].as_str().unwrap_or("?")
        ),
    }
}

/// Compares one backtrace frame by frame: function, file and line, and the
/// trap frame; returns the differences.
fn compare_frames(context: &str, gdb: &GdbThread, ours: &Value) -> Vec<String> {
    let frames = ours["frames"].as_array().expect("`frames` is an array");
    let mut differences = Vec::new();
    for index in 0..gdb.frames.len().max(frames.len()) {
        let theirs = gdb.frames.get(index);
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
            differences.push(format!("{context} #{index}: gdb {}, stardump {}", describe_gdb(theirs), describe_ours(mine)));
        }
    }
    if gdb.stopped.is_none() != (ours["complete"] == true) {
        differences.push(format!("{context}: gdb stop reason {:?}, stardump {:?}", gdb.stopped, ours["stop_reason"]));
    }
    differences
}

/// `kind:function:line` of every frame found on the stack, to compare two
/// stardump backtraces; `bt` does not show tail-call frames.
fn frame_keys(frames: &Value) -> Vec<String> {
    frames
        .as_array()
        .expect("`frames` is an array")
        .iter()
        .filter(|frame| frame["found_by"] != "tail-call")
        .map(|frame| format!("{}:{}:{}", frame["kind"], frame["function"], frame["line"]))
        .collect()
}

fn check_variant(variant: &str) {
    let image = unikernel_image(variant);
    let image_arg = image.to_str().unwrap();
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let snapshot = work_dir.path().join(format!("{variant}.sdump"));
    let snapshot_arg = snapshot.to_str().unwrap();

    let mut qemu = Qemu::start(&GuestConfig {
        kernel: image.clone(),
        command_line: "mode=ud2".to_owned(),
        memory_mib: 64,
        vcpus: VCPUS,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial(HALTED, Duration::from_secs(60)).unwrap_or_else(|error| panic!("{variant}: {error:#}"));
    let capture = Command::new(&binaries().capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(&snapshot)
        .arg("--leave-paused")
        .arg("--image")
        .arg(&image)
        .output()
        .expect("running stardump-capture");
    assert!(capture.status.success(), "{variant}: capture failed: {}", String::from_utf8_lossy(&capture.stderr));

    let output = run_stardump(&["threads", snapshot_arg, "--image", image_arg, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{variant}: stardump threads failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stardump threads --json printed invalid JSON");
    assert_eq!(report["description"], "stardust-test");
    assert_eq!(report["thread_type"], "struct thread");
    assert_eq!(report["list_complete"], true);
    let threads = report["threads"].as_array().expect("`threads` is an array");
    let names: Vec<&str> = threads.iter().map(|thread| thread["name"].as_str().unwrap_or("?")).collect();
    assert_eq!(names, THREAD_NAMES, "{variant}: thread names");

    let sleeping: Vec<(usize, u64, u64)> = threads
        .iter()
        .enumerate()
        .filter(|(_, thread)| thread["state"] == "sleeping")
        .map(|(index, thread)| {
            (index, parse_hex(thread["saved_sp"].as_str().unwrap()), parse_hex(thread["saved_ip"].as_str().unwrap()))
        })
        .collect();
    let gdb = gdb_view(&image, qemu.gdb_port(), &sleeping);
    qemu.kill();

    let bt = run_stardump(&["bt", snapshot_arg, "--image", image_arg, "--json"]);
    let bt: Value = serde_json::from_slice(&bt.stdout).expect("stardump bt --json printed invalid JSON");

    // The list as gdb walked it: names, saved sp and ip.
    let ours_list: Vec<GdbListEntry> = threads
        .iter()
        .map(|thread| GdbListEntry {
            name: thread["name"].as_str().unwrap_or("?").to_owned(),
            sp: thread["saved_sp"].as_str().map_or(u64::MAX, parse_hex),
            ip: thread["saved_ip"].as_str().map_or(u64::MAX, parse_hex),
        })
        .collect();
    assert_eq!(ours_list, gdb.list, "{variant}: thread list differs from gdb's");

    // mode=ud2 leaves idle0, logger and waiter asleep; the worker crashed
    // on vCPU 0 and idle1 spins on vCPU 1.
    let states: Vec<(&str, Option<u64>)> =
        threads.iter().map(|thread| (thread["state"].as_str().unwrap(), thread["vcpu"].as_u64())).collect();
    assert_eq!(
        states,
        [("sleeping", None), ("sleeping", None), ("sleeping", None), ("running", Some(0)), ("running", Some(1))],
        "{variant}: thread states"
    );

    let mut differences = Vec::new();
    assert_eq!(gdb.sleeping.len(), 3, "{variant}: gdb backtraces of sleeping threads");
    for (index, gdb_thread) in &gdb.sleeping {
        let context = format!("{variant} thread {}", THREAD_NAMES[*index]);
        differences.extend(compare_frames(&context, gdb_thread, &threads[*index]));
        let first = threads[*index]["frames"][0]["function"].as_str();
        assert_eq!(first, Some("switch_context"), "{context}: frame 0");
        let length = threads[*index]["frames"].as_array().unwrap().len();
        assert!(length >= 4, "{context}: only {length} frames");
    }
    assert_eq!(gdb.vcpus.len(), VCPUS as usize, "{variant}: gdb's vCPU backtraces");
    for thread in threads.iter().filter(|thread| thread["state"] == "running") {
        let vcpu = thread["vcpu"].as_u64().unwrap();
        let context = format!("{variant} thread {} on vCPU {vcpu}", thread["name"]);
        let gdb_thread = gdb.vcpus.iter().find(|gdb_thread| u64::from(gdb_thread.number) == vcpu + 1).expect("gdb thread of the vCPU");
        differences.extend(compare_frames(&context, gdb_thread, thread));
        let bt_thread = bt["threads"].as_array().unwrap().iter().find(|bt_thread| bt_thread["vcpu"] == vcpu).expect("bt of the vCPU");
        assert_eq!(frame_keys(&thread["frames"]), frame_keys(&bt_thread["frames"]), "{context}: differs from stardump bt");
    }
    let worker = &threads[3];
    let worker_functions: Vec<&str> = worker["frames"].as_array().unwrap().iter().filter_map(|frame| frame["function"].as_str()).collect();
    assert!(worker_functions.contains(&"dispatch_end_mode"), "{variant}: worker backtrace {worker_functions:?}");
    assert!(differences.is_empty(), "stardump and gdb disagree:\n{}", differences.join("\n"));

    check_text_and_limits(variant, snapshot_arg, image_arg, work_dir.path());
}

/// Checks the text output, `--os`, a description file with a small bound,
/// and errors, on the snapshot taken above.
fn check_text_and_limits(variant: &str, snapshot: &str, image: &str, work_dir: &Path) {
    let text = run_stardump(&["threads", snapshot, "--image", image, "--os", "stardust-test"]);
    assert_eq!(text.status.code(), Some(0), "{variant}: {}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8_lossy(&text.stdout);
    for heading in [
        "Thread 1 \"idle0\" (id 0, sleeping) at 0x",
        "Thread 2 \"logger\" (id 1, sleeping) at 0x",
        "Thread 3 \"waiter\" (id 2, sleeping) at 0x",
        "Thread 4 \"worker\" (id 3, running on vCPU 0) at 0x",
        "Thread 5 \"idle1\" (id 4, running on vCPU 1) at 0x",
    ] {
        assert!(text.contains(heading), "{variant}: no {heading:?} in\n{text}");
    }
    assert!(text.contains("#0  switch_context () at switch.S:"), "{variant}:\n{text}");
    assert!(text.contains("<signal handler called>"), "{variant}:\n{text}");

    // With a bound of two threads the list is cut and the exit status is 2,
    // but the two threads still print.
    let built_in = include_str!("../threads/stardust-test.toml");
    let bounded = built_in.replace("max_threads = 64", "max_threads = 2");
    assert_ne!(bounded, built_in, "the built-in description sets max_threads = 64");
    let path = work_dir.join("bounded.toml");
    std::fs::write(&path, bounded).unwrap();
    let cut = run_stardump(&["threads", snapshot, "--image", image, "--description", path.to_str().unwrap()]);
    assert_eq!(cut.status.code(), Some(2), "{variant}: {}", String::from_utf8_lossy(&cut.stderr));
    let cut = String::from_utf8_lossy(&cut.stdout);
    assert!(cut.contains("Thread 2 \"logger\""), "{variant}:\n{cut}");
    assert!(!cut.contains("Thread 3 "), "{variant}:\n{cut}");
    assert!(cut.contains("Thread list stopped: more than 2 threads in the list"), "{variant}:\n{cut}");

    // The Mini-OS description does not fit: its head is a TAILQ_HEAD struct.
    let mini_os = run_stardump(&["threads", snapshot, "--image", image, "--os", "mini-os"]);
    assert_eq!(mini_os.status.code(), Some(1));
    let message = String::from_utf8_lossy(&mini_os.stderr);
    assert!(message.contains("built-in mini-os does not fit the image"), "{variant}: {message}");
    assert!(message.contains("tqh_first"), "{variant}: {message}");

    let wrong_member = built_in.replace("sp = \"sp\"", "sp = \"saved_sp\"");
    let path = work_dir.join("wrong.toml");
    std::fs::write(&path, wrong_member).unwrap();
    let wrong = run_stardump(&["threads", snapshot, "--image", image, "--description", path.to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(1));
    let message = String::from_utf8_lossy(&wrong.stderr);
    assert!(message.contains("struct thread has no member saved_sp"), "{variant}: {message}");
}

#[test]
fn threads_match_gdb_o0_fp() {
    check_variant("O0-fp");
}

#[test]
fn threads_match_gdb_o0_nofp() {
    check_variant("O0-nofp");
}

#[test]
fn threads_match_gdb_o2_fp() {
    check_variant("O2-fp");
}

#[test]
fn threads_match_gdb_o2_nofp() {
    check_variant("O2-nofp");
}

/// A list damaged in the guest before the capture: gdb points the logger's
/// name and the waiter's link at the unmapped page 0. The damaged members
/// are marked in place, the threads before them still print with their
/// backtraces, and the exit status is 2.
#[test]
fn damaged_list_reported_in_place() {
    let variant = "O2-nofp";
    let image = unikernel_image(variant);
    let image_arg = image.to_str().unwrap();
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let snapshot = work_dir.path().join("damaged.sdump");
    let snapshot_arg = snapshot.to_str().unwrap();

    let mut qemu = Qemu::start(&GuestConfig {
        kernel: image.clone(),
        command_line: "mode=ud2".to_owned(),
        memory_mib: 64,
        vcpus: 1,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial(HALTED, Duration::from_secs(60)).unwrap_or_else(|error| panic!("{error:#}"));
    let gdb = batch_command(qemu.gdb_port())
        .args(["-ex", "set var thread_pool[1].name = (char *) 0x10"])
        .args(["-ex", "set var thread_pool[2].next = (struct thread *) 0x18"])
        .args(["-ex", "disconnect"])
        .arg(&image)
        .output()
        .expect("running gdb");
    assert!(gdb.status.success(), "gdb failed: {}", String::from_utf8_lossy(&gdb.stderr));
    let capture = Command::new(&binaries().capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(&snapshot)
        .output()
        .expect("running stardump-capture");
    qemu.kill();
    assert!(capture.status.success(), "capture failed: {}", String::from_utf8_lossy(&capture.stderr));

    let text = run_stardump(&["threads", snapshot_arg, "--image", image_arg]);
    assert_eq!(text.status.code(), Some(2), "{}", String::from_utf8_lossy(&text.stderr));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Thread 1 \"idle0\" (id 0, sleeping)"), "{text}");
    assert!(text.contains("Thread 2 <no name> (id 1, sleeping)"), "{text}");
    assert!(text.contains("<unreadable name: cannot read 1 bytes at 0x10"), "{text}");
    assert!(text.contains("Thread 3 \"waiter\" (id 2, sleeping)"), "{text}");
    assert!(text.contains("Thread 4 <no name> (unreadable) at 0x18:"), "{text}");
    assert!(text.contains("<unreadable sp: cannot read 8 bytes at 0x20"), "{text}");
    assert!(text.contains("No backtrace: the flags member cannot be read"), "{text}");
    assert!(text.contains("Thread list stopped: cannot read the link of the thread at 0x18"), "{text}");

    let json = run_stardump(&["threads", snapshot_arg, "--image", image_arg, "--json"]);
    assert_eq!(json.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&json.stdout).expect("stardump threads --json printed invalid JSON");
    assert_eq!(report["list_complete"], false);
    let threads = report["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 4);
    // The logger's backtrace does not need its name.
    assert_eq!(threads[1]["complete"], true);
    assert_eq!(threads[1]["name"], Value::Null);
    assert_eq!(threads[1]["errors"].as_array().unwrap().len(), 1);
    let logger_functions: Vec<&str> =
        threads[1]["frames"].as_array().unwrap().iter().filter_map(|frame| frame["function"].as_str()).collect();
    assert!(logger_functions.contains(&"logger_main"), "{logger_functions:?}");
    assert_eq!(threads[3]["address"], "0x18");
    assert_eq!(threads[3]["state"], "unreadable");
    assert_eq!(threads[3]["frames"].as_array().unwrap().len(), 0);
    let members: Vec<&str> = threads[3]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(members, ["name", "id", "flags", "sp", "ip"]);
}
