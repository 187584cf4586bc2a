//! The variable commands of the `stardump` binary on a snapshot written by
//! the format crate's writer. Guest memory contains page tables, the C
//! fixture of tests/fixtures built without libc, and a stack whose vCPU is
//! stopped in `crash_here` after its prologue. The stack is zero, so the
//! frame's locals read as zeros and its caller is the outermost frame; one
//! page is left out of the snapshot to show an unreadable read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use stardump::image::Image;
use stardump_format::{Metadata, RegisterGroups, SnapshotWriter, SourceKind, VcpuState, WriterOptions};
use stardump_tests::workspace_root;

const PAGE: usize = 4096;
const MEMORY_BYTES: usize = 0x40_0000;
const PML4: usize = 0x1000;
const PDPT: usize = 0x2000;
const PD: usize = 0x3000;
const LARGE_PAGE_PHYSICAL: u64 = 0x20_0000;
const LARGE_PAGE_VIRTUAL: u64 = 0x40_0000;
/// The frame pointer of `crash_here`; the stack lies below it.
const FRAME_POINTER: u64 = 0x50_0800;
/// A page inside the mapping that the snapshot leaves out.
const MISSING_PAGE: u64 = 0x5f_f000;

fn physical(virtual_address: u64) -> usize {
    usize::try_from(virtual_address - LARGE_PAGE_VIRTUAL + LARGE_PAGE_PHYSICAL).unwrap()
}

/// Builds the C fixture without libc, so all of it lies in the first
/// 2 MiB above 0x400000.
fn build_image(dir: &Path) -> PathBuf {
    let fixtures = workspace_root().join("tests/fixtures");
    let output = dir.join("types.elf");
    let status = Command::new("gcc")
        .args(["-nostdlib", "-static", "-no-pie", "-O0", "-g", "-fcf-protection=none"])
        .args(["-fno-omit-frame-pointer", "-Wl,-e,main", "-Wl,--build-id", "-o"])
        .arg(&output)
        .arg(fixtures.join("types.c"))
        .arg(fixtures.join("other.c"))
        .status()
        .unwrap_or_else(|error| panic!("cannot run gcc ({error}): install the Debian package gcc"));
    assert!(status.success(), "gcc failed on the C fixture");
    output
}

/// Returns the first address of the line `counter += …` in `crash_here`.
fn statement_address(image: &Image) -> u64 {
    let source = std::fs::read_to_string(workspace_root().join("tests/fixtures/types.c")).unwrap();
    let line = source.lines().position(|text| text.contains("counter += local_scores")).unwrap() as u32 + 1;
    let function = image.symbols().iter().find(|symbol| symbol.name == "crash_here").unwrap();
    let end = function.address + function.size;
    let rows = image.dwarf().find_location_range(function.address, end).unwrap();
    for (address, _, location) in rows {
        if location.line == Some(line) {
            return address;
        }
    }
    panic!("no line-table row for types.c:{line}");
}

