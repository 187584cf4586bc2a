//! Printing values as gdb 13 prints them with its default settings.
//!
//! The rules follow gdb's C and C++ value printers. Integers print in
//! decimal and characters as `87 'W'`. A pointer prints in hex, followed by
//! `<symbol+offset>` when it points into a symbol and by the string when it
//! points to characters. Runs of equal array elements fold into
//! `0 <repeats 15 times>`. Structs print as `{x = 1, y = 2}`, base classes
//! as `<Base> = {...}`, enums by name and flag enums as `(A | B)`.
//!
//! Output is bounded: `print elements` (200) limits array elements and
//! string characters, and `max-depth` (20) limits nesting, after which an
//! aggregate prints as `{...}`.
//!
//! Values that cannot be read print in place (`<optimized out>`,
//! `<unreadable at 0x…: page not captured>`) and mark the output incomplete;
//! the rest of the value still prints.

use std::cell::Cell;

use gimli::constants;

use super::float::{format_wide_float, WideFloat};
use super::types::{AggregateKind, Builtin, CharKind, Member, Type, TypeRef, TypeTable};
use super::value::{le_signed, le_unsigned, Hole, Value};
use super::symbols::SymbolTable;
use crate::unwind::StackMemory;

/// gdb's `print elements` default.
pub const DEFAULT_PRINT_ELEMENTS: usize = 200;
/// gdb's `print max-depth` default.
pub const DEFAULT_MAX_DEPTH: usize = 20;
/// Maximum nesting the printer recurses into, whatever `max_depth` is set to.
const MAX_RECURSION: usize = 200;
/// gdb's `print repeats` default: runs longer than this are folded.
pub const REPEAT_THRESHOLD: usize = 10;
/// Maximum run of equal array elements counted, so a huge array of zeros
/// in a large or corrupt DWARF type cannot make printing take minutes.
/// NOTE: a longer run prints as this many repeats and continues after it.
const MAX_RUN_SCAN: u64 = 1 << 20;

/// Printing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintOptions {
    /// Maximum number of array elements and string characters printed.
    pub elements: usize,
    /// Maximum nesting of aggregates; deeper ones print as `{...}`.
    pub max_depth: usize,
    /// gdb's output format letter (`print/x`): every scalar prints in it.
    pub format: Option<char>,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { elements: DEFAULT_PRINT_ELEMENTS, max_depth: DEFAULT_MAX_DEPTH, format: None }
    }
}

/// Prints values of one image against one memory.
pub struct Printer<'a> {
    /// The image's types.
    pub types: TypeTable<'a>,
    /// Memory the values live in.
    pub memory: &'a dyn StackMemory,
    /// Symbols for naming pointers.
    pub symbols: &'a SymbolTable,
    /// Limits.
    pub options: PrintOptions,
    incomplete: Cell<bool>,
}

