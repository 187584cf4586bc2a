//! The `stardump` binary on snapshots written by the format crate's writer:
//! guest memory holds page tables, the gcc-built `trap_stack.S` image and
//! the stack of a vCPU halted in a trap handler after `ud2`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stardump::image::Image;
use stardump_format::{Metadata, RegisterGroups, SnapshotWriter, SourceKind, VcpuState, WriterOptions};

const PAGE: usize = 4096;
/// The guest's physical memory: page tables, then one 2 MiB page at
/// physical 0x200000 that maps virtual 0x400000 (image and stacks).
const MEMORY_BYTES: usize = 0x40_0000;
const PML4: usize = 0x1000;
const PDPT: usize = 0x2000;
const PD: usize = 0x3000;
const LARGE_PAGE_PHYSICAL: u64 = 0x20_0000;
const LARGE_PAGE_VIRTUAL: u64 = 0x40_0000;
const STACK: u64 = 0x50_0000;
/// On its own page, so a test can leave it out of the snapshot.
const INTERRUPTED_STACK: u64 = STACK + 0x1000;
const CAPTURE_TIME_UNIX_US: u64 = 1_733_344_800_123_456;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn build_image(dir: &Path) -> PathBuf {
    let output = dir.join("trap_stack.elf");
    let status = Command::new("gcc")
        .args(["-nostdlib", "-static", "-no-pie", "-g", "-Wl,--build-id", "-Wl,-e,entry", "-o"])
        .arg(&output)
        .arg(fixture("trap_stack.S"))
        .status()
        .unwrap_or_else(|error| panic!("cannot run gcc ({error}): install the Debian package gcc"));
    assert!(status.success(), "gcc failed on trap_stack.S");
    output
}

fn symbol(image: &Image, name: &str) -> u64 {
    image.symbols().iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no symbol {name}")).address
}

fn physical(virtual_address: u64) -> usize {
    usize::try_from(virtual_address - LARGE_PAGE_VIRTUAL + LARGE_PAGE_PHYSICAL).unwrap()
}

fn put_word(memory: &mut [u8], virtual_address: u64, value: u64) {
    let at = physical(virtual_address);
    memory[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// What to change in the standard snapshot.
#[derive(Default)]
struct Variant {
    leave_out_interrupted_stack: bool,
    build_id: Option<Vec<u8>>,
    corrupt_code: bool,
    /// Leave out the page holding `handler_halt`, the vCPU's rip.
    leave_out_code_page: bool,
}

fn write_snapshot(dir: &Path, image_path: &Path, variant: Variant) -> PathBuf {
    let image = Image::open(image_path).unwrap();
    let mut memory = vec![0u8; MEMORY_BYTES];
    let mut put_entry = |table: usize, index: usize, value: u64| {
        memory[table + index * 8..table + index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    };
    put_entry(PML4, 0, PDPT as u64 | 0x3); // present, writable
    put_entry(PDPT, 0, PD as u64 | 0x3);
    put_entry(PD, 2, LARGE_PAGE_PHYSICAL | 0x83); // present, writable, 2 MiB page

    for segment in image.segments() {
        let len = usize::try_from(segment.file_len_bytes).unwrap();
        let bytes = image.bytes_at(segment.address, len).unwrap();
        let at = physical(segment.address);
        memory[at..at + len].copy_from_slice(bytes);
    }
    if variant.corrupt_code {
        let at = physical(symbol(&image, "middle"));
        memory[at] ^= 0xff;
    }

    let hardware_frame = [
        0x1212,                                // r12 pushed by handler
        symbol(&image, "trap_stub_after_call"), // return into trap_stub
        0,                                     // error code pushed by trap_stub
        symbol(&image, "middle_ud2"),          // rip pushed by the CPU
        0x8,                                   // cs
        0x2,                                   // rflags
        INTERRUPTED_STACK,                     // rsp
        0x10,                                  // ss
    ];
    for (index, word) in hardware_frame.iter().enumerate() {
        put_word(&mut memory, STACK + index as u64 * 8, *word);
    }
    put_word(&mut memory, INTERRUPTED_STACK, 0xb0b0);
    put_word(&mut memory, INTERRUPTED_STACK + 8, 0x5555);
    put_word(&mut memory, INTERRUPTED_STACK + 16, symbol(&image, "entry_after_call"));

    let path = dir.join("guest.sdmp");
    let options = WriterOptions { chunk_pages: 64, zstd_level: 3, threads: 1 };
    let mut writer = SnapshotWriter::create(&path, options).unwrap();
    writer.set_metadata(Metadata {
        source_kind: SourceKind::GdbRemote,
        target_name: "gdb:127.0.0.1:1234".to_owned(),
        capture_time_unix_us: CAPTURE_TIME_UNIX_US,
        pause_time_us: 12_345,
        image_build_id: variant.build_id.or_else(|| image.build_id().map(<[u8]>::to_vec)),
        ..Metadata::default()
    });
    writer.add_vcpu(&VcpuState {
        id: 0,
        rax: 0xaaaa,
        rbx: 0x1111,
        rbp: INTERRUPTED_STACK + 8,
        rsp: STACK,
        r12: 0x2222,
        rip: symbol(&image, "handler_halt"),
        rflags: 0x46,
        cs: 0x8,
        ss: 0x10,
        cr0: 0x8000_0011,
        cr3: PML4 as u64,
        cr4: 0x20,
        efer: 0x500,
        present: RegisterGroups { general: true, segment_bases: true, control: true },
        ..VcpuState::default()
    });
    let left_out = physical(INTERRUPTED_STACK) / PAGE;
    let code_page = physical(symbol(&image, "handler_halt")) / PAGE;
    for (pfn, page) in memory.chunks(PAGE).enumerate() {
        if variant.leave_out_interrupted_stack && pfn == left_out {
            continue;
        }
        if variant.leave_out_code_page && pfn == code_page {
            continue;
        }
        writer.add_pages(pfn as u64, page).unwrap();
    }
    writer.finish().unwrap();
    path
}

fn stardump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stardump")).args(args).output().unwrap()
}

/// Replaces paths that differ between machines and runs.
fn normalize(text: &[u8], dir: &Path) -> String {
    String::from_utf8_lossy(text)
        .replace(&dir.display().to_string(), "[tmp]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[analyze]")
}

struct Setup {
    dir: tempfile::TempDir,
    image: PathBuf,
    snapshot: PathBuf,
}

fn setup(variant: Variant) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path());
    let snapshot = write_snapshot(dir.path(), &image, variant);
    Setup { dir, image, snapshot }
}

