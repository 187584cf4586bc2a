//! Byte offsets of the Xen structures that the capture reads field by
//! field: the HVM save records and `struct hvm_hw_cpu`, as Xen 4.17's
//! public headers lay them out on x86_64. The xen-sys crate has no HVM save
//! records; `vcpu_guest_context` comes from it, and stardump_format reads
//! that structure. `capture/tests/xen_layout.rs` compares every offset here
//! with the C compiler's `offsetof`.

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
