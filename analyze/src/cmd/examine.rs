//! `stardump x/FMT ADDR`: gdb's `x` command, which dumps memory in a
//! format (`x d u o t a c f s`, or `i` for instructions), a unit size
//! (`b h w g`) and a count.

use std::io::Write;

use serde::Serialize;

use super::inspect::{ContextArgs, Session};
use super::{Outcome, JSON_SCHEMA_VERSION};
use crate::disassemble::{line_label, Disassembler, MAX_INSTRUCTION_BYTES};
use crate::modules::ModuleSet;
use crate::unwind::StackMemory;
use crate::variables::dwarf::DebugInfo;
use crate::variables::expr::{parse, Evaluator};
use crate::variables::format::{char_literal, format_float, Printer};
use crate::variables::types::Type;
use crate::variables::value::{le_signed, le_unsigned, Hole};

/// Arguments of `stardump x`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The format, as in gdb's `x/FMT`: a count, a format letter (x d u o t
    /// a c f s, or i for instructions) and a size letter (b h w g), in any
    /// order after the count.
    #[arg(long, default_value = "/1xw")]
    pub format: String,
    #[allow(missing_docs)] // The shared options document themselves.
    #[command(flatten)]
    pub context: ContextArgs,
    /// The start address, a C expression (`$rsp`, `&worker_config`, `0xffff8000`).
    pub address: String,
}

/// A parsed `/FMT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Number of units.
    pub count: usize,
    /// Format letter.
    pub letter: char,
    /// Unit size in bytes.
    pub size: usize,
}

/// Maximum units one `x` prints, so a typo cannot print gigabytes.
const MAX_COUNT: usize = 1 << 20;

/// Parses `/8xg`; gdb's defaults are 1, `x` and `w`, except that `a`
/// and `f` default to 8 bytes and `c` and `s` to 1. An instruction (`i`)
/// has no fixed size, so `size` is 1 for it.
pub fn parse_format(text: &str) -> anyhow::Result<Format> {
    let spec = text.strip_prefix('/').unwrap_or(text);
    let digits: String = spec.chars().take_while(char::is_ascii_digit).collect();
    let count = if digits.is_empty() { 1 } else { digits.parse()? };
    if count > MAX_COUNT {
        anyhow::bail!("invalid count {count} in {text:?}: at most {MAX_COUNT} units");
    }
    let mut letter = None;
    let mut size = None;
    for c in spec[digits.len()..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 't' | 'a' | 'c' | 'f' | 's' | 'i' => letter = Some(c),
            'b' => size = Some(1),
            'h' => size = Some(2),
            'w' => size = Some(4),
            'g' => size = Some(8),
            other => anyhow::bail!("invalid format letter {other:?} in {text:?}: use x d u o t a c f s i and b h w g"),
        }
    }
    let letter = letter.unwrap_or('x');
    let size = match letter {
        'a' => 8,
        'c' | 's' => size.unwrap_or(1),
        'i' => 1,
        'f' => size.unwrap_or(8),
        _ => size.unwrap_or(4),
    };
    Ok(Format { count, letter, size })
}

/// Formats one unit.
pub fn format_unit(format: Format, bytes: &[u8], symbols: &crate::variables::symbols::SymbolTable) -> String {
    let unsigned = le_unsigned(bytes);
    match format.letter {
        'x' => format!("{unsigned:#0width$x}", width = format.size * 2 + 2),
        'd' => le_signed(bytes).to_string(),
        'u' => unsigned.to_string(),
        'o' if unsigned == 0 => "0".to_owned(),
        'o' => format!("0{unsigned:o}"),
        't' => format!("{unsigned:0width$b}", width = format.size * 8),
        'a' => match symbols.annotation(unsigned) {
            Some(name) => format!("{unsigned:#x} {name}"),
            None => format!("{unsigned:#x}"),
        },
        'c' => format!("{} {}", le_signed(&bytes[..1]), char_literal(bytes[0])),
        'f' if format.size == 4 => format_float(f64::from(f32::from_bits(unsigned as u32)), 9),
        'f' if format.size == 8 => format_float(f64::from_bits(unsigned), 17),
        _ => le_signed(bytes).to_string(),
    }
}

fn units_per_line(format: Format) -> usize {
    match (format.letter, format.size) {
        ('c', _) => 8,
        (_, 1 | 2) => 8,
        (_, 4) => 4,
        _ => 2,
    }
}

