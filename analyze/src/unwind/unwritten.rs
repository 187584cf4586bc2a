//! The argument registers that a function's machine code never writes.
//!
//! At a call, a caller-saved register of the caller holds what the callee
//! finds in it on entry. CFI does not say whether the callee still holds
//! that value, so the unwinder leaves caller-saved registers unknown in a
//! caller's frame (gdb 13 assumes that they are unchanged). When no
//! instruction of the callee, or of a function it calls, writes a register,
//! its current value is still the one it was entered with, which is the
//! caller's value at the call. [`unwritten_registers`] finds those
//! registers by decoding the code with iced-x86.
//!
//! The caller decides where the code comes from and which frames the result
//! applies to.

use std::collections::HashSet;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register};

/// DWARF numbers of the caller-saved registers that carry values into a
/// call in the System V x86_64 ABI: rax (the vector register count of a
/// variadic call), rdx, rcx, rsi, rdi, r8 and r9. r10 and r11 are left out
/// because glibc's lazy binding resolver runs between a call through the
/// PLT and the callee's entry, and it does not keep them. In glibc 2.36,
/// `_dl_runtime_resolve_xsavec` jumps to the callee through r11 and calls
/// `_dl_fixup` without saving r10.
pub const ARGUMENT_REGISTERS: [u16; 7] = [0, 1, 2, 4, 5, 8, 9];

/// Maximum number of code bytes decoded for one question, over the function
/// and the functions it calls, so a corrupt range cannot make a lookup
/// decode a whole library.
pub const MAX_CODE_BYTES: usize = 256 * 1024;

/// Maximum depth of calls followed from the function.
const MAX_CALL_DEPTH: usize = 8;

/// The code of one function: each address range with its bytes.
pub type FunctionCode<'c> = Vec<(u64, &'c [u8])>;

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

/// Returns whether `instruction` may change any register without naming
/// it: a system call, interrupt or trap, after which the kernel or a
/// handler resumes the code, or a transaction abort.
fn may_change_any_register(instruction: &Instruction) -> bool {
    matches!(instruction.flow_control(), FlowControl::Interrupt | FlowControl::Exception | FlowControl::XbeginXabortXend)
        || matches!(
            instruction.mnemonic(),
            Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Int | Mnemonic::Int1 | Mnemonic::Int3 | Mnemonic::Into
        )
}

