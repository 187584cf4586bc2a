//! Conversion of Xen's vCPU contexts into [`VcpuState`]: the
//! `vcpu_guest_context` of `xc_vcpu_getcontext` (of a 64-bit PV vCPU, or
//! of an HVM or PVH vCPU that is down), and the `CPU` records of an HVM or
//! PVH domain's save context (`xc_domain_hvm_getcontext`).
//!
//! The `vcpu_guest_context` conversion is `stardump_format`'s, which the
//! `xl dump-core` reader also uses. This module's tests check it on
//! structures built with the xen-sys crate's definition, which is the one
//! the backend passes to libxenctrl.

use stardump_format::foreign::xen_context;
use stardump_format::foreign::XenGuestKind;
use stardump_format::{RegisterGroups, VcpuState};

use super::bindings::layout::{hvm, read_u16, read_u32, read_u64};

const ALL_GROUPS: RegisterGroups = RegisterGroups { general: true, segment_bases: true, control: true };

/// Converts the `vcpu_guest_context` of a 64-bit PV guest's vCPU `id`.
///
/// `cr3` keeps Xen's value, a machine address (`xen_pfn_to_cr3(mfn)`);
/// the caller translates it to a guest frame. Xen reports the guest's
/// virtual cr0, which lacks PE and PG, and no EFER; a 64-bit PV guest
/// always runs in long mode with paging, so both are set. The user-mode
/// page table in `ctrlreg[1]` is not kept.
///
/// Returns `None` when `bytes` is shorter than the structure.
pub fn vcpu_from_pv_context(id: u32, bytes: &[u8]) -> Option<VcpuState> {
    xen_context::vcpu_from_guest_context(id, bytes, XenGuestKind::Pv)
}

/// Converts the `vcpu_guest_context` that `xc_vcpu_getcontext` returns
/// for vCPU `id` of an HVM or PVH domain. The capture reads it only for a
/// vCPU missing from the save context, which leaves out every vCPU that is
/// down.
///
/// For an HVM vCPU, Xen's `arch_get_info_guest` (xen/arch/x86/domctl.c)
/// copies the general registers, the segment selectors and the fs base.
/// It also copies the guest's own cr0, cr2, cr3 (a guest-physical address)
/// and cr4. The gs base and its shadow are placed by the vCPU's ring: in
/// ring 0 `gs_base_kernel` is the active base. The structure has no EFER
/// and no cr8, so cr8 stays 0 as on the save-context path and EFER is
/// inferred from cr0 and cr4.
///
/// Returns `None` when `bytes` is shorter than the structure.
pub fn vcpu_from_hvm_vcpu_context(id: u32, bytes: &[u8]) -> Option<VcpuState> {
    xen_context::vcpu_from_guest_context(id, bytes, XenGuestKind::Hvm)
}

/// Returns whether a `vcpu_guest_context` has `VGCF_online`, which Xen
/// clears for a vCPU that is down. `None` when `bytes` ends before `flags`.
pub fn context_online(bytes: &[u8]) -> Option<bool> {
    xen_context::context_online(bytes)
}

/// Returns the vCPU ids from 0 to `max_vcpu_id` that `known` lacks, in
/// order: the vCPUs an HVM save context left out.
pub fn missing_vcpu_ids(known: &[VcpuState], max_vcpu_id: u32) -> Vec<u32> {
    (0..=max_vcpu_id).filter(|id| !known.iter().any(|vcpu| vcpu.id == *id)).collect()
}

/// A parse error in an HVM context blob: the offset and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvmContextError {
    /// Byte offset of the record that is wrong.
    pub offset: usize,
    /// The problem found.
    pub reason: String,
}

