//! Captures from a scripted stub, for protocol paths that QEMU 7.2 does not
//! take: binary `x` reads and a target that stops only on the interrupt
//! byte.

mod common;

use std::net::TcpListener;

use stardump_format::{Snapshot, Target};

use common::fake_stub::{memory_byte, FakeStub};
use common::*;

/// Captures from `stub` and returns the opened snapshot.
fn capture_from(stub: FakeStub, dir: &std::path::Path) -> Snapshot {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || stub.serve(listener));
    let output = dir.join("fake.snap");
    let result = run_capture(&[&format!("gdb:127.0.0.1:{port}"), "-o", output.to_str().unwrap()]);
    server.join().unwrap();
    assert!(result.status.success(), "capture failed: {}", String::from_utf8_lossy(&result.stderr));
    Snapshot::open(&output).expect("the snapshot opens")
}

fn assert_memory_pattern(snapshot: &Snapshot, ram_bytes: u64) {
    let mut buf = vec![0u8; 4096];
    for address in [0, 0x1000, ram_bytes / 2, ram_bytes - 4096] {
        snapshot.read_physical(address, &mut buf).unwrap();
        let expected: Vec<u8> = (address..address + 4096).map(memory_byte).collect();
        assert_eq!(buf, expected, "page at {address:#x}");
    }
    let mut byte = [0u8; 1];
    assert!(snapshot.read_physical(ram_bytes, &mut byte).is_err());
}

#[test]
fn binary_reads_decode_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let ram_bytes = 1 << 20;
    let stub = FakeStub {
        ram_bytes,
        binary_reads: true,
        ..FakeStub::default()
    };
    let snapshot = capture_from(stub, dir.path());
    assert_memory_pattern(&snapshot, ram_bytes);
}

#[test]
fn hex_reads_fill_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ram_bytes = 1 << 20;
    let stub = FakeStub {
        ram_bytes,
        ..FakeStub::default()
    };
    let snapshot = capture_from(stub, dir.path());
    assert_memory_pattern(&snapshot, ram_bytes);
    assert_eq!(snapshot.vcpus().len(), 1);
    assert_eq!(snapshot.vcpus()[0].rip, 0x1000);
    assert_eq!(snapshot.vcpus()[0].cr3, 0x2000);
    assert_eq!(snapshot.metadata().hypervisor_version.as_deref(), Some("QEMU 7.2.0"));
}

#[test]
fn running_target_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let ram_bytes = 64 << 10;
    let stub = FakeStub {
        ram_bytes,
        running: true,
        ..FakeStub::default()
    };
    let snapshot = capture_from(stub, dir.path());
    assert_memory_pattern(&snapshot, ram_bytes);
}
