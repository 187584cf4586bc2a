//! The C and C++ fixtures of tests/fixtures with gdb as the oracle.
//!
//! Globals: gdb prints each global from the executable alone (`print X`
//! without running it reads `.data` from the file), and stardump evaluates
//! the same expression against the image's load segments. Every type kind
//! the fixtures declare is compared this way at -O0 and -O2.
//!
//! Locals and arguments need the program's state at the crash: the
//! `gcore_oracle` test runs each fixture under gdb to its NULL read, writes
//! a core file with `gcore` and records gdb's `info args` and `info locals`
//! there. `fixture_locals_match_gdb_core` compares stardump on that core
//! with them. gcore leaves out the file-backed read-only pages, so string
//! constants are read from the executable, as gdb does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use stardump::cmd::examine;
use stardump::image::Image;
use stardump::unwind::ImageMemory;
use stardump::variables::dwarf::DebugInfo;
use stardump::variables::expr::{parse, Evaluator};
use stardump::variables::format::{PrintOptions, Printer};
use stardump::variables::symbols::SymbolTable;
use stardump::variables::Inspector;
use stardump_tests::{require_program, workspace_root};

/// Globals of the C fixture, one expression each.
const C_GLOBALS: &[&str] = &[
    "plain_char", "negative_char", "high_char", "short_value", "ushort_value", "int_value", "uint_value",
    "long_value", "ulong_value", "llong_value", "float_value", "double_value", "bool_value", "typedef_value",
    "const_value", "volatile_value", "int_array", "zeros", "mostly_zero", "long_array", "matrix", "text",
    "full_text", "escapes", "message", "null_string", "int_pointer", "void_pointer", "array_pointer",
    "color_value", "bad_color", "two_flags", "unknown_flag", "no_flags", "bits_value", "number_value", "first",
    "origin", "points", "handler_value", "other_function", "record_value", "record_pointer", "*record_pointer",
    "record_pointer->list->next->value", "record_value.bits.delta", "&points[1]", "points[2].y + 1",
    "sizeof(struct record)", "(long) int_value * 3", "int_array[1] << 4", "-int_value / 5", "uint_value > 5",
    "*int_pointer", "&record_value.origin", "'types.c'::counter", "'other.c'::counter", "other_origin",
    "record_value.anonymous_short", "(char) 65", "main", "&main", "*message", "message[2]", "RED", "BLUE + 1",
    "color_value == BLUE", "(enum color) 1", "!int_value", "int_value < 0 && uint_value > 0", "~0u",
    "0x7fffffff + 1", "-5 % 3", "10 / 3", "1 << 40", "1L << 40", "'A' + 1", "int_pointer + 1",
    "&int_array[4] - &int_array[1]", "*&int_value", "(long) &int_array == (long) int_array", "record_value.scores[3]",
    "*int_array@3", "int_array[1]@2", "points[0]@2", "/x record_value", "/x int_value", "/o uint_value", "/t high_char",
    "/d record_pointer", "/c 65", "/x text", "/x float_value", "/u negative_char", "/a handler_value", "/z short_value",
    "/x bits_value", "/x two_flags", "/d color_value", "/x mostly_zero",
    "long_double_value", "long_double_array", "tiny_long_double", "float128_value", "complex_value",
    "complex_float_value", "complex_long_double_value", "measurement_value", "measurement_value.value",
    "long_double_array[2]", "/x long_double_value", "sizeof(long double)", "sizeof(int[4])", "sizeof(point_t[3])",
    "sizeof points", "sizeof(int[2][3])", "sizeof(counter_t[2])", "sizeof(struct measurement)",
    "(void (*)(int)) on_event", "(int (*)(void)) other_file_value", "(void (*)(int)) handler_value",
    "(void (*)(int)) (long) on_event", "sizeof(void (*)(int))", "*(void (*)(int)) on_event", "(handler_t) 0",
    "(long) long_double_value", "(char) long_double_array[1]", "(double) int_value", "(float) long_double_value",
    "(long double) double_value", "(long double) int_value", "(int) float_value", "(double) long_double_array[2]",
    "(unsigned char) -long_double_value", "(long double) uint_value", "(double) complex_value", "(_Float128) int_value",
    "-long_double_value", "-double_value", "-float_value", "-float128_value", "-complex_value", "-long_double_array[1]",
    "double_value * 2", "float_value * 2", "float_value + double_value", "double_value / 3", "int_value + double_value",
    "1 / float_value", "double_value > 2", "double_value == 2.718281828459045", "long_double_value > 3",
    "long_double_value < double_value", "float_value < 3.5", "2.5", "1e-3", "0.5f", "int_value * 0.5", "1 / 3.0",
    "(int) 2.9", "0.0 / 0", "-(0.0)", "-(1.0 / 0)", "1e300 * 1e300", "(float) (0.0 / 0)", "-(0.0 / 0)",
    "long_double_value * 2", "long_double_value / 3", "float128_value + 1", "long_double_value + double_value",
    "1 / long_double_value", "tiny_long_double / 1e300",
];

