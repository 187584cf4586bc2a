//! Fuzzes `Snapshot::open` and the reads that follow it: any input must give
//! an error or a snapshot whose reads and verification return, never a
//! panic, a hang or an unbounded allocation.
//!
//! Run with `cargo fuzz run open_snapshot` from `format-spec/`; a snapshot
//! written by the tests makes a good seed.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use stardump_format::{Snapshot, Target};

fuzz_target!(|data: &[u8]| {
    // Snapshot::open maps a file, so the input goes through one.
    let path = std::env::temp_dir().join(format!("stardump-fuzz-{}.sdump", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("temporary file");
    file.write_all(data).expect("write temporary file");
    drop(file);

    if let Ok(snapshot) = Snapshot::open(&path) {
        let _ = snapshot.verify();
        let mut buf = vec![0u8; 2 * 4096];
        for range in snapshot.memory_map().iter().take(16) {
            let _ = snapshot.read_physical(range.start, &mut buf);
            let _ = snapshot.read_physical(range.start + range.len_bytes.saturating_sub(4096), &mut buf);
        }
        for vcpu in snapshot.vcpus() {
            let _ = snapshot.read_virtual(vcpu.cr3, vcpu.rip, &mut buf);
            let _ = snapshot.read_virtual(vcpu.cr3, vcpu.rsp, &mut buf);
        }
        for (cr3, mappings) in snapshot.mappings() {
            if let Some(mapping) = mappings.first() {
                let _ = snapshot.read_virtual(*cr3, mapping.virtual_start, &mut buf);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
