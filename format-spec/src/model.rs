//! Register state and capture metadata shared by every source and by the
//! snapshot format.

use serde::Serialize;

/// Register state of one x86_64 vCPU.
///
/// Fields a source cannot provide stay zero; `present` records which groups
/// the source filled in.
#[allow(missing_docs)] // The register names are their own documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VcpuState {
    /// vCPU number as the source numbers them (Xen vcpu id, GDB thread
    /// index minus one, Linux thread index).
    pub id: u32,
    /// Linux thread id or GDB thread id, when the source has one.
    pub thread_id: Option<u64>,
    /// General registers in the order of `gdb`'s `info registers`.
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    /// Segment selectors.
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    /// Segment bases; `kernel_gs_base` is the value `swapgs` exchanges with.
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    /// Control registers and EFER.
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    /// Which register groups the source provided.
    pub present: RegisterGroups,
}

/// Register groups a source may or may not provide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RegisterGroups {
    /// rax..r15, rip, rflags, selectors.
    pub general: bool,
    /// fs_base, gs_base, kernel_gs_base.
    pub segment_bases: bool,
    /// cr0, cr2, cr3, cr4, cr8, efer.
    pub control: bool,
}

/// DWARF register numbers for x86_64 (System V psABI, figure 3.36).
pub mod dwarf_reg {
    #![allow(missing_docs)]
    pub const RAX: u16 = 0;
    pub const RDX: u16 = 1;
    pub const RCX: u16 = 2;
    pub const RBX: u16 = 3;
    pub const RSI: u16 = 4;
    pub const RDI: u16 = 5;
    pub const RBP: u16 = 6;
    pub const RSP: u16 = 7;
    pub const R8: u16 = 8;
    pub const R15: u16 = 15;
    /// The return address column, which contains rip.
    pub const RA: u16 = 16;
    pub const RFLAGS: u16 = 49;
    pub const ES: u16 = 50;
    pub const CS: u16 = 51;
    pub const SS: u16 = 52;
    pub const DS: u16 = 53;
    pub const FS: u16 = 54;
    pub const GS: u16 = 55;
    pub const FS_BASE: u16 = 58;
    pub const GS_BASE: u16 = 59;
}

impl VcpuState {
    /// Returns the register with DWARF number `reg`, if the model has it.
    pub fn dwarf_register(&self, reg: u16) -> Option<u64> {
        use dwarf_reg::*;
        Some(match reg {
            RAX => self.rax,
            RDX => self.rdx,
            RCX => self.rcx,
            RBX => self.rbx,
            RSI => self.rsi,
            RDI => self.rdi,
            RBP => self.rbp,
            RSP => self.rsp,
            8 => self.r8,
            9 => self.r9,
            10 => self.r10,
            11 => self.r11,
            12 => self.r12,
            13 => self.r13,
            14 => self.r14,
            R15 => self.r15,
            RA => self.rip,
            RFLAGS => self.rflags,
            ES => self.es.into(),
            CS => self.cs.into(),
            SS => self.ss.into(),
            DS => self.ds.into(),
            FS => self.fs.into(),
            GS => self.gs.into(),
            FS_BASE => self.fs_base,
            GS_BASE => self.gs_base,
            _ => return None,
        })
    }

    /// Returns the register named `name` as gdb names it (`rip`, `eflags`,
    /// `fs_base`, `cr3`), if the model has it.
    pub fn named_register(&self, name: &str) -> Option<u64> {
        Some(match name {
            "rax" => self.rax,
            "rbx" => self.rbx,
            "rcx" => self.rcx,
            "rdx" => self.rdx,
            "rsi" => self.rsi,
            "rdi" => self.rdi,
            "rbp" => self.rbp,
            "rsp" => self.rsp,
            "r8" => self.r8,
            "r9" => self.r9,
            "r10" => self.r10,
            "r11" => self.r11,
            "r12" => self.r12,
            "r13" => self.r13,
            "r14" => self.r14,
            "r15" => self.r15,
            "rip" | "pc" => self.rip,
            "eflags" | "rflags" => self.rflags,
            "cs" => self.cs.into(),
            "ss" => self.ss.into(),
            "ds" => self.ds.into(),
            "es" => self.es.into(),
            "fs" => self.fs.into(),
            "gs" => self.gs.into(),
            "fs_base" => self.fs_base,
            "gs_base" => self.gs_base,
            "k_gs_base" | "kernel_gs_base" => self.kernel_gs_base,
            "cr0" => self.cr0,
            "cr2" => self.cr2,
            "cr3" => self.cr3,
            "cr4" => self.cr4,
            "cr8" => self.cr8,
            "efer" => self.efer,
            _ => return None,
        })
    }
}