impl<'a> Printer<'a> {
    /// Creates a printer.
    pub fn new(
        types: TypeTable<'a>,
        memory: &'a dyn StackMemory,
        symbols: &'a SymbolTable,
        options: PrintOptions,
    ) -> Printer<'a> {
        Printer { types, memory, symbols, options, incomplete: Cell::new(false) }
    }

    /// Whether something printed so far was unknown or unreadable.
    pub fn incomplete(&self) -> bool {
        self.incomplete.get()
    }

    /// Marks the output incomplete.
    pub fn mark_incomplete(&self) {
        self.incomplete.set(true);
    }

    fn hole(&self, hole: &Hole) -> String {
        self.incomplete.set(true);
        hole.marker()
    }

    /// Formats `value` as `print` does: pointers and references are
    /// preceded by their type, functions by their signature.
    pub fn top_level(&self, value: &Value) -> String {
        // With a format letter gdb prints the bare value.
        if self.options.format.is_some() {
            return self.format(value, 0);
        }
        // gdb 13's value_print checks that a value is printable before it
        // writes the type, so an optimized-out pointer prints as
        // `<optimized out>` alone.
        if let Some(hole @ (Hole::OptimizedOut | Hole::NotSaved { .. })) = whole_hole(value) {
            return self.hole(&hole);
        }
        let stripped = self.types.strip(&value.ty);
        match self.types.resolve(&stripped) {
            Type::Pointer { target, .. } => {
                // gdb omits the type before a pointer to `char`, `wchar_t`,
                // `char16_t` or `char32_t` (the string follows), unless a
                // typedef names the pointer type.
                let typedef_named = !matches!(self.types.resolve(&value.ty), Type::Pointer { .. } | Type::Qualified { .. });
                let target_name = self.types.name(&self.types.unqualified(&target));
                let textual = ["char", "wchar_t", "char16_t", "char32_t"].contains(&target_name.as_str());
                if textual && !typedef_named {
                    return self.format(value, 0);
                }
                format!("({}) {}", self.types.name(&value.ty), self.format(value, 0))
            }
            Type::Reference { .. } => format!("({}) {}", self.types.name(&value.ty), self.format(value, 0)),
            Type::Function(_) => {
                let text = self.format(value, 0);
                format!("{{{}}} {text}", self.types.name(&value.ty))
            }
            _ => self.format(value, 0),
        }
    }

    /// Formats `value` as `info locals` and members do.
    pub fn format(&self, value: &Value, depth: usize) -> String {
        // Whatever `--max-depth` is set to, recursion stops here, so a type that
        // contains itself in corrupt DWARF cannot overflow the stack.
        if depth > MAX_RECURSION {
            return "{...}".to_owned();
        }
        // gdb prints a value whose every piece is missing as one marker,
        // not as an aggregate of markers.
        if let Some(hole) = whole_hole(value) {
            return self.hole(&hole);
        }
        let ty = self.types.strip(&value.ty);
        match self.types.resolve(&ty) {
            Type::Void => "void".to_owned(),
            Type::Base { name, encoding, size } => match value.read(self.memory, 0, size) {
                Ok(bytes) if self.options.format.is_some() => {
                    // gdb 13 formats a float's bits, not its value; of an
                    // x87 `long double` only the 10 bytes that carry bits.
                    let signed = matches!(encoding, constants::DW_ATE_signed | constants::DW_ATE_signed_char);
                    let bits = match WideFloat::for_type(&name, bytes.len()) {
                        Some(wide) if encoding == constants::DW_ATE_float => &bytes[..wide.value_bytes()],
                        _ => &bytes[..],
                    };
                    self.format_scalar(bits, signed)
                }
                Ok(bytes) if name == super::types::EFLAGS_TYPE_NAME => format_eflags(le_unsigned(&bytes)),
                Ok(bytes) if encoding == constants::DW_ATE_UTF || name == "wchar_t" => {
                    // Wide characters print as `119 L'w'`.
                    let kind = self.types.char_kind(&ty);
                    let code = le_unsigned(&bytes);
                    let number = if encoding == constants::DW_ATE_signed { le_signed(&bytes).to_string() } else { code.to_string() };
                    match kind {
                        Some(kind) => format!("{number} {}{}", kind.prefix, code_literal(code as u32)),
                        None => number,
                    }
                }
                Ok(bytes) => format_named_base(&name, encoding, &bytes),
                Err(hole) => self.hole(&hole),
            },
            Type::Enum { .. } => self.format_enum(value, &ty),
            Type::Pointer { target, size } => match value.read(self.memory, 0, size) {
                Ok(bytes) if self.options.format.is_some() => self.format_scalar(&bytes, false),
                Ok(bytes) => self.format_pointer(le_unsigned(&bytes), &target),
                Err(hole) => self.hole(&hole),
            },
            Type::Reference { target, .. } => match value.read(self.memory, 0, 8) {
                Ok(bytes) => {
                    let address = le_unsigned(&bytes);
                    let referent = Value::in_memory(target, address);
                    format!("@{address:#x}: {}", self.format(&referent, depth + 1))
                }
                Err(hole) => self.hole(&hole),
            },
            Type::Array { element, count } => self.format_array(value, &element, count, depth),
            Type::Aggregate { members, incomplete, .. } => {
                if incomplete && members.is_empty() {
                    return "<incomplete type>".to_owned();
                }
                self.format_aggregate(value, &members, depth)
            }
            Type::Function(_) => match value.address() {
                Some(address) => match self.symbols.annotation(address) {
                    Some(name) => format!("{address:#x} {name}"),
                    None => format!("{address:#x}"),
                },
                None => "<function without address>".to_owned(),
            },
            Type::Typedef { .. } | Type::Qualified { .. } => "<type chain too long>".to_owned(),
            Type::Unsupported { tag } => {
                self.incomplete.set(true);
                format!("<unsupported type {tag}>")
            }
        }
    }

    fn format_enum(&self, value: &Value, ty: &TypeRef) -> String {
        let Type::Enum { size, signed, enumerators, .. } = self.types.resolve(ty) else {
            return String::new();
        };
        let bytes = match value.read(self.memory, 0, size) {
            Ok(bytes) => bytes,
            Err(hole) => return self.hole(&hole),
        };
        if self.options.format.is_some() {
            return self.format_scalar(&bytes, signed);
        }
        let raw = if signed { i128::from(le_signed(&bytes)) } else { i128::from(le_unsigned(&bytes)) };
        format_enum_value(raw, &enumerators)
    }

    /// Formats a scalar's bytes in the output format letter, as gdb's
    /// `print/FMT` does.
    fn format_scalar(&self, bytes: &[u8], signed: bool) -> String {
        if bytes.len() > 8 && bytes.len() <= 16 {
            // A wide integer or the bits of a long double.
            let mut wide = [0u8; 16];
            wide[..bytes.len()].copy_from_slice(bytes);
            let unsigned = u128::from_le_bytes(wide);
            return match self.options.format.unwrap_or('d') {
                'x' => format!("{unsigned:#x}"),
                'z' => format!("{unsigned:#0width$x}", width = bytes.len() * 2 + 2),
                'o' if unsigned == 0 => "0".to_owned(),
                'o' => format!("0{unsigned:o}"),
                't' => format!("{unsigned:b}"),
                _ => unsigned.to_string(),
            };
        }
        let unsigned = le_unsigned(bytes);
        match self.options.format.unwrap_or('d') {
            'x' => format!("{unsigned:#x}"),
            'z' => format!("{unsigned:#0width$x}", width = bytes.len() * 2 + 2),
            'o' if unsigned == 0 => "0".to_owned(),
            'o' => format!("0{unsigned:o}"),
            't' => format!("{unsigned:b}"),
            'u' => unsigned.to_string(),
            'c' => format!("{} {}", unsigned as u8 as i8, char_literal(unsigned as u8)),
            'a' => match self.symbols.annotation(unsigned) {
                Some(name) => format!("{unsigned:#x} {name}"),
                None => format!("{unsigned:#x}"),
            },
            'd' => le_signed(bytes).to_string(),
            _ if signed => le_signed(bytes).to_string(),
            _ => unsigned.to_string(),
        }
    }

    /// Formats a pointer: the address, the symbol it points into, and for
    /// a character pointer the string.
    pub fn format_pointer(&self, address: u64, target: &TypeRef) -> String {
        let mut text = format!("{address:#x}");
        let target_type = self.types.resolve_stripped(target);
        let is_function = matches!(target_type, Type::Function(_)) || matches!(target, TypeRef::Builtin(Builtin::CodePointer | Builtin::PrototypedCodePointer));
        // gdb names the symbol of any pointer that points into a section;
        // stack and heap pointers have none.
        if let Some(name) = self.symbols.annotation(address) {
            text.push(' ');
            text.push_str(&name);
        } else if is_function {
            return text;
        }
        if address != 0 {
            if let Some(kind) = self.types.char_kind(target) {
                text.push(' ');
                text.push_str(&self.read_string(address, kind));
            }
        }
        text
    }

    /// Reads a NUL-terminated string of one-byte characters at `address`,
    /// at most `elements` characters, and formats it as gdb does.
    pub fn read_c_string(&self, address: u64) -> String {
        self.read_string(address, CharKind { width: 1, prefix: "" })
    }

    /// Reads a string of `kind` characters at `address` up to its NUL code
    /// unit, at most `elements` characters, and formats it as gdb does.
    pub fn read_string(&self, address: u64, kind: CharKind) -> String {
        let limit = self.options.elements;
        let width = kind.width.max(1);
        let mut units: Vec<u32> = Vec::new();
        let mut terminated = false;
        let mut failure = None;
        'read: while units.len() < limit {
            let Some(current) = address.checked_add((units.len() * width) as u64) else { break };
            // Read up to the end of the page, so one unreadable page does not
            // hide the characters before it.
            let to_page_end = 4096 - (current % 4096) as usize;
            let chunk_units = (to_page_end / width).clamp(1, 64).min(limit - units.len());
            let mut chunk = vec![0u8; chunk_units * width];
            if let Err(error) = self.memory.read(current, &mut chunk) {
                failure = Some(Hole::from_memory(&error));
                break;
            }
            for unit in chunk.chunks_exact(width) {
                let code = le_unsigned(unit) as u32;
                if code == 0 {
                    terminated = true;
                    break 'read;
                }
                units.push(code);
            }
        }
        if let Some(hole) = failure {
            if units.is_empty() {
                return self.hole(&hole);
            }
            let mut text = format_code_runs(&units, usize::MAX, kind.prefix);
            text.push_str(&self.hole(&hole));
            return text;
        }
        let mut text = format_code_runs(&units, usize::MAX, kind.prefix);
        if text.is_empty() {
            text.push_str(&format!("{}\"\"", kind.prefix));
        }
        if !terminated {
            text.push_str("...");
        }
        text
    }

    fn format_array(&self, value: &Value, element: &TypeRef, count: Option<u64>, depth: usize) -> String {
        let Some(count) = count else {
            // gdb prints a flexible array member as `0x… ` of its address.
            return match value.address() {
                Some(address) => format!("{address:#x}"),
                None => "{}".to_owned(),
            };
        };
        let element_size = self.types.size_of(element).unwrap_or(0);
        let char_kind = self.types.char_kind(element).filter(|_| self.options.format.is_none());
        if let Some(kind) = char_kind {
            let shown = count.min(self.options.elements as u64);
            let width = kind.width as u64;
            return match value.read(self.memory, 0, shown * width) {
                Ok(bytes) => {
                    let mut units: Vec<u32> = bytes.chunks_exact(kind.width).map(|unit| le_unsigned(unit) as u32).collect();
                    // gdb drops one trailing NUL of a fully printed array
                    // and stops at the first NUL after it when there are
                    // only NULs left: `"hi", '\000' <repeats 13 times>`.
                    let truncated = shown < count;
                    if !truncated && units.last() == Some(&0) {
                        units.pop();
                    }
                    let mut text = format_code_runs(&units, REPEAT_THRESHOLD, kind.prefix);
                    if text.is_empty() {
                        text.push_str(&format!("{}\"\"", kind.prefix));
                    }
                    if truncated {
                        text.push_str("...");
                    }
                    text
                }
                Err(hole) => self.hole(&hole),
            };
        }
        if depth >= self.options.max_depth {
            return "{...}".to_owned();
        }
        // Read an array in memory at once when it is small enough, so the
        // search for runs of equal elements does not walk the page tables
        // once per element.
        let whole = count.checked_mul(element_size).filter(|&len| len > 0 && len <= super::value::MAX_VALUE_BYTES);
        let buffered = match (value.address(), whole) {
            (Some(_), Some(len)) => value.read(self.memory, 0, len).ok().map(|bytes| Value::from_bytes(value.ty.clone(), bytes)),
            _ => None,
        };
        let value = buffered.as_ref().unwrap_or(value);
        let mut items: Vec<String> = Vec::new();
        let mut index = 0u64;
        let mut printed = 0usize;
        while index < count {
            if printed >= self.options.elements {
                items.push("...".to_owned());
                break;
            }
            let Some(offset) = index.checked_mul(element_size) else {
                items.push(self.hole(&Hole::Error(format!("element {index} lies beyond the address space"))));
                break;
            };
            let element_value = value.slice(offset, element_size, element.clone());
            let text = self.format(&element_value, depth + 1);
            // Count the run of equal elements from here, comparing bytes as gdb does.
            let mut run = 1u64;
            if element_size > 0 {
                let first = value.read(self.memory, offset, element_size).ok();
                if let Some(first) = first {
                    while index + run < count && run < MAX_RUN_SCAN {
                        let Some(next_offset) = (index + run).checked_mul(element_size) else { break };
                        let next = value.read(self.memory, next_offset, element_size).ok();
                        if next.as_ref() != Some(&first) {
                            break;
                        }
                        run += 1;
                    }
                }
            }
            if run > REPEAT_THRESHOLD as u64 {
                items.push(format!("{text} <repeats {run} times>"));
                index += run;
                printed += REPEAT_THRESHOLD;
            } else {
                items.push(text);
                index += 1;
                printed += 1;
            }
        }
        let mut text = String::from("{");
        text.push_str(&items.join(", "));
        if text.ends_with(", ...") {
            text.truncate(text.len() - 5);
            text.push_str("...");
        }
        text.push('}');
        text
    }

    fn format_aggregate(&self, value: &Value, members: &[Member], depth: usize) -> String {
        if depth >= self.options.max_depth {
            return "{...}".to_owned();
        }
        let mut fields = Vec::new();
        for member in members {
            if member.is_static {
                // gdb prints a static member with the value of its
                // definition, which lies outside the object.
                let name = member.name.clone().unwrap_or_default();
                let definition = self.static_definition(member.die);
                let text = match definition {
                    Some(value) => self.format(&value, depth + 1),
                    None => self.hole(&Hole::OptimizedOut),
                };
                fields.push(format!("static {name} = {text}"));
                continue;
            }
            let size = self.types.size_of(&member.ty).unwrap_or(0);
            let text = if let Some((bit_offset, bit_size)) = member.bitfield {
                self.format_bitfield(value, &member.ty, bit_offset, bit_size)
            } else {
                let part = value.slice(member.offset_bytes, size, member.ty.clone());
                self.format(&part, depth + 1)
            };
            let field = match (&member.name, member.is_base) {
                (_, true) => format!("<{}> = {text}", self.types.name(&member.ty)),
                (Some(name), false) => format!("{name} = {text}"),
                (None, false) => text,
            };
            fields.push(field);
        }
        if fields.is_empty() {
            return "{<No data fields>}".to_owned();
        }
        format!("{{{}}}", fields.join(", "))
    }

    /// Returns the value of the definition of static member `die`.
    fn static_definition(&self, die: super::dwarf::DieId) -> Option<Value> {
        let info = self.types.info;
        let name = info.qualified_name(die)?;
        let definition = info
            .globals_named(&name)
            .into_iter()
            .find(|&global| info.own_attr(global, gimli::constants::DW_AT_location).is_some())?;
        Some(super::location::Locator::new(info).with_load_bias(self.symbols.load_bias()).variable(definition, None, 0, None))
    }

    fn format_bitfield(&self, value: &Value, ty: &TypeRef, bit_offset: u64, bit_size: u64) -> String {
        if bit_size == 0 || bit_size > 64 {
            return format!("<bitfield of {bit_size} bits>");
        }
        let first_byte = bit_offset / 8;
        let shift = bit_offset % 8;
        let len = (shift + bit_size).div_ceil(8);
        let bytes = match value.read(self.memory, first_byte, len) {
            Ok(bytes) => bytes,
            Err(hole) => return self.hole(&hole),
        };
        let mut wide = [0u8; 16];
        wide[..bytes.len()].copy_from_slice(&bytes);
        let raw = (u128::from_le_bytes(wide) >> shift) & ((1u128 << bit_size) - 1);
        let stripped = self.types.strip(ty);
        let resolved = self.types.resolve(&stripped);
        let signed = match &resolved {
            Type::Base { encoding, .. } => matches!(*encoding, constants::DW_ATE_signed | constants::DW_ATE_signed_char),
            Type::Enum { signed, .. } => *signed,
            _ => false,
        };
        let value = if signed && bit_size < 64 && raw >> (bit_size - 1) & 1 == 1 {
            raw as i128 - (1i128 << bit_size)
        } else {
            raw as i128
        };
        if self.options.format.is_some() {
            // The field's value, widened to its declared type as gdb does.
            let size = self.types.size_of(&stripped).unwrap_or(8).clamp(1, 8) as usize;
            return self.format_scalar(&(value as u128).to_le_bytes()[..size], signed);
        }
        match resolved {
            Type::Enum { enumerators, .. } => format_enum_value(value, &enumerators),
            Type::Base { encoding: constants::DW_ATE_boolean, .. } => {
                if value == 0 { "false".into() } else if value == 1 { "true".into() } else { value.to_string() }
            }
            _ => value.to_string(),
        }
    }
}