/// Returns the address `x` starts at for `value`: an array's, function's
/// or struct's own address, otherwise the value itself (a pointer or an
/// integer).
pub fn start_address(
    types: &crate::variables::types::TypeTable<'_>,
    value: &crate::variables::value::Value,
    memory: &dyn StackMemory,
) -> anyhow::Result<u64> {
    let own_address = match types.resolve_stripped(&value.ty) {
        Type::Array { .. } | Type::Function(_) | Type::Aggregate { .. } => value.address(),
        _ => None,
    };
    if let Some(address) = own_address {
        return Ok(address);
    }
    let size = types.size_of(&value.ty).unwrap_or(8).min(8);
    let bytes = value.read(memory, 0, size).map_err(|hole| anyhow::anyhow!("cannot read the address: {}", hole.marker()))?;
    Ok(le_unsigned(&bytes))
}

/// Formats units as gdb's `x` prints them: lines of units, each line
/// labelled with its first address and the symbol there. Instructions
/// (`x/i`) print one a line, with `=> ` before the one at `pc`, the
/// selected frame's pc.
pub fn render_text(
    format: Format,
    units: &[(u64, String)],
    failure: Option<&(u64, Hole)>,
    symbols: &crate::variables::symbols::SymbolTable,
    pc: Option<u64>,
    info: Option<&DebugInfo>,
) -> String {
    render_text_in(format, units, failure, symbols, pc, info, None)
}

/// Formats units as [`render_text`] does, naming instructions in a
/// process's shared objects with their DWARF from `modules`.
pub fn render_text_in(
    format: Format,
    units: &[(u64, String)],
    failure: Option<&(u64, Hole)>,
    symbols: &crate::variables::symbols::SymbolTable,
    pc: Option<u64>,
    info: Option<&DebugInfo>,
    modules: Option<&ModuleSet>,
) -> String {
    let mut text = String::new();
    if format.letter == 'i' {
        let mut disassembler = Disassembler::new(symbols);
        if let Some(info) = info {
            disassembler = disassembler.with_debug_info(info);
        }
        if let Some(modules) = modules {
            disassembler = disassembler.with_modules(modules);
        }
        let label = |address: u64| line_label(address, Some(address) == pc, disassembler.label(address));
        for (address, instruction) in units {
            text.push_str(&format!("{}:\t{instruction}\n", label(*address)));
        }
        if let Some((address, hole)) = failure {
            text.push_str(&format!("{}:\t{}\n", label(*address), hole.marker()));
        }
        return text;
    }
    let per_line = if format.letter == 's' { 1 } else { units_per_line(format) };
    for line in units.chunks(per_line) {
        let address = line[0].0;
        let label = match symbols.annotation(address) {
            Some(name) => format!("{address:#x} {name}"),
            None => format!("{address:#x}"),
        };
        let values: Vec<&str> = line.iter().map(|(_, value)| value.as_str()).collect();
        text.push_str(&format!("{label}:\t{}\n", values.join("\t")));
    }
    if let Some((address, hole)) = failure {
        text.push_str(&format!("{address:#x}:\t{}\n", hole.marker()));
    }
    text
}

#[derive(Debug, Serialize)]
struct Unit {
    address: String,
    value: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ExamineReport {
    schema_version: u32,
    command: &'static str,
    warnings: Vec<String>,
    address: String,
    format: String,
    size: usize,
    units: Vec<Unit>,
}

/// Units as `(address, text)`, and the first unit that could not be read.
pub type ReadUnits = (Vec<(u64, String)>, Option<(u64, Hole)>);

/// Reads the units and returns them with the first failure, if any.
pub fn read_units(
    format: Format,
    start: u64,
    memory: &dyn StackMemory,
    printer: &Printer<'_>,
) -> ReadUnits {
    read_units_in(format, start, memory, printer, None)
}

/// Reads the units as [`read_units`] does, naming branch targets in a
/// process's shared objects with their DWARF from `modules`.
pub fn read_units_in(
    format: Format,
    start: u64,
    memory: &dyn StackMemory,
    printer: &Printer<'_>,
    modules: Option<&ModuleSet>,
) -> ReadUnits {
    let mut units = Vec::new();
    let mut address = start;
    let mut disassembler = Disassembler::new(printer.symbols).with_debug_info(printer.types.info);
    if let Some(modules) = modules {
        disassembler = disassembler.with_modules(modules);
    }
    for _ in 0..format.count {
        if format.letter == 'i' {
            let bytes = read_available(memory, address, MAX_INSTRUCTION_BYTES);
            let Some(instruction) = disassembler.decode(address, &bytes) else {
                let hole = match memory.read(address, &mut [0u8; 1]) {
                    Err(error) => Hole::from_memory(&error),
                    Ok(()) => Hole::Error("memory changed while it was read".to_owned()),
                };
                return (units, Some((address, hole)));
            };
            units.push((address, instruction.text));
            address = address.wrapping_add(instruction.len_bytes as u64);
            continue;
        }
        if format.letter == 's' {
            let text = printer.read_c_string(address);
            // Advance past the string and its NUL, as gdb does.
            let mut length = 0u64;
            let mut byte = [0u8; 1];
            while length < printer.options.elements as u64 {
                let Some(at) = address.checked_add(length) else { break };
                if memory.read(at, &mut byte).is_err() || byte[0] == 0 {
                    break;
                }
                length += 1;
            }
            units.push((address, text));
            address = address.wrapping_add(length + 1);
            continue;
        }
        let mut bytes = vec![0u8; format.size];
        if let Err(error) = memory.read(address, &mut bytes) {
            return (units, Some((address, Hole::from_memory(&error))));
        }
        units.push((address, format_unit(format, &bytes, printer.symbols)));
        address = address.wrapping_add(format.size as u64);
    }
    (units, None)
}

/// Reads up to `max_len` bytes at `address`, fewer when the memory ends
/// inside that range: an instruction may be the last thing on a page.
fn read_available(memory: &dyn StackMemory, address: u64, max_len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; max_len];
    if memory.read(address, &mut bytes).is_ok() {
        return bytes;
    }
    let mut available = Vec::with_capacity(max_len);
    for offset in 0..max_len as u64 {
        let mut byte = [0u8; 1];
        let Some(at) = address.checked_add(offset) else { break };
        if memory.read(at, &mut byte).is_err() {
            break;
        }
        available.push(byte[0]);
    }
    available
}

