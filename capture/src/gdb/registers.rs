//! Conversion of the registers a stub reports, by target-description name,
//! into the shared [`VcpuState`].

use stardump_format::VcpuState;
use tracing::debug;

/// Builds a [`VcpuState`] from `(name, little-endian bytes)` pairs.
///
/// Registers the model has no field for (x87, SSE) are ignored. A register
/// group counts as present when its defining register was reported: `rip`
/// for the general registers, `fs_base` for the segment bases, `cr3` for
/// the control registers.
pub fn vcpu_state_from_registers(id: u32, thread_id: Option<u64>, registers: &[(String, Vec<u8>)]) -> VcpuState {
    let mut state = VcpuState {
        id,
        thread_id,
        ..VcpuState::default()
    };
    for (name, bytes) in registers {
        let mut le = [0u8; 8];
        let len = bytes.len().min(8);
        le[..len].copy_from_slice(&bytes[..len]);
        let value = u64::from_le_bytes(le);
        // Selectors are 16 bits; QEMU reports them as 32-bit registers.
        let selector = value as u16;
        match name.as_str() {
            "rax" => state.rax = value,
            "rbx" => state.rbx = value,
            "rcx" => state.rcx = value,
            "rdx" => state.rdx = value,
            "rsi" => state.rsi = value,
            "rdi" => state.rdi = value,
            "rbp" => state.rbp = value,
            "rsp" => state.rsp = value,
            "r8" => state.r8 = value,
            "r9" => state.r9 = value,
            "r10" => state.r10 = value,
            "r11" => state.r11 = value,
            "r12" => state.r12 = value,
            "r13" => state.r13 = value,
            "r14" => state.r14 = value,
            "r15" => state.r15 = value,
            "rip" => {
                state.rip = value;
                state.present.general = true;
            }
            "eflags" | "rflags" => state.rflags = value,
            "cs" => state.cs = selector,
            "ss" => state.ss = selector,
            "ds" => state.ds = selector,
            "es" => state.es = selector,
            "fs" => state.fs = selector,
            "gs" => state.gs = selector,
            "fs_base" => {
                state.fs_base = value;
                state.present.segment_bases = true;
            }
            "gs_base" => state.gs_base = value,
            "k_gs_base" => state.kernel_gs_base = value,
            "cr0" => state.cr0 = value,
            "cr2" => state.cr2 = value,
            "cr3" => {
                state.cr3 = value;
                state.present.control = true;
            }
            "cr4" => state.cr4 = value,
            "cr8" => state.cr8 = value,
            "efer" => state.efer = value,
            _ => {}
        }
    }
    debug!(vcpu = id, rip = format_args!("{:#x}", state.rip), cr3 = format_args!("{:#x}", state.cr3), "registers");
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, value: u64, len: usize) -> (String, Vec<u8>) {
        (name.to_owned(), value.to_le_bytes()[..len].to_vec())
    }

    #[test]
    fn registers_fill_fields_by_name() {
        let registers = [
            reg("rip", 0xffff_ffff_8000_1000, 8),
            reg("eflags", 0x246, 4),
            reg("cs", 0x10, 4),
            reg("fs_base", 0x1234, 8),
            reg("cr3", 0x9000, 8),
            reg("xmm0", 7, 8),
        ];
        let state = vcpu_state_from_registers(1, Some(2), &registers);
        assert_eq!(state.id, 1);
        assert_eq!(state.thread_id, Some(2));
        assert_eq!(state.rip, 0xffff_ffff_8000_1000);
        assert_eq!(state.rflags, 0x246);
        assert_eq!(state.cs, 0x10);
        assert_eq!(state.fs_base, 0x1234);
        assert_eq!(state.cr3, 0x9000);
        assert!(state.present.general);
        assert!(state.present.segment_bases);
        assert!(state.present.control);
    }

    #[test]
    fn missing_groups_are_not_present() {
        let state = vcpu_state_from_registers(0, None, &[reg("rip", 1, 8)]);
        assert!(state.present.general);
        assert!(!state.present.control);
        assert!(!state.present.segment_bases);
    }
}
