//! Unwinding out of Xen's hypercall page.
//!
//! A Xen guest calls the hypervisor through a page that Xen fills with one
//! 32-byte stub per hypercall number when the guest boots. The image only
//! reserves the page under the symbol `hypercall_page`, so the stubs have
//! no CFI, and their frames have no frame pointer. A guest blocked in
//! `SCHEDOP_block` or shut down through `SCHEDOP_shutdown` stops inside
//! one, and a stack scan from there can pick up stale return addresses. The
//! stubs are short and fixed, so the caller follows from the offset of the
//! pc into its stub and the number of words pushed at that offset.
//!
//! The 64-bit PV stub (Xen's `hypercall_page_initialise_ring3_kernel`):
//!
//! ```text
//!  0: 51              push %rcx
//!  1: 41 53           push %r11
//!  3: b8 NN NN NN NN  mov  $NN, %eax
//!  8: 0f 05           syscall
//! 10: 41 5b           pop  %r11
//! 12: 59              pop  %rcx
//! 13: c3              ret
//! ```
//!
//! The HVM and PVH stub pushes nothing: `mov $NN, %eax`, then `vmcall`
//! (`0f 01 c1`, Intel) or `vmmcall` (`0f 01 d9`, AMD), then `ret`.

use stardump_format::model::dwarf_reg;
use stardump_format::MemoryError;

use super::memory::StackMemory;
use super::registers::Registers;

/// Bytes per hypercall stub.
const STUB_BYTES: u64 = 32;

/// Bytes of the hypercall page.
const PAGE_BYTES: u64 = 4096;

/// The symbol under which unikernels (Mini-OS, Unikraft, Stardust) reserve
/// the page.
pub const HYPERCALL_PAGE_SYMBOL: &str = "hypercall_page";

/// Errors from stepping out of a hypercall stub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HypercallError {
    /// The saved registers or the return address could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The pc is not at an instruction boundary of the stub.
    #[error("pc {pc:#x} is at offset {offset} of a hypercall stub, not at an instruction of the {kind} stub layout")]
    UnknownOffset {
        /// The pc.
        pc: u64,
        /// Its offset into the stub.
        offset: u64,
        /// The stub layout that was assumed.
        kind: &'static str,
    },
}

/// The stub layouts Xen writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StubKind {
    /// 64-bit PV: pushes rcx and r11 around `syscall`.
    Pv,
    /// HVM and PVH: `vmcall` or `vmmcall`, nothing pushed.
    Hvm,
}

impl StubKind {
    fn name(self) -> &'static str {
        match self {
            StubKind::Pv => "64-bit PV",
            StubKind::Hvm => "HVM",
        }
    }

    /// Returns the number of words the stub has pushed when the pc is at
    /// `offset`, or `None` when `offset` is not an instruction boundary.
    fn pushed_words(self, offset: u64) -> Option<u64> {
        match (self, offset) {
            (StubKind::Pv, 0 | 13) => Some(0),
            (StubKind::Pv, 1 | 12) => Some(1),
            (StubKind::Pv, 3 | 8 | 10) => Some(2),
            (StubKind::Hvm, 0 | 5 | 8) => Some(0),
            _ => None,
        }
    }
}

/// Finds the stub layout from the stub's first byte in memory. When the
/// page was not captured, the 64-bit PV layout is assumed, because `xl
/// dump-core` leaves out frames mainly of PV guests.
fn stub_kind(stub_start: u64, memory: &dyn StackMemory) -> StubKind {
    let mut first = [0u8; 1];
    match memory.read(stub_start, &mut first) {
        Ok(()) if first[0] == 0xb8 => StubKind::Hvm,
        Ok(()) => StubKind::Pv,
        Err(error) => {
            tracing::debug!(%error, "hypercall stub not captured; assuming the 64-bit PV layout");
            StubKind::Pv
        }
    }
}