/// Converts `struct hvm_hw_cpu` of vCPU `id`. Returns `None` when `bytes`
/// ends before `msr_efer`, the last field read.
fn vcpu_from_hvm_cpu(id: u32, bytes: &[u8]) -> Option<VcpuState> {
    use hvm::cpu::*;
    let reg = |offset: usize| read_u64(bytes, offset);
    // The save record stores 16-bit selectors in 32-bit fields.
    let selector = |offset: usize| read_u32(bytes, offset).map(|value| value as u16);
    Some(VcpuState {
        id,
        thread_id: None,
        rax: reg(RAX)?,
        rbx: reg(RBX)?,
        rcx: reg(RCX)?,
        rdx: reg(RDX)?,
        rsi: reg(RSI)?,
        rdi: reg(RDI)?,
        rbp: reg(RBP)?,
        rsp: reg(RSP)?,
        r8: reg(R8)?,
        r9: reg(R9)?,
        r10: reg(R10)?,
        r11: reg(R11)?,
        r12: reg(R12)?,
        r13: reg(R13)?,
        r14: reg(R14)?,
        r15: reg(R15)?,
        rip: reg(RIP)?,
        rflags: reg(RFLAGS)?,
        cs: selector(CS_SEL)?,
        ss: selector(SS_SEL)?,
        ds: selector(DS_SEL)?,
        es: selector(ES_SEL)?,
        fs: selector(FS_SEL)?,
        gs: selector(GS_SEL)?,
        fs_base: reg(FS_BASE)?,
        gs_base: reg(GS_BASE)?,
        kernel_gs_base: reg(SHADOW_GS)?,
        cr0: reg(CR0)?,
        cr2: reg(CR2)?,
        cr3: reg(CR3)?,
        cr4: reg(CR4)?,
        // NOTE: cr8 (the TPR) lives in the LAPIC record, which is not read.
        cr8: 0,
        efer: reg(MSR_EFER)?,
        present: ALL_GROUPS,
    })
}

