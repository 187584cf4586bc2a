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
    for (pfn, page) in memory.chunks(PAGE).enumerate() {
        if variant.leave_out_interrupted_stack && pfn == left_out {
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
