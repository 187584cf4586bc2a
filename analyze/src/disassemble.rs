//! x86_64 disassembly for `x/i`, in the AT&T syntax gdb 13 prints by
//! default (through GNU libopcodes), decoded by iced-x86.
//!
//! Each line is `   0x401033 <main+19>:\tcall   0x401180 <walk>`: `=> `
//! instead of the three leading spaces on the selected frame's pc, the
//! address with its symbol, the mnemonic padded to six columns and the
//! operands. A branch target gets its `<symbol+offset>`, and a
//! rip-relative memory operand gets gdb's `# 0x… <symbol>` comment with the
//! address it refers to. Bytes that do not decode print as `(bad)` and
//! occupy one byte, as in libopcodes.
//!
//! Labels follow gdb's `print asm-demangle off`: a C++ function is named
//! by its linkage name (`<_Z4walkP4Nodei+4>`), a C one by its name.
//!
//! The caller reads the memory; this module only formats what it is given.

use iced_x86::{Code, Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, OpKind, Register};

use gimli::{constants, Reader as _};

use crate::modules::ModuleSet;
use crate::symbolize::symbolize;
use crate::variables::dwarf::{DebugInfo, DieId};
use crate::variables::scope;
use crate::variables::symbols::{SymbolLocation, SymbolTable};
use crate::variables::types::TypeTable;

/// Maximum length of an x86 instruction, in bytes.
pub const MAX_INSTRUCTION_BYTES: usize = 15;

/// The legacy prefix bytes of x86: operand and address size, segment
/// overrides, lock and the rep prefixes.
const LEGACY_PREFIXES: [u8; 11] = [0x66, 0x67, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0xf0, 0xf2, 0xf3];

/// Column width libopcodes pads the mnemonic to (`mov` + 4 spaces).
const MNEMONIC_WIDTH: usize = 6;

/// One decoded instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disassembled {
    /// Its length in bytes; 1 for undecodable bytes.
    pub len_bytes: usize,
    /// The text after the address label: `mov    %rsp,%rbp`.
    pub text: String,
}

/// Formats instructions as gdb's libopcodes does.
pub struct Disassembler<'a> {
    formatter: GasFormatter,
    symbols: &'a SymbolTable,
    info: Option<&'a DebugInfo>,
    modules: Option<&'a ModuleSet>,
}