/// Globals of the C++ fixture.
const CPP_GLOBALS: &[&str] = &[
    "square", "color_value", "odd_color", "target", "int_reference", "rvalue_reference", "square_reference",
    "shape_pointer", "*shape_pointer", "flag_value", "head", "geometry::shape_count", "geometry::detail::hidden",
    "square.length", "square.sides", "square.name", "tail.next", "counter_value", "derived_value",
    "*base_pointer", "base_pointer", "Counter::instances", "geometry::Color::Red", "color_value == geometry::Color::Green",
    "!flag_value", "square.length > 3 && flag_value", "sizeof(geometry::Square)", "account",
    "wide_char", "char16_value", "char32_value", "wide_string", "u16_string", "u32_array", "wide_smile", "*wide_string@2",
    "long_double_value", "readings", "readings[1].value", "sizeof(Reading[2])", "sizeof(long double)",
];

/// Expressions and type names whose `ptype` is compared.
const C_PTYPES: &[&str] = &[
    "struct record", "struct bits", "union number", "enum flags", "enum color", "record_pointer", "handler_t",
    "matrix", "array_pointer", "other_function", "crash_here", "counter_t", "point_t", "int_value * 2",
    "complex_value", "struct measurement", "float128_value", "long_double_array", "(void (*)(int)) on_event",
];
const CPP_PTYPES: &[&str] = &["Account", "Counter", "Base", "Derived", "base_pointer", "geometry::Color", "geometry::Square", "geometry::Shape", "square_reference", "Node", "int_reference", "rvalue_reference", "shape_pointer"];

/// Builds the fixtures once and returns their directory.
fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_program("gcc", "gcc");
        require_program("g++", "g++");
        require_program("make", "make");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
        let out = target.join("fixtures");
        let output = Command::new("make")
            .arg("-C")
            .arg(workspace_root().join("tests/fixtures"))
            .arg(format!("OUT={}", out.display()))
            .output()
            .expect("running make");
        assert!(
            output.status.success(),
            "building the fixtures failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// Runs gdb on `program` without starting it and returns what `print`
/// shows for each expression, after `$N = `.
fn gdb_static_values(program: &Path, expressions: &[&str]) -> Vec<String> {
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    // In an ASCII locale gdb escapes non-ASCII characters, as stardump does.
    command.env("LC_ALL", "C");
    command.args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0", "-ex", "set pagination off"]);
    for (index, expression) in expressions.iter().enumerate() {
        // `/x EXPR` stands for gdb's `print/x EXPR`.
        let print = match expression.strip_prefix('/') {
            Some(rest) => format!("print/{rest}"),
            None => format!("print {expression}"),
        };
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &print]);
    }
    command.args(["-ex", "echo @@end\\n"]).arg(program);
    let output = command.output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "gdb failed:\n{stdout}\n{stderr}");
    let mut values = vec![String::new(); expressions.len()];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
            continue;
        }
        if let Some(index) = current {
            if values[index].is_empty() {
                values[index] = match line.split_once(" = ") {
                    Some((history, value)) if history.starts_with('$') => value.to_owned(),
                    _ => line.to_owned(),
                };
            }
        }
    }
    values
}

/// Evaluates each expression with stardump against the image's own data.
fn stardump_static_values(program: &Path, expressions: &[&str]) -> Vec<String> {
    let image = Image::open(program).expect("opening the fixture");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let memory = ImageMemory::new(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let is_type = |name: &str| !info.types_named(name).is_empty();
    expressions
        .iter()
        .map(|expression| {
            let (format, expression) = match expression.strip_prefix('/') {
                Some(rest) => (rest.chars().next(), &rest[2..]),
                None => (None, *expression),
            };
            let options = PrintOptions { format, ..PrintOptions::default() };
            let printer = Printer::new(inspector.types(), &memory, &symbols, options);
            match parse(expression, &is_type).and_then(|expr| evaluator.evaluate(&expr)) {
                Ok(value) => printer.top_level(&value),
                Err(error) => format!("error: {error}"),
            }
        })
        .collect()
}

fn compare_static(name: &str, expressions: &[&str]) {
    let program = fixture_dir().join(name);
    let gdb = gdb_static_values(&program, expressions);
    let ours = stardump_static_values(&program, expressions);
    let mut differences = Vec::new();
    for (index, expression) in expressions.iter().enumerate() {
        if gdb[index] != ours[index] {
            differences.push(format!("  print {expression}\n    gdb:      {}\n    stardump: {}", gdb[index], ours[index]));
        }
    }
    let agreed = expressions.len() - differences.len();
    eprintln!("{name}: {agreed} of {} globals agree with gdb", expressions.len());
    assert!(differences.is_empty(), "{name}: stardump and gdb disagree:\n{}", differences.join("\n"));
}

/// Runs gdb's `ptype` on each expression of the executable and returns
/// the whole output of each, `type = ` removed.
fn gdb_ptypes(program: &Path, expressions: &[&str]) -> Vec<String> {
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    // In an ASCII locale gdb escapes non-ASCII characters, as stardump does.
    command.env("LC_ALL", "C");
    command.args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0"]);
    for (index, expression) in expressions.iter().enumerate() {
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &format!("ptype {expression}")]);
    }
    command.arg(program);
    let output = command.output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut values = vec![String::new(); expressions.len()];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
            continue;
        }
        if let Some(index) = current {
            if !values[index].is_empty() {
                values[index].push('\n');
            }
            values[index].push_str(line.strip_prefix("type = ").unwrap_or(line));
        }
    }
    values
}

