//! End-to-end test of the `xl dump-core` reader on real dumps of the Xen PV
//! test unikernel, written by the Xen lab (`tests/xen-lab/run.sh`).
//!
//! The lab boots Xen in QEMU and takes minutes, so this test does not run
//! it. It reads a finished lab output directory named by the environment
//! variable `STARDUMP_XEN_LAB_OUT`, and is ignored unless asked for:
//!
//! ```text
//! tests/xen-lab/run.sh --out /tmp/xen-lab-out [--capture-bin PATH]
//! STARDUMP_XEN_LAB_OUT=/tmp/xen-lab-out cargo test -p stardump-format --test foreign_xen_lab -- --ignored
//! ```
//!
//! For every non-empty `NAME.core` the test checks the registers against
//! the guest's console log (`NAME.console.log`) and the kernel code read
//! through the page tables against the guest's image
//! (`unikernel-xen-pv-*.elf` in the same directory). When the lab also ran
//! `stardump-capture` on a crashed guest (`NAME.sdump`), both files must
//! agree on the registers and the stack. A guest named `pvh-*` must be a
//! PVH domain running `unikernel-O2-fp.elf`, and the directory must then
//! contain that image. The lab plan's PVH guest gets no dump-core, which
//! takes minutes, so the lab does not exercise this path. One that this
//! test passed on was created with `type = "pvh"`, `kernel` the O2-fp
//! image, `cmdline = "mode=ud2"`, `memory = 8`, `vcpus = 2` and
//! `on_poweroff = "preserve"`: an HVM vCPU that halts with interrupts off
//! goes down, and Xen powers off a domain whose vCPUs are all down. Its
//! dump-core took 590 s under the lab's TCG on the 2-core development
//! machine while other lab runs shared it, against 2-9 s for a PV guest.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};
use stardump_format::foreign::{open_core, Core, XenDumpCore, XenGuestKind};
use stardump_format::{Snapshot, SourceKind, Target};

/// Start of the higher-half kernel image.
const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Serial line of a guest that crashed and stopped.
const HALTED_MARKER: &str = "stardust-test: halted in crash_halt";

/// Returns the lab output directory, or fails saying how to make one.
fn lab_dir() -> PathBuf {
    let Some(dir) = std::env::var_os("STARDUMP_XEN_LAB_OUT") else {
        panic!(
            "STARDUMP_XEN_LAB_OUT is not set: run `tests/xen-lab/run.sh --out DIR` and set \
             STARDUMP_XEN_LAB_OUT=DIR to test the xl dump-core reader on its dumps"
        );
    };
    PathBuf::from(dir)
}

/// Returns the image a lab guest ran: the plan runs `o0-*` guests from the
/// O0-fp Xen PV build and `o2-*` guests from the O2-nofp one. `pvh-*`
/// guests run the O2-fp build for QEMU, which boots through the PVH entry.
fn guest_image(dir: &Path, name: &str) -> PathBuf {
    let file_name = if name.starts_with("pvh-") {
        "unikernel-O2-fp.elf".to_string()
    } else {
        let variant = if name.starts_with("o0-") { "O0-fp" } else { "O2-nofp" };
        format!("unikernel-xen-pv-{variant}.elf")
    };
    let path = dir.join(file_name);
    assert!(path.is_file(), "{} is missing from the lab output", path.display());
    path
}

/// Returns the address and bytes of the symbol `name` in the image.
fn symbol_bytes(image: &[u8], name: &str) -> (u64, Vec<u8>) {
    let file = object::File::parse(image).expect("the kernel image parses");
    let symbol = file
        .symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .unwrap_or_else(|| panic!("symbol {name} not in the kernel image"));
    let section = file.section_by_index(symbol.section_index().expect("symbol has a section")).unwrap();
    let bytes = section.data_range(symbol.address(), symbol.size()).unwrap().expect("symbol lies in its section");
    (symbol.address(), bytes.to_vec())
}

/// Returns the value of `key=0x...` in the console log, if present.
fn console_value(console: &str, key: &str) -> Option<u64> {
    let prefix = format!("{key}=0x");
    console
        .split_whitespace()
        .find_map(|word| word.strip_prefix(prefix.as_str()))
        .map(|digits| u64::from_str_radix(digits, 16).expect("hexadecimal console value"))
}

/// Lists the dumps of the lab run as (guest name, path), excluding the empty files
/// `xl dump-core` leaves when it fails.
fn lab_dumps(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut dumps: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "core"))
        .filter(|path| !path.to_string_lossy().ends_with(".gdb.core"))
        .filter(|path| path.metadata().is_ok_and(|m| m.len() > 0))
        .map(|path| (path.file_stem().unwrap().to_string_lossy().into_owned(), path))
        .collect();
    dumps.sort();
    dumps
}

