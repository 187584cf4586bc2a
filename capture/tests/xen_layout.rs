//! Checks the Xen backend's hand-written structures and byte offsets
//! against the installed Xen headers (Debian's libxen-dev): a small C
//! program prints `sizeof` and `offsetof` of every field the backend uses,
//! and each value is compared with the Rust side.

#![cfg(feature = "xen")]

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use stardump_capture::xen::bindings::layout::hvm;
use stardump_capture::xen::bindings::{
    VcpuGuestContextAny, XenArchDomainConfig, XenDomctlGetDomainInfo, XenDomctlGetVcpuInfo,
};

/// C expressions to evaluate, each printed as `NAME VALUE`.
const C_VALUES: &[(&str, &str)] = &[
    ("getdomaininfo.size", "sizeof(xc_domaininfo_t)"),
    ("getdomaininfo.domain", "offsetof(xc_domaininfo_t, domain)"),
    ("getdomaininfo.flags", "offsetof(xc_domaininfo_t, flags)"),
    ("getdomaininfo.tot_pages", "offsetof(xc_domaininfo_t, tot_pages)"),
    ("getdomaininfo.max_pages", "offsetof(xc_domaininfo_t, max_pages)"),
    ("getdomaininfo.shared_info_frame", "offsetof(xc_domaininfo_t, shared_info_frame)"),
    ("getdomaininfo.cpu_time", "offsetof(xc_domaininfo_t, cpu_time)"),
    ("getdomaininfo.nr_online_vcpus", "offsetof(xc_domaininfo_t, nr_online_vcpus)"),
    ("getdomaininfo.max_vcpu_id", "offsetof(xc_domaininfo_t, max_vcpu_id)"),
    ("getdomaininfo.handle", "offsetof(xc_domaininfo_t, handle)"),
    ("getdomaininfo.cpupool", "offsetof(xc_domaininfo_t, cpupool)"),
    ("getdomaininfo.gpaddr_bits", "offsetof(xc_domaininfo_t, gpaddr_bits)"),
    ("getdomaininfo.arch_config", "offsetof(xc_domaininfo_t, arch_config)"),
    ("arch_domainconfig.size", "sizeof(struct xen_arch_domainconfig)"),
    ("arch_domainconfig.emulation_flags", "offsetof(struct xen_arch_domainconfig, emulation_flags)"),
    ("arch_domainconfig.misc_flags", "offsetof(struct xen_arch_domainconfig, misc_flags)"),
    ("getvcpuinfo.size", "sizeof(xc_vcpuinfo_t)"),
    ("getvcpuinfo.online", "offsetof(xc_vcpuinfo_t, online)"),
    ("getvcpuinfo.running", "offsetof(xc_vcpuinfo_t, running)"),
    ("getvcpuinfo.cpu_time", "offsetof(xc_vcpuinfo_t, cpu_time)"),
    ("getvcpuinfo.cpu", "offsetof(xc_vcpuinfo_t, cpu)"),
    ("xen_pfn_t.size", "sizeof(xen_pfn_t)"),
    ("vcpu_guest_context_any.size", "sizeof(vcpu_guest_context_any_t)"),
    ("context.size", "sizeof(vcpu_guest_context_x86_64_t)"),
    ("context.flags", "offsetof(vcpu_guest_context_x86_64_t, flags)"),
    ("context.user_regs", "offsetof(vcpu_guest_context_x86_64_t, user_regs)"),
    ("context.ctrlreg", "offsetof(vcpu_guest_context_x86_64_t, ctrlreg)"),
    ("context.fs_base", "offsetof(vcpu_guest_context_x86_64_t, fs_base)"),
    ("context.gs_base_kernel", "offsetof(vcpu_guest_context_x86_64_t, gs_base_kernel)"),
    ("context.gs_base_user", "offsetof(vcpu_guest_context_x86_64_t, gs_base_user)"),
    ("regs.r15", "offsetof(struct cpu_user_regs_x86_64, r15)"),
    ("regs.r14", "offsetof(struct cpu_user_regs_x86_64, r14)"),
    ("regs.r13", "offsetof(struct cpu_user_regs_x86_64, r13)"),
    ("regs.r12", "offsetof(struct cpu_user_regs_x86_64, r12)"),
    ("regs.rbp", "offsetof(struct cpu_user_regs_x86_64, rbp)"),
    ("regs.rbx", "offsetof(struct cpu_user_regs_x86_64, rbx)"),
    ("regs.r11", "offsetof(struct cpu_user_regs_x86_64, r11)"),
    ("regs.r10", "offsetof(struct cpu_user_regs_x86_64, r10)"),
    ("regs.r9", "offsetof(struct cpu_user_regs_x86_64, r9)"),
    ("regs.r8", "offsetof(struct cpu_user_regs_x86_64, r8)"),
    ("regs.rax", "offsetof(struct cpu_user_regs_x86_64, rax)"),
    ("regs.rcx", "offsetof(struct cpu_user_regs_x86_64, rcx)"),
    ("regs.rdx", "offsetof(struct cpu_user_regs_x86_64, rdx)"),
    ("regs.rsi", "offsetof(struct cpu_user_regs_x86_64, rsi)"),
    ("regs.rdi", "offsetof(struct cpu_user_regs_x86_64, rdi)"),
    ("regs.rip", "offsetof(struct cpu_user_regs_x86_64, rip)"),
    ("regs.cs", "offsetof(struct cpu_user_regs_x86_64, cs)"),
    ("regs.rflags", "offsetof(struct cpu_user_regs_x86_64, rflags)"),
    ("regs.rsp", "offsetof(struct cpu_user_regs_x86_64, rsp)"),
    ("regs.ss", "offsetof(struct cpu_user_regs_x86_64, ss)"),
    ("regs.es", "offsetof(struct cpu_user_regs_x86_64, es)"),
    ("regs.ds", "offsetof(struct cpu_user_regs_x86_64, ds)"),
    ("regs.fs", "offsetof(struct cpu_user_regs_x86_64, fs)"),
    ("regs.gs", "offsetof(struct cpu_user_regs_x86_64, gs)"),
    ("VGCF_in_kernel", "VGCF_in_kernel"),
    ("VGCF_online", "VGCF_online"),
    ("hvm.descriptor_size", "sizeof(struct hvm_save_descriptor)"),
    ("hvm.code_end", "HVM_SAVE_CODE(END)"),
    ("hvm.code_cpu", "HVM_SAVE_CODE(CPU)"),
    ("cpu.size", "sizeof(struct hvm_hw_cpu)"),
    ("cpu.rax", "offsetof(struct hvm_hw_cpu, rax)"),
    ("cpu.rbx", "offsetof(struct hvm_hw_cpu, rbx)"),
    ("cpu.rcx", "offsetof(struct hvm_hw_cpu, rcx)"),
    ("cpu.rdx", "offsetof(struct hvm_hw_cpu, rdx)"),
    ("cpu.rbp", "offsetof(struct hvm_hw_cpu, rbp)"),
    ("cpu.rsi", "offsetof(struct hvm_hw_cpu, rsi)"),
    ("cpu.rdi", "offsetof(struct hvm_hw_cpu, rdi)"),
    ("cpu.rsp", "offsetof(struct hvm_hw_cpu, rsp)"),
    ("cpu.r8", "offsetof(struct hvm_hw_cpu, r8)"),
    ("cpu.r9", "offsetof(struct hvm_hw_cpu, r9)"),
    ("cpu.r10", "offsetof(struct hvm_hw_cpu, r10)"),
    ("cpu.r11", "offsetof(struct hvm_hw_cpu, r11)"),
    ("cpu.r12", "offsetof(struct hvm_hw_cpu, r12)"),
    ("cpu.r13", "offsetof(struct hvm_hw_cpu, r13)"),
    ("cpu.r14", "offsetof(struct hvm_hw_cpu, r14)"),
    ("cpu.r15", "offsetof(struct hvm_hw_cpu, r15)"),
    ("cpu.rip", "offsetof(struct hvm_hw_cpu, rip)"),
    ("cpu.rflags", "offsetof(struct hvm_hw_cpu, rflags)"),
    ("cpu.cr0", "offsetof(struct hvm_hw_cpu, cr0)"),
    ("cpu.cr2", "offsetof(struct hvm_hw_cpu, cr2)"),
    ("cpu.cr3", "offsetof(struct hvm_hw_cpu, cr3)"),
    ("cpu.cr4", "offsetof(struct hvm_hw_cpu, cr4)"),
    ("cpu.cs_sel", "offsetof(struct hvm_hw_cpu, cs_sel)"),
    ("cpu.ds_sel", "offsetof(struct hvm_hw_cpu, ds_sel)"),
    ("cpu.es_sel", "offsetof(struct hvm_hw_cpu, es_sel)"),
    ("cpu.fs_sel", "offsetof(struct hvm_hw_cpu, fs_sel)"),
    ("cpu.gs_sel", "offsetof(struct hvm_hw_cpu, gs_sel)"),
    ("cpu.ss_sel", "offsetof(struct hvm_hw_cpu, ss_sel)"),
    ("cpu.fs_base", "offsetof(struct hvm_hw_cpu, fs_base)"),
    ("cpu.gs_base", "offsetof(struct hvm_hw_cpu, gs_base)"),
    ("cpu.shadow_gs", "offsetof(struct hvm_hw_cpu, shadow_gs)"),
    ("cpu.msr_efer", "offsetof(struct hvm_hw_cpu, msr_efer)"),
];