fn compare_ptypes(name: &str, expressions: &[&str]) {
    let program = fixture_dir().join(name);
    let gdb = gdb_ptypes(&program, expressions);
    let image = Image::open(&program).expect("opening the fixture");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let memory = ImageMemory::new(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let mut differences = Vec::new();
    for (index, expression) in expressions.iter().enumerate() {
        let ours = match evaluator.type_of(expression) {
            Ok(ty) => stardump::cmd::print::ptype(&inspector.types(), &ty),
            Err(error) => format!("error: {error}"),
        };
        if ours != gdb[index] {
            differences.push(format!("  ptype {expression}\n    gdb:\n{}\n    stardump:\n{ours}", gdb[index]));
        }
    }
    assert!(differences.is_empty(), "{name}: ptype differs:\n{}", differences.join("\n"));
}

/// `x` commands compared with gdb's on the executable.
const C_EXAMINES: &[&str] = &[
    "/4xw &int_array", "/2dg &long_value", "/3c message", "/s message", "/2s message", "/2a &handler_value",
    "/1tb &high_char", "/2ob &high_char", "/1fg &double_value", "/1fw &float_value", "/3uh &short_value",
    "/6xb text", "/3dw int_pointer", "/2xg record_pointer", "/5xw &record_value",
];

fn compare_examines(name: &str, commands: &[&str]) {
    let program = fixture_dir().join(name);
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    // In an ASCII locale gdb escapes non-ASCII characters, as stardump does.
    command.env("LC_ALL", "C");
    command.args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0"]);
    for (index, examine) in commands.iter().enumerate() {
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &format!("x{examine}")]);
    }
    let output = command.arg(&program).output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut gdb = vec![String::new(); commands.len()];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
            continue;
        }
        if let Some(index) = current {
            gdb[index].push_str(line);
            gdb[index].push('\n');
        }
    }

    let image = Image::open(&program).expect("opening the fixture");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let memory = ImageMemory::new(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let is_type = |name: &str| !info.types_named(name).is_empty();
    let mut differences = Vec::new();
    for (index, examine) in commands.iter().enumerate() {
        let (spec, address) = examine.split_once(' ').unwrap();
        let format = examine::parse_format(spec).unwrap();
        let value = evaluator.evaluate(&parse(address, &is_type).unwrap()).unwrap();
        let start = examine::start_address(&inspector.types(), &value, &memory).unwrap();
        let printer = Printer::new(inspector.types(), &memory, &symbols, PrintOptions::default());
        let (units, failure) = examine::read_units(format, start, &memory, &printer);
        let ours = examine::render_text(format, &units, failure.as_ref(), &symbols, None, None);
        if ours != gdb[index] {
            differences.push(format!("  x{examine}\n    gdb:\n{}    stardump:\n{ours}", gdb[index]));
        }
    }
    assert!(differences.is_empty(), "{name}: x differs:\n{}", differences.join("\n"));
}

#[test]
fn c_examine_o0_match_gdb() {
    compare_examines("types-c-O0", C_EXAMINES);
}

/// `x/i` commands compared with gdb's on the executable. gdb's `x/i`
/// separates mnemonic and operands with spaces that only whitespace
/// normalization removes, so [`compare_disassembly`] compares words.
const C_DISASSEMBLY: &[&str] = &["/20i main", "/14i walk", "/12i crash_here", "/8i on_event", "/3i &int_value"];
/// In C++ gdb labels instructions with linkage names (`<_Z4walkP4Nodei+4>`,
/// `<main()>`).
const CPP_DISASSEMBLY: &[&str] = &["/20i main", "/14i walk", "/16i crash_here", "/3i &tail"];

/// Collapses each run of whitespace into one space, per line.
fn words(text: &str) -> String {
    text.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

fn compare_disassembly(name: &str, commands: &[&str]) {
    let program = fixture_dir().join(name);
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    command.args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0"]);
    for (index, examine) in commands.iter().enumerate() {
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &format!("x{examine}")]);
    }
    let output = command.arg(&program).output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut gdb = vec![String::new(); commands.len()];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
        } else if let Some(index) = current {
            gdb[index].push_str(line);
            gdb[index].push('\n');
        }
    }

    let image = Image::open(&program).expect("opening the fixture");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let memory = ImageMemory::new(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let is_type = |name: &str| !info.types_named(name).is_empty();
    let mut differences = Vec::new();
    let mut instructions = 0;
    for (index, examine) in commands.iter().enumerate() {
        let (spec, address) = examine.split_once(' ').unwrap();
        let format = examine::parse_format(spec).unwrap();
        let value = evaluator.evaluate(&parse(address, &is_type).unwrap()).unwrap();
        let start = examine::start_address(&inspector.types(), &value, &memory).unwrap();
        let printer = Printer::new(inspector.types(), &memory, &symbols, PrintOptions::default());
        let (units, failure) = examine::read_units(format, start, &memory, &printer);
        instructions += units.len();
        let ours = examine::render_text(format, &units, failure.as_ref(), &symbols, None, Some(&info));
        if words(&ours) != words(&gdb[index]) {
            differences.push(format!("  x{examine}\n    gdb:\n{}    stardump:\n{ours}", gdb[index]));
        }
    }
    eprintln!("{name}: {} of {} x/i commands ({instructions} instructions) agree with gdb", commands.len() - differences.len(), commands.len());
    assert!(differences.is_empty(), "{name}: x/i differs:\n{}", differences.join("\n"));
}