/// Returns the hole covering all of `value`'s bytes, when one hole does.
fn whole_hole(value: &Value) -> Option<Hole> {
    let (bytes, holes) = match &value.contents {
        super::value::Contents::Missing(hole) => return Some(hole.clone()),
        super::value::Contents::Bytes { bytes, holes } => (bytes, holes),
        super::value::Contents::Memory(_) => return None,
    };
    let first = &holes.first()?.1;
    let mut covered = 0;
    for (range, hole) in holes {
        if hole != first || range.start != covered {
            return None;
        }
        covered = range.end;
    }
    (covered >= bytes.len() && !bytes.is_empty()).then(|| first.clone())
}

impl TypeTable<'_> {
    /// Follows qualifiers (not typedefs) to the type they qualify.
    pub fn unqualified(&self, ty: &TypeRef) -> TypeRef {
        let mut current = ty.clone();
        for _ in 0..64 {
            match self.resolve(&current) {
                Type::Qualified { target, .. } => current = target,
                _ => return current,
            }
        }
        current
    }
}

/// Formats an enum value as gdb does: the enumerator's name; for a flag
/// enum (enumerators with disjoint bits) the names of the bits it has, in
/// parentheses; otherwise the number.
pub fn format_enum_value(raw: i128, enumerators: &[super::types::Enumerator]) -> String {
    if let Some(enumerator) = enumerators.iter().find(|enumerator| enumerator.value == raw) {
        return enumerator.name.clone();
    }
    let mut seen_bits = 0i128;
    let flag_enum = enumerators.iter().all(|enumerator| {
        let disjoint = enumerator.value >= 0 && enumerator.value & seen_bits == 0;
        seen_bits |= enumerator.value;
        disjoint
    });
    if !flag_enum || raw < 0 || enumerators.is_empty() {
        return raw.to_string();
    }
    if raw == 0 {
        return "0".to_owned();
    }
    let mut names = Vec::new();
    let mut remaining = raw;
    for enumerator in enumerators {
        if enumerator.value != 0 && remaining & enumerator.value == enumerator.value {
            names.push(enumerator.name.clone());
            remaining &= !enumerator.value;
        }
    }
    if remaining != 0 {
        names.push(format!("unknown: {remaining:#x}"));
    }
    format!("({})", names.join(" | "))
}