impl Setup {
    fn bt(&self, extra: &[&str]) -> Output {
        let mut args = vec!["bt", self.snapshot.to_str().unwrap(), "--image", self.image.to_str().unwrap()];
        args.extend_from_slice(extra);
        stardump(&args)
    }
}

#[test]
fn bt_text_through_trap_frame() {
    let setup = setup(Variant::default());
    let output = setup.bt(&[]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    insta::assert_snapshot!(normalize(&output.stdout, setup.dir.path()));
}

#[test]
fn bt_json_frames() {
    let setup = setup(Variant::default());
    let output = setup.bt(&["--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["warnings"], serde_json::json!([]));
    let thread = &report["threads"][0];
    assert_eq!(thread["vcpu"], 0);
    assert_eq!(thread["complete"], true);
    assert_eq!(thread["stop_reason"], serde_json::Value::Null);
    let frames = thread["frames"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = frames
        .iter()
        .map(|frame| {
            (
                frame["kind"].as_str().unwrap().to_owned(),
                frame["found_by"].as_str().unwrap().to_owned(),
                frame["function"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("normal", "context", "handler"),
        ("trap", "cfi", "trap_stub"),
        ("normal", "cfi", "middle"),
        ("normal", "cfi", "entry"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(summary, expected);
    assert_eq!(frames[2]["pc_is_return_address"], false);
    assert_eq!(frames[3]["pc_is_return_address"], true);
    assert_eq!(frames[3]["registers"]["rbx"], "0xb0b0");
    assert_eq!(frames[0]["cfa"], format!("{:#x}", STACK + 16));
}

#[test]
fn bt_uncaptured_stack_exits_2() {
    let setup = setup(Variant { leave_out_interrupted_stack: true, ..Variant::default() });
    let output = setup.bt(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!("Backtrace stopped: cannot read 8 bytes at {:#x}: page not captured\n", INTERRUPTED_STACK + 16);
    assert!(stdout.ends_with(&expected), "stdout: {stdout}");
}

#[test]
fn bt_warns_on_build_id_mismatch() {
    let setup = setup(Variant { build_id: Some(vec![0xde, 0xad]), ..Variant::default() });
    let output = setup.bt(&[]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("warning: image build id "), "stderr: {stderr}");
    assert!(stderr.contains("differs from the snapshot's dead"), "stderr: {stderr}");
}

#[test]
fn bt_warns_on_code_mismatch() {
    let setup = setup(Variant { corrupt_code: true, ..Variant::default() });
    let output = setup.bt(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let image = Image::open(&setup.image).unwrap();
    let expected = format!(
        "code at {:#x} in the snapshot differs from the image: frames and names may be wrong",
        symbol(&image, "middle")
    );
    assert_eq!(report["warnings"], serde_json::json!([expected]));
}

#[test]
fn bt_limit_stops_walk() {
    let setup = setup(Variant::default());
    let output = setup.bt(&["--limit", "2"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("Backtrace stopped: frame limit of 2 reached\n"));
}

#[test]
fn bt_unknown_vcpu_fails() {
    let setup = setup(Variant::default());
    let output = setup.bt(&["--vcpu", "3"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "stardump: no vCPU 3 in the snapshot; its vCPUs are 0\n");
}

#[test]
fn regs_text_like_gdb() {
    let setup = setup(Variant::default());
    let output = stardump(&["regs", setup.snapshot.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!(normalize(&output.stdout, setup.dir.path()));
}

#[test]
fn regs_json_values() {
    let setup = setup(Variant::default());
    let output = stardump(&["regs", setup.snapshot.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let vcpu = &report["vcpus"][0];
    assert_eq!(vcpu["registers"]["rsp"], format!("{STACK:#x}"));
    assert_eq!(vcpu["flags"]["eflags"], serde_json::json!(["PF", "ZF"]));
    assert_eq!(vcpu["flags"]["efer"], serde_json::json!(["LME", "LMA"]));
}

#[test]
fn info_text() {
    let setup = setup(Variant::default());
    let output = stardump(&["info", setup.snapshot.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let image = Image::open(&setup.image).unwrap();
    let build_id: String = image.build_id().unwrap().iter().map(|b| format!("{b:02x}")).collect();
    let text = normalize(&output.stdout, setup.dir.path()).replace(&build_id, "[build id]");
    // The file size and ratio depend on the zstd version.
    let text: String = text
        .lines()
        .map(|line| if line.starts_with("File size:") { "File size:       [size]" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(text);
}

#[test]
fn info_json_counts() {
    let setup = setup(Variant::default());
    let output = stardump(&["info", setup.snapshot.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["capture_time"], "2024-12-04T20:40:00.123456Z");
    assert_eq!(report["vcpu_count"], 1);
    assert_eq!(report["memory"]["total_bytes"], MEMORY_BYTES);
    let pages = report["memory"]["stored_pages"].as_u64().unwrap() + report["memory"]["zero_pages"].as_u64().unwrap();
    assert_eq!(pages, (MEMORY_BYTES / PAGE) as u64);
}

#[test]
fn missing_snapshot_fails_in_one_line() {
    let output = stardump(&["info", "/nonexistent/guest.sdmp"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("stardump: cannot read /nonexistent/guest.sdmp: "), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn live_process_target_rejected() {
    for arguments in [&["bt", "pid:13184"][..], &["print", "pid:13184", "x"], &["info", "pid:13184"]] {
        let output = stardump(arguments);
        assert_eq!(output.status.code(), Some(1), "{arguments:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("live processes (pid:13184) are not supported by stardump"), "{arguments:?}: {stderr}");
        assert!(stderr.contains("`stardump-capture pid:13184 -o FILE`"), "{arguments:?}: {stderr}");
    }
    let output = stardump(&["bt", "xen:7"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`stardump-capture xen:7 -o FILE`"), "{stderr}");
}

#[test]
fn unikernel_print_requires_image() {
    let snapshot = example("unikernel-ud2.sdump");
    for command in ["print", "frame"] {
        let mut arguments = vec![command, snapshot.to_str().unwrap()];
        if command == "print" {
            arguments.push("x");
        }
        let output = stardump(&arguments);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("lists no mapped files, so it needs the unikernel's ELF file: pass --image FILE"), "{command}: {stderr}");
    }
}

/// Returns the path of a file of the bundled example: the snapshot, or the
/// image it was taken from.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ud2").join(name)
}

/// Writes a copy of the bundled example with the byte at `offset` flipped,
/// after checking that the byte is still the one the test expects.
fn damaged_example(dir: &Path, offset: usize, expected: u8) -> PathBuf {
    let mut bytes = std::fs::read(example("unikernel-ud2.sdump")).unwrap();
    assert_eq!(bytes[offset], expected, "the example changed: byte {offset:#x} is no longer {expected:#04x}");
    bytes[offset] ^= 0xff;
    let path = dir.join(format!("damaged-{offset:x}.sdump"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("invalid JSON ({error}); stderr: {}", stderr_text(output)))
}

/// Every command that takes `--image`, with its arguments after the file.
const IMAGE_COMMANDS: &[&[&str]] = &[
    &["print", "worker_config"],
    &["x/2i", "$rip"],
    &["frame"],
    &["list"],
    &["info-symbol", "0xffffffff80100008"],
    &["ptype", "worker_config"],
    &["whatis", "worker_config"],
    &["bt"],
];

fn run_with_image(command: &[&str], snapshot: &Path, image: &Path, json: bool) -> Output {
    let mut args = vec![command[0], snapshot.to_str().unwrap(), "--image", image.to_str().unwrap()];
    args.extend_from_slice(&command[1..]);
    if json {
        args.push("--json");
    }
    stardump(&args)
}

#[test]
fn wrong_image_warns_in_every_command() {
    // An O0 build of the current source differs from the O2 build the
    // example was taken with, in build id and in code.
    let wrong_image = stardump_tests::build::unikernel_image("O0-fp");
    let snapshot = example("unikernel-ud2.sdump");
    let bt = run_with_image(&["bt"], &snapshot, &wrong_image, true);
    let expected = json(&bt)["warnings"].clone();
    let first = expected[0].as_str().unwrap().to_owned();
    assert!(first.starts_with("image build id "), "bt warnings: {expected}");
    assert!(first.contains("frames and names may be wrong"), "bt warnings: {expected}");

    for command in IMAGE_COMMANDS {
        let text = run_with_image(command, &snapshot, &wrong_image, false);
        let stderr = stderr_text(&text);
        assert!(stderr.starts_with(&format!("warning: {first}\n")), "{command:?} stderr: {stderr}");
        let report = run_with_image(command, &snapshot, &wrong_image, true);
        assert_eq!(json(&report)["warnings"], expected, "{command:?}");
        // As for bt, the warning alone does not change the exit status.
        assert_eq!(text.status.code(), report.status.code(), "{command:?} stderr: {stderr}");
    }
}

#[test]
fn right_image_gives_no_warnings() {
    let snapshot = example("unikernel-ud2.sdump");
    let image = example("unikernel-O2-fp.elf");
    for command in IMAGE_COMMANDS {
        let text = run_with_image(command, &snapshot, &image, false);
        assert_eq!(stderr_text(&text), "", "{command:?}");
        let report = run_with_image(command, &snapshot, &image, true);
        assert_eq!(json(&report)["warnings"], serde_json::json!([]), "{command:?}");
    }
}

#[test]
fn missing_vcpu_note_reported() {
    let dir = tempfile::tempdir().unwrap();
    // The low byte of the type field of vCPU 1's note: the note becomes an
    // unknown note, so only the header's vcpu_count reveals the loss.
    let snapshot = damaged_example(dir.path(), 0x74e8, 0x03);
    let image = example("unikernel-O2-fp.elf");
    let expected = "damaged snapshot: invalid header note at file offset 0x7028: \
                    vcpu_count is 2, but the note segment has 1 vCPU note";
    for args in [vec!["info"], vec!["regs"], vec!["bt", "--image", image.to_str().unwrap()]] {
        let mut text_args = args.clone();
        text_args.insert(1, snapshot.to_str().unwrap());
        let text = stardump(&text_args);
        assert_eq!(stderr_text(&text), format!("warning: {expected}\n"), "{args:?}");
        assert_eq!(text.status.code(), Some(2), "{args:?}");

        text_args.push("--json");
        let report = stardump(&text_args);
        assert_eq!(json(&report)["warnings"], serde_json::json!([expected]), "{args:?}");
        assert_eq!(report.status.code(), Some(2), "{args:?}");
    }
    let info = stardump(&["info", snapshot.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("vCPUs:           1 (the header records 2)\n"));
    let info = json(&stardump(&["info", snapshot.to_str().unwrap(), "--json"]));
    assert_eq!(info["vcpu_count"], 1);
    assert_eq!(info["recorded_vcpu_count"], 2);
}

#[test]
fn damaged_vcpu_note_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A byte of the CRC of vCPU 0's note, whose descriptor starts at 0x73e0.
    let snapshot = damaged_example(dir.path(), 0x73e3, 0x04);
    let image = example("unikernel-O2-fp.elf");
    let path = snapshot.to_str().unwrap();
    for args in [
        vec!["regs", path, "--json"],
        vec!["bt", path, "--image", image.to_str().unwrap(), "--json"],
        vec!["print", path, "--image", image.to_str().unwrap(), "--vcpu", "1", "cpus", "--json"],
    ] {
        let output = stardump(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr_text(&output));
        let warnings = json(&output)["warnings"].clone();
        let warnings = warnings.as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{args:?}: {warnings:?}");
        let warning = warnings[0].as_str().unwrap();
        assert!(
            warning.starts_with("damaged snapshot: checksum mismatch in vcpu note at file offset 0x73e0: "),
            "{args:?}: {warning}"
        );
        // The log must not repeat the warning.
        assert_eq!(stderr_text(&output), "", "{args:?}");
    }
}

#[test]
fn unreadable_value_names_variable_address() {
    let dir = tempfile::tempdir().unwrap();
    // A byte inside chunk 1, which contains the page tables.
    let snapshot = damaged_example(dir.path(), 0x2b78 + 40, 0x32);
    let image = example("unikernel-O2-fp.elf");
    let output = stardump(&["print", snapshot.to_str().unwrap(), "--image", image.to_str().unwrap(), "worker_config"]);
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(
            "$1 = {name = <unreadable at 0xffffffff80111000: page-table entry at physical 0x105ff8: \
             chunk 1 at file offset 0x2b78: checksum mismatch"
        ),
        "stdout: {stdout}"
    );
}

#[test]
fn missing_frame_names_stop_reason() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = damaged_example(dir.path(), 0x2b78 + 40, 0x32);
    let image = example("unikernel-O2-fp.elf");
    let output = stardump(&[
        "print",
        snapshot.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--frame",
        "9",
        "worker_config",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_text(&output);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "stardump: no frame 9: the backtrace of vCPU 0 has 1 frame; the unwind stopped: cannot read 8 bytes at 0x"
        ),
        "stderr: {stderr}"
    );
    assert!(last.contains("chunk 1 at file offset 0x2b78: checksum mismatch"), "stderr: {stderr}");
}

#[test]
fn missing_frame_of_complete_backtrace() {
    let setup = setup(Variant::default());
    let output = stardump(&[
        "frame",
        setup.snapshot.to_str().unwrap(),
        "--image",
        setup.image.to_str().unwrap(),
        "--frame",
        "7",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_text(&output),
        "stardump: no frame 7: the backtrace of vCPU 0 has 4 frames; the unwind reached the outermost frame\n"
    );
}

#[test]
fn image_directory_rejected_in_words() {
    let setup = setup(Variant::default());
    let dir = setup.dir.path().to_str().unwrap();
    for command in ["bt", "print"] {
        let mut args = vec![command, setup.snapshot.to_str().unwrap(), "--image", dir];
        if command == "print" {
            args.push("$rip");
        }
        let output = stardump(&args);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert_eq!(
            stderr_text(&output),
            format!("stardump: cannot load the image: {dir} is a directory, not an ELF file\n"),
            "{command}"
        );
    }
}

#[test]
fn non_elf_file_shows_magic_in_hex() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "root\n").unwrap();
    let output = stardump(&["info", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_text(&output);
    assert!(
        stderr.ends_with(": no ELF magic: the file starts with 0x72 0x6f 0x6f 0x74, not 0x7f 0x45 0x4c 0x46\n"),
        "stderr: {stderr}"
    );
}

#[test]
fn whatis_json_keys_in_schema_order() {
    let output = run_with_image(
        &["whatis", "worker_config"],
        &example("unikernel-ud2.sdump"),
        &example("unikernel-O2-fp.elf"),
        true,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("  \"").and_then(|rest| rest.split('"').next()))
        .collect();
    assert_eq!(keys, ["schema_version", "command", "warnings", "expression", "type"]);
}

#[test]
fn image_fallback_listed_once() {
    let setup = setup(Variant { leave_out_code_page: true, ..Variant::default() });
    let image = Image::open(&setup.image).unwrap();
    let page = symbol(&image, "handler_halt") & !(PAGE as u64 - 1);
    let expected = format!(
        "1 page of code or read-only data not in the dump was read from the image {}: {page:#x}",
        setup.image.display()
    );
    let args = ["x/2i", setup.snapshot.to_str().unwrap(), "--image", setup.image.to_str().unwrap(), "$rip"];

    // The code check reads the same page first, so it reports the page as
    // not captured before the fallback warning names it.
    let text = stardump(&args);
    let stderr = stderr_text(&text);
    assert!(stderr.starts_with("warning: cannot compare the image's code with the snapshot: "), "{stderr}");
    assert!(stderr.ends_with(&format!("\nwarning: {expected}\n")), "{stderr}");
    assert_eq!(stderr.matches("was read from the image").count(), 1, "{stderr}");

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let report = stardump(&json_args);
    let warnings = json(&report)["warnings"].clone();
    assert_eq!(warnings.as_array().unwrap().len(), 2, "{warnings}");
    assert_eq!(warnings[1], serde_json::json!(expected), "{warnings}");
    assert_eq!(stderr_text(&report), "", "the JSON report already lists the warning");
}