/// Unwinds one frame out of the hypercall page at `page`. Returns `Ok(None)`
/// when the callee's pc is not in the page.
pub fn unwind(page: u64, callee: &Registers, memory: &dyn StackMemory) -> Result<Option<Registers>, HypercallError> {
    let (Some(pc), Some(rsp)) = (callee.rip(), callee.rsp()) else {
        return Ok(None);
    };
    let Some(offset_in_page) = pc.checked_sub(page).filter(|&offset| offset < PAGE_BYTES) else {
        return Ok(None);
    };
    let offset = offset_in_page % STUB_BYTES;
    let stub_start = pc - offset;
    let kind = stub_kind(stub_start, memory);
    let words = kind
        .pushed_words(offset)
        .ok_or(HypercallError::UnknownOffset { pc, offset, kind: kind.name() })?;

    let overflow = MemoryError::NotCaptured { address: rsp, len: 8 };
    let return_slot = rsp.checked_add(words * 8).ok_or(overflow.clone())?;
    let caller_sp = return_slot.checked_add(8).ok_or(overflow)?;

    // The stub restores rcx and r11 before it returns, and changes no
    // other register but rax (the result), which the ABI leaves to the
    // caller anyway.
    let mut caller = callee.clone();
    caller.set(dwarf_reg::RAX, None);
    if kind == StubKind::Pv {
        match offset {
            1 | 12 => caller.set(dwarf_reg::RCX, Some(memory.read_u64(rsp)?)),
            3 | 8 | 10 => {
                caller.set(11, Some(memory.read_u64(rsp)?));
                caller.set(dwarf_reg::RCX, Some(memory.read_u64(rsp + 8)?));
            }
            _ => {}
        }
    }
    caller.set(dwarf_reg::RA, Some(memory.read_u64(return_slot)?));
    caller.set(dwarf_reg::RSP, Some(caller_sp));
    Ok(Some(caller))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::memory::WordStack;

    const PAGE: u64 = 0xffff_ffff_8010_2000;
    const STACK: u64 = 0x7000_0000;

    fn registers(pc: u64) -> Registers {
        let mut registers = Registers::default();
        registers.set(dwarf_reg::RA, Some(pc));
        registers.set(dwarf_reg::RSP, Some(STACK));
        registers.set(dwarf_reg::RBX, Some(0xb0b0));
        registers
    }

    fn stack() -> WordStack {
        WordStack { base: STACK, words: vec![0x1111, 0x2222, 0x3333, 0x4444] }
    }

    #[test]
    fn pv_stub_after_syscall() {
        let caller = unwind(PAGE, &registers(PAGE + 29 * 32 + 10), &stack()).unwrap().unwrap();
        assert_eq!(caller.rip(), Some(0x3333));
        assert_eq!(caller.rsp(), Some(STACK + 24));
        assert_eq!(caller.get(11), Some(0x1111));
        assert_eq!(caller.get(dwarf_reg::RCX), Some(0x2222));
        assert_eq!(caller.get(dwarf_reg::RBX), Some(0xb0b0));
    }

    #[test]
    fn pv_stub_at_each_boundary() {
        for (offset, return_address) in [(0, 0x1111), (1, 0x2222), (3, 0x3333), (8, 0x3333), (12, 0x2222), (13, 0x1111)] {
            let caller = unwind(PAGE, &registers(PAGE + offset), &stack()).unwrap().unwrap();
            assert_eq!(caller.rip(), Some(return_address), "offset {offset}");
        }
    }

    #[test]
    fn pv_stub_mid_instruction() {
        let error = unwind(PAGE, &registers(PAGE + 2), &stack()).unwrap_err();
        assert!(matches!(error, HypercallError::UnknownOffset { offset: 2, .. }), "{error}");
    }

    #[test]
    fn pc_outside_page() {
        assert_eq!(unwind(PAGE, &registers(PAGE + PAGE_BYTES), &stack()), Ok(None));
        assert_eq!(unwind(PAGE, &registers(PAGE - 1), &stack()), Ok(None));
    }

    /// Memory holding one HVM stub (`mov $29, %eax; vmcall; ret`) at the
    /// start of the page, and the stack.
    struct HvmMemory {
        stack: WordStack,
    }

    impl StackMemory for HvmMemory {
        fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            const STUB: [u8; 9] = [0xb8, 29, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3];
            if address == PAGE && buf.len() <= STUB.len() {
                buf.copy_from_slice(&STUB[..buf.len()]);
                return Ok(());
            }
            self.stack.read(address, buf)
        }
    }

    #[test]
    fn hvm_stub_after_vmcall() {
        let memory = HvmMemory { stack: stack() };
        let caller = unwind(PAGE, &registers(PAGE + 8), &memory).unwrap().unwrap();
        assert_eq!(caller.rip(), Some(0x1111));
        assert_eq!(caller.rsp(), Some(STACK + 8));
        assert_eq!(caller.get(dwarf_reg::RCX), None);
    }
}
