//! Byte offsets of the Xen structures that the capture reads field by
//! field: the 64-bit PV `vcpu_guest_context`, the HVM save records and
//! `struct hvm_hw_cpu`, all as Xen 4.17's public headers lay them out on
//! x86_64. `capture/tests/xen_layout.rs` compares every offset here with
//! the C compiler's `offsetof`.

/// `vcpu_guest_context` (public/arch-x86/xen.h) as `xc_vcpu_getcontext`
/// returns it for a 64-bit PV guest, and for an HVM or PVH guest, whose
/// vCPUs Xen describes in the same structure.
pub mod pv {
    /// Size of the whole structure.
    pub const SIZE: usize = 5168;
    /// `flags`: `VGCF_*` bits.
    pub const FLAGS: usize = 512;
    /// `user_regs`: `struct cpu_user_regs` (public/arch-x86/xen-x86_64.h).
    pub const USER_REGS: usize = 520;
    /// `ctrlreg[8]`: cr0..cr7; ctrlreg[1] is the user-mode page table.
    pub const CTRLREG: usize = 4984;
    /// `fs_base`.
    pub const FS_BASE: usize = 5144;
    /// `gs_base_kernel`: the gs base while the guest kernel runs.
    pub const GS_BASE_KERNEL: usize = 5152;
    /// `gs_base_user`: the gs base while guest user mode runs.
    pub const GS_BASE_USER: usize = 5160;

    /// `VGCF_in_kernel`: the vCPU was in guest kernel mode.
    pub const VGCF_IN_KERNEL: u64 = 1 << 2;
    /// `VGCF_online`: the vCPU is up.
    pub const VGCF_ONLINE: u64 = 1 << 5;

    /// Offsets inside `struct cpu_user_regs` (x86_64).
    pub mod regs {
        #![allow(missing_docs)] // The names are the header's field names.
        pub const R15: usize = 0;
        pub const R14: usize = 8;
        pub const R13: usize = 16;
        pub const R12: usize = 24;
        pub const RBP: usize = 32;
        pub const RBX: usize = 40;
        pub const R11: usize = 48;
        pub const R10: usize = 56;
        pub const R9: usize = 64;
        pub const R8: usize = 72;
        pub const RAX: usize = 80;
        pub const RCX: usize = 88;
        pub const RDX: usize = 96;
        pub const RSI: usize = 104;
        pub const RDI: usize = 112;
        pub const RIP: usize = 128;
        pub const CS: usize = 136;
        pub const RFLAGS: usize = 144;
        pub const RSP: usize = 152;
        pub const SS: usize = 160;
        pub const ES: usize = 168;
        pub const DS: usize = 176;
        pub const FS: usize = 184;
        pub const GS: usize = 192;
    }
}

/// HVM save records (public/hvm/save.h, public/arch-x86/hvm/save.h).
pub mod hvm {
    /// Size of `struct hvm_save_descriptor`: typecode u16, instance u16,
    /// length u32.
    pub const DESCRIPTOR_SIZE: usize = 8;
    /// `HVM_SAVE_CODE(END)`.
    pub const CODE_END: u16 = 0;
    /// `HVM_SAVE_CODE(CPU)`; the instance is the vCPU id.
    pub const CODE_CPU: u16 = 2;

    /// Offsets inside `struct hvm_hw_cpu`.
    pub mod cpu {
        #![allow(missing_docs)] // The names are the header's field names.
        pub const SIZE: usize = 1032;
        pub const RAX: usize = 512;
        pub const RBX: usize = 520;
        pub const RCX: usize = 528;
        pub const RDX: usize = 536;
        pub const RBP: usize = 544;
        pub const RSI: usize = 552;
        pub const RDI: usize = 560;
        pub const RSP: usize = 568;
        pub const R8: usize = 576;
        pub const R9: usize = 584;
        pub const R10: usize = 592;
        pub const R11: usize = 600;
        pub const R12: usize = 608;
        pub const R13: usize = 616;
        pub const R14: usize = 624;
        pub const R15: usize = 632;
        pub const RIP: usize = 640;
        pub const RFLAGS: usize = 648;
        pub const CR0: usize = 656;
        pub const CR2: usize = 664;
        pub const CR3: usize = 672;
        pub const CR4: usize = 680;
        pub const CS_SEL: usize = 736;
        pub const DS_SEL: usize = 740;
        pub const ES_SEL: usize = 744;
        pub const FS_SEL: usize = 748;
        pub const GS_SEL: usize = 752;
        pub const SS_SEL: usize = 756;
        pub const FS_BASE: usize = 832;
        pub const GS_BASE: usize = 840;
        /// The `KERNEL_GS_BASE` MSR, which `swapgs` exchanges with gs_base.
        pub const SHADOW_GS: usize = 944;
        pub const MSR_EFER: usize = 992;
    }
}

/// Reads a little-endian u64 at `offset`; `None` past the end of `bytes`.
pub fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// Reads a little-endian u32 at `offset`; `None` past the end of `bytes`.
pub fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Reads a little-endian u16 at `offset`; `None` past the end of `bytes`.
pub fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let field = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes(field.try_into().ok()?))
}
