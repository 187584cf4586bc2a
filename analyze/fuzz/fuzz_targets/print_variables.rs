//! Fuzzes the variable engine: the input is an ELF file with DWARF, and its
//! last 1 KiB is also the memory every address reads from (repeated) and
//! the registers of one frame. Every global, its address, what it points
//! to and the frame's locals are printed; any input must give errors or
//! bounded text, never a panic or a hang.
//!
//! Run with `cargo +nightly fuzz run print_variables` from `analyze/`; the
//! fixtures of tests/fixtures built by their Makefile make good seeds.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use stardump::image::Image;
use stardump::unwind::{FoundBy, Frame, Pc, Registers, StackMemory, registers::TRACKED_REGISTERS};
use stardump::variables::dwarf::DebugInfo;
use stardump::variables::expr::{parse, Evaluator};
use stardump::variables::format::{PrintOptions, Printer};
use stardump::variables::symbols::SymbolTable;
use stardump::variables::Inspector;
use stardump_format::MemoryError;

const TAIL_BYTES: usize = 1024;

/// The input's tail, repeated over the whole address space.
struct RepeatedTail<'a> {
    bytes: &'a [u8],
}

impl StackMemory for RepeatedTail<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.bytes.is_empty() {
            return Err(MemoryError::NotCaptured { address, len: buf.len() });
        }
        for (index, byte) in buf.iter_mut().enumerate() {
            let at = address.wrapping_add(index as u64) % self.bytes.len() as u64;
            *byte = self.bytes[at as usize];
        }
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("stardump-print-fuzz-{}.elf", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("temporary file");
    file.write_all(data).expect("write temporary file");
    drop(file);
    let Ok(image) = Image::open(&path) else { return };

    let tail = &data[data.len().saturating_sub(TAIL_BYTES)..];
    let memory = RepeatedTail { bytes: tail };
    let mut registers = Registers::default();
    for (number, chunk) in tail.chunks_exact(8).take(TRACKED_REGISTERS).enumerate() {
        registers.set(number as u16, Some(u64::from_le_bytes(chunk.try_into().unwrap())));
    }
    let pc = image.symbols().first().map_or(0, |symbol| symbol.address);
    registers.set(16, Some(pc));
    let frames = [Frame { pc: Pc::Exact(pc), registers, found_by: FoundBy::Context, cfa: registers.rsp(), trap: false }];

    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &frames, None, &[1]);
    let options = PrintOptions { elements: 20, max_depth: 4, format: data.first().map(|byte| ['x', 'd', 'o', 't', 'c', 'a', 'u', 'z'][usize::from(byte % 8)]) };
    let printer = Printer::new(inspector.types(), &memory, &symbols, options);
    for local in inspector.locals(0).iter().chain(inspector.arguments(0).iter()) {
        let _ = printer.format(&local.value, 0);
    }
    let evaluator = Evaluator { inspector: &inspector, frame: Some(0) };
    let is_type = |name: &str| !info.types_named(name).is_empty();
    let names: Vec<&str> = info.global_names().take(64).collect();
    for name in names {
        for expression in [name.to_owned(), format!("&{name}"), format!("*{name}")] {
            if let Ok(value) = parse(&expression, &is_type).and_then(|expr| evaluator.evaluate(&expr)) {
                let _ = printer.top_level(&value);
            }
        }
    }
});
