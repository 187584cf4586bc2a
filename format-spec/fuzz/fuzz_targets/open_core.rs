//! Fuzzes the readers of foreign core files (QEMU dumps, `xl dump-core`
//! and Linux process cores) and the format detection in front of them: any input must give an error
//! or a core whose reads return, never a panic, a hang or an unbounded
//! allocation.
//!
//! Run with `cargo fuzz run open_core` from `format-spec/`; a QEMU dump of
//! a small guest, a dump-core built by `tests/foreign_xen.rs`, or a gcore
//! of a small program makes a good seed.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stardump_format::foreign::{parse_core, Core};
use stardump_format::Target;

fuzz_target!(|data: &[u8]| {
    let Ok(core) = parse_core(Path::new("fuzz.core"), data.to_vec()) else {
        return;
    };
    let mut buf = vec![0u8; 2 * 4096];
    for range in core.memory_map().iter().take(16) {
        let _ = core.read_physical(range.start, &mut buf);
        let _ = core.read_physical(range.start.saturating_add(range.len_bytes).saturating_sub(4096), &mut buf);
    }
    for vcpu in core.vcpus() {
        let _ = core.read_virtual(vcpu.cr3, vcpu.rip, &mut buf);
        let _ = core.read_virtual(vcpu.cr3, vcpu.rsp, &mut buf);
    }
    if let Core::LinuxCore(process) = &core {
        let _ = process.executable();
        for mapping in process.file_mappings().iter().take(16) {
            let _ = process.read_virtual(0, mapping.start, &mut buf);
        }
    }
});
