//! On-demand reads of a live target through the `Target` trait, against
//! the scripted stub. Whole pages are fetched once and then served from the
//! cache, and a run of missing pages takes one request. Errors name the
//! requested address.

mod common;

use std::net::TcpListener;
use std::thread::JoinHandle;

use stardump_capture::gdb::ClientOptions;
use stardump_capture::GdbTarget;
use stardump_format::{MemoryError, Target};

use common::fake_stub::{memory_byte, FakeStub};

/// Starts `stub` on a free port and attaches to it.
fn attach_to(stub: FakeStub) -> (GdbTarget, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || stub.serve(listener));
    let target = GdbTarget::attach(&format!("127.0.0.1:{port}"), ClientOptions::default()).expect("attaching");
    (target, server)
}

fn expected(address: u64, len: usize) -> Vec<u8> {
    (address..address + len as u64).map(memory_byte).collect()
}

#[test]
fn reads_within_page_take_one_request() {
    let (target, server) = attach_to(FakeStub { ram_bytes: 1 << 20, ..FakeStub::default() });

    let mut word = [0u8; 8];
    target.read_physical(0x1010, &mut word).unwrap();
    assert_eq!(word.to_vec(), expected(0x1010, 8));
    let first = target.read_stats();
    assert_eq!(first.requests, 1);
    assert_eq!(first.pages_fetched, 1);

    target.read_physical(0x1ff8, &mut word).unwrap();
    assert_eq!(word.to_vec(), expected(0x1ff8, 8));
    let second = target.read_stats();
    assert_eq!(second.requests, 1, "{second:?}");
    assert_eq!(second.page_hits, 1, "{second:?}");
    assert_eq!(second.reads, 2);

    target.resume().unwrap();
    server.join().unwrap();
}

#[test]
fn missing_pages_fetched_in_one_request() {
    let (target, server) = attach_to(FakeStub { ram_bytes: 1 << 20, ..FakeStub::default() });

    // Page 0x5000 is cached first, so the read of 0x4800..0x8800 then
    // fetches 0x4000 alone and 0x6000..0x9000 as one run.
    let mut word = [0u8; 8];
    target.read_physical(0x5000, &mut word).unwrap();
    let mut buf = vec![0u8; 0x4000];
    target.read_physical(0x4800, &mut buf).unwrap();
    assert_eq!(buf, expected(0x4800, 0x4000));
    let stats = target.read_stats();
    assert_eq!(stats.requests, 3, "{stats:?}");
    assert_eq!(stats.pages_fetched, 5, "{stats:?}");
    assert_eq!(stats.page_hits, 1, "{stats:?}");

    target.resume().unwrap();
    server.join().unwrap();
}

#[test]
fn reads_outside_ram_are_not_cached() {
    let (target, server) = attach_to(FakeStub { ram_bytes: 1 << 20, ..FakeStub::default() });

    let mut word = [0u8; 4];
    for _ in 0..2 {
        target.read_physical(0x20_0000, &mut word).unwrap();
        assert_eq!(word.to_vec(), expected(0x20_0000, 4));
    }
    let stats = target.read_stats();
    assert_eq!(stats.uncached_reads, 2, "{stats:?}");
    assert_eq!(stats.pages_fetched, 0, "{stats:?}");
    assert_eq!(stats.packets, 2, "{stats:?}");

    target.resume().unwrap();
    server.join().unwrap();
}

#[test]
fn unmapped_virtual_read_names_address() {
    // Every page-table entry of the stub's memory pattern has the present
    // bit clear, so nothing is mapped.
    let (target, server) = attach_to(FakeStub { ram_bytes: 1 << 20, ..FakeStub::default() });

    let cr3 = 0x2000;
    let mut word = [0u8; 8];
    let error = target.read_virtual(cr3, 0xffff_ffff_8010_0000, &mut word).unwrap_err();
    assert_eq!(error, MemoryError::NotMapped { address: 0xffff_ffff_8010_0000, len: 8, cr3 });
    // The top-level table was fetched once, and a second walk reads it
    // from the cache.
    target.read_virtual(cr3, 0xffff_ffff_8010_1000, &mut word).unwrap_err();
    let stats = target.read_stats();
    assert_eq!(stats.requests, 1, "{stats:?}");

    target.resume().unwrap();
    server.join().unwrap();
}

#[test]
fn lost_connection_names_address() {
    let stub = FakeStub { ram_bytes: 1 << 20, drop_after_memory_reads: Some(0), ..FakeStub::default() };
    let (target, server) = attach_to(stub);

    let mut word = [0u8; 8];
    let error = target.read_physical(0x3000, &mut word).unwrap_err();
    match &error {
        MemoryError::Target { address, len, reason } => {
            assert_eq!(*address, 0x3000);
            assert_eq!(*len, 8);
            assert!(reason.contains("connection closed"), "{reason}");
        }
        other => panic!("expected a target error, got {other:?}"),
    }
    drop(target);
    server.join().unwrap();
}