fn write_snapshot(dir: &Path, image_path: &Path) -> PathBuf {
    let image = Image::open(image_path).unwrap();
    let mut memory = vec![0u8; MEMORY_BYTES];
    let mut put_entry = |table: usize, index: usize, value: u64| {
        memory[table + index * 8..table + index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    };
    put_entry(PML4, 0, PDPT as u64 | 0x3);
    put_entry(PDPT, 0, PD as u64 | 0x3);
    put_entry(PD, 2, LARGE_PAGE_PHYSICAL | 0x83);
    for segment in image.segments() {
        let len = usize::try_from(segment.file_len_bytes).unwrap();
        let bytes = image.bytes_at(segment.address, len).unwrap();
        let at = physical(segment.address);
        memory[at..at + len].copy_from_slice(bytes);
    }

    let path = dir.join("guest.sdmp");
    let options = WriterOptions { chunk_pages: 64, zstd_level: 3, threads: 1 };
    let mut writer = SnapshotWriter::create(&path, options).unwrap();
    writer.set_metadata(Metadata {
        source_kind: SourceKind::GdbRemote,
        target_name: "gdb:127.0.0.1:1234".to_owned(),
        image_build_id: image.build_id().map(<[u8]>::to_vec),
        ..Metadata::default()
    });
    writer.add_vcpu(&VcpuState {
        id: 0,
        rbp: FRAME_POINTER,
        rsp: FRAME_POINTER - 0x40,
        rip: statement_address(&image),
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
    let missing = physical(MISSING_PAGE) / PAGE;
    for (pfn, page) in memory.chunks(PAGE).enumerate() {
        if pfn != missing {
            writer.add_pages(pfn as u64, page).unwrap();
        }
    }
    writer.finish().unwrap();
    path
}

struct Setup {
    _dir: tempfile::TempDir,
    image: PathBuf,
    snapshot: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let image = build_image(dir.path());
    let snapshot = write_snapshot(dir.path(), &image);
    Setup { _dir: dir, image, snapshot }
}

impl Setup {
    /// Runs `stardump COMMAND SNAPSHOT --image IMAGE EXTRA…`.
    fn run(&self, command: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_stardump"))
            .arg(command)
            .arg(&self.snapshot)
            .arg("--image")
            .arg(&self.image)
            .args(extra)
            .output()
            .unwrap()
    }

    fn text(&self, command: &str, extra: &[&str], status: i32) -> String {
        let output = self.run(command, extra);
        assert_eq!(
            output.status.code(),
            Some(status),
            "stardump {command} {extra:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().replace(&workspace_root().display().to_string(), "[workspace]")
    }
}

#[test]
fn print_globals_text() {
    let setup = setup();
    let expressions = [
        "record_value",
        "*record_pointer",
        "&points[1]",
        "bits_value",
        "unknown_flag",
        "long_array",
        "text",
        "handler_value",
        "'other.c'::counter",
        "sizeof(struct record) + 1",
        "(unsigned char) -1",
        "$rip",
    ];
    let mut text = String::new();
    for expression in expressions {
        text.push_str(&format!("print {expression}\n"));
        text.push_str(&setup.text("print", &[expression], 0));
    }
    insta::assert_snapshot!(text);
}

#[test]
fn print_limits_options() {
    let setup = setup();
    let mut text = setup.text("print", &["long_array", "--print-elements", "4"], 0);
    text.push_str(&setup.text("print", &["record_value", "--max-depth", "1"], 0));
    text.push_str(&setup.text("print", &["message", "--print-elements", "3"], 0));
    insta::assert_snapshot!(text);
}

#[test]
fn ptype_text() {
    let setup = setup();
    let mut text = String::new();
    for expression in ["struct record", "record_pointer", "handler_t", "matrix", "enum flags", "other_function"] {
        text.push_str(&setup.text("ptype", &[expression], 0));
    }
    insta::assert_snapshot!(text);
}

#[test]
fn frame_locals_and_bt_full() {
    let setup = setup();
    let mut text = setup.text("frame", &["--args", "--locals"], 0);
    text.push_str(&setup.text("bt", &["--full"], 0));
    insta::assert_snapshot!(text);
}

#[test]
fn examine_formats() {
    let setup = setup();
    let mut text = String::new();
    for (format, address) in [
        ("/4xw", "&int_array"),
        ("/2dg", "&long_value"),
        ("/3c", "message"),
        ("/s", "message"),
        ("/2a", "&handler_value"),
        ("/1tb", "&high_char"),
        ("/2ob", "&high_char"),
        ("/1fg", "&double_value"),
        ("/3i", "$pc"),
        ("/4i", "walk"),
    ] {
        text.push_str(&setup.text("x", &["--format", format, address], 0));
    }
    insta::assert_snapshot!(text);
}

#[test]
fn examine_unreadable_page() {
    let setup = setup();
    let output = setup.run("x", &["--format", "/2xg", &format!("{:#x}", MISSING_PAGE - 8)]);
    assert_eq!(output.status.code(), Some(2), "an unreadable unit makes the output incomplete");
    insta::assert_snapshot!(String::from_utf8(output.stdout).unwrap());
}

#[test]
fn gdb_spellings_accepted() {
    let setup = setup();
    let snapshot = setup.snapshot.to_str().unwrap();
    let image = setup.image.to_str().unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_stardump")).args(args).output().unwrap();
    let examine = run(&["x/2xw", snapshot, "--image", image, "&int_array"]);
    let examine = String::from_utf8_lossy(&examine.stdout).into_owned();
    assert!(examine.ends_with(" <int_array>:\t0x00000001\t0x00000002\n"), "{examine}");
    let symbol = run(&["info", "symbol", snapshot, "--image", image, "&int_array[1]"]);
    assert_eq!(String::from_utf8_lossy(&symbol.stdout), "int_array + 4 in section .data\n");
    let print = run(&["p", snapshot, "--image", image, "int_value"]);
    assert_eq!(String::from_utf8_lossy(&print.stdout), "$1 = -42\n");
    let hex = run(&["p/x", snapshot, "--image", image, "int_array[1]@2"]);
    assert_eq!(String::from_utf8_lossy(&hex.stdout), "$1 = {0x2, 0x3}\n");
}

#[test]
fn print_json_fields() {
    let setup = setup();
    let output = setup.run("print", &["record_pointer", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["command"], "print");
    assert_eq!(report["type"], "struct record *");
    assert_eq!(report["complete"], true);
    assert!(report["value"].as_str().unwrap().starts_with("(struct record *) 0x"));
}

#[test]
fn examine_instructions_json() {
    let setup = setup();
    let output = setup.run("x", &["--format", "/3i", "walk", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["command"], "x");
    assert_eq!(report["format"], "i");
    assert_eq!(report["size"], 1);
    let units = report["units"].as_array().unwrap();
    assert_eq!(units.len(), 3);
    assert_eq!(units[0]["value"], "push   %rbp");
    assert_eq!(units[1]["value"], "mov    %rsp,%rbp");
    assert_eq!(units[0]["address"], report["address"]);
}

#[test]
fn unknown_symbol_error() {
    let setup = setup();
    let output = setup.run("print", &["no_such_variable"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "stardump: No symbol \"no_such_variable\" in current context.\n"
    );
}

#[test]
fn list_finds_moved_source() {
    // Build from a copy, then move the copy away, so the path DWARF
    // records no longer exists and only --source-dir finds the file.
    let dir = tempfile::tempdir().unwrap();
    let build_dir = dir.path().join("build");
    let moved_dir = dir.path().join("moved");
    std::fs::create_dir_all(&build_dir).unwrap();
    std::fs::create_dir_all(&moved_dir).unwrap();
    for name in ["types.c", "other.c", "fixture.h"] {
        std::fs::copy(workspace_root().join("tests/fixtures").join(name), build_dir.join(name)).unwrap();
    }
    let image = dir.path().join("types.elf");
    let status = Command::new("gcc")
        .args(["-nostdlib", "-static", "-no-pie", "-O0", "-g", "-fcf-protection=none", "-Wl,-e,main", "-o"])
        .arg(&image)
        .args(["types.c", "other.c"])
        .current_dir(&build_dir)
        .status()
        .expect("running gcc");
    assert!(status.success());
    let snapshot = write_snapshot(dir.path(), &image);
    std::fs::rename(build_dir.join("types.c"), moved_dir.join("types.c")).unwrap();

    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stardump"))
            .arg("list")
            .arg(&snapshot)
            .arg("--image")
            .arg(&image)
            .args(extra)
            .output()
            .unwrap()
    };
    let missing = run(&[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("give its directory with --source-dir"));

    let found = run(&["--source-dir", moved_dir.to_str().unwrap()]);
    assert_eq!(found.status.code(), Some(0), "{}", String::from_utf8_lossy(&found.stderr));
    let text = String::from_utf8(found.stdout).unwrap();
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(text.contains("\tcounter += local_scores[1]"), "{text}");
    assert!(text.lines().nth(5).unwrap().contains("counter += local_scores[1]"), "the frame's line is the sixth:\n{text}");
}