/// Flags of `rflags` above the IOPL field and below it, highest bit first.
const EFLAGS_HIGH: [(u32, &str); 7] = [(21, "ID"), (20, "VIP"), (19, "VIF"), (18, "AC"), (17, "VM"), (16, "RF"), (14, "NT")];
const EFLAGS_LOW: [(u32, &str); 9] =
    [(11, "OF"), (10, "DF"), (9, "IF"), (8, "TF"), (7, "SF"), (6, "ZF"), (4, "AF"), (2, "PF"), (0, "CF")];

/// Formats `$eflags` as gdb 13 does against QEMU's gdbstub: the fields in
/// the order of QEMU's target description (highest bit first), set flags
/// by name and the two-bit IOPL field always, as `[ IOPL=0 ZF PF ]`.
pub fn format_eflags(rflags: u64) -> String {
    let set = |(bit, name): &(u32, &'static str)| (rflags >> bit & 1 == 1).then_some(name.to_string());
    let mut parts: Vec<String> = EFLAGS_HIGH.iter().filter_map(set).collect();
    parts.push(format!("IOPL={}", rflags >> 12 & 3));
    parts.extend(EFLAGS_LOW.iter().filter_map(set));
    format!("[ {} ]", parts.join(" "))
}

/// Formats the bytes of base type `name`: like [`format_base`], and also
/// the float formats that only the name distinguishes (x87 `long double`,
/// `_Float128`) and complex numbers, which gdb prints as `1.5 + 2i`.
pub fn format_named_base(name: &str, encoding: gimli::DwAte, bytes: &[u8]) -> String {
    if encoding == constants::DW_ATE_complex_float && bytes.len() % 2 == 0 {
        let (real, imaginary) = bytes.split_at(bytes.len() / 2);
        let part = |half: &[u8]| format_named_base(name, constants::DW_ATE_float, half);
        return format!("{} + {}i", part(real), part(imaginary));
    }
    if encoding == constants::DW_ATE_float {
        if let Some(text) = WideFloat::for_type(name, bytes.len()).and_then(|wide| format_wide_float(wide, bytes)) {
            return text;
        }
    }
    format_base(encoding, bytes)
}

/// Formats a base type's bytes.
pub fn format_base(encoding: gimli::DwAte, bytes: &[u8]) -> String {
    match encoding {
        constants::DW_ATE_boolean => match le_unsigned(bytes) {
            0 => "false".to_owned(),
            1 => "true".to_owned(),
            other => other.to_string(),
        },
        // gdb prints a NaN with its fraction bits: `-nan(0x8000000000000)`.
        constants::DW_ATE_float if bytes.len() == 4 && f32::from_bits(le_unsigned(bytes) as u32).is_nan() => {
            let bits = le_unsigned(bytes);
            let sign = if bits >> 31 == 1 { "-" } else { "" };
            format!("{sign}nan({:#x})", bits & 0x7f_ffff)
        }
        constants::DW_ATE_float if bytes.len() == 8 && f64::from_bits(le_unsigned(bytes)).is_nan() => {
            let bits = le_unsigned(bytes);
            let sign = if bits >> 63 == 1 { "-" } else { "" };
            format!("{sign}nan({:#x})", bits & 0xf_ffff_ffff_ffff)
        }
        constants::DW_ATE_float if bytes.len() == 4 => {
            format_float(f64::from(f32::from_bits(le_unsigned(bytes) as u32)), 9)
        }
        constants::DW_ATE_float if bytes.len() == 8 => format_float(f64::from_bits(le_unsigned(bytes)), 17),
        // Wider floats need the type's name; see format_named_base.
        constants::DW_ATE_float => format!("<float of {} bytes>", bytes.len()),
        constants::DW_ATE_signed_char if bytes.len() == 1 => {
            format!("{} {}", le_signed(bytes), char_literal(bytes[0]))
        }
        constants::DW_ATE_unsigned_char if bytes.len() == 1 => {
            format!("{} {}", bytes[0], char_literal(bytes[0]))
        }
        constants::DW_ATE_signed | constants::DW_ATE_signed_char => {
            if bytes.len() == 16 {
                let mut wide = [0u8; 16];
                wide.copy_from_slice(bytes);
                return i128::from_le_bytes(wide).to_string();
            }
            le_signed(bytes).to_string()
        }
        _ => {
            if bytes.len() == 16 {
                let mut wide = [0u8; 16];
                wide.copy_from_slice(bytes);
                return u128::from_le_bytes(wide).to_string();
            }
            le_unsigned(bytes).to_string()
        }
    }
}

/// Formats a floating-point number as C's `%.{precision}g`, which is what
/// gdb uses (9 significant digits for `float`, 17 for `double`).
pub fn format_float(value: f64, precision: usize) -> String {
    if value.is_nan() {
        return if value.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    if value.is_infinite() {
        return if value < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_fraction(&format!("{value:.decimals$}")).to_owned()
    }
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Returns the escape gdb uses for character `code` inside quotes, or
/// `None` when it prints as itself. Like gdb with an ASCII host character
/// set, codes outside printable ASCII print as three octal digits up to
/// 0777 and as `\x` and hex above.
fn escape(code: u32, quote: u8) -> Option<String> {
    Some(match code {
        0x0a => "\\n".into(),
        0x09 => "\\t".into(),
        0x0d => "\\r".into(),
        0x07 => "\\a".into(),
        0x08 => "\\b".into(),
        0x0c => "\\f".into(),
        0x0b => "\\v".into(),
        0x1b => "\\033".into(),
        0x5c => "\\\\".into(),
        _ if code == u32::from(quote) => format!("\\{}", quote as char),
        0x20..=0x7e => return None,
        0..=0o777 => format!("\\{code:03o}"),
        _ => format!("\\x{code:x}"),
    })
}

/// Formats one character as `'W'` or `'\000'`.
pub fn char_literal(byte: u8) -> String {
    code_literal(u32::from(byte))
}

/// Formats one character code as `'W'`, `'\000'` or `'\x263a'`.
pub fn code_literal(code: u32) -> String {
    match escape(code, b'\'') {
        Some(escaped) => format!("'{escaped}'"),
        None => format!("'{}'", char::from_u32(code).unwrap_or('?')),
    }
}

/// Formats one-byte characters as gdb prints strings: quoted segments,
/// with runs of more than `threshold` equal characters as
/// `'x' <repeats N times>`.
pub fn format_char_runs(bytes: &[u8], threshold: usize) -> String {
    let codes: Vec<u32> = bytes.iter().map(|&byte| u32::from(byte)).collect();
    format_code_runs(&codes, threshold, "")
}

/// Formats character codes as [`format_char_runs`] does, each literal
/// preceded by `prefix` (`L"wide"`, `U'x' <repeats 12 times>`).
pub fn format_code_runs(codes: &[u32], threshold: usize, prefix: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut quoted = String::new();
    let mut index = 0;
    while index < codes.len() {
        let code = codes[index];
        let run = codes[index..].iter().take_while(|&&other| other == code).count();
        if run > threshold {
            if !quoted.is_empty() {
                parts.push(format!("{prefix}\"{quoted}\""));
                quoted.clear();
            }
            parts.push(format!("{prefix}{} <repeats {run} times>", code_literal(code)));
            index += run;
            continue;
        }
        match escape(code, b'"') {
            Some(escaped) => quoted.push_str(&escaped),
            None => quoted.push(char::from_u32(code).unwrap_or('?')),
        }
        index += 1;
    }
    if !quoted.is_empty() {
        parts.push(format!("{prefix}\"{quoted}\""));
    }
    parts.join(", ")
}

/// Whether `ty` is printed as `...` in a frame line: gdb's default
/// `print frame-arguments scalars` hides aggregates and arrays.
pub fn is_aggregate(types: &TypeTable<'_>, ty: &TypeRef) -> bool {
    let stripped = types.strip(ty);
    match types.resolve(&stripped) {
        Type::Aggregate { .. } | Type::Array { .. } => true,
        Type::Reference { target, .. } => matches!(types.resolve_stripped(&target), Type::Aggregate { .. } | Type::Array { .. }),
        _ => false,
    }
}

/// The keyword and name a `ptype` of an aggregate starts with.
pub fn aggregate_heading(kind: AggregateKind, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{} {name}", kind.keyword()),
        None => kind.keyword().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::types::Enumerator;

    fn enumerators(values: &[(&str, i128)]) -> Vec<Enumerator> {
        values.iter().map(|(name, value)| Enumerator { name: (*name).into(), value: *value }).collect()
    }

    #[test]
    fn missing_pointer_prints_marker_alone() {
        let empty = gimli::EndianArcSlice::new(std::sync::Arc::from(&[][..]), gimli::RunTimeEndian::Little);
        let dwarf = gimli::Dwarf::load(|_| -> Result<_, gimli::Error> { Ok(empty.clone()) }).unwrap();
        let info = super::super::dwarf::DebugInfo::load(std::sync::Arc::new(dwarf));
        let memory = crate::unwind::memory::WordStack { base: 0x7000, words: Vec::new() };
        let symbols = SymbolTable::default();
        let printer = Printer::new(TypeTable { info: &info }, &memory, &symbols, PrintOptions::default());
        let pointer = TypeRef::PointerTo(Box::new(TypeRef::Builtin(Builtin::Int)));

        let optimized_out = Value::missing(pointer.clone(), Hole::OptimizedOut);
        assert_eq!(printer.top_level(&optimized_out), "<optimized out>");
        let not_saved = Value::missing(pointer.clone(), Hole::NotSaved { register: "rdi".into() });
        assert_eq!(printer.top_level(&not_saved), "<not saved>");
        let known = Value::from_bytes(pointer, 0x1000u64.to_le_bytes().to_vec());
        assert_eq!(printer.top_level(&known), "(int *) 0x1000");
    }

    #[test]
    fn char_formatting() {
        assert_eq!(format_base(constants::DW_ATE_signed_char, &[87]), "87 'W'");
        assert_eq!(format_base(constants::DW_ATE_signed_char, &[0]), "0 '\\000'");
        assert_eq!(format_base(constants::DW_ATE_signed_char, &[0xff]), "-1 '\\377'");
        assert_eq!(format_base(constants::DW_ATE_unsigned_char, b"\n"), "10 '\\n'");
        assert_eq!(format_base(constants::DW_ATE_signed_char, b"'"), "39 '\\''");
    }

    #[test]
    fn string_runs_fold() {
        assert_eq!(format_char_runs(b"hi", 10), "\"hi\"");
        let mut bytes = b"ab".to_vec();
        bytes.extend([0u8; 13]);
        assert_eq!(format_char_runs(&bytes, 10), "\"ab\", '\\000' <repeats 13 times>");
        assert_eq!(format_char_runs(b"a\"b\\", 10), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn wide_literals() {
        assert_eq!(code_literal(0x263a), "'\\x263a'");
        assert_eq!(code_literal(0o777), "'\\777'");
        assert_eq!(format_code_runs(&[u32::from(b'a'), 0, 0], 10, "U"), "U\"a\\000\\000\"");
        assert_eq!(format_code_runs(&[0x263a; 12], 10, "L"), "L'\\x263a' <repeats 12 times>");
    }

    #[test]
    fn enum_values() {
        let plain = enumerators(&[("RED", 0), ("GREEN", 1), ("BLUE", 2), ("BLACK", 3)]);
        assert_eq!(format_enum_value(1, &plain), "GREEN");
        assert_eq!(format_enum_value(7, &plain), "7");
        let flags = enumerators(&[("FLAG_A", 1), ("FLAG_B", 2), ("FLAG_C", 4)]);
        assert_eq!(format_enum_value(3, &flags), "(FLAG_A | FLAG_B)");
        assert_eq!(format_enum_value(9, &flags), "(FLAG_A | unknown: 0x8)");
        assert_eq!(format_enum_value(0, &flags), "0");
    }

    #[test]
    fn eflags_like_gdb() {
        assert_eq!(format_eflags(0x46), "[ IOPL=0 ZF PF ]");
        assert_eq!(format_eflags(0x3286), "[ IOPL=3 IF SF PF ]");
    }

    #[test]
    fn floats_like_printf_g() {
        assert_eq!(format_float(f64::from(std::f32::consts::PI), 9), "3.14159274");
        assert_eq!(format_float(std::f64::consts::PI, 17), "3.1415926535897931");
        assert_eq!(format_float(1.5, 17), "1.5");
        assert_eq!(format_float(1e20, 17), "1e+20");
        assert_eq!(format_float(0.0001, 17), "0.0001");
        assert_eq!(format_float(-2.5e-7, 9), "-2.50000000e-07".replace("2.50000000", "2.5").as_str());
    }
}
