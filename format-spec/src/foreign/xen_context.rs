//! Conversion of Xen's `vcpu_guest_context` for 64-bit x86 guests into a
//! [`VcpuState`]. The `xl dump-core` reader and the Xen capture backend
//! both use it. The dump-core's `.xen_prstatus` contains one structure per
//! vCPU, and the backend gets one from `xc_vcpu_getcontext` for a PV vCPU,
//! or for an HVM or PVH vCPU that is down.
//!
//! The byte offsets are [`xen_layout`](super::xen_layout)'s, not the
//! xen-sys crate's structures: xen-sys builds only on x86_64 and aarch64
//! hosts and gives the host architecture's layout, while the analyzer
//! reads x86_64 dumps on any host. The capture backend, which runs in an
//! x86_64 dom0, takes the structure from xen-sys and its test checks that
//! both agree.

use crate::model::{RegisterGroups, VcpuState};

use super::elf::{read_u16, read_u64};
use super::xen::XenGuestKind;
use super::xen_layout as layout;

/// cr0.PE and cr0.PG: protected mode and paging.
const CR0_PE_PG: u64 = (1 << 0) | (1 << 31);
/// cr4.PAE: physical address extension, required by long mode.
const CR4_PAE: u64 = 1 << 5;
/// EFER.LME and EFER.LMA: long mode enabled and active.
const EFER_LME_LMA: u64 = (1 << 8) | (1 << 10);

/// Bytes of the structure: `sizeof(vcpu_guest_context_x86_64_t)`.
pub const CONTEXT_LEN: usize = layout::CONTEXT_LEN;

/// Converts the `vcpu_guest_context` of vCPU `id` of a 64-bit guest, or
/// returns `None` when `context` is shorter than [`CONTEXT_LEN`].
///
/// `cr3` stays as Xen stores it: a PV guest's is a machine address
/// (`xen_pfn_to_cr3(mfn)`) that the caller translates, an HVM guest's a
/// guest-physical one.
///
/// Xen keeps a PV vCPU's two gs bases and switches them on guest
/// kernel/user transitions, so the active one depends on `VGCF_in_kernel`.
/// For an HVM vCPU, Xen stores the active base as `gs_base_kernel` when cs
/// is in ring 0 (`arch_get_info_guest` in xen/arch/x86/domctl.c, Xen 4.17).
///
/// A PV guest's `ctrlreg[0]` is its virtual cr0, without PE and PG, and the
/// structure has no EFER; a 64-bit PV guest always runs in long mode with
/// paging, so those bits are set. An HVM vCPU's cr0 is its own, and its
/// EFER is inferred from cr0 and cr4 (see [`infer_efer`]). cr8 is not in
/// the structure and stays 0.
pub fn vcpu_from_guest_context(id: u32, context: &[u8], kind: XenGuestKind) -> Option<VcpuState> {
    if context.len() < CONTEXT_LEN {
        return None;
    }
    use layout::user_regs::*;
    let reg = |offset: usize| read_u64(context, layout::CONTEXT_USER_REGS + offset);
    let selector = |offset: usize| read_u16(context, layout::CONTEXT_USER_REGS + offset);
    let ctrlreg = |index: usize| read_u64(context, layout::CONTEXT_CTRLREG + index * 8);
    let flags = read_u64(context, layout::CONTEXT_FLAGS);
    let cs = selector(CS);

    let in_kernel = match kind {
        XenGuestKind::Pv => flags & layout::VGCF_IN_KERNEL != 0,
        XenGuestKind::Hvm => cs & 3 == 0,
    };
    let gs_base_kernel = read_u64(context, layout::CONTEXT_GS_BASE_KERNEL);
    let gs_base_user = read_u64(context, layout::CONTEXT_GS_BASE_USER);
    let (gs_base, kernel_gs_base) =
        if in_kernel { (gs_base_kernel, gs_base_user) } else { (gs_base_user, gs_base_kernel) };

    let (cr0, efer) = match kind {
        XenGuestKind::Pv => (ctrlreg(0) | CR0_PE_PG, EFER_LME_LMA),
        XenGuestKind::Hvm => (ctrlreg(0), infer_efer(ctrlreg(0), ctrlreg(4))),
    };
    Some(VcpuState {
        id,
        thread_id: None,
        rax: reg(RAX),
        rbx: reg(RBX),
        rcx: reg(RCX),
        rdx: reg(RDX),
        rsi: reg(RSI),
        rdi: reg(RDI),
        rbp: reg(RBP),
        rsp: reg(RSP),
        r8: reg(R8),
        r9: reg(R9),
        r10: reg(R10),
        r11: reg(R11),
        r12: reg(R12),
        r13: reg(R13),
        r14: reg(R14),
        r15: reg(R15),
        rip: reg(RIP),
        rflags: reg(RFLAGS),
        cs,
        ss: selector(SS),
        ds: selector(DS),
        es: selector(ES),
        fs: selector(FS),
        gs: selector(GS),
        fs_base: read_u64(context, layout::CONTEXT_FS_BASE),
        gs_base,
        kernel_gs_base,
        cr0,
        cr2: ctrlreg(2),
        cr3: ctrlreg(3),
        cr4: ctrlreg(4),
        cr8: 0,
        efer,
        present: RegisterGroups { general: true, segment_bases: true, control: true },
    })
}

/// Returns whether a `vcpu_guest_context` has `VGCF_online`, which Xen
/// clears for a vCPU that is down; `None` when `context` ends before
/// `flags`.
pub fn context_online(context: &[u8]) -> Option<bool> {
    let end = layout::CONTEXT_FLAGS + 8;
    (context.len() >= end).then(|| read_u64(context, layout::CONTEXT_FLAGS) & layout::VGCF_ONLINE != 0)
}

/// Infers EFER for an HVM vCPU context, which lacks it: LME and LMA when
/// paging with PAE is on, otherwise 0.
///
/// NOTE: a 32-bit guest with PAE paging gets LME and LMA too, so its page
/// tables would be walked as 4-level ones. stardump models x86_64 vCPUs
/// only.
pub fn infer_efer(cr0: u64, cr4: u64) -> u64 {
    let paging = cr0 & CR0_PE_PG == CR0_PE_PG;
    if paging && cr4 & CR4_PAE != 0 {
        EFER_LME_LMA
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efer_inferred_from_paging_and_pae() {
        assert_eq!(infer_efer(0x8000_0011, 0x20), EFER_LME_LMA);
        assert_eq!(infer_efer(0x8000_0011, 0), 0);
        assert_eq!(infer_efer(0x11, 0x20), 0);
    }

    #[test]
    fn short_context_is_rejected() {
        let context = vec![0u8; CONTEXT_LEN - 1];
        assert_eq!(vcpu_from_guest_context(0, &context, XenGuestKind::Pv), None);
        assert_eq!(context_online(&context[..layout::CONTEXT_FLAGS + 7]), None);
    }
}