#[test]
fn c_disassembly_o0_match_gdb() {
    compare_disassembly("types-c-O0", C_DISASSEMBLY);
}

#[test]
fn c_disassembly_o2_match_gdb() {
    compare_disassembly("types-c-O2", C_DISASSEMBLY);
}

#[test]
fn cpp_disassembly_o0_match_gdb() {
    compare_disassembly("types-cpp-O0", CPP_DISASSEMBLY);
}

#[test]
fn cpp_disassembly_o2_match_gdb() {
    compare_disassembly("types-cpp-O2", CPP_DISASSEMBLY);
}

/// Expressions and type names whose `whatis` is compared.
const C_WHATIS: &[&str] = &[
    "record_pointer", "record_value", "handler_value", "counter_t", "point_t", "int_array", "&points[1]",
    "matrix[1]", "*int_array@3", "int_value + 1L", "'A'", "message", "&main", "struct record", "origin",
    "(int (*)(void)) other_file_value", "complex_long_double_value", "long_double_array[1]", "0.5f",
    "1.5 + float_value", "float_value * 2", "double_value < 1",
];

#[test]
fn c_whatis_o0_match_gdb() {
    let program = fixture_dir().join("types-c-O0");
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    command.args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0"]);
    for (index, expression) in C_WHATIS.iter().enumerate() {
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &format!("whatis {expression}")]);
    }
    let output = command.arg(&program).output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut gdb = vec![String::new(); C_WHATIS.len()];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
        } else if let Some(index) = current {
            gdb[index] = line.strip_prefix("type = ").unwrap_or(line).to_owned();
        }
    }
    let image = Image::open(&program).expect("opening the fixture");
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let memory = ImageMemory::new(&image);
    let inspector = Inspector::new(&info, &symbols, &memory, &[], None, &[]);
    let evaluator = Evaluator { inspector: &inspector, frame: None };
    let mut differences = Vec::new();
    for (index, expression) in C_WHATIS.iter().enumerate() {
        let ours = stardump::cmd::print::whatis(&inspector.types(), &evaluator, expression)
            .unwrap_or_else(|error| format!("error: {error}"));
        if ours != gdb[index] {
            differences.push(format!("  whatis {expression}: gdb `{}`, stardump `{ours}`", gdb[index]));
        }
    }
    assert!(differences.is_empty(), "whatis differs:\n{}", differences.join("\n"));
}

#[test]
fn c_ptype_o0_match_gdb() {
    compare_ptypes("types-c-O0", C_PTYPES);
}

#[test]
fn cpp_ptype_o0_match_gdb() {
    compare_ptypes("types-cpp-O0", CPP_PTYPES);
}

#[test]
fn c_globals_o0_match_gdb() {
    compare_static("types-c-O0", C_GLOBALS);
}

#[test]
fn c_globals_o2_match_gdb() {
    compare_static("types-c-O2", C_GLOBALS);
}

#[test]
fn cpp_globals_o0_match_gdb() {
    compare_static("types-cpp-O0", CPP_GLOBALS);
}

#[test]
fn cpp_globals_o2_match_gdb() {
    compare_static("types-cpp-O2", CPP_GLOBALS);
}

/// Frames of the fixtures' crash compared with the core file: crash_here,
/// walk and main.
const CRASH_FRAMES: usize = 3;

/// One `name = value` line of `info args` or `info locals`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    name: String,
    value: String,
}

/// gdb's view of a fixture at its crash: per frame the function, the
/// arguments and the locals.
#[derive(Debug, Default)]
struct CrashOracle {
    functions: Vec<String>,
    arguments: Vec<Vec<Named>>,
    locals: Vec<Vec<Named>>,
    /// gdb's `print` of each of [`crash_expressions`] in frame 0.
    expressions: Vec<String>,
}

fn parse_named(lines: &[&str]) -> Vec<Named> {
    lines
        .iter()
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ")?;
            (!name.contains(' ') && !name.contains("@entry")).then(|| Named { name: name.to_owned(), value: value.to_owned() })
        })
        .collect()
}

/// Runs `program` under gdb to its crash, writes `core` with gcore, and
/// returns gdb's `info args` and `info locals` of the first frames.
/// Expressions printed in the crash frame: thread-local variables, which
/// need the thread's fs_base, and what the implicit pointer at -O2 points to.
fn crash_expressions(program: &Path) -> &'static [&'static str] {
    if program.to_string_lossy().contains("-cpp-") {
        &["tls_value", "&tls_value", "ratio", "tls_value + 1"]
    } else {
        &[
            "tls_counter", "tls_array", "&tls_counter", "tls_array[2]", "*corner_pointer", "corner_pointer->y",
            "corner_pointer[0]", "scale", "scaled", "corner",
        ]
    }
}