/// Where a capture came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A GDB remote serial protocol stub (QEMU's gdbstub, gdbserver).
    GdbRemote,
    /// A Xen PV domain read through libxenctrl.
    XenPv,
    /// A Xen HVM or PVH domain read through libxenctrl.
    XenHvm,
    /// A Linux process read through ptrace.
    LinuxProcess,
    /// Anything else, or unknown.
    Other,
    /// A QEMU `dump-guest-memory` ELF core file.
    QemuDump,
    /// A Xen `xl dump-core` file of a PV or HVM domain.
    XenDumpCore,
    /// The ELF core file of a Linux process (written by the kernel or gdb's `gcore`).
    LinuxCore,
}

impl SourceKind {
    /// Returns the value stored in the snapshot's metadata note.
    pub fn to_u32(self) -> u32 {
        match self {
            SourceKind::Other => 0,
            SourceKind::GdbRemote => 1,
            SourceKind::XenPv => 2,
            SourceKind::XenHvm => 3,
            SourceKind::LinuxProcess => 4,
            SourceKind::QemuDump => 5,
            SourceKind::XenDumpCore => 6,
            SourceKind::LinuxCore => 7,
        }
    }

    /// Parses the value stored in the snapshot's metadata note.
    pub fn from_u32(value: u32) -> Option<SourceKind> {
        Some(match value {
            0 => SourceKind::Other,
            1 => SourceKind::GdbRemote,
            2 => SourceKind::XenPv,
            3 => SourceKind::XenHvm,
            4 => SourceKind::LinuxProcess,
            5 => SourceKind::QemuDump,
            6 => SourceKind::XenDumpCore,
            7 => SourceKind::LinuxCore,
            _ => return None,
        })
    }
}

/// Facts about a capture that are not register state or memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// What kind of source was captured.
    pub source_kind: SourceKind,
    /// How the user named the target (`gdb:127.0.0.1:1234`, `xen:web1`).
    pub target_name: String,
    /// Xen domain id, when the source is a Xen domain.
    pub domain_id: Option<u32>,
    /// Hypervisor or stub version string, when known.
    pub hypervisor_version: Option<String>,
    /// Wall-clock time the target was paused, in microseconds since the
    /// Unix epoch.
    pub capture_time_unix_us: u64,
    /// How long the target stayed paused, in microseconds.
    pub pause_time_us: u64,
    /// GNU build id of the unikernel image, when the capture found it.
    pub image_build_id: Option<Vec<u8>>,
    /// Guest page size in bytes (4096 on x86_64).
    pub page_size: u32,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            source_kind: SourceKind::Other,
            target_name: String::new(),
            domain_id: None,
            hypervisor_version: None,
            capture_time_unix_us: 0,
            pause_time_us: 0,
            image_build_id: None,
            page_size: 4096,
        }
    }
}

/// One file mapping of a Linux process: from `NT_FILE` in a core file, or
/// from `/proc/PID/maps` at capture time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMapping {
    /// First virtual address of the mapping.
    pub start: u64,
    /// Virtual address one past the mapping's last byte.
    pub end: u64,
    /// Offset in the file of the byte mapped at `start`.
    pub file_offset: u64,
    /// Path of the file as the kernel printed it. The path of a file deleted
    /// after it was mapped ends in " (deleted)".
    pub path: String,
    /// GNU build id of the ELF file, when known. A core reader sets it only
    /// on a mapping with `file_offset` 0 whose ELF header and build-id note
    /// were captured, among the first 4096 such mappings.
    pub build_id: Option<Vec<u8>>,
}