/// Runs `stardump x`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let format = parse_format(&args.format)?;
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    let memory = session.memory();
    let frame = (args.context.frame < session.report.frames.len()).then_some(args.context.frame);
    let (value, inspector) = session.evaluate_in_scopes(&memory, frame, |inspector, frame| {
        let is_type = |name: &str| !inspector.info.types_named(name).is_empty();
        Evaluator { inspector, frame }.evaluate(&parse(&args.address, &is_type)?)
    })?;
    let types = inspector.types();
    let start = start_address(&types, &value, &memory)?;
    let printer = Printer::new(types, &memory, &session.symbols, args.context.print_options());
    let (units, failure) = read_units_in(format, start, &memory, &printer, session.modules.as_ref());
    let incomplete = failure.is_some() || printer.incomplete();

    if args.context.json {
        let mut report_units: Vec<Unit> =
            units.iter().map(|(address, value)| Unit { address: super::hex(*address), value: Some(value.clone()), error: None }).collect();
        if let Some((address, hole)) = &failure {
            report_units.push(Unit { address: super::hex(*address), value: None, error: Some(hole.marker()) });
        }
        let report = ExamineReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "x",
            warnings: session.json_warnings(),
            address: super::hex(start),
            format: format.letter.to_string(),
            size: format.size,
            units: report_units,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        let pc = inspector.register(frame, "pc").and_then(|(pc, _)| pc);
        let text = render_text_in(
            format,
            &units,
            failure.as_ref(),
            &session.symbols,
            pc,
            Some(&session.info),
            session.modules.as_ref(),
        );
        out.write_all(text.as_bytes())?;
    }
    Ok(session.outcome(!incomplete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_defaults() {
        assert_eq!(parse_format("/8xg").unwrap(), Format { count: 8, letter: 'x', size: 8 });
        assert_eq!(parse_format("/s").unwrap(), Format { count: 1, letter: 's', size: 1 });
        assert_eq!(parse_format("/2a").unwrap(), Format { count: 2, letter: 'a', size: 8 });
        assert_eq!(parse_format("/4dw").unwrap(), Format { count: 4, letter: 'd', size: 4 });
        assert_eq!(parse_format("").unwrap(), Format { count: 1, letter: 'x', size: 4 });
        assert_eq!(parse_format("/3i").unwrap(), Format { count: 3, letter: 'i', size: 1 });
        assert!(parse_format("/3q").is_err());
    }

    #[test]
    fn unit_formats() {
        let symbols = crate::variables::symbols::SymbolTable::default();
        let word = 100u64.to_le_bytes();
        let g = |letter| Format { count: 1, letter, size: 8 };
        assert_eq!(format_unit(g('x'), &word, &symbols), "0x0000000000000064");
        assert_eq!(format_unit(g('d'), &(-2i64).to_le_bytes(), &symbols), "-2");
        assert_eq!(format_unit(g('o'), &word, &symbols), "0144");
        let b = Format { count: 1, letter: 't', size: 1 };
        assert_eq!(format_unit(b, &[5], &symbols), "00000101");
        let c = Format { count: 1, letter: 'c', size: 1 };
        assert_eq!(format_unit(c, b"W", &symbols), "87 'W'");
    }
}