impl<'a> Disassembler<'a> {
    /// Creates a disassembler that names addresses with `symbols`.
    pub fn new(symbols: &'a SymbolTable) -> Disassembler<'a> {
        let mut formatter = GasFormatter::new();
        let options = formatter.options_mut();
        options.set_hex_prefix("0x");
        options.set_hex_suffix("");
        options.set_uppercase_hex(false);
        options.set_small_hex_numbers_in_decimal(false);
        options.set_add_leading_zero_to_hex_numbers(false);
        options.set_branch_leading_zeros(false);
        options.set_displacement_leading_zeros(false);
        options.set_leading_zeros(false);
        options.set_signed_memory_displacements(true);
        options.set_always_show_scale(false);
        options.set_show_zero_displacements(true);
        options.set_show_branch_size(false);
        options.set_rip_relative_addresses(true);
        options.set_space_after_operand_separator(false);
        options.set_gas_show_mnemonic_size_suffix(false);
        options.set_gas_space_after_memory_operand_comma(false);
        Disassembler { formatter, symbols, info: None, modules: None }
    }

    /// Names functions by their DWARF linkage names too, as gdb does when
    /// the address is in a function DWARF describes.
    pub fn with_debug_info(mut self, info: &'a DebugInfo) -> Disassembler<'a> {
        self.info = Some(info);
        self
    }

    /// Names functions of a process's shared objects by their DWARF names
    /// too (`__GI_abort` rather than the symbol table's `abort`), as gdb
    /// does when a library's debug file is found.
    pub fn with_modules(mut self, modules: &'a ModuleSet) -> Disassembler<'a> {
        self.modules = Some(modules);
        self
    }

    /// Returns gdb's `<name+offset>` for run-time address `address` in
    /// disassembly. Inside a DWARF function the function names it, unless
    /// an ELF symbol lies between the function's entry and `address`.
    pub fn label(&self, address: u64) -> Option<String> {
        let location = self.symbols.locate(address);
        if let Some(location) = location.filter(|location| location.file.is_some()) {
            return Some(self.shared_object_label(address, location));
        }
        let elf = location.map(|location| (location.symbol, location.offset));
        // DWARF and the symbol table are in file addresses.
        let address = address.wrapping_sub(self.symbols.load_bias());
        let function = self.info.and_then(|info| {
            let function = scope::scopes_at(info, address).last()?.physical_function;
            let entry = info.ranges(function).first()?.start;
            Some((info, function, entry))
        });
        let (name, start) = match (function, elf) {
            (Some((_, _, entry)), Some((symbol, _))) if symbol.address > entry => {
                (symbol.linkage_name.clone(), symbol.address)
            }
            (Some((info, function, entry)), _) => (linkage_name(info, function)?, entry),
            (None, Some((symbol, _))) => (symbol.linkage_name.clone(), symbol.address),
            (None, None) => return None,
        };
        let offset = address.checked_sub(start)?;
        Some(if offset == 0 { format!("<{name}>") } else { format!("<{name}+{offset}>") })
    }

    /// Returns the label of `address` in a shared object, which `location`
    /// names. With the module's DWARF, the physical function's name replaces
    /// the symbol's, as in gdb. A C++ symbol keeps its mangled name, which
    /// gdb prints too, and so does a compiler-split part such as
    /// `abort.cold`, which gdb names by its own symbol. NOTE: the offset is
    /// from the symbol, where gdb counts from the function's entry, so the
    /// two differ for a function whose entry has no symbol.
    fn shared_object_label(&self, address: u64, location: SymbolLocation<'_>) -> String {
        let linkage_name = &location.symbol.linkage_name;
        let dwarf_name = self
            .modules
            .filter(|_| !linkage_name.starts_with("_Z") && !linkage_name.contains('.'))
            .and_then(|modules| modules.module_for(address))
            .filter(|module| module.image.has_debug_info())
            .and_then(|module| symbolize(&module.image, module.file_address(address)).pop())
            .filter(|frame| frame.symbol_offset.is_none())
            .and_then(|frame| frame.function);
        let name = dwarf_name.as_deref().unwrap_or(linkage_name);
        match location.offset {
            0 => format!("<{name}>"),
            offset => format!("<{name}+{offset}>"),
        }
    }

    /// Decodes the instruction at the start of `bytes`, which were read at
    /// `address`. At the end of readable memory `bytes` may be shorter than
    /// the instruction, which then prints as `(bad)`. Returns `None` when
    /// `bytes` is empty.
    pub fn decode(&mut self, address: u64, bytes: &[u8]) -> Option<Disassembled> {
        if bytes.is_empty() {
            return None;
        }
        let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return Some(Disassembled { len_bytes: 1, text: "(bad)".to_owned() });
        }
        let mut text = self.format(&instruction);
        // libopcodes writes each operand-size prefix beyond the one the
        // instruction uses as `data16` (`data16 cs nopw 0x0(%rax,%rax,1)`).
        let operand_size_prefixes = bytes
            .iter()
            .take(instruction.len())
            .take_while(|&&byte| LEGACY_PREFIXES.contains(&byte))
            .filter(|&&byte| byte == 0x66)
            .count();
        if operand_size_prefixes > 1 {
            text = format!("{}{text}", "data16 ".repeat(operand_size_prefixes - 1));
        }
        Some(Disassembled { len_bytes: instruction.len(), text })
    }

    fn format(&mut self, instruction: &Instruction) -> String {
        let mnemonic = self.mnemonic(instruction);
        let operands = self.operands(instruction);
        if operands.is_empty() {
            return mnemonic;
        }
        let mut text = format!("{mnemonic:<MNEMONIC_WIDTH$} {operands}");
        self.annotate(instruction, &mut text);
        text
    }

    /// Returns the mnemonic with its prefixes, as libopcodes writes them.
    fn mnemonic(&mut self, instruction: &Instruction) -> String {
        let mut mnemonic = String::new();
        self.formatter.format_mnemonic(instruction, &mut mnemonic);
        // In 64-bit mode these take 64-bit operands by default, so
        // libopcodes writes `push 0x8(%rip)`; iced-x86 finds the memory
        // operand's size ambiguous and writes `pushq`.
        if matches!(instruction.code(), Code::Push_rm64 | Code::Pop_rm64 | Code::Call_rm64 | Code::Jmp_rm64)
            && instruction.op0_kind() == OpKind::Memory
        {
            if let Some(stripped) = mnemonic.strip_suffix('q') {
                mnemonic = stripped.to_owned();
            }
        }
        // In 64-bit mode a cs, ds, es or ss override does nothing, and
        // libopcodes writes it as a prefix (`cs nopw 0x0(%rax,%rax,1)`),
        // which iced-x86 leaves out. On an indirect branch ds is `notrack`,
        // which iced-x86 writes itself.
        let segment = instruction.segment_prefix();
        if matches!(segment, Register::CS | Register::ES | Register::SS)
            || (segment == Register::DS && !mnemonic.starts_with("notrack"))
        {
            let name = self.formatter.format_register(segment).trim_start_matches('%').to_owned();
            mnemonic = format!("{name} {mnemonic}");
        }
        mnemonic
    }

    /// Returns the operands, source first, as libopcodes writes them.
    fn operands(&mut self, instruction: &Instruction) -> String {
        let mut operands = String::new();
        self.formatter.format_all_operands(instruction, &mut operands);
        // libopcodes writes the port of `in` and `out` as `(%dx)` and the
        // string instructions' implicit segments (`rep stos %al,%es:(%rdi)`).
        let code_name = format!("{:?}", instruction.code());
        if (code_name.starts_with("In_") || code_name.starts_with("Out_")) && code_name.contains("_DX") {
            operands = operands.replacen("%dx", "(%dx)", 1);
        }
        for operand in 0..instruction.op_count() {
            let (register, segment) = match instruction.op_kind(operand) {
                OpKind::MemoryESRDI => ("(%rdi)", "%es:"),
                OpKind::MemoryESEDI => ("(%edi)", "%es:"),
                OpKind::MemorySegRSI if instruction.segment_prefix() == Register::None => ("(%rsi)", "%ds:"),
                OpKind::MemorySegESI if instruction.segment_prefix() == Register::None => ("(%esi)", "%ds:"),
                _ => continue,
            };
            if !operands.contains(&format!("{segment}{register}")) {
                operands = operands.replacen(register, &format!("{segment}{register}"), 1);
            }
        }
        // The one-bit shifts and rotates (opcodes d0 and d1) have no
        // immediate byte, and libopcodes writes them as `sar %rsi`.
        if code_name.ends_with("_1") && instruction.op1_kind() == OpKind::Immediate8 {
            if let Some(rest) = operands.strip_prefix("$0x1,") {
                operands = rest.to_owned();
            }
        }
        // iced-x86 writes x87 arithmetic on st(1) and st without operands
        // (`fmulp`); libopcodes writes them, source first (`fmulp %st,%st(1)`).
        if operands.is_empty() && instruction.op_count() > 0 {
            let registers: Option<Vec<String>> = (0..instruction.op_count())
                .rev()
                .map(|operand| match instruction.op_kind(operand) {
                    OpKind::Register => match instruction.op_register(operand) {
                        Register::ST0 => Some("%st".to_owned()),
                        register => Some(self.formatter.format_register(register).to_owned()),
                    },
                    _ => None,
                })
                .collect();
            if let Some(registers) = registers {
                operands = registers.join(",");
            }
        }
        // libopcodes writes a scale of 1 after an index register
        // (`0x0(%rax,%rax,1)`). iced-x86 either omits it or, with
        // `always_show_scale`, also writes `(%rbp,)` when there is no index.
        if instruction.memory_index() != Register::None && instruction.memory_index_scale() == 1 {
            let index = format!(",{})", self.formatter.format_register(instruction.memory_index()));
            operands = operands.replacen(&index, &format!("{},1)", &index[..index.len() - 1]), 1);
        }
        operands
    }

    /// Appends the symbol of a branch target and the address a rip-relative
    /// operand refers to, as gdb does.
    fn annotate(&self, instruction: &Instruction, text: &mut String) {
        if instruction.op_count() == 1
            && matches!(instruction.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
        {
            if let Some(name) = self.label(instruction.near_branch_target()) {
                text.push(' ');
                text.push_str(&name);
            }
        }
        if instruction.is_ip_rel_memory_operand() {
            let target = instruction.ip_rel_memory_address();
            text.push_str(&format!("        # {target:#x}"));
            if let Some(name) = self.label(target) {
                text.push(' ');
                text.push_str(&name);
            }
        }
    }
}

/// Returns the name gdb 13 shows for DWARF function `function` in
/// disassembly: in C++ its `DW_AT_linkage_name`, or without one the name
/// with its parameter types (`main()`); in C its name.
fn linkage_name(info: &DebugInfo, function: DieId) -> Option<String> {
    if !info.unit(function).is_cplusplus() {
        return info.name(function);
    }
    for attribute in [constants::DW_AT_linkage_name, constants::DW_AT_MIPS_linkage_name] {
        if let Some(value) = info.attr(function, attribute) {
            let unit = &info.unit(function).unit;
            if let Ok(name) = info.dwarf().attr_string(unit, value) {
                return name.to_string_lossy().ok().map(|name| name.into_owned());
            }
        }
    }
    // NOTE: gdb builds this name with its own type printer; the names here
    // are checked only for `main()`, a function without parameters.
    let types = TypeTable { info };
    let params: Vec<String> = scope::parameters(info, function)
        .into_iter()
        .filter(|&param| !info.flag(param, constants::DW_AT_artificial))
        .map(|param| types.name(&types.type_of(param)))
        .collect();
    Some(format!("{}({})", info.qualified_name(function)?, params.join(", ")))
}

/// Formats the label gdb's `x/i` puts before an instruction: the pc marker
/// or three spaces, the address and its `<name+offset>` label.
pub fn line_label(address: u64, is_pc: bool, label: Option<String>) -> String {
    let marker = if is_pc { "=> " } else { "   " };
    match label {
        Some(name) => format!("{marker}{address:#x} {name}"),
        None => format!("{marker}{address:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        let symbols = SymbolTable::default();
        Disassembler::new(&symbols).decode(0x401000, bytes).unwrap().text
    }

    #[test]
    fn register_moves_in_att_order() {
        assert_eq!(text(&[0x48, 0x89, 0xe5]), "mov    %rsp,%rbp");
        assert_eq!(text(&[0x55]), "push   %rbp");
        assert_eq!(text(&[0xc3]), "ret");
    }

    #[test]
    fn memory_operands_like_libopcodes() {
        assert_eq!(text(&[0xc7, 0x45, 0xfc, 0, 0, 0, 0]), "movl   $0x0,-0x4(%rbp)");
        assert_eq!(text(&[0x0f, 0x1f, 0x40, 0x00]), "nopl   0x0(%rax)");
        assert_eq!(text(&[0x03, 0x01]), "add    (%rcx),%eax");
        assert_eq!(text(&[0x48, 0x63, 0x54, 0x84, 0x10]), "movslq 0x10(%rsp,%rax,4),%rdx");
        assert_eq!(text(&[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00]), "nopw   0x0(%rax,%rax,1)");
        assert_eq!(text(&[0x66, 0x90]), "xchg   %ax,%ax");
        assert_eq!(text(&[0xf3, 0x0f, 0x1e, 0xfa]), "endbr64");
        assert_eq!(text(&[0xff, 0x30]), "push   (%rax)");
        assert_eq!(text(&[0xff, 0x10]), "call   *(%rax)");
        assert_eq!(text(&[0xff, 0xe0]), "jmp    *%rax");
        assert_eq!(text(&[0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0]), "cs nopw 0x0(%rax,%rax,1)");
        assert_eq!(text(&[0xde, 0xc9]), "fmulp  %st,%st(1)");
        assert_eq!(text(&[0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0]), "data16 cs nopw 0x0(%rax,%rax,1)");
        assert_eq!(text(&[0x48, 0xd1, 0xfe]), "sar    %rsi");
        assert_eq!(text(&[0x48, 0xc1, 0xf8, 0x03]), "sar    $0x3,%rax");
        assert_eq!(text(&[0xec]), "in     (%dx),%al");
        assert_eq!(text(&[0x66, 0xef]), "out    %ax,(%dx)");
        assert_eq!(text(&[0xf3, 0xaa]), "rep stos %al,%es:(%rdi)");
        assert_eq!(text(&[0x48, 0xa5]), "movsq  %ds:(%rsi),%es:(%rdi)");
    }

    #[test]
    fn rip_relative_operand_gets_comment() {
        // add 0x36a9(%rip),%eax at 0x401041, 6 bytes long.
        let symbols = SymbolTable::default();
        let decoded = Disassembler::new(&symbols).decode(0x401041, &[0x03, 0x05, 0xa9, 0x36, 0, 0]).unwrap();
        assert_eq!(decoded.text, "add    0x36a9(%rip),%eax        # 0x4046f0");
    }

    #[test]
    fn branch_target_in_hex() {
        // call 0x401180 from 0x401033.
        let symbols = SymbolTable::default();
        let decoded = Disassembler::new(&symbols).decode(0x401033, &[0xe8, 0x48, 0x01, 0, 0]).unwrap();
        assert_eq!(decoded.text, "call   0x401180");
        assert_eq!(decoded.len_bytes, 5);
    }

    #[test]
    fn undecodable_bytes_are_bad() {
        let decoded = Disassembler::new(&SymbolTable::default()).decode(0x401000, &[0x06]).unwrap();
        assert_eq!(decoded, Disassembled { len_bytes: 1, text: "(bad)".to_owned() });
    }

    #[test]
    fn truncated_instruction_is_bad() {
        assert_eq!(text(&[0xe8, 0x48]), "(bad)");
    }
}
