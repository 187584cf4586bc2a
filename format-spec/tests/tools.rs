//! Checks that standard tools read a written snapshot as an ELF core:
//! `readelf` lists the notes and segments, gdb shows the NT_PRSTATUS registers.

mod common;

use std::path::Path;
use std::process::Command;

use common::write_sample;
use stardump_format::WriterOptions;

/// Runs `program` with `args` and returns its stdout; fails naming the
/// Debian package when the program is missing.
fn run(program: &str, package: &str, args: &[&str], file: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program} ({error}); install the Debian package {package}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{program} {args:?} failed: {stderr}\n{stdout}");
    stdout
}

#[test]
fn readelf_lists_notes_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.sdump");
    write_sample(&path, WriterOptions::default());

    let notes = run("readelf", "binutils", &["-n", "-W"], &path);
    assert_eq!(notes.matches("NT_PRSTATUS").count(), 2, "{notes}");
    assert!(notes.contains("STARDUMP"), "{notes}");

    let segments = run("readelf", "binutils", &["-l", "-W"], &path);
    assert!(segments.contains("NOTE"), "{segments}");
    assert!(segments.contains("LOOS+0x534443"), "{segments}");

    let header = run("readelf", "binutils", &["-h", "-W"], &path);
    assert!(header.contains("CORE (Core file)"), "{header}");
    assert!(header.contains("X86-64"), "{header}");
}

#[test]
fn gdb_shows_prstatus_registers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.sdump");
    write_sample(&path, WriterOptions::default());

    let output = run(
        "gdb",
        "gdb",
        &["-nx", "-batch", "-ex", "info registers rip rsp rax cs", "-ex", "info threads", "-c"],
        &path,
    );
    // vCPU 0: rip 0xffffffff80100000, rsp 0x8, rax 0x1, cs 0x10 (see common::sample_vcpu).
    assert!(output.contains("0xffffffff80100000"), "{output}");
    let rsp = output.lines().find(|line| line.starts_with("rsp")).unwrap_or_default();
    assert!(rsp.contains("0x8"), "{output}");
    let rax = output.lines().find(|line| line.starts_with("rax")).unwrap_or_default();
    assert!(rax.contains("0x1"), "{output}");
    // Both vCPUs appear as threads, with pr_pid = their thread ids 100 and
    // 101 (see common::sample_vcpu).
    assert!(output.contains("LWP 100"), "{output}");
    assert!(output.contains("LWP 101"), "{output}");
}
