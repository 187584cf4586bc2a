//! Fuzzes image loading, symbolization and CFI evaluation: the input is an
//! ELF file whose last 1 KiB is also used as the stack, and the first 136
//! bytes of that as registers. Any input must give an error or a backtrace
//! that ends within the frame limit, never a panic or a hang.
//!
//! Run with `cargo +nightly fuzz run unwind_image` from `analyze/`; the
//! gcc-built test images (`tests/fixtures/trap_stack.S` linked as in the
//! unit tests) make good seeds.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use stardump::image::Image;
use stardump::symbolize;
use stardump::unwind::{Registers, StackMemory, UnwindOptions, Unwinder, registers::TRACKED_REGISTERS};
use stardump_format::MemoryError;

const STACK_BYTES: usize = 1024;

/// The input's tail, readable at a fixed stack address.
struct TailStack<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl StackMemory for TailStack<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let missing = MemoryError::NotCaptured { address, len: buf.len() };
        let start = address.checked_sub(self.base).and_then(|offset| usize::try_from(offset).ok());
        let source = start
            .and_then(|start| self.bytes.get(start..start.checked_add(buf.len())?))
            .ok_or(missing)?;
        buf.copy_from_slice(source);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // Image::open maps a file, so the input goes through one.
    let path = std::env::temp_dir().join(format!("stardump-unwind-fuzz-{}.elf", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("temporary file");
    file.write_all(data).expect("write temporary file");
    drop(file);
    let Ok(image) = Image::open(&path) else { return };

    for symbol in image.symbols().iter().take(64) {
        let _ = symbolize::symbolize(&image, symbol.address);
        let _ = symbolize::line_row(&image, symbol.address);
    }

    let tail = &data[data.len().saturating_sub(STACK_BYTES)..];
    let mut registers = Registers::default();
    for (number, chunk) in tail.chunks_exact(8).take(TRACKED_REGISTERS).enumerate() {
        registers.set(number as u16, Some(u64::from_le_bytes(chunk.try_into().unwrap())));
    }
    let stack = TailStack { base: 0x7000_0000, bytes: tail };
    // Point rsp into the stack so walks get past the first read.
    registers.set(7, Some(0x7000_0000 + registers.rsp().unwrap_or(0) % STACK_BYTES as u64));

    let options = UnwindOptions { max_frames: 64, scan_words: 64 };
    let backtrace = Unwinder::new(&image, options).walk(registers, &stack);
    assert!(backtrace.frames.len() <= options.max_frames);
});
