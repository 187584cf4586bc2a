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
//! The caller reads the memory; this module only formats what it is given.

use iced_x86::{Code, Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, OpKind, Register};

use crate::variables::symbols::SymbolTable;

/// Maximum length of an x86 instruction, in bytes.
pub const MAX_INSTRUCTION_BYTES: usize = 15;

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
        Disassembler { formatter, symbols }
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
        Some(Disassembled { len_bytes: instruction.len(), text: self.format(&instruction) })
    }

    fn format(&mut self, instruction: &Instruction) -> String {
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
        let mut operands = String::new();
        self.formatter.format_all_operands(instruction, &mut operands);
        // libopcodes writes a scale of 1 after an index register
        // (`0x0(%rax,%rax,1)`). iced-x86 either omits it or, with
        // `always_show_scale`, also writes `(%rbp,)` when there is no index.
        if instruction.memory_index() != Register::None && instruction.memory_index_scale() == 1 {
            let index = format!(",{})", self.formatter.format_register(instruction.memory_index()));
            operands = operands.replacen(&index, &format!("{},1)", &index[..index.len() - 1]), 1);
        }
        if operands.is_empty() {
            return mnemonic;
        }
        let mut text = format!("{mnemonic:<MNEMONIC_WIDTH$} {operands}");

        // A direct branch or call names its target, as gdb does.
        if instruction.op_count() == 1
            && matches!(instruction.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
        {
            if let Some(name) = self.symbols.annotation(instruction.near_branch_target()) {
                text.push(' ');
                text.push_str(&name);
            }
        }
        if instruction.is_ip_rel_memory_operand() {
            let target = instruction.ip_rel_memory_address();
            text.push_str(&format!("        # {target:#x}"));
            if let Some(name) = self.symbols.annotation(target) {
                text.push(' ');
                text.push_str(&name);
            }
        }
        text
    }
}

/// Formats the label gdb's `x/i` puts before an instruction: the pc marker
/// or three spaces, the address and its symbol.
pub fn line_label(address: u64, is_pc: bool, symbols: &SymbolTable) -> String {
    let marker = if is_pc { "=> " } else { "   " };
    match symbols.annotation(address) {
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