fn gcore_at_crash(program: &Path, core: &Path) -> (CrashOracle, String) {
    require_program("gdb", "gdb");
    let mut command = Command::new("timeout");
    // In an ASCII locale gdb escapes non-ASCII characters, as stardump does.
    command.env("LC_ALL", "C");
    command
        .args(["-s", "KILL", "120", "gdb", "-batch", "-nx", "-ex", "set width 0", "-ex", "set pagination off"])
        .args(["-ex", "set startup-with-shell off", "-ex", "run"]);
    for frame in 0..CRASH_FRAMES {
        command.args(["-ex", &format!("echo @@FRAME {frame}\\n"), "-ex", &format!("frame {frame}")]);
        command.args(["-ex", &format!("echo @@ARGS {frame}\\n"), "-ex", "info args"]);
        command.args(["-ex", &format!("echo @@LOCALS {frame}\\n"), "-ex", "info locals", "-ex", "echo @@END 0\\n"]);
    }
    command.args(["-ex", "frame 0"]);
    for (index, expression) in crash_expressions(program).iter().enumerate() {
        command.args(["-ex", &format!("echo @@PRINT {index}\\n"), "-ex", &format!("print {expression}")]);
    }
    command.args(["-ex", "echo @@END 0\\n"]);
    command.args(["-ex", &format!("gcore {}", core.display()), "-ex", "kill"]).arg(program);
    let output = command.output().expect("running gdb");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();

    let mut oracle = CrashOracle {
        functions: vec![String::new(); CRASH_FRAMES],
        arguments: vec![Vec::new(); CRASH_FRAMES],
        locals: vec![Vec::new(); CRASH_FRAMES],
        expressions: vec![String::new(); crash_expressions(program).len()],
    };
    let mut section: Option<(String, usize)> = None;
    let mut lines: Vec<&str> = Vec::new();
    let flush = |section: &Option<(String, usize)>, lines: &mut Vec<&str>, oracle: &mut CrashOracle| {
        if let Some((kind, index)) = section {
            match kind.as_str() {
                "FRAME" => {
                    let function = lines.iter().find_map(|line| {
                        let rest = line.strip_prefix('#')?;
                        let rest = rest.split_once(" in ").map_or(rest, |(_, after)| after);
                        let name = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
                        Some(name.split(" (").next().unwrap_or("").to_owned())
                    });
                    oracle.functions[*index] = function.unwrap_or_default();
                }
                "ARGS" => oracle.arguments[*index] = parse_named(lines),
                "LOCALS" => oracle.locals[*index] = parse_named(lines),
                "PRINT" => {
                    let value = lines.iter().find_map(|line| line.split_once(" = ").map(|(_, value)| value.to_owned()));
                    oracle.expressions[*index] = value.unwrap_or_else(|| lines.join("\n"));
                }
                _ => {}
            }
        }
        lines.clear();
    };
    for line in text.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            flush(&section, &mut lines, &mut oracle);
            let mut parts = marker.split(' ');
            let kind = parts.next().unwrap_or("").to_owned();
            section = parts.next().and_then(|index| index.parse().ok()).map(|index| (kind, index));
            continue;
        }
        lines.push(line);
    }
    flush(&section, &mut lines, &mut oracle);
    (oracle, text)
}

const FIXTURES: [&str; 4] = ["types-c-O0", "types-c-O2", "types-cpp-O0", "types-cpp-O2"];

#[test]
fn gcore_oracle() {
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    for name in FIXTURES {
        let program = fixture_dir().join(name);
        let core = work_dir.path().join(format!("{name}.core"));
        let (oracle, text) = gcore_at_crash(&program, &core);
        assert!(text.contains("SIGSEGV"), "{name}: the fixture did not crash under gdb:\n{text}");
        assert_eq!(oracle.functions[0], "crash_here", "{name}:\n{text}");
        assert_eq!(oracle.functions[1], "walk", "{name}:\n{text}");
        assert!(!oracle.arguments[0].is_empty(), "{name}: gdb printed no arguments:\n{text}");
        assert!(!oracle.locals[0].is_empty(), "{name}: gdb printed no locals:\n{text}");
        assert!(core.is_file(), "{name}: gcore wrote no core file:\n{text}");
        for (expression, value) in crash_expressions(&program).iter().zip(&oracle.expressions) {
            assert!(!value.is_empty(), "{name}: gdb printed nothing for {expression}:\n{text}");
            assert!(!value.contains("Cannot"), "{name}: gdb could not print {expression}:\n{text}");
        }
    }
}

