//! A thread preempted inside an interrupt entry stub without CFI, with gdb
//! as the oracle.
//!
//! With the `preempt` command-line word, the test unikernel's timer
//! interrupt preempts a "cruncher" thread through `irq_timer`, a stub with
//! no CFI, as Mini-OS's and Unikraft's entry code has none. The guest runs
//! to `mode=ud2` on two vCPUs and is captured.
//!
//! gdb cannot unwind out of the stub, so its view is taken in two parts on
//! the paused guest: from the thread's saved sp and ip down to the stub,
//! and from the registers the stub saved (the guest's `cruncher_frame`)
//! down to `thread_start`. `stardump threads` must print the first part,
//! then the stub as the trap frame, then the second part, found by the
//! hardware interrupt frame, with the same function, file and line in
//! every frame and the interrupted pc and sp equal to the saved ones.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stardump_tests::build::{binaries, unikernel_image};
use stardump_tests::gdb::{batch_command, parse_backtraces, GdbFrame, GdbThread};
use stardump_tests::qemu::{GuestConfig, Qemu};

const HALTED: &str = "stardust-test: halted in crash_halt";

/// General registers `struct trap_frame` holds, as gdb names them.
const SAVED_REGISTERS: [&str; 15] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

fn parse_hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not a hex number: {text:?}"))
}

/// What gdb printed for the cruncher.
struct GdbView {
    /// `cruncher_frame->rip` and `->rsp`.
    interrupted_pc: u64,
    interrupted_sp: u64,
    /// From the saved sp and ip, down to the stub.
    upper: GdbThread,
    /// From the saved interrupt registers.
    lower: GdbThread,
}

fn gdb_view(image: &std::path::Path, port: u16, sp: u64, ip: u64) -> GdbView {
    let mut command = batch_command(port);
    command.args(["-ex", "printf \"@@SAVED %#lx %#lx\\n\", cruncher_frame->rip, cruncher_frame->rsp"]);
    for register in SAVED_REGISTERS {
        command.args(["-ex", &format!("set $saved_{register} = ${register}")]);
    }
    command.args(["-ex", "set $saved_rsp = $rsp", "-ex", "set $saved_pc = $pc"]);
    command.args(["-ex", "echo @@UPPER\\n", "-ex", &format!("set $rsp = {sp:#x}"), "-ex", &format!("set $pc = {ip:#x}"), "-ex", "bt"]);
    command.args(["-ex", "echo @@LOWER\\n"]);
    for register in SAVED_REGISTERS {
        command.args(["-ex", &format!("set ${register} = cruncher_frame->{register}")]);
    }
    command.args(["-ex", "set $rsp = cruncher_frame->rsp", "-ex", "set $pc = cruncher_frame->rip", "-ex", "bt"]);
    command.args(["-ex", "echo @@END\\n"]);
    for register in SAVED_REGISTERS {
        command.args(["-ex", &format!("set ${register} = $saved_{register}")]);
    }
    command.args(["-ex", "set $rsp = $saved_rsp", "-ex", "set $pc = $saved_pc", "-ex", "disconnect"]);
    let output = command.arg(image).output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "gdb failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let saved = stdout.lines().find_map(|line| line.strip_prefix("@@SAVED ")).unwrap_or_else(|| panic!("no @@SAVED line:\n{stdout}"));
    let (pc, sp) = saved.split_once(' ').expect("two values");
    let section = |from: &str, to: &str| -> GdbThread {
        let start = stdout.find(from).unwrap_or_else(|| panic!("no {from} in gdb output:\n{stdout}")) + from.len();
        let end = stdout[start..].find(to).map_or(stdout.len(), |end| start + end);
        let mut threads = parse_backtraces(&stdout[start..end]);
        assert_eq!(threads.len(), 1, "gdb printed no backtrace after {from}:\n{stdout}");
        threads.remove(0)
    };
    GdbView { interrupted_pc: parse_hex(pc), interrupted_sp: parse_hex(sp), upper: section("@@UPPER", "@@LOWER"), lower: section("@@LOWER", "@@END") }
}

fn same_frame(theirs: &GdbFrame, ours: &Value) -> bool {
    let same_file = match (ours["file"].as_str(), theirs.file.as_deref()) {
        (Some(ours), Some(theirs)) => ours == theirs || ours.ends_with(&format!("/{theirs}")),
        (None, None) => true,
        _ => false,
    };
    theirs.function.as_deref() == ours["function"].as_str() && same_file && theirs.line.map(u64::from) == ours["line"].as_u64()
}

fn describe(theirs: Option<&GdbFrame>, ours: Option<&Value>) -> String {
    let theirs = theirs.map_or("nothing".to_owned(), |frame| {
        format!("{} at {:?}:{:?}", frame.function.as_deref().unwrap_or("??"), frame.file, frame.line)
    });
    let ours = ours.map_or("nothing".to_owned(), |frame| {
        format!("{} at {}:{} [{}] kind {}", frame["function"], frame["file"], frame["line"], frame["found_by"], frame["kind"])
    });
    format!("gdb {theirs}, stardump {ours}")
}

