//! Captures real Xen PV and PVH guests: runs the Xen lab (tests/xen-lab/run.sh),
//! which boots Debian's Xen 4.17 and a dom0 under QEMU and runs
//! `stardump-capture xen:NAME` on each test unikernel guest, then opens
//! every snapshot and checks it against the unikernel's ELF image.
//!
//! The run takes several minutes under TCG, so the test is ignored by
//! default: `cargo test -p stardump-capture --features xen --test xen_lab
//! -- --ignored`. It needs root (the lab writes ext4 images with debugfs)
//! and the packages run.sh installs when missing (qemu-system-x86,
//! debootstrap, xen-hypervisor-4.17-amd64, e2fsprogs).

#![cfg(feature = "xen")]

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol};
use stardump_format::{Snapshot, SourceKind, Target};

/// Guests of the lab's plan that stay alive to be captured. The check
/// also covers any other guest the lab captured.
const EXPECTED_GUESTS: &[&str] = &[
    "o2-spin", "o2-ud2", "o2-null", "o2-div0", "o2-nop2m", "o0-spin", "o0-ud2", "o0-null", "o0-div0", "o2-hcall",
    "o2-paused", "o2-suspend", "pvh-ud2", "pvh-spin", "pvh-preempt", "pvh-hcall",
];

/// Returns the image a lab guest runs, from its name's prefix.
fn image_of(guest: &str) -> Option<&'static str> {
    match guest.split('-').next()? {
        "o2" => Some("unikernel-xen-pv-O2-nofp.elf"),
        "o0" => Some("unikernel-xen-pv-O0-fp.elf"),
        "pvh" => Some("unikernel-O2-fp.elf"),
        _ => None,
    }
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("capture/ has a parent").to_owned()
}

/// Returns each guest's `stardump-capture` exit status from the lab's
/// timings.tsv (NAME STEP STATUS START END SECONDS BYTES), in run order.
fn capture_statuses(timings: &str) -> Vec<(String, String)> {
    timings
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.len() >= 3 && fields[1] == "capture").then(|| (fields[0].to_owned(), fields[2].to_owned()))
        })
        .collect()
}

/// Returns the address in the image's XEN_ELFNOTE_HYPERCALL_PAGE note
/// (type 2 in `.note.Xen`).
fn hypercall_page(image: &object::File) -> Option<u64> {
    let notes = image.section_by_name(".note.Xen")?.data().ok()?;
    let word = |at: usize| Some(u32::from_le_bytes(notes.get(at..at + 4)?.try_into().ok()?) as usize);
    let mut at = 0;
    while at + 12 <= notes.len() {
        let (name_len, desc_len, note_type) = (word(at)?, word(at + 4)?, word(at + 8)?);
        let desc = at + 12 + name_len.next_multiple_of(4);
        if note_type == 2 && desc_len == 8 {
            return Some(u64::from_le_bytes(notes.get(desc..desc + 8)?.try_into().ok()?));
        }
        at = desc + desc_len.next_multiple_of(4);
    }
    None
}