/// Compares `stardump frame N --args --locals` on the gcore file with gdb's
/// values at the crash, for every frame of the crash chain.
#[test]
fn fixture_locals_match_gdb_core() {
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let stardump = env!("CARGO_BIN_EXE_stardump");
    let mut differences = Vec::new();
    for name in FIXTURES {
        let program = fixture_dir().join(name);
        let core = work_dir.path().join(format!("{name}.core"));
        let (oracle, _) = gcore_at_crash(&program, &core);
        let before = differences.len();
        let mut compared = 0;
        for frame in 0..CRASH_FRAMES {
            let output = Command::new(stardump)
                .arg("frame")
                .arg(&core)
                .arg("--image")
                .arg(&program)
                .args(["--frame", &frame.to_string(), "--args", "--locals", "--json"])
                .output()
                .expect("running stardump");
            assert!(
                matches!(output.status.code(), Some(0 | 2)),
                "{name}: stardump frame {frame} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
            let ours = |key: &str| -> Vec<Named> {
                report[key]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|v| Named { name: v["name"].as_str().unwrap().to_owned(), value: v["value"].as_str().unwrap().to_owned() })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for (kind, gdb, mine) in [("args", &oracle.arguments[frame], ours("arguments")), ("locals", &oracle.locals[frame], ours("locals"))] {
                compared += gdb.len().max(mine.len());
                for index in 0..gdb.len().max(mine.len()) {
                    if gdb.get(index) != mine.get(index) {
                        differences.push(format!(
                            "{name} #{frame} {kind} {index}:\n  gdb:      {:?}\n  stardump: {:?}",
                            gdb.get(index),
                            mine.get(index)
                        ));
                    }
                }
            }
        }
        compared += crash_expressions(&program).len();
        for (index, expression) in crash_expressions(&program).iter().enumerate() {
            let output = Command::new(stardump)
                .arg("print")
                .arg(&core)
                .arg("--image")
                .arg(&program)
                .args(["--frame", "0", "--json", expression])
                .output()
                .expect("running stardump");
            let ours = serde_json::from_slice::<serde_json::Value>(&output.stdout)
                .ok()
                .and_then(|report| report["value"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("error: {}", String::from_utf8_lossy(&output.stderr).trim()));
            if ours != oracle.expressions[index] {
                differences.push(format!("{name} print {expression}:\n  gdb:      {}\n  stardump: {ours}", oracle.expressions[index]));
            }
        }
        let differing = differences.len() - before;
        eprintln!("{name}: {} of {compared} arguments, locals and crash-frame expressions agree with gdb", compared - differing);
    }
    assert!(differences.is_empty(), "stardump and gdb disagree:\n{}", differences.join("\n"));
}

/// `x/5i $pc` in the crash frame and `x/4i $pc` in its caller, compared
/// with gdb at the crash on the gcore file: the `=> ` marker must sit on
/// the selected frame's pc.
#[test]
fn disassembly_at_pc_match_gdb_core() {
    require_program("gdb", "gdb");
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let stardump = env!("CARGO_BIN_EXE_stardump");
    let mut differences = Vec::new();
    for name in FIXTURES {
        let program = fixture_dir().join(name);
        let core = work_dir.path().join(format!("{name}.core"));
        let examines = [(0, "/5i"), (1, "/4i")];
        let mut command = Command::new("timeout");
        command
            .args(["-s", "KILL", "120", "gdb", "-batch", "-nx", "-ex", "set width 0", "-ex", "set pagination off"])
            .args(["-ex", "set startup-with-shell off", "-ex", "run"]);
        for (frame, format) in examines {
            command.args(["-ex", &format!("frame {frame}"), "-ex", &format!("echo @@{frame}\\n"), "-ex", &format!("x{format} $pc")]);
        }
        command.args(["-ex", "echo @@end\\n", "-ex", &format!("gcore {}", core.display()), "-ex", "kill"]).arg(&program);
        let output = command.output().expect("running gdb");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut gdb = vec![String::new(); examines.len()];
        let mut current: Option<usize> = None;
        for line in stdout.lines() {
            if let Some(marker) = line.strip_prefix("@@") {
                current = marker.parse().ok();
            } else if let Some(index) = current {
                // `frame N` prints the frame and its source line as well.
                if line.starts_with("=> ") || line.starts_with("   0x") {
                    gdb[index].push_str(line);
                    gdb[index].push('\n');
                }
            }
        }
        assert!(gdb[0].starts_with("=> "), "{name}: gdb printed no pc marker:\n{stdout}");

        for (index, (frame, format)) in examines.iter().enumerate() {
            let output = Command::new(stardump)
                .arg("x")
                .arg(&core)
                .arg("--image")
                .arg(&program)
                .args(["--frame", &frame.to_string(), "--format", format, "$pc"])
                .output()
                .expect("running stardump");
            assert!(output.status.success(), "{name}: stardump x failed: {}", String::from_utf8_lossy(&output.stderr));
            let ours = String::from_utf8_lossy(&output.stdout).into_owned();
            if words(&ours) != words(&gdb[index]) {
                differences.push(format!("{name} frame {frame} x{format} $pc\n  gdb:\n{}  stardump:\n{ours}", gdb[index]));
            }
        }
    }
    assert!(differences.is_empty(), "x/i at the pc differs:\n{}", differences.join("\n"));
}

/// Every instruction of each fixture's `.text`, startup code included,
/// disassembled by stardump from the executable and by gdb's `x/Ni`.
#[test]
fn whole_text_disassembly_matches_gdb() {
    require_program("gdb", "gdb");
    let mut differences = Vec::new();
    for name in FIXTURES {
        let program = fixture_dir().join(name);
        let image = Image::open(&program).expect("opening the fixture");
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let symbols = SymbolTable::from_image(&image);
        let memory = ImageMemory::new(&image);
        let main = symbols.by_name("main").expect("a main symbol").address;
        let text = symbols.section_for(main).expect("main in a section").clone();
        let end = text.address + text.size;
        let format = examine::parse_format(&format!("/{}i", text.size)).unwrap();
        let printer = Printer::new(stardump::variables::types::TypeTable { info: &info }, &memory, &symbols, PrintOptions::default());
        let (mut units, _) = examine::read_units(format, text.address, &memory, &printer);
        units.retain(|(address, _)| *address < end);
        let ours = examine::render_text(format, &units, None, &symbols, None, Some(&info));

        let output = Command::new("timeout")
            .args(["-s", "KILL", "60", "gdb", "-batch", "-nx", "-ex", "set width 0"])
            .args(["-ex", &format!("x/{}i {:#x}", units.len(), text.address)])
            .arg(&program)
            .output()
            .expect("running gdb");
        let gdb = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(gdb.lines().count(), units.len(), "{name}: gdb printed another number of instructions:\n{gdb}");
        let mut differing = 0;
        for (theirs, mine) in gdb.lines().zip(ours.lines()) {
            if words(theirs) != words(mine) {
                differing += 1;
                differences.push(format!("{name}:\n  gdb:      {theirs}\n  stardump: {mine}"));
            }
        }
        eprintln!("{name}: {} of {} instructions of .text agree with gdb", units.len() - differing, units.len());
    }
    assert!(differences.is_empty(), "x/i differs:\n{}", differences.join("\n"));
}

/// Pseudo-random bit patterns of x87 `long double` and `_Float128`, with
/// every exponent class (denormals, NaNs, infinities, invalid x87
/// encodings), printed by gdb and stardump from a generated program's
/// `.data`: the decimal conversion must agree digit for digit, and so must
/// sums, differences, products and quotients of the finite ones.
#[test]
fn wide_float_patterns_match_gdb() {
    require_program("gcc", "gcc");
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut source = String::from(
        "#include <stdint.h>\n\
         union ld { struct { uint64_t significand; uint16_t sign_exponent; } bits; long double value; };\n\
         union q { unsigned __int128 bits; __float128 value; };\n",
    );
    const X87_COUNT: usize = 300;
    const QUAD_COUNT: usize = 100;
    source.push_str(&format!("union ld x87_patterns[{X87_COUNT}] = {{\n"));
    // Finite values with a valid encoding, for the arithmetic below.
    let mut finite_x87 = Vec::new();
    for index in 0..X87_COUNT {
        let class = next() % 20;
        let exponent = match class {
            0 | 1 => 0,
            2 => 0x7fff,
            3..=11 => 0x3fff - 80 + next() % 160,
            _ => 1 + next() % 0x7ffe,
        };
        let sign = (next() & 1) << 15;
        let mut significand = next();
        if exponent != 0 && next() % 20 != 0 {
            significand |= 1 << 63;
        }
        if exponent != 0x7fff && (significand >> 63 == 1) == (exponent != 0) {
            finite_x87.push(index);
        }
        source.push_str(&format!("  {{ .bits = {{ {significand:#x}ULL, {:#x} }} }},\n", sign | exponent));
    }
    source.push_str(&format!("}};\nunion q quad_patterns[{QUAD_COUNT}] = {{\n"));
    let mut finite_quads = Vec::new();
    for index in 0..QUAD_COUNT {
        let (high, low) = (next(), next());
        if (high >> 48) & 0x7fff != 0x7fff {
            finite_quads.push(index);
        }
        source.push_str(&format!("  {{ .bits = ((unsigned __int128){high:#x}ULL << 64) | {low:#x}ULL }},\n"));
    }
    source.push_str("};\nint main(void) { return 0; }\n");
    let source_path = work_dir.path().join("patterns.c");
    std::fs::write(&source_path, source).expect("writing the generated program");
    let program = work_dir.path().join("patterns");
    let output = Command::new("gcc")
        .args(["-g", "-O0", "-fno-pie", "-no-pie", "-o"])
        .arg(&program)
        .arg(&source_path)
        .output()
        .expect("running gcc");
    assert!(output.status.success(), "gcc failed: {}", String::from_utf8_lossy(&output.stderr));

    // Arithmetic on pairs of finite values, which gdb computes with the
    // host's x87 unit and stardump with exact big integers.
    let mut arithmetic = Vec::new();
    for (array, finite) in [("x87_patterns", &finite_x87), ("quad_patterns", &finite_quads)] {
        for _ in 0..100 {
            let left = finite[next() as usize % finite.len()];
            let right = finite[next() as usize % finite.len()];
            let operator = ["+", "-", "*", "/"][next() as usize % 4];
            arithmetic.push(format!("{array}[{left}].value {operator} {array}[{right}].value"));
        }
    }
    let expressions: Vec<String> = (0..X87_COUNT)
        .map(|index| format!("x87_patterns[{index}].value"))
        .chain((0..QUAD_COUNT).map(|index| format!("quad_patterns[{index}].value")))
        .chain(arithmetic)
        .collect();
    let expressions: Vec<&str> = expressions.iter().map(String::as_str).collect();
    let gdb = gdb_static_values(&program, &expressions);
    let ours = stardump_static_values(&program, &expressions);
    let differences: Vec<String> = expressions
        .iter()
        .zip(gdb.iter().zip(&ours))
        .filter(|(_, (theirs, mine))| theirs != mine)
        .map(|(expression, (theirs, mine))| format!("  print {expression}\n    gdb:      {theirs}\n    stardump: {mine}"))
        .collect();
    eprintln!("{} of {} wide float patterns agree with gdb", expressions.len() - differences.len(), expressions.len());
    assert!(differences.is_empty(), "wide floats differ:\n{}", differences.join("\n"));
}

/// Expressions compared on the position-independent build's core, where
/// the program runs at a load bias that globals, function addresses and
/// symbol names must be relocated by. String constants are read from the
/// executable at the load bias, because gcore does not dump the file's
/// read-only pages.
const PIE_EXPRESSIONS: &[&str] = &[
    "int_value", "record_value.id", "int_pointer", "*int_pointer", "'types.c'::counter", "'other.c'::counter",
    "&int_value", "main", "&main", "crash_here", "handler_value", "record_pointer->list->next->value",
    "tls_counter", "*corner_pointer", "$pc", "long_double_value", "points", "&points[1]", "message", "*message",
];

/// The C fixture built as a PIE, compared with gdb at its crash on the
/// gcore file: globals, `x/4i $pc` and `info symbol $pc`.
#[test]
fn pie_core_matches_gdb() {
    require_program("gdb", "gdb");
    let work_dir = tempfile::tempdir().expect("creating a temporary directory");
    let stardump = env!("CARGO_BIN_EXE_stardump");
    let program = fixture_dir().join("types-c-pie-O2");
    let core = work_dir.path().join("pie.core");
    let mut command = Command::new("timeout");
    command.env("LC_ALL", "C");
    command
        .args(["-s", "KILL", "120", "gdb", "-batch", "-nx", "-ex", "set width 0", "-ex", "set pagination off"])
        .args(["-ex", "set startup-with-shell off", "-ex", "run"]);
    for (index, expression) in PIE_EXPRESSIONS.iter().enumerate() {
        command.args(["-ex", &format!("echo @@{index}\\n"), "-ex", &format!("print {expression}")]);
    }
    let disassembly_index = PIE_EXPRESSIONS.len();
    command.args(["-ex", &format!("echo @@{disassembly_index}\\n"), "-ex", "x/4i $pc"]);
    command.args(["-ex", &format!("echo @@{}\\n", disassembly_index + 1), "-ex", "info symbol $pc"]);
    command.args(["-ex", "echo @@end\\n", "-ex", &format!("gcore {}", core.display()), "-ex", "kill"]).arg(&program);
    let output = command.output().expect("running gdb");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut gdb = vec![String::new(); disassembly_index + 2];
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(marker) = line.strip_prefix("@@") {
            current = marker.parse().ok();
        } else if let Some(index) = current {
            let text = match line.split_once(" = ") {
                Some((history, value)) if history.starts_with('$') => value,
                _ => line,
            };
            gdb[index].push_str(&words(text));
            gdb[index].push('\n');
        }
    }
    assert!(core.is_file(), "gcore wrote no core file:\n{stdout}");
    for (index, text) in gdb.iter().enumerate() {
        assert!(!text.trim().is_empty(), "gdb printed nothing for item {index}:\n{stdout}");
    }

    let run = |args: &[&str]| {
        let output = Command::new(stardump).args(args).output().expect("running stardump");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        text.lines()
            .filter(|line| !line.starts_with("warning:"))
            .map(|line| words(line.split_once(" = ").filter(|(history, _)| history.starts_with('$')).map_or(line, |(_, value)| value)) + "\n")
            .collect::<String>()
    };
    let core_arg = core.to_str().unwrap();
    let program_arg = program.to_str().unwrap();
    let mut differences = Vec::new();
    for (index, expression) in PIE_EXPRESSIONS.iter().enumerate() {
        let ours = run(&["print", core_arg, "--image", program_arg, "--", expression]);
        if ours != gdb[index] {
            differences.push(format!("print {expression}\n  gdb:      {}  stardump: {ours}", gdb[index]));
        }
    }
    let ours = run(&["x", core_arg, "--image", program_arg, "--format", "/4i", "$pc"]);
    if ours != gdb[disassembly_index] {
        differences.push(format!("x/4i $pc\n  gdb:\n{}  stardump:\n{ours}", gdb[disassembly_index]));
    }
    let ours = run(&["info", "symbol", core_arg, "--image", program_arg, "$pc"]);
    if ours != gdb[disassembly_index + 1] {
        differences.push(format!("info symbol $pc\n  gdb:      {}  stardump: {ours}", gdb[disassembly_index + 1]));
    }
    assert!(differences.is_empty(), "the PIE core differs from gdb:\n{}", differences.join("\n"));
}