fn check_variant(variant: &str) {
    let image = unikernel_image(variant);
    let image_arg = image.to_str().unwrap();
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let snapshot = work_dir.path().join(format!("{variant}.sdump"));

    let mut qemu = Qemu::start(&GuestConfig {
        kernel: image.clone(),
        command_line: "mode=ud2 preempt".to_owned(),
        memory_mib: 64,
        vcpus: 2,
    })
    .expect("starting QEMU");
    qemu.wait_for_serial(HALTED, Duration::from_secs(60)).unwrap_or_else(|error| panic!("{variant}: {error:#}"));
    let capture = Command::new(&binaries().capture)
        .arg(qemu.gdb_target())
        .arg("-o")
        .arg(&snapshot)
        .arg("--leave-paused")
        .output()
        .expect("running stardump-capture");
    assert!(capture.status.success(), "{variant}: capture failed: {}", String::from_utf8_lossy(&capture.stderr));

    let output = Command::new(&binaries().stardump)
        .args(["threads", snapshot.to_str().unwrap(), "--image", image_arg, "--json"])
        .output()
        .expect("running stardump");
    assert_eq!(output.status.code(), Some(0), "{variant}: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("stardump threads --json printed invalid JSON");
    let threads = report["threads"].as_array().expect("`threads` is an array");
    let cruncher = threads.iter().find(|thread| thread["name"] == "cruncher").expect("a thread named cruncher");
    assert_eq!(cruncher["state"], "sleeping", "{variant}: cruncher state");
    let sp = parse_hex(cruncher["saved_sp"].as_str().expect("saved_sp"));
    let ip = parse_hex(cruncher["saved_ip"].as_str().expect("saved_ip"));

    let gdb = gdb_view(&image, qemu.gdb_port(), sp, ip);
    qemu.kill();

    let frames: Vec<&Value> = cruncher["frames"].as_array().expect("`frames` is an array").iter().collect();
    let stub = frames.iter().position(|frame| frame["kind"] == "trap").unwrap_or_else(|| panic!("{variant}: no trap frame in {frames:#?}"));
    let mut differences = Vec::new();

    // gdb stops at the stub, or prints a bogus frame after it.
    let gdb_stub =
        gdb.upper.frames.iter().position(|frame| frame.function.as_deref() == Some("irq_timer")).expect("gdb reaches irq_timer");
    let gdb_upper: Vec<&GdbFrame> = gdb.upper.frames[..gdb_stub].iter().collect();
    for index in 0..gdb_upper.len().max(stub) {
        let (theirs, ours) = (gdb_upper.get(index).copied(), frames.get(index).copied().filter(|_| index < stub));
        if !matches!((theirs, ours), (Some(theirs), Some(ours)) if same_frame(theirs, ours)) {
            differences.push(format!("{variant} above the stub #{index}: {}", describe(theirs, ours)));
        }
    }
    assert_eq!(frames[stub]["function"], "irq_timer", "{variant}: the trap frame: {:#?}", frames[stub]);

    let lower = &frames[stub + 1..];
    let interrupted = lower.first().unwrap_or_else(|| panic!("{variant}: nothing below the stub"));
    assert_eq!(interrupted["found_by"], "interrupt-frame", "{variant}: how the interrupted frame was found");
    assert_eq!(parse_hex(interrupted["pc"].as_str().expect("pc")), gdb.interrupted_pc, "{variant}: interrupted pc");
    if let Some(sp) = interrupted["registers"]["rsp"].as_str() {
        assert_eq!(parse_hex(sp), gdb.interrupted_sp, "{variant}: interrupted sp");
    }
    let gdb_lower: Vec<&GdbFrame> = gdb.lower.frames.iter().collect();
    for index in 0..gdb_lower.len().max(lower.len()) {
        let (theirs, ours) = (gdb_lower.get(index).copied(), lower.get(index).copied());
        if !matches!((theirs, ours), (Some(theirs), Some(ours)) if same_frame(theirs, ours)) {
            differences.push(format!("{variant} below the stub #{index}: {}", describe(theirs, ours)));
        }
    }
    assert_eq!(cruncher["complete"], true, "{variant}: the cruncher's backtrace ends early: {:?}", cruncher["stop_reason"]);
    let functions: Vec<&str> = lower.iter().filter_map(|frame| frame["function"].as_str()).collect();
    assert!(functions.contains(&"cruncher_main"), "{variant}: interrupted frames {functions:?}");
    assert!(differences.is_empty(), "stardump and gdb disagree:\n{}", differences.join("\n"));
}

#[test]
fn preempted_thread_matches_gdb_o0_fp() {
    check_variant("O0-fp");
}

#[test]
fn preempted_thread_matches_gdb_o0_nofp() {
    check_variant("O0-nofp");
}

#[test]
fn preempted_thread_matches_gdb_o2_fp() {
    check_variant("O2-fp");
}

#[test]
fn preempted_thread_matches_gdb_o2_nofp() {
    check_variant("O2-nofp");
}