/// Compiles and runs the C program and returns its values by name.
fn c_values() -> HashMap<String, u64> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let source = dir.path().join("layout.c");
    let binary = dir.path().join("layout");
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <xenctrl.h>\n#include <xen/hvm/save.h>\nint main(void) {\n",
    );
    for (name, expression) in C_VALUES {
        program.push_str(&format!("    printf(\"{name} %llu\\n\", (unsigned long long)({expression}));\n"));
    }
    program.push_str("    return 0;\n}\n");
    std::fs::write(&source, program).expect("writing the C program");

    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let compiled = Command::new(&compiler)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {compiler} (Debian package gcc): {error}"));
    assert!(
        compiled.status.success(),
        "compiling against the Xen headers failed (install Debian's libxen-dev):\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&binary).output().expect("running the C program");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("ASCII output")
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("NAME VALUE");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn xen_layout_matches_headers() {
    let c = c_values();
    let rust: &[(&str, usize)] = &[
        ("getdomaininfo.size", size_of::<XenDomctlGetDomainInfo>()),
        ("getdomaininfo.domain", offset_of!(XenDomctlGetDomainInfo, domain)),
        ("getdomaininfo.flags", offset_of!(XenDomctlGetDomainInfo, flags)),
        ("getdomaininfo.tot_pages", offset_of!(XenDomctlGetDomainInfo, tot_pages)),
        ("getdomaininfo.max_pages", offset_of!(XenDomctlGetDomainInfo, max_pages)),
        ("getdomaininfo.shared_info_frame", offset_of!(XenDomctlGetDomainInfo, shared_info_frame)),
        ("getdomaininfo.cpu_time", offset_of!(XenDomctlGetDomainInfo, cpu_time)),
        ("getdomaininfo.nr_online_vcpus", offset_of!(XenDomctlGetDomainInfo, nr_online_vcpus)),
        ("getdomaininfo.max_vcpu_id", offset_of!(XenDomctlGetDomainInfo, max_vcpu_id)),
        ("getdomaininfo.handle", offset_of!(XenDomctlGetDomainInfo, handle)),
        ("getdomaininfo.cpupool", offset_of!(XenDomctlGetDomainInfo, cpupool)),
        ("getdomaininfo.gpaddr_bits", offset_of!(XenDomctlGetDomainInfo, gpaddr_bits)),
        ("getdomaininfo.arch_config", offset_of!(XenDomctlGetDomainInfo, arch_config)),
        ("arch_domainconfig.size", size_of::<XenArchDomainConfig>()),
        ("arch_domainconfig.emulation_flags", offset_of!(XenArchDomainConfig, emulation_flags)),
        ("arch_domainconfig.misc_flags", offset_of!(XenArchDomainConfig, misc_flags)),
        ("getvcpuinfo.size", size_of::<XenDomctlGetVcpuInfo>()),
        ("getvcpuinfo.online", offset_of!(XenDomctlGetVcpuInfo, online)),
        ("getvcpuinfo.running", offset_of!(XenDomctlGetVcpuInfo, running)),
        ("getvcpuinfo.cpu_time", offset_of!(XenDomctlGetVcpuInfo, cpu_time)),
        ("getvcpuinfo.cpu", offset_of!(XenDomctlGetVcpuInfo, cpu)),
        ("xen_pfn_t.size", size_of::<stardump_capture::xen::bindings::XenPfn>()),
        ("vcpu_guest_context_any.size", size_of::<VcpuGuestContextAny>()),
        ("context.size", size_of::<VcpuGuestContextAny>()),
        ("context.flags", offset_of!(VcpuGuestContextAny, flags)),
        ("context.user_regs", offset_of!(VcpuGuestContextAny, user_regs)),
        ("context.ctrlreg", offset_of!(VcpuGuestContextAny, ctrlreg)),
        ("context.fs_base", offset_of!(VcpuGuestContextAny, fs_base)),
        ("context.gs_base_kernel", offset_of!(VcpuGuestContextAny, gs_base_kernel)),
        ("context.gs_base_user", offset_of!(VcpuGuestContextAny, gs_base_user)),
        ("regs.r15", offset_of!(VcpuGuestContextAny, user_regs.r15) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r14", offset_of!(VcpuGuestContextAny, user_regs.r14) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r13", offset_of!(VcpuGuestContextAny, user_regs.r13) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r12", offset_of!(VcpuGuestContextAny, user_regs.r12) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rbp", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_1) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rbx", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_2) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r11", offset_of!(VcpuGuestContextAny, user_regs.r11) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r10", offset_of!(VcpuGuestContextAny, user_regs.r10) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r9", offset_of!(VcpuGuestContextAny, user_regs.r9) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.r8", offset_of!(VcpuGuestContextAny, user_regs.r8) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rax", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_3) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rcx", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_4) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rdx", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_5) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rsi", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_6) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rdi", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_7) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rip", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_8) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.cs", offset_of!(VcpuGuestContextAny, user_regs.cs) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rflags", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_9) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.rsp", offset_of!(VcpuGuestContextAny, user_regs.__bindgen_anon_10) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.ss", offset_of!(VcpuGuestContextAny, user_regs.ss) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.es", offset_of!(VcpuGuestContextAny, user_regs.es) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.ds", offset_of!(VcpuGuestContextAny, user_regs.ds) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.fs", offset_of!(VcpuGuestContextAny, user_regs.fs) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("regs.gs", offset_of!(VcpuGuestContextAny, user_regs.gs) - offset_of!(VcpuGuestContextAny, user_regs)),
        ("VGCF_in_kernel", xen_sys::VGCF_in_kernel as usize),
        ("VGCF_online", xen_sys::VGCF_online as usize),
        ("hvm.descriptor_size", hvm::DESCRIPTOR_SIZE),
        ("hvm.code_end", hvm::CODE_END as usize),
        ("hvm.code_cpu", hvm::CODE_CPU as usize),
        ("cpu.size", hvm::cpu::SIZE),
        ("cpu.rax", hvm::cpu::RAX),
        ("cpu.rbx", hvm::cpu::RBX),
        ("cpu.rcx", hvm::cpu::RCX),
        ("cpu.rdx", hvm::cpu::RDX),
        ("cpu.rbp", hvm::cpu::RBP),
        ("cpu.rsi", hvm::cpu::RSI),
        ("cpu.rdi", hvm::cpu::RDI),
        ("cpu.rsp", hvm::cpu::RSP),
        ("cpu.r8", hvm::cpu::R8),
        ("cpu.r9", hvm::cpu::R9),
        ("cpu.r10", hvm::cpu::R10),
        ("cpu.r11", hvm::cpu::R11),
        ("cpu.r12", hvm::cpu::R12),
        ("cpu.r13", hvm::cpu::R13),
        ("cpu.r14", hvm::cpu::R14),
        ("cpu.r15", hvm::cpu::R15),
        ("cpu.rip", hvm::cpu::RIP),
        ("cpu.rflags", hvm::cpu::RFLAGS),
        ("cpu.cr0", hvm::cpu::CR0),
        ("cpu.cr2", hvm::cpu::CR2),
        ("cpu.cr3", hvm::cpu::CR3),
        ("cpu.cr4", hvm::cpu::CR4),
        ("cpu.cs_sel", hvm::cpu::CS_SEL),
        ("cpu.ds_sel", hvm::cpu::DS_SEL),
        ("cpu.es_sel", hvm::cpu::ES_SEL),
        ("cpu.fs_sel", hvm::cpu::FS_SEL),
        ("cpu.gs_sel", hvm::cpu::GS_SEL),
        ("cpu.ss_sel", hvm::cpu::SS_SEL),
        ("cpu.fs_base", hvm::cpu::FS_BASE),
        ("cpu.gs_base", hvm::cpu::GS_BASE),
        ("cpu.shadow_gs", hvm::cpu::SHADOW_GS),
        ("cpu.msr_efer", hvm::cpu::MSR_EFER),
    ];
    assert_eq!(rust.len(), C_VALUES.len(), "every C value has a Rust counterpart");
    let mut mismatches = Vec::new();
    for &(name, value) in rust {
        let expected = *c.get(name).unwrap_or_else(|| panic!("the C program printed no {name}"));
        if value as u64 != expected {
            mismatches.push(format!("{name}: Rust {value}, C headers {expected}"));
        }
    }
    assert!(mismatches.is_empty(), "layout differs from the Xen headers:\n{}", mismatches.join("\n"));
}
