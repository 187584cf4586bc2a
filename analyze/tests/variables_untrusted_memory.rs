//! Printing must survive any memory contents: every global of the C and
//! C++ fixtures (and of the test unikernel) is printed over memory that
//! returns pseudo-random bytes at every address, and over memory of which
//! nothing was captured. Pointers then point anywhere, enums hold unknown
//! values and strings never end; the printer must finish each value with
//! bounded output and never panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use stardump::image::Image;
use stardump::unwind::memory::EmptyMemory;
use stardump::unwind::StackMemory;
use stardump::variables::dwarf::DebugInfo;
use stardump::variables::expr::{parse, Evaluator};
use stardump::variables::format::{PrintOptions, Printer};
use stardump::variables::symbols::SymbolTable;
use stardump::variables::Inspector;
use stardump_format::MemoryError;
use stardump_tests::{require_program, workspace_root};

/// Bytes that depend only on their address (xorshift of the address).
struct NoiseMemory;

impl StackMemory for NoiseMemory {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        for (index, byte) in buf.iter_mut().enumerate() {
            let mut x = address.wrapping_add(index as u64) | 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        Ok(())
    }
}

/// The longest text one value may print with the default limits: 200
/// elements of nested values, each bounded the same way, stays far below.
const MAX_VALUE_TEXT: usize = 4 << 20;

/// Builds the fixtures once per test binary: tests run in parallel, and
/// two `make` runs writing the same executables let one test read a
/// half-written file.
fn build_fixtures() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            require_program("gcc", "gcc");
            require_program("g++", "g++");
            let out = workspace_root().join("target/fixtures-untrusted");
            let status = Command::new("make")
                .arg("-C")
                .arg(workspace_root().join("tests/fixtures"))
                .arg(format!("OUT={}", out.display()))
                .output()
                .expect("running make");
            assert!(status.status.success(), "building the fixtures failed");
            out
        })
        .clone()
}

fn print_all_globals(program: &Path, memory: &dyn StackMemory) -> usize {
    let image = Image::open(program).expect("opening the program");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let inspector = Inspector::new(&info, &symbols, memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let is_type = |name: &str| !info.types_named(name).is_empty();
    let mut names: Vec<&str> = info.global_names().collect();
    names.sort_unstable();
    let mut printed = 0;
    for name in names {
        for expression in [name.to_owned(), format!("&{name}"), format!("*{name}"), format!("{name}[3]")] {
            let Ok(value) = parse(&expression, &is_type).and_then(|expr| evaluator.evaluate(&expr)) else { continue };
            let printer = Printer::new(inspector.types(), memory, &symbols, PrintOptions::default());
            let text = printer.top_level(&value);
            assert!(text.len() < MAX_VALUE_TEXT, "{}: print {expression} printed {} bytes", program.display(), text.len());
            printed += 1;
        }
    }
    printed
}

#[test]
fn fixture_globals_over_noise() {
    let dir = build_fixtures();
    for name in ["types-c-O0", "types-c-O2", "types-cpp-O0", "types-cpp-O2"] {
        let printed = print_all_globals(&dir.join(name), &NoiseMemory);
        assert!(printed > 20, "{name}: only {printed} values printed");
    }
}

#[test]
fn fixture_globals_without_memory() {
    let dir = build_fixtures();
    for name in ["types-c-O0", "types-cpp-O2"] {
        let printed = print_all_globals(&dir.join(name), &EmptyMemory);
        assert!(printed > 20, "{name}: only {printed} values printed");
    }
}

#[test]
fn unikernel_globals_over_noise() {
    let image = stardump_tests::build::unikernel_image("O2-nofp");
    let printed = print_all_globals(&image, &NoiseMemory);
    assert!(printed > 20, "only {printed} values printed");
}

#[test]
fn malformed_expressions_rejected() {
    let no_types = |_: &str| false;
    for text in ["", "(", ")", "a +", "a[", "a->", "'x", "'worker.c'", "$", "1 2", "sizeof", "((((a", "a..b", "0x", "1e", "1.5L", "\"s\"", "a = 1"] {
        assert!(parse(text, &no_types).is_err(), "{text:?} parsed");
    }
}
