//! The argument registers that a function's machine code never writes.
//!
//! At a call, a caller-saved register of the caller holds what the callee
//! finds in it on entry. CFI does not say whether the callee still holds
//! that value, so the unwinder leaves caller-saved registers unknown in a
//! caller's frame (gdb 13 assumes that they are unchanged). When no
//! instruction of the callee writes a register and the callee makes no call
//! of its own, its current value is still the one it was entered with,
//! which is the caller's value at the call. [`unwritten_registers`] finds
//! those registers by decoding the callee's code with iced-x86.
//!
//! The caller decides where the code comes from and which frames the result
//! applies to.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, Register};

/// DWARF numbers of the caller-saved registers that carry values into a
/// call in the System V x86_64 ABI: rax (the vector register count of a
/// variadic call), rdx, rcx, rsi, rdi, r8 and r9. r10 and r11 are left out
/// because glibc's lazy binding resolver, which runs between a call through
/// the PLT and the callee's entry, does not keep them: in glibc 2.36,
/// `_dl_runtime_resolve_xsavec` jumps to the callee through r11 and calls
/// `_dl_fixup` without saving r10.
pub const ARGUMENT_REGISTERS: [u16; 7] = [0, 1, 2, 4, 5, 8, 9];

/// Maximum number of code bytes decoded for one function, so a corrupt
/// range cannot make a lookup decode a whole library.
pub const MAX_CODE_BYTES: usize = 256 * 1024;

/// Returns the DWARF number of the 64-bit register that contains `register`
/// (`edi` and `dil` are parts of `rdi`), for the general registers.
fn dwarf_number(register: Register) -> Option<u16> {
    Some(match register.full_register() {
        Register::RAX => 0,
        Register::RDX => 1,
        Register::RCX => 2,
        Register::RBX => 3,
        Register::RSI => 4,
        Register::RDI => 5,
        Register::RBP => 6,
        Register::RSP => 7,
        Register::R8 => 8,
        Register::R9 => 9,
        Register::R10 => 10,
        Register::R11 => 11,
        Register::R12 => 12,
        Register::R13 => 13,
        Register::R14 => 14,
        Register::R15 => 15,
        _ => return None,
    })
}

/// Returns whether `instruction` may change any caller-saved register
/// without naming it: a call, which lets the callee change them, or a
/// system call, interrupt or trap, after which the kernel or a handler
/// resumes the code.
fn may_change_any_register(instruction: &Instruction) -> bool {
    matches!(
        instruction.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall | FlowControl::Interrupt | FlowControl::Exception | FlowControl::XbeginXabortXend
    ) || matches!(instruction.mnemonic(), Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Int | Mnemonic::Int1 | Mnemonic::Int3 | Mnemonic::Into)
}

/// Returns the registers of [`ARGUMENT_REGISTERS`] that no instruction of
/// a function writes. `code` lists the function's address ranges with
/// their bytes, its whole code including the parts inlined into it and a
/// split-off cold part. The result is empty when the function makes a
/// call or system call, when a byte does not decode, or when the code is
/// longer than [`MAX_CODE_BYTES`].
///
/// Every instruction counts, not only those between the function's entry
/// and the frame's pc, so the result may miss a register that is unchanged
/// on the path the frame took, but never lists one that the path changed.
pub fn unwritten_registers<'c>(code: impl IntoIterator<Item = (u64, &'c [u8])>) -> Vec<u16> {
    let mut written = [false; 16];
    let mut total_bytes = 0usize;
    let mut factory = InstructionInfoFactory::new();
    for (address, bytes) in code {
        total_bytes = total_bytes.saturating_add(bytes.len());
        if total_bytes > MAX_CODE_BYTES {
            tracing::debug!(total_bytes, "function too long to decode for unwritten registers");
            return Vec::new();
        }
        let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
        let mut instruction = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            if instruction.is_invalid() || may_change_any_register(&instruction) {
                tracing::trace!(address = format_args!("{:#x}", instruction.ip()), "instruction may change every register");
                return Vec::new();
            }
            for used in factory.info(&instruction).used_registers() {
                let writes = matches!(
                    used.access(),
                    OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                );
                if let (true, Some(number)) = (writes, dwarf_number(used.register())) {
                    written[usize::from(number)] = true;
                }
            }
        }
    }
    ARGUMENT_REGISTERS.into_iter().filter(|&number| !written[usize::from(number)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAX: u16 = 0;
    const RDX: u16 = 1;
    const RCX: u16 = 2;
    const RSI: u16 = 4;
    const RDI: u16 = 5;
    const R8: u16 = 8;
    const R9: u16 = 9;

    fn unwritten(bytes: &[u8]) -> Vec<u16> {
        unwritten_registers([(0x1000, bytes)])
    }

    #[test]
    fn leaf_reading_arguments() {
        // walk at -O2: test %esi,%esi; jle; xor %eax,%eax; xor %edx,%edx;
        // add (%rdi),%edx; mov 0x8(%rdi),%rdi; cmp %eax,%esi; ret.
        let code = [
            0x85, 0xf6, 0x7e, 0x10, 0x31, 0xc0, 0x31, 0xd2, 0x03, 0x17, 0x48, 0x8b, 0x7f, 0x08, 0x39, 0xc6, 0xc3,
        ];
        assert_eq!(unwritten(&code), vec![RCX, RSI, R8, R9]);
    }

    #[test]
    fn partial_register_write() {
        // mov %esi,%edi writes rdi; movslq %edi,%rdx reads it; ret.
        assert_eq!(unwritten(&[0x89, 0xf7, 0x48, 0x63, 0xd7, 0xc3]), vec![RAX, RCX, RSI, R8, R9]);
    }

    #[test]
    fn implicit_writes() {
        // cqto writes rdx; idiv %rcx writes rax and rdx; ret.
        assert_eq!(unwritten(&[0x48, 0x99, 0x48, 0xf7, 0xf9, 0xc3]), vec![RCX, RSI, RDI, R8, R9]);
    }

    #[test]
    fn call_changes_everything() {
        // call 0x1005; ret.
        assert_eq!(unwritten(&[0xe8, 0x00, 0x00, 0x00, 0x00, 0xc3]), Vec::<u16>::new());
    }

    #[test]
    fn indirect_call_changes_everything() {
        // call *%rax; ret.
        assert_eq!(unwritten(&[0xff, 0xd0, 0xc3]), Vec::<u16>::new());
    }

    #[test]
    fn system_call_changes_everything() {
        // syscall; ret.
        assert_eq!(unwritten(&[0x0f, 0x05, 0xc3]), Vec::<u16>::new());
    }

    #[test]
    fn undecodable_byte_changes_everything() {
        // 0x06 (push es) is invalid in 64-bit mode.
        assert_eq!(unwritten(&[0x06, 0xc3]), Vec::<u16>::new());
    }

    #[test]
    fn cold_part_counts() {
        // The hot part only reads rdi, the cold part writes it.
        let hot: &[u8] = &[0x48, 0x8b, 0x07, 0xc3];
        let cold: &[u8] = &[0x31, 0xff, 0xc3];
        assert_eq!(unwritten_registers([(0x1000, hot), (0x2000, cold)]), vec![RDX, RCX, RSI, R8, R9]);
    }

    #[test]
    fn code_too_long() {
        let nops = vec![0x90u8; MAX_CODE_BYTES + 1];
        assert_eq!(unwritten(&nops), Vec::<u16>::new());
    }
}