/// Checks one guest's snapshot against its image: metadata, the vCPU,
/// and the image's .text read back through the vCPU's page tables.
fn check_snapshot(out: &Path, guest: &str, image_name: &str) -> Result<(), String> {
    let snapshot_path = out.join(format!("{guest}.sdump"));
    let snapshot = Snapshot::open(&snapshot_path).map_err(|error| format!("opening {}: {error}", snapshot_path.display()))?;
    let metadata = snapshot.metadata();
    // A `pvh-*` guest runs the QEMU build as a PVH domain: Xen reports it
    // through the HVM interfaces, and it has no hypercall page.
    let pvh = guest.starts_with("pvh-");
    let expected_kind = if pvh { SourceKind::XenHvm } else { SourceKind::XenPv };
    if metadata.source_kind != expected_kind {
        return Err(format!("source kind {:?}, expected {expected_kind:?}", metadata.source_kind));
    }
    if metadata.domain_id.is_none() || metadata.hypervisor_version.is_none() {
        return Err(format!("domain id or hypervisor version missing: {metadata:?}"));
    }
    if metadata.target_name != format!("xen:{guest}") {
        return Err(format!("target name {:?}", metadata.target_name));
    }
    let vcpus = snapshot.vcpus();
    // A PV guest runs one vCPU. A PVH guest starts its second vCPU, whose
    // APIC id it finds in the ACPI MADT.
    let expected_vcpus = if pvh { 2 } else { 1 };
    if vcpus.len() != expected_vcpus {
        return Err(format!("{} vCPUs, expected {expected_vcpus}", vcpus.len()));
    }
    let vcpu = &vcpus[0];
    if !vcpu.present.control || vcpu.cr3 == 0 {
        return Err(format!("vCPU 0 has no guest-physical cr3: {vcpu:?}"));
    }
    if snapshot.mappings().is_empty() {
        return Err("no mapping table".to_owned());
    }

    let image_path = out.join(image_name);
    let image_bytes = std::fs::read(&image_path).map_err(|error| format!("reading {}: {error}", image_path.display()))?;
    let image = object::File::parse(&*image_bytes).map_err(|error| format!("parsing {image_name}: {error}"))?;
    let text = image.section_by_name(".text").ok_or_else(|| format!("{image_name} has no .text"))?;
    let expected = text.data().map_err(|error| format!("reading .text of {image_name}: {error}"))?;
    let mut actual = vec![0u8; expected.len()];
    snapshot
        .read_virtual(vcpu.cr3, text.address(), &mut actual)
        .map_err(|error| format!("reading .text at {:#x} through cr3 {:#x}: {error}", text.address(), vcpu.cr3))?;
    // Xen fills the image's hypercall page with its own stubs when it
    // builds the domain, so that page differs from the file.
    let hypercall_page = if pvh {
        None
    } else {
        Some(hypercall_page(&image).ok_or_else(|| format!("{image_name} has no HYPERCALL_PAGE note"))?)
    };
    for (offset, (got, want)) in actual.iter().zip(expected).enumerate() {
        let address = text.address() + offset as u64;
        let in_hypercall_page = hypercall_page.is_some_and(|page| address >= page && address - page < 4096);
        if got != want && !in_hypercall_page {
            return Err(format!(".text differs from {image_name} at {address:#x}: {got:#04x}, expected {want:#04x}"));
        }
    }

    let rip_in_image = image.sections().any(|section| {
        vcpu.rip >= section.address() && vcpu.rip - section.address() < section.size()
    });
    if !rip_in_image {
        return Err(format!("rip {:#x} is outside every section of {image_name}", vcpu.rip));
    }
    let mut code = [0u8; 16];
    snapshot
        .read_virtual(vcpu.cr3, vcpu.rip, &mut code)
        .map_err(|error| format!("reading the code at rip {:#x}: {error}", vcpu.rip))?;

    // A PVH guest in a crash mode stops in crash_halt's `cli; hlt`, where
    // Xen takes its vCPU offline. The capture reads such a vCPU through
    // xc_vcpu_getcontext, since the HVM save context leaves it out. With
    // `hcall`, it stops in the hypercall page instead.
    if pvh && !guest.ends_with("-spin") {
        let stop_symbol = if guest.ends_with("-hcall") { "hypercall_page" } else { "crash_halt" };
        let crash_halt = image
            .symbols()
            .find(|symbol| symbol.name() == Ok(stop_symbol))
            .ok_or_else(|| format!("{image_name} has no {stop_symbol} symbol"))?;
        if vcpu.rip < crash_halt.address() || vcpu.rip - crash_halt.address() >= crash_halt.size() {
            return Err(format!(
                "rip {:#x} is outside {stop_symbol} ({:#x}, {} bytes)",
                vcpu.rip,
                crash_halt.address(),
                crash_halt.size()
            ));
        }
    }
    Ok(())
}

#[test]
#[ignore = "boots Xen and dom0 under QEMU for several minutes; run with --ignored"]
fn xen_lab_pv_guests() {
    // STARDUMP_XEN_LAB_RESULTS names the results of an earlier
    // `run.sh --capture-bin` run to check instead of booting the lab again.
    let scratch = tempfile::tempdir().expect("creating the results directory");
    let out = match std::env::var_os("STARDUMP_XEN_LAB_RESULTS") {
        Some(results) => PathBuf::from(results),
        None => {
            let run_sh = repository_root().join("tests/xen-lab/run.sh");
            let status = Command::new("timeout")
                .args(["--kill-after=10", "1500"])
                .arg(&run_sh)
                .arg("--out")
                .arg(scratch.path())
                .arg("--capture-bin")
                .arg(env!("CARGO_BIN_EXE_stardump-capture"))
                .status()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", run_sh.display()));
            assert!(status.success(), "{} failed with {status}; its output is above", run_sh.display());
            scratch.path().to_owned()
        }
    };

    let timings = std::fs::read_to_string(out.join("timings.tsv")).expect("the lab writes timings.tsv");
    let statuses = capture_statuses(&timings);
    let mut failures = Vec::new();
    for guest in EXPECTED_GUESTS {
        if !statuses.iter().any(|(name, _)| name == guest) {
            failures.push(format!("{guest}: the lab did not capture it"));
        }
    }
    for (guest, status) in &statuses {
        let log = std::fs::read_to_string(out.join(format!("{guest}.capture.log"))).unwrap_or_default();
        if status != "0" {
            failures.push(format!("{guest}: capture status {status}, log:\n{log}"));
            continue;
        }
        let Some(image) = image_of(guest) else {
            failures.push(format!("{guest}: no image known for this guest name"));
            continue;
        };
        if let Err(error) = check_snapshot(&out, guest, image) {
            failures.push(format!("{guest}: {error}\ncapture log:\n{log}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