/// Returns the vCPUs of an HVM or PVH domain's save context, in vCPU id
/// order. Xen writes no `CPU` record for a vCPU that is down.
pub fn vcpus_from_hvm_context(blob: &[u8]) -> Result<Vec<VcpuState>, HvmContextError> {
    let mut vcpus = Vec::new();
    let mut offset = 0usize;
    loop {
        let error = |reason: String| HvmContextError { offset, reason };
        if offset == blob.len() {
            return Err(error("the context ends without an END record".to_owned()));
        }
        let (Some(typecode), Some(instance), Some(length)) =
            (read_u16(blob, offset), read_u16(blob, offset + 2), read_u32(blob, offset + 4))
        else {
            return Err(error(format!("truncated record descriptor in a context of {} bytes", blob.len())));
        };
        if typecode == hvm::CODE_END {
            break;
        }
        let data_start = offset + hvm::DESCRIPTOR_SIZE;
        let data = data_start
            .checked_add(length as usize)
            .and_then(|data_end| blob.get(data_start..data_end))
            .ok_or_else(|| error(format!("record type {typecode} of {length} bytes runs past the context's end")))?;
        if typecode == hvm::CODE_CPU {
            let vcpu = vcpu_from_hvm_cpu(u32::from(instance), data)
                .ok_or_else(|| error(format!("CPU record of vCPU {instance} is only {length} bytes")))?;
            if vcpus.iter().any(|known: &VcpuState| known.id == vcpu.id) {
                return Err(error(format!("second CPU record for vCPU {instance}")));
            }
            vcpus.push(vcpu);
        }
        offset = data_start + data.len();
    }
    vcpus.sort_by_key(|vcpu| vcpu.id);
    Ok(vcpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_u64(bytes: &mut [u8], offset: usize, value: u64) {
        bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u16(bytes: &mut [u8], offset: usize, value: u16) {
        bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Returns the bytes of `context`, as libxenctrl hands them over.
    fn bytes_of(context: &xen_sys::vcpu_guest_context) -> Vec<u8> {
        let size = std::mem::size_of::<xen_sys::vcpu_guest_context>();
        // SAFETY: the structure holds only integers and has no padding
        // bytes left uninitialised (it was zeroed before any field was set).
        unsafe { std::slice::from_raw_parts((context as *const xen_sys::vcpu_guest_context).cast::<u8>(), size) }
            .to_vec()
    }

    /// Returns an all-zero context.
    fn zeroed() -> xen_sys::vcpu_guest_context {
        // SAFETY: all-zero bytes are a valid value of a structure of integers.
        unsafe { std::mem::zeroed() }
    }

    /// Builds, with xen-sys's structure, a PV context whose registers
    /// contain recognisable values.
    fn pv_struct(in_kernel: bool) -> xen_sys::vcpu_guest_context {
        let mut context = zeroed();
        context.flags = u64::from(xen_sys::VGCF_online | if in_kernel { xen_sys::VGCF_in_kernel } else { 0 });
        let regs = &mut context.user_regs;
        regs.__bindgen_anon_3.rax = 0xa0;
        regs.__bindgen_anon_2.rbx = 0xb0;
        regs.__bindgen_anon_4.rcx = 0xc0;
        regs.__bindgen_anon_5.rdx = 0xd0;
        regs.__bindgen_anon_6.rsi = 0x51;
        regs.__bindgen_anon_7.rdi = 0xd1;
        regs.__bindgen_anon_1.rbp = 0xbb;
        regs.__bindgen_anon_10.rsp = 0xffff_8000_0000_ff00;
        (regs.r8, regs.r9, regs.r10, regs.r11) = (8, 9, 10, 11);
        (regs.r12, regs.r13, regs.r14, regs.r15) = (12, 13, 14, 15);
        regs.__bindgen_anon_8.rip = 0xffff_ffff_8000_1234;
        regs.__bindgen_anon_9.rflags = 0x246;
        (regs.cs, regs.ss, regs.ds, regs.es, regs.fs, regs.gs) = (0xe033, 0xe02b, 0x2b, 0x2c, 0x2d, 0x2e);
        // saved_upcall_mask follows cs and must not leak into the selector.
        regs.saved_upcall_mask = 0xff;
        context.ctrlreg[0] = 0x8; // cr0.TS only
        context.ctrlreg[2] = 0xdead_0000;
        context.ctrlreg[3] = 0x1234_5000;
        context.ctrlreg[4] = 0x6f0;
        context.fs_base = 0xf5;
        context.gs_base_kernel = 0x6b;
        context.gs_base_user = 0x65;
        context
    }

    fn pv_context(in_kernel: bool) -> Vec<u8> {
        bytes_of(&pv_struct(in_kernel))
    }

    #[test]
    fn pv_context_registers() {
        let vcpu = vcpu_from_pv_context(3, &pv_context(true)).unwrap();
        assert_eq!(vcpu.id, 3);
        assert_eq!((vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx), (0xa0, 0xb0, 0xc0, 0xd0));
        assert_eq!((vcpu.rsi, vcpu.rdi, vcpu.rbp), (0x51, 0xd1, 0xbb));
        assert_eq!(vcpu.rsp, 0xffff_8000_0000_ff00);
        assert_eq!([vcpu.r8, vcpu.r9, vcpu.r10, vcpu.r11], [8, 9, 10, 11]);
        assert_eq!([vcpu.r12, vcpu.r13, vcpu.r14, vcpu.r15], [12, 13, 14, 15]);
        assert_eq!(vcpu.rip, 0xffff_ffff_8000_1234);
        assert_eq!(vcpu.rflags, 0x246);
        assert_eq!((vcpu.cs, vcpu.ss, vcpu.ds, vcpu.es, vcpu.fs, vcpu.gs), (0xe033, 0xe02b, 0x2b, 0x2c, 0x2d, 0x2e));
        assert_eq!(vcpu.fs_base, 0xf5);
    }

    #[test]
    fn pv_context_control_registers() {
        let vcpu = vcpu_from_pv_context(0, &pv_context(true)).unwrap();
        assert_eq!(vcpu.cr0, 0x8 | 0x8000_0001, "PE and PG are set");
        assert_eq!(vcpu.cr2, 0xdead_0000);
        assert_eq!(vcpu.cr3, 0x1234_5000, "cr3 stays a machine address");
        assert_eq!(vcpu.cr4, 0x6f0);
        assert_eq!(vcpu.efer, 0x500, "LME and LMA");
        assert_eq!(vcpu.present, ALL_GROUPS);
    }

    #[test]
    fn pv_gs_bases_follow_kernel_mode() {
        let kernel = vcpu_from_pv_context(0, &pv_context(true)).unwrap();
        assert_eq!((kernel.gs_base, kernel.kernel_gs_base), (0x6b, 0x65));
        let user = vcpu_from_pv_context(0, &pv_context(false)).unwrap();
        assert_eq!((user.gs_base, user.kernel_gs_base), (0x65, 0x6b));
    }

    #[test]
    fn pv_context_too_short() {
        assert_eq!(vcpu_from_pv_context(0, &pv_context(true)[..xen_context::CONTEXT_LEN - 1]), None);
    }

    /// Builds the context Xen returns for an HVM vCPU that went down with
    /// `cli; hlt` in ring `ring`, long mode and paging on.
    fn hvm_struct(ring: u16) -> xen_sys::vcpu_guest_context {
        let mut context = pv_struct(true);
        // Xen sets no flag for an HVM vCPU that is down: not VGCF_online,
        // and VGCF_in_kernel only for PV.
        context.flags = 0;
        context.user_regs.cs = 0x8 | ring;
        context.user_regs.ss = 0x10 | ring;
        context.user_regs.__bindgen_anon_9.rflags = 0x2;
        context.ctrlreg[0] = 0x8000_0011;
        context.ctrlreg[3] = 0x10_0000;
        context.ctrlreg[4] = 0x20;
        context
    }

    fn hvm_vcpu_context(ring: u16) -> Vec<u8> {
        bytes_of(&hvm_struct(ring))
    }

    #[test]
    fn hvm_vcpu_context_registers() {
        let vcpu = vcpu_from_hvm_vcpu_context(2, &hvm_vcpu_context(0)).unwrap();
        assert_eq!(vcpu.id, 2);
        assert_eq!((vcpu.rax, vcpu.rbx, vcpu.rcx, vcpu.rdx), (0xa0, 0xb0, 0xc0, 0xd0));
        assert_eq!(vcpu.rsp, 0xffff_8000_0000_ff00);
        assert_eq!(vcpu.rip, 0xffff_ffff_8000_1234);
        assert_eq!(vcpu.rflags, 0x2);
        assert_eq!((vcpu.cs, vcpu.ss, vcpu.ds), (0x8, 0x10, 0x2b));
        assert_eq!(vcpu.fs_base, 0xf5);
        assert_eq!(vcpu.present, ALL_GROUPS);
    }

    #[test]
    fn hvm_vcpu_context_control_registers() {
        let vcpu = vcpu_from_hvm_vcpu_context(0, &hvm_vcpu_context(0)).unwrap();
        assert_eq!(vcpu.cr0, 0x8000_0011, "cr0 is the guest's own, unchanged");
        assert_eq!(vcpu.cr2, 0xdead_0000);
        assert_eq!(vcpu.cr3, 0x10_0000, "cr3 is guest-physical");
        assert_eq!(vcpu.cr4, 0x20);
        assert_eq!(vcpu.cr8, 0);
        assert_eq!(vcpu.efer, 0x500, "LME and LMA");
    }

    #[test]
    fn hvm_vcpu_context_gs_bases_follow_ring() {
        let ring0 = vcpu_from_hvm_vcpu_context(0, &hvm_vcpu_context(0)).unwrap();
        assert_eq!((ring0.gs_base, ring0.kernel_gs_base), (0x6b, 0x65));
        let ring3 = vcpu_from_hvm_vcpu_context(0, &hvm_vcpu_context(3)).unwrap();
        assert_eq!((ring3.gs_base, ring3.kernel_gs_base), (0x65, 0x6b));
    }

    #[test]
    fn hvm_vcpu_context_efer_without_long_mode() {
        let mut context = hvm_struct(0);
        context.ctrlreg[4] = 0;
        assert_eq!(vcpu_from_hvm_vcpu_context(0, &bytes_of(&context)).unwrap().efer, 0, "paging without PAE");
        context.ctrlreg[0] = 0x11;
        context.ctrlreg[4] = 0x20;
        assert_eq!(vcpu_from_hvm_vcpu_context(0, &bytes_of(&context)).unwrap().efer, 0, "PAE without paging");
    }

    #[test]
    fn hvm_vcpu_context_too_short() {
        assert_eq!(vcpu_from_hvm_vcpu_context(0, &hvm_vcpu_context(0)[..xen_context::CONTEXT_LEN - 1]), None);
    }

    #[test]
    fn context_online_flag() {
        assert_eq!(context_online(&hvm_vcpu_context(0)), Some(false));
        assert_eq!(context_online(&pv_context(true)), Some(true));
        assert_eq!(context_online(&[0u8; 16]), None);
    }

    #[test]
    fn missing_ids_after_save_context() {
        let vcpus = vcpus_from_hvm_context(&hvm_blob()).unwrap();
        assert_eq!(missing_vcpu_ids(&vcpus, 3), vec![2, 3]);
        assert_eq!(missing_vcpu_ids(&vcpus, 1), Vec::<u32>::new());
        assert_eq!(missing_vcpu_ids(&[], 1), vec![0, 1], "a domain whose vCPUs are all down");
    }

    fn record(blob: &mut Vec<u8>, typecode: u16, instance: u16, data: &[u8]) {
        blob.extend_from_slice(&typecode.to_le_bytes());
        blob.extend_from_slice(&instance.to_le_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_le_bytes());
        blob.extend_from_slice(data);
    }

    fn hvm_cpu(rip: u64) -> Vec<u8> {
        use hvm::cpu::*;
        let mut bytes = vec![0u8; SIZE];
        put_u64(&mut bytes, RAX, 0xa);
        put_u64(&mut bytes, R15, 0xf);
        put_u64(&mut bytes, RIP, rip);
        put_u64(&mut bytes, RFLAGS, 0x2);
        put_u64(&mut bytes, CR0, 0x8000_0011);
        put_u64(&mut bytes, CR3, 0x10_0000);
        put_u64(&mut bytes, CR4, 0x20);
        put_u32(&mut bytes, CS_SEL, 0x10);
        put_u32(&mut bytes, SS_SEL, 0x18);
        put_u64(&mut bytes, FS_BASE, 0xf5);
        put_u64(&mut bytes, GS_BASE, 0x65);
        put_u64(&mut bytes, SHADOW_GS, 0x6b);
        put_u64(&mut bytes, MSR_EFER, 0x500);
        bytes
    }

    fn hvm_blob() -> Vec<u8> {
        let mut blob = Vec::new();
        record(&mut blob, 1, 0, &[0u8; 24]); // HEADER
        record(&mut blob, hvm::CODE_CPU, 1, &hvm_cpu(0x2000));
        record(&mut blob, hvm::CODE_CPU, 0, &hvm_cpu(0x1000));
        record(&mut blob, 3, 0, &[0u8; 16]); // PIC
        record(&mut blob, hvm::CODE_END, 0, &[]);
        blob
    }

    #[test]
    fn hvm_context_cpu_records() {
        let vcpus = vcpus_from_hvm_context(&hvm_blob()).unwrap();
        assert_eq!(vcpus.len(), 2);
        assert_eq!((vcpus[0].id, vcpus[0].rip), (0, 0x1000));
        assert_eq!((vcpus[1].id, vcpus[1].rip), (1, 0x2000));
        let vcpu = &vcpus[0];
        assert_eq!((vcpu.rax, vcpu.r15, vcpu.rflags), (0xa, 0xf, 0x2));
        assert_eq!((vcpu.cr0, vcpu.cr3, vcpu.cr4, vcpu.efer), (0x8000_0011, 0x10_0000, 0x20, 0x500));
        assert_eq!((vcpu.cs, vcpu.ss), (0x10, 0x18));
        assert_eq!((vcpu.fs_base, vcpu.gs_base, vcpu.kernel_gs_base), (0xf5, 0x65, 0x6b));
    }

    #[test]
    fn hvm_context_without_end() {
        let mut blob = hvm_blob();
        blob.truncate(blob.len() - hvm::DESCRIPTOR_SIZE);
        let error = vcpus_from_hvm_context(&blob).unwrap_err();
        assert_eq!(error.offset, blob.len());
        assert!(error.reason.contains("without an END"), "{}", error.reason);
    }

    #[test]
    fn hvm_context_record_past_end() {
        let mut blob = Vec::new();
        record(&mut blob, hvm::CODE_CPU, 0, &hvm_cpu(0));
        blob.truncate(100);
        let error = vcpus_from_hvm_context(&blob).unwrap_err();
        assert_eq!(error.offset, 0);
        assert!(error.reason.contains("runs past"), "{}", error.reason);
    }

    #[test]
    fn hvm_context_short_cpu_record() {
        let mut blob = Vec::new();
        record(&mut blob, hvm::CODE_CPU, 0, &hvm_cpu(0)[..512]);
        record(&mut blob, hvm::CODE_END, 0, &[]);
        let error = vcpus_from_hvm_context(&blob).unwrap_err();
        assert!(error.reason.contains("only 512 bytes"), "{}", error.reason);
    }

    #[test]
    fn hvm_context_duplicate_cpu() {
        let mut blob = Vec::new();
        record(&mut blob, hvm::CODE_CPU, 0, &hvm_cpu(0));
        record(&mut blob, hvm::CODE_CPU, 0, &hvm_cpu(0));
        record(&mut blob, hvm::CODE_END, 0, &[]);
        let error = vcpus_from_hvm_context(&blob).unwrap_err();
        assert_eq!(error.offset, hvm::DESCRIPTOR_SIZE + hvm::cpu::SIZE);
    }

    #[test]
    fn hvm_context_damage_never_panics() {
        let blob = hvm_blob();
        for len in 0..blob.len() {
            let _ = vcpus_from_hvm_context(&blob[..len]);
        }
        // Every byte of every descriptor, set to values that stretch lengths,
        // type codes and instance numbers.
        let mut descriptors = Vec::new();
        let mut offset = 0;
        while offset + hvm::DESCRIPTOR_SIZE <= blob.len() {
            descriptors.push(offset);
            let len = u32::from_le_bytes(blob[offset + 4..offset + 8].try_into().unwrap()) as usize;
            offset += hvm::DESCRIPTOR_SIZE + len;
        }
        for start in descriptors {
            for byte in start..start + hvm::DESCRIPTOR_SIZE {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut damaged = blob.clone();
                    damaged[byte] = value;
                    let _ = vcpus_from_hvm_context(&damaged);
                }
            }
        }
    }

    #[test]
    fn hvm_context_truncated_descriptor() {
        let error = vcpus_from_hvm_context(&[2, 0, 0]).unwrap_err();
        assert_eq!(error.offset, 0);
    }
}