/// Checks one dump and returns whether it was compared with a capture.
fn check_dump(dir: &Path, name: &str, path: &Path) -> bool {
    let core = open_core(path).unwrap_or_else(|error| panic!("{name}: {error:#?}"));
    let Core::XenDumpCore(dump) = &core else {
        panic!("{name}: recognized as {}, not as an xl dump-core", core.format_name());
    };
    let pvh = name.starts_with("pvh-");
    let expected_kind = if pvh { XenGuestKind::Hvm } else { XenGuestKind::Pv };
    assert_eq!(dump.guest_kind(), expected_kind, "{name}");
    assert!(dump.damage().is_empty(), "{name}: damaged dump: {:?}", dump.damage());
    let metadata = dump.metadata();
    assert_eq!(metadata.source_kind, SourceKind::XenDumpCore, "{name}");
    assert!(
        metadata.hypervisor_version.as_deref().is_some_and(|v| v.starts_with("Xen 4.")),
        "{name}: hypervisor version {:?}",
        metadata.hypervisor_version
    );
    // A PVH guest may have more vCPUs configured than it started, and the
    // dump holds only those it started.
    if pvh {
        assert!(!dump.vcpus().is_empty(), "{name}: no vCPU context");
    } else {
        assert_eq!(dump.vcpus().len(), 1, "{name}: the lab's PV guests have one vCPU");
    }
    let vcpu = &dump.vcpus()[0];
    assert!(vcpu.rip >= KERNEL_BASE, "{name}: rip {:#x} is in the kernel", vcpu.rip);
    assert!(vcpu.rsp >= 0xffff_8000_0000_0000, "{name}: rsp {:#x} is in the upper half", vcpu.rsp);

    // The console prints Xen's cr3, a machine address; the reader reports
    // the guest-physical address of the same table.
    let console = std::fs::read_to_string(dir.join(format!("{name}.console.log"))).unwrap_or_default();
    if let Some(machine_cr3) = console_value(&console, "cr3") {
        assert_eq!(dump.machine_address(vcpu.cr3), Some(machine_cr3), "{name}: cr3 {:#x}", vcpu.cr3);
    }

    // Kernel code read through the page tables equals the image's.
    let image = std::fs::read(guest_image(dir, name)).unwrap();
    for symbol in ["crash_halt", "thread_start", "schedule"] {
        let (address, expected) = symbol_bytes(&image, symbol);
        let mut actual = vec![0u8; expected.len()];
        dump.read_virtual(vcpu.cr3, address, &mut actual)
            .unwrap_or_else(|error| panic!("{name}: reading {symbol} at {address:#x}: {error}"));
        assert_eq!(actual, expected, "{name}: code of {symbol}");
    }

    // The stack is readable where rsp points, up to the end of its page:
    // the page above the top of a thread's stack is not mapped.
    let to_page_end = 4096 - (vcpu.rsp % 4096) as usize;
    let mut stack = vec![0u8; to_page_end.min(256)];
    dump.read_virtual(vcpu.cr3, vcpu.rsp, &mut stack).unwrap_or_else(|error| panic!("{name}: stack: {error}"));

    let crashed = console.contains(HALTED_MARKER);
    let capture = dir.join(format!("{name}.sdump"));
    let compared = crashed && capture.is_file();
    if compared {
        compare_with_capture(name, dump, &capture, &stack);
    }
    eprintln!("{name}: rip {:#x}, cr3 {:#x}, compared with a capture: {compared}", vcpu.rip, vcpu.cr3);
    compared
}

/// Compares a crashed guest's dump with stardump's capture of the same
/// stopped guest: the registers and the top of the stack must be equal.
fn compare_with_capture(name: &str, dump: &XenDumpCore, capture: &Path, stack: &[u8]) {
    let core = open_core(capture).unwrap_or_else(|error| panic!("{name}: {error:#?}"));
    assert!(matches!(core, Core::Snapshot(_)), "{name}: capture recognized as {}", core.format_name());
    let snapshot = Snapshot::open(capture).unwrap_or_else(|error| panic!("{name}: {error}"));
    let captured = &snapshot.vcpus()[0];
    let dumped = &dump.vcpus()[0];
    assert_eq!(dumped.rip, captured.rip, "{name}: rip");
    assert_eq!(dumped.rsp, captured.rsp, "{name}: rsp");
    assert_eq!(dumped.rbp, captured.rbp, "{name}: rbp");
    assert_eq!(dumped.rflags, captured.rflags, "{name}: rflags");
    assert_eq!(dumped.cr3, captured.cr3, "{name}: cr3");
    assert_eq!(dumped.gs_base, captured.gs_base, "{name}: gs_base");
    assert_eq!(dumped.fs_base, captured.fs_base, "{name}: fs_base");
    let mut captured_stack = vec![0u8; stack.len()];
    snapshot.read_virtual(captured.cr3, captured.rsp, &mut captured_stack).unwrap();
    assert_eq!(stack, captured_stack.as_slice(), "{name}: top of the stack");
}

#[test]
#[ignore = "needs the output of tests/xen-lab/run.sh in STARDUMP_XEN_LAB_OUT"]
fn xen_lab_dumps_match_images() {
    let dir = lab_dir();
    let dumps = lab_dumps(&dir);
    assert!(!dumps.is_empty(), "no non-empty NAME.core in {}", dir.display());
    let compared = dumps.iter().filter(|(name, path)| check_dump(&dir, name, path)).count();
    eprintln!("checked {} dumps, {compared} of them against stardump captures", dumps.len());
}
