//! Captures of the test unikernel under real QEMU: the snapshot matches the
//! live guest, and the guest runs on afterwards unless `--leave-paused`
//! keeps it stopped.

mod common;

use std::time::Duration;

use stardump_format::{Snapshot, SourceKind, Target};

use common::*;

#[test]
fn capture_matches_live_guest_and_resumes() {
    let qemu = start_spinning_guest(64, 2);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("guest.snap");

    let result = run_capture(&[&qemu.gdb_target(), "-o", output.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "capture failed: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&result.stdout).expect("--json prints one JSON object");
    assert_eq!(summary["vcpus"], 2);
    assert_eq!(summary["guest_memory_bytes"].as_u64().unwrap() / (1 << 20), 64);
    assert_eq!(files_in(dir.path()), ["guest.snap"]);

    let snapshot = Snapshot::open(&output).expect("the snapshot opens");
    assert_eq!(snapshot.vcpus().len(), 2);
    let metadata = snapshot.metadata();
    assert_eq!(metadata.source_kind, SourceKind::GdbRemote);
    assert_eq!(metadata.target_name, qemu.gdb_target());
    assert!(metadata.pause_time_us > 0);
    assert!(metadata.hypervisor_version.as_deref().unwrap_or("").starts_with("QEMU 7"), "{metadata:?}");
    // Registers after the segment selectors in QEMU's target description
    // (gs_base, cr3) land in the right fields: each vCPU's GS base is its
    // entry in `cpus` (40 bytes each), and cr3 is the boot page tables.
    let boot_pml4 = symbol("boot_pml4") - KERNEL_VMA;
    for (index, vcpu) in snapshot.vcpus().iter().enumerate() {
        assert!(vcpu.rip >= KERNEL_VMA, "vCPU {} rip {:#x} is not in the kernel", vcpu.id, vcpu.rip);
        assert_eq!(vcpu.gs_base, symbol("cpus") + 40 * index as u64, "vCPU {index} gs_base");
        assert_eq!(vcpu.cr3 & !0xfff, boot_pml4, "vCPU {index} cr3");
        assert_eq!(vcpu.cs, 0x08, "vCPU {index} cs");
    }

    // The mapping table maps the kernel image at its higher-half address.
    let kernel_text = KERNEL_VMA + 0x10_0000;
    let cr3 = snapshot.vcpus()[0].cr3;
    let (_, mappings) = snapshot
        .mappings()
        .iter()
        .find(|(root, _)| *root == cr3)
        .expect("a mapping table for vCPU 0's cr3");
    let translated = mappings.iter().find_map(|mapping| mapping.translate(kernel_text));
    assert_eq!(translated, Some(0x10_0000));

    // Static bytes read the same from the snapshot and from the live guest,
    // through virtual and physical addresses.
    let code = symbol("spin_here");
    let mut from_snapshot = [0u8; 64];
    snapshot.read_virtual(cr3, code, &mut from_snapshot).unwrap();
    let mut physical_copy = [0u8; 64];
    snapshot.read_physical(code - KERNEL_VMA, &mut physical_copy).unwrap();
    assert_eq!(from_snapshot, physical_copy);
    let counter_in_snapshot = read_u64(&snapshot, symbol("spin_counter"));

    // The guest ran on after the capture detached.
    std::thread::sleep(Duration::from_millis(300));
    assert!(vm_was_running(qemu.gdb_port()), "the guest was not running after the capture");

    let live = attach(qemu.gdb_port());
    assert_eq!(live.vcpus().len(), snapshot.vcpus().len());
    let mut from_live = [0u8; 64];
    live.read_virtual(cr3, code, &mut from_live).unwrap();
    assert_eq!(from_live, from_snapshot);
    live.read_physical(code - KERNEL_VMA, &mut from_live).unwrap();
    assert_eq!(from_live, from_snapshot);
    let counter_live = read_u64(&live, symbol("spin_counter"));
    assert!(
        counter_live > counter_in_snapshot,
        "spin_counter did not advance: {counter_live} after, {counter_in_snapshot} in the snapshot"
    );
}

#[test]
fn leave_paused_keeps_guest_stopped() {
    let qemu = start_spinning_guest(64, 2);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("paused.snap");

    let result = run_capture(&[&qemu.gdb_target(), "-o", output.to_str().unwrap(), "--leave-paused"]);
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    let snapshot = Snapshot::open(&output).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // A second query returns exactly the captured state: same vCPUs, same rip,
    // same counter.
    let live = attach(qemu.gdb_port());
    assert_eq!(live.vcpus().len(), snapshot.vcpus().len());
    for (live_vcpu, captured) in live.vcpus().iter().zip(snapshot.vcpus()) {
        assert_eq!(live_vcpu.rip, captured.rip, "vCPU {} moved while left paused", captured.id);
        assert_eq!(live_vcpu.rsp, captured.rsp);
        assert_eq!(live_vcpu.cr3, captured.cr3);
    }
    let counter = symbol("spin_counter");
    assert_eq!(read_u64(&live, counter), read_u64(&snapshot, counter));
    live.leave_paused().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!vm_was_running(qemu.gdb_port()), "the guest ran although it was left paused");
}

#[test]
fn walk_strategy_reads_mapped_memory() {
    let qemu = start_spinning_guest(64, 1);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("walk.snap");

    let result = run_capture(&[&qemu.gdb_target(), "-o", output.to_str().unwrap(), "--memory", "walk", "--json"]);
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    let snapshot = Snapshot::open(&output).unwrap();
    let cr3 = snapshot.vcpus()[0].cr3;
    assert!(snapshot.mappings().iter().any(|(root, _)| *root == cr3));

    // The kernel image is mapped, so its code was captured.
    let code = symbol("spin_here");
    let mut bytes = [0u8; 16];
    snapshot.read_virtual(cr3, code, &mut bytes).expect("kernel code is in a walk capture");
    assert_ne!(bytes, [0u8; 16]);
    // The worker's stack lives in the 4 KiB stack area, which is mapped.
    let rsp = snapshot.vcpus()[0].rsp;
    snapshot.read_virtual(cr3, rsp, &mut bytes).expect("the stack is in a walk capture");
}

#[test]
fn walk_without_physical_mode_uses_identity_map() {
    let qemu = start_spinning_guest(64, 1);
    let mut live = attach(qemu.gdb_port());
    let ram = live.memory_map();
    live.disable_physical_memory();

    // The unikernel's page tables sit in its image, which low memory maps
    // one to one, so the walk reads them through virtual addresses.
    // A budget of 64 KiB sends most pages through the spill file.
    let spill = tempfile::tempdir().unwrap();
    let budget = stardump_capture::memory::MemoryBudget::new(64 << 10, spill.path());
    let (copy, tables) =
        stardump_capture::walk::copy_mapped_memory(&live, &ram, budget).expect("walk without physical mode");
    assert!(copy.held_and_spilled_bytes().1 > 0, "nothing was spilled: {:?}", copy.held_and_spilled_bytes());
    let cr3 = live.vcpus()[0].cr3;
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].0, cr3);

    let code = symbol("spin_here");
    let mut from_copy = [0u8; 64];
    copy.read_physical(code - KERNEL_VMA, &mut from_copy).unwrap();
    let mut from_live = [0u8; 64];
    live.read_virtual(cr3, code, &mut from_live).unwrap();
    assert_eq!(from_copy, from_live);
}

#[test]
fn capture_after_gdb_session_resumes() {
    // gdb switches QEMU's stub to multiprocess mode, and QEMU keeps that mode
    // for later clients: a capture must still detach and resume the guest.
    let qemu = start_spinning_guest(64, 1);
    stardump_tests::require_program("gdb", "gdb");
    let gdb = std::process::Command::new("timeout")
        .args(["-s", "KILL", "60", "gdb", "-batch", "-nx"])
        .args(["-ex", &format!("target remote 127.0.0.1:{}", qemu.gdb_port())])
        .args(["-ex", "detach"])
        .output()
        .expect("running gdb");
    assert!(gdb.status.success(), "gdb failed: {}", String::from_utf8_lossy(&gdb.stderr));

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("after-gdb.snap");
    let result = run_capture(&[&qemu.gdb_target(), "-o", output.to_str().unwrap()]);
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(files_in(dir.path()), ["after-gdb.snap"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(vm_was_running(qemu.gdb_port()), "the guest was not resumed after the capture");
}
