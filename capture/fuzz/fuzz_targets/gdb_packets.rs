//! Fuzzes the GDB packet framing: any byte stream from a stub must give
//! frames or an error, never a panic or a payload past the size limit.
//!
//! Run with `cargo fuzz run gdb_packets` from `capture/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stardump_capture::gdb::packet::{decode_hex, next_frame, Frame};

/// The limit the client negotiates with QEMU 7.2 (`PacketSize=1000`).
const MAX_PAYLOAD_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = next_frame(rest, MAX_PAYLOAD_BYTES) {
        assert!(used > 0);
        assert!(used <= rest.len());
        if let Frame::Packet(payload) = &frame {
            assert!(payload.len() <= 2 * MAX_PAYLOAD_BYTES);
            let _ = decode_hex(payload);
        }
        rest = &rest[used..];
    }
});