/// Returns the target of a direct call or jump.
fn direct_target(instruction: &Instruction) -> Option<u64> {
    matches!(instruction.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
        .then(|| instruction.near_branch_target())
}

/// One question: the registers a function and its callees may write.
struct Scan<'s, 'c> {
    /// Returns the code of the function that starts at an address.
    code_of: &'s dyn Fn(u64) -> Option<FunctionCode<'c>>,
    /// Entries of the functions already followed, whose writes the result
    /// already counts.
    followed: HashSet<u64>,
    /// Code bytes decoded so far, against [`MAX_CODE_BYTES`].
    decoded_bytes: usize,
    factory: InstructionInfoFactory,
}

impl Scan<'_, '_> {
    /// Marks in `written` the registers that `code` may write, with the
    /// functions it calls, `depth` calls below the frame's function.
    /// Returns `None` when that may be any register.
    fn mark_written(&mut self, code: &[(u64, &[u8])], depth: usize, written: &mut [bool; 16]) -> Option<()> {
        let inside = |target: u64| code.iter().any(|&(start, bytes)| target >= start && target - start < bytes.len() as u64);
        for &(address, bytes) in code {
            self.decoded_bytes = self.decoded_bytes.saturating_add(bytes.len());
            if self.decoded_bytes > MAX_CODE_BYTES {
                tracing::debug!(decoded_bytes = self.decoded_bytes, "too much code to decode for unwritten registers");
                return None;
            }
            let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
            let mut instruction = Instruction::default();
            while decoder.can_decode() {
                decoder.decode_out(&mut instruction);
                if instruction.is_invalid() || may_change_any_register(&instruction) {
                    tracing::trace!(address = format_args!("{:#x}", instruction.ip()), "instruction may change every register");
                    return None;
                }
                match instruction.flow_control() {
                    FlowControl::Call => self.mark_callee(direct_target(&instruction)?, depth, written)?,
                    FlowControl::IndirectCall => return None,
                    // The frame's own function reached its pc without
                    // leaving through a jump, but a callee returns only
                    // after the code it jumps to has run.
                    FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch if depth > 0 => {
                        let target = direct_target(&instruction)?;
                        if !inside(target) {
                            self.mark_callee(target, depth, written)?;
                        }
                    }
                    FlowControl::IndirectBranch if depth > 0 => return None,
                    _ => {}
                }
                for used in self.factory.info(&instruction).used_registers() {
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
        Some(())
    }

    /// Marks the registers that the function entered at `target` may write.
    fn mark_callee(&mut self, target: u64, depth: usize, written: &mut [bool; 16]) -> Option<()> {
        if depth >= MAX_CALL_DEPTH {
            return None;
        }
        // A function followed before, or one that calls itself, adds no
        // register that the result does not already count.
        if !self.followed.insert(target) {
            return Some(());
        }
        let code = (self.code_of)(target)?;
        self.mark_written(&code, depth + 1, written)
    }
}

/// Returns the registers of [`ARGUMENT_REGISTERS`] that no instruction of a
/// function writes, nor any function it calls. `code` lists the function's
/// address ranges with their bytes: its whole code, including the parts
/// inlined into it and a split-off cold part. `code_of` returns the code of
/// the function that starts at an address, for its direct calls, and
/// `None` where that is not known (a PLT stub). The result is empty when
/// the function or a callee makes an indirect call or a system call, calls
/// a function without code, has a byte that does not decode, or when there
/// is more code than [`MAX_CODE_BYTES`].
///
/// Every instruction counts, not only those between the function's entry
/// and the frame's pc, so the result may miss a register that is unchanged
/// on the path the frame took, but never lists one that the path changed.
pub fn unwritten_registers<'c>(code: &[(u64, &'c [u8])], code_of: &dyn Fn(u64) -> Option<FunctionCode<'c>>) -> Vec<u16> {
    let mut scan = Scan { code_of, followed: HashSet::new(), decoded_bytes: 0, factory: InstructionInfoFactory::new() };
    let mut written = [false; 16];
    if scan.mark_written(code, 0, &mut written).is_none() {
        return Vec::new();
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
        unwritten_registers(&[(0x1000, bytes)], &|_| None)
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
    fn call_of_unknown_function() {
        // call 0x1005; ret.
        assert_eq!(unwritten(&[0xe8, 0x00, 0x00, 0x00, 0x00, 0xc3]), Vec::<u16>::new());
    }

    /// `call 0x2000; ret` at 0x1000, with `callee` at 0x2000.
    fn unwritten_with_callee(callee: &'static [u8]) -> Vec<u16> {
        let caller: &[u8] = &[0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xc3];
        unwritten_registers(&[(0x1000, caller)], &|target| (target == 0x2000).then(|| vec![(0x2000, callee)]))
    }

    #[test]
    fn call_of_function_that_writes() {
        // xor %edi,%edi; ret.
        assert_eq!(unwritten_with_callee(&[0x31, 0xff, 0xc3]), vec![RAX, RDX, RCX, RSI, R8, R9]);
    }

    #[test]
    fn call_of_function_that_only_reads() {
        // mov %rdi,(%rsi); ret.
        assert_eq!(unwritten_with_callee(&[0x48, 0x89, 0x3e, 0xc3]), vec![RAX, RDX, RCX, RSI, RDI, R8, R9]);
    }

    #[test]
    fn recursive_callee() {
        // call 0x2000 (itself); ret.
        assert_eq!(unwritten_with_callee(&[0xe8, 0xfb, 0xff, 0xff, 0xff, 0xc3]), vec![RAX, RDX, RCX, RSI, RDI, R8, R9]);
    }

    #[test]
    fn callee_tail_call_followed() {
        // The callee jumps to 0x3000, which nothing describes: jmp 0x3000.
        assert_eq!(unwritten_with_callee(&[0xe9, 0xfb, 0x0f, 0x00, 0x00]), Vec::<u16>::new());
    }

    #[test]
    fn own_jump_out_not_followed() {
        // The frame's function reached its pc without taking the jump out
        // (jmp 0x3000), which only ends it.
        assert_eq!(unwritten(&[0x48, 0x8b, 0x07, 0xe9, 0xf8, 0x1f, 0x00, 0x00]), vec![RDX, RCX, RSI, RDI, R8, R9]);
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
        assert_eq!(unwritten_registers(&[(0x1000, hot), (0x2000, cold)], &|_| None), vec![RDX, RCX, RSI, R8, R9]);
    }

    #[test]
    fn code_too_long() {
        let nops = vec![0x90u8; MAX_CODE_BYTES + 1];
        assert_eq!(unwritten(&nops), Vec::<u16>::new());
    }
}
