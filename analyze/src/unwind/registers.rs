//! The registers of one frame, each known or unknown.

use stardump_format::model::dwarf_reg;
use stardump_format::VcpuState;

/// Number of DWARF register columns the unwinder tracks: rax..r15 (0-15) and
/// the return address column (16), which is rip.
pub const TRACKED_REGISTERS: usize = 17;

/// Names of the tracked registers, by DWARF number.
pub const REGISTER_NAMES: [&str; TRACKED_REGISTERS] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
    "r13", "r14", "r15", "rip",
];

/// DWARF numbers of the registers a callee preserves in the System V x86_64
/// ABI: rbx, rbp and r12-r15. Every strategy recovers rsp and rip itself.
pub const CALLEE_SAVED: [u16; 6] = [dwarf_reg::RBX, dwarf_reg::RBP, 12, 13, 14, 15];

/// Register values of one frame, by DWARF number; `None` is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registers {
    values: [Option<u64>; TRACKED_REGISTERS],
}

impl Registers {
    /// Returns all general registers and rip of a vCPU, all known.
    pub fn from_vcpu(vcpu: &VcpuState) -> Registers {
        let mut registers = Registers::default();
        for number in 0..TRACKED_REGISTERS as u16 {
            registers.set(number, vcpu.dwarf_register(number));
        }
        registers
    }

    /// Returns register `number`, or `None` when it is unknown or not tracked.
    pub fn get(&self, number: u16) -> Option<u64> {
        self.values.get(usize::from(number)).copied().flatten()
    }

    /// Sets register `number`; untracked numbers are ignored.
    pub fn set(&mut self, number: u16, value: Option<u64>) {
        if let Some(slot) = self.values.get_mut(usize::from(number)) {
            *slot = value;
        }
    }

    /// The instruction pointer (the return address column).
    pub fn rip(&self) -> Option<u64> {
        self.get(dwarf_reg::RA)
    }

    /// The stack pointer.
    pub fn rsp(&self) -> Option<u64> {
        self.get(dwarf_reg::RSP)
    }

    /// The frame pointer.
    pub fn rbp(&self) -> Option<u64> {
        self.get(dwarf_reg::RBP)
    }

    /// Returns the known registers as `(name, value)` pairs in DWARF order.
    pub fn known(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REGISTER_NAMES
            .iter()
            .zip(self.values.iter())
            .filter_map(|(name, value)| value.map(|value| (*name, value)))
    }

    /// Returns a caller's registers that only keep the callee-saved registers
    /// of `self`; the caller fills in rsp and rip.
    pub fn callee_saved_only(&self) -> Registers {
        let mut caller = Registers::default();
        for number in CALLEE_SAVED {
            caller.set(number, self.get(number));
        }
        caller
    }
}
