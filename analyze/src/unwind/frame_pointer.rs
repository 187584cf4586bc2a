//! Unwinding by the frame-pointer chain.
//!
//! Code built with `-fno-omit-frame-pointer` starts each function with
//! `push rbp; mov rbp, rsp`, so `[rbp]` is the caller's rbp, `[rbp + 8]` the
//! return address and `rbp + 16` the caller's stack pointer. In a prologue or
//! epilogue, or in code built without frame pointers, rbp contains
//! something else, so the caller validates the result.

use stardump_format::model::dwarf_reg;
use stardump_format::MemoryError;

use super::memory::StackMemory;
use super::registers::Registers;

/// Errors from following the frame-pointer chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramePointerError {
    /// The saved rbp or return address could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// rbp is not 8-byte aligned, so it is not a frame pointer.
    #[error("frame pointer {rbp:#x} is not 8-byte aligned")]
    Misaligned {
        /// The rbp value.
        rbp: u64,
    },
    /// rbp is below the stack pointer, so it cannot point into this frame.
    #[error("frame pointer {rbp:#x} is below the stack pointer {rsp:#x}")]
    BelowStackPointer {
        /// The rbp value.
        rbp: u64,
        /// The rsp value.
        rsp: u64,
    },
    /// rbp + 16 overflows.
    #[error("frame pointer {rbp:#x} is at the top of the address space")]
    Overflow {
        /// The rbp value.
        rbp: u64,
    },
}

/// Unwinds one frame through rbp. Returns `Ok(None)` when rbp is unknown or
/// zero, which is how startup code ends the chain.
pub fn unwind(callee: &Registers, memory: &dyn StackMemory) -> Result<Option<Registers>, FramePointerError> {
    let Some(rbp) = callee.rbp().filter(|&rbp| rbp != 0) else {
        return Ok(None);
    };
    if rbp % 8 != 0 {
        return Err(FramePointerError::Misaligned { rbp });
    }
    if let Some(rsp) = callee.rsp() {
        if rbp < rsp {
            return Err(FramePointerError::BelowStackPointer { rbp, rsp });
        }
    }
    let return_address_slot = rbp.checked_add(8).ok_or(FramePointerError::Overflow { rbp })?;
    let caller_rsp = rbp.checked_add(16).ok_or(FramePointerError::Overflow { rbp })?;
    let caller_rbp = memory.read_u64(rbp)?;
    let return_address = memory.read_u64(return_address_slot)?;

    // The chain does not record where rbx and r12-r15 were saved, so only
    // the registers stored in the chain itself are known in the caller.
    let mut caller = Registers::default();
    caller.set(dwarf_reg::RBP, Some(caller_rbp));
    caller.set(dwarf_reg::RSP, Some(caller_rsp));
    caller.set(dwarf_reg::RA, Some(return_address));
    Ok(Some(caller))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::memory::WordStack;

    fn registers(rsp: u64, rbp: u64) -> Registers {
        let mut registers = Registers::default();
        registers.set(dwarf_reg::RSP, Some(rsp));
        registers.set(dwarf_reg::RBP, Some(rbp));
        registers
    }

    #[test]
    fn follows_saved_rbp_and_return_address() {
        let stack = WordStack { base: 0x1000, words: vec![0xdead, 0x1100, 0x4000_1234, 0] };
        let caller = unwind(&registers(0x1000, 0x1008), &stack).unwrap().unwrap();
        assert_eq!(caller.rbp(), Some(0x1100));
        assert_eq!(caller.rip(), Some(0x4000_1234));
        assert_eq!(caller.rsp(), Some(0x1018));
        assert_eq!(caller.get(dwarf_reg::RBX), None);
    }

    #[test]
    fn zero_rbp_ends_chain() {
        let stack = WordStack { base: 0x1000, words: vec![0; 4] };
        assert_eq!(unwind(&registers(0x1000, 0), &stack), Ok(None));
    }

    #[test]
    fn misaligned_rbp_rejected() {
        let stack = WordStack { base: 0x1000, words: vec![0; 4] };
        assert_eq!(
            unwind(&registers(0x1000, 0x1003), &stack),
            Err(FramePointerError::Misaligned { rbp: 0x1003 })
        );
    }

    #[test]
    fn rbp_below_rsp_rejected() {
        let stack = WordStack { base: 0x1000, words: vec![0; 4] };
        assert_eq!(
            unwind(&registers(0x1010, 0x1008), &stack),
            Err(FramePointerError::BelowStackPointer { rbp: 0x1008, rsp: 0x1010 })
        );
    }

    #[test]
    fn unreadable_return_address_names_address() {
        let stack = WordStack { base: 0x1000, words: vec![0x1100] };
        let error = unwind(&registers(0x1000, 0x1000), &stack).unwrap_err();
        assert_eq!(error.to_string(), "cannot read 8 bytes at 0x1008: page not captured");
    }
}
