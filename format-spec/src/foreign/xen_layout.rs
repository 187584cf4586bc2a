//! Byte layout of the Xen structures an `xl dump-core` file stores, for
//! 64-bit guests on x86_64.
//!
//! The note descriptors come from `tools/libs/guest/xg_core.h` and
//! `docs/misc/dump-core-format.txt`, and `vcpu_guest_context` from the
//! public headers `xen/include/public/arch-x86/xen-x86_64.h` and `xen.h`.
//! A test compiles every offset here against the installed public headers
//! (Debian package libxen-dev).

/// Owner name of the notes in `.note.Xen`.
pub const NOTE_NAME: &[u8] = b"Xen";
/// `XEN_ELFNOTE_DUMPCORE_NONE`: marks the file as a dump-core, no descriptor.
pub const NOTE_NONE: u32 = 0x200_0000;
/// `XEN_ELFNOTE_DUMPCORE_HEADER`: `xen_dumpcore_elfnote_header_desc`.
pub const NOTE_HEADER: u32 = 0x200_0001;
/// `XEN_ELFNOTE_DUMPCORE_XEN_VERSION`: `xen_dumpcore_elfnote_xen_version_desc`.
pub const NOTE_XEN_VERSION: u32 = 0x200_0002;
/// `XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION`: one u64, major in the high 32 bits.
pub const NOTE_FORMAT_VERSION: u32 = 0x200_0003;

/// `xch_magic` of a PV domain (`XC_CORE_MAGIC`).
pub const MAGIC_PV: u64 = 0xF00F_EBED;
/// `xch_magic` of an HVM domain (`XC_CORE_MAGIC_HVM`).
pub const MAGIC_HVM: u64 = 0xF00F_EBEE;
/// Length of the header descriptor: `xch_magic`, `xch_nr_vcpus`,
/// `xch_nr_pages`, `xch_page_size`, all u64.
pub const HEADER_LEN: usize = 32;
/// Offsets in the header descriptor.
pub const HEADER_MAGIC: usize = 0;
pub const HEADER_NR_VCPUS: usize = 8;
pub const HEADER_NR_PAGES: usize = 16;
pub const HEADER_PAGE_SIZE: usize = 24;

/// The Xen version descriptor starts with `major_version` and
/// `minor_version` (u64 each) and `extra_version` (`xen_extraversion_t`,
/// char[16]). This reader skips the compile info, capabilities, changeset,
/// platform parameters and page size that follow.
pub const VERSION_MAJOR: usize = 0;
pub const VERSION_MINOR: usize = 8;
pub const VERSION_EXTRA: usize = 16;
pub const VERSION_EXTRA_LEN: usize = 16;

/// Major format version this reader implements (`XEN_DUMPCORE_FORMAT_MAJOR_CURRENT`).
pub const FORMAT_MAJOR: u64 = 0;

/// Section names (`XEN_DUMPCORE_SEC_*`).
pub const SECTION_NOTE: &str = ".note.Xen";
pub const SECTION_PRSTATUS: &str = ".xen_prstatus";
pub const SECTION_PAGES: &str = ".xen_pages";
pub const SECTION_P2M: &str = ".xen_p2m";
pub const SECTION_PFN: &str = ".xen_pfn";

/// Length of one `.xen_p2m` entry, `struct xen_dumpcore_p2m {u64 pfn; u64 gmfn;}`.
pub const P2M_ENTRY_LEN: usize = 16;
/// Length of one `.xen_pfn` entry, a u64 frame number.
pub const PFN_ENTRY_LEN: usize = 8;
/// Frame number of a padding entry (`XC_CORE_INVALID_PFN`, `XC_CORE_INVALID_GMFN`).
pub const INVALID_FRAME: u64 = u64::MAX;

/// `sizeof(struct vcpu_guest_context)` for x86_64 guests (`vcpu_guest_context_x86_64_t`).
pub const CONTEXT_LEN: usize = 5168;
/// `flags`, after the 512-byte `fpu_ctxt`.
pub const CONTEXT_FLAGS: usize = 512;
/// `user_regs`, a `struct cpu_user_regs` of 200 bytes.
pub const CONTEXT_USER_REGS: usize = 520;
/// `ctrlreg[8]`, u64 each.
pub const CONTEXT_CTRLREG: usize = 4984;
/// `fs_base`, `gs_base_kernel`, `gs_base_user`.
pub const CONTEXT_FS_BASE: usize = 5144;
pub const CONTEXT_GS_BASE_KERNEL: usize = 5152;
pub const CONTEXT_GS_BASE_USER: usize = 5160;

/// `VGCF_in_kernel`: a PV vCPU was in guest kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_online`: the vCPU is up.
pub const VGCF_ONLINE: u64 = 1 << 5;

/// Offsets in `struct cpu_user_regs` (x86_64); selectors are u16.
pub mod user_regs {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::process::Command;

    /// Compiles `_Static_assert`s of every offset above against the Xen
    /// public headers, so a wrong constant fails with the field's name.
    #[test]
    fn layout_matches_xen_public_headers() {
        let header = std::path::Path::new("/usr/include/xen/xen.h");
        assert!(
            header.is_file(),
            "{} not found: install the Debian package libxen-dev (apt-get install libxen-dev)",
            header.display()
        );
        let context = [
            ("flags", CONTEXT_FLAGS),
            ("user_regs", CONTEXT_USER_REGS),
            ("ctrlreg", CONTEXT_CTRLREG),
            ("fs_base", CONTEXT_FS_BASE),
            ("gs_base_kernel", CONTEXT_GS_BASE_KERNEL),
            ("gs_base_user", CONTEXT_GS_BASE_USER),
        ];
        use user_regs::*;
        let registers = [
            ("r15", R15),
            ("r14", R14),
            ("r13", R13),
            ("r12", R12),
            ("rbp", RBP),
            ("rbx", RBX),
            ("r11", R11),
            ("r10", R10),
            ("r9", R9),
            ("r8", R8),
            ("rax", RAX),
            ("rcx", RCX),
            ("rdx", RDX),
            ("rsi", RSI),
            ("rdi", RDI),
            ("rip", RIP),
            ("cs", CS),
            ("rflags", RFLAGS),
            ("rsp", RSP),
            ("ss", SS),
            ("es", ES),
            ("ds", DS),
            ("fs", FS),
            ("gs", GS),
        ];
        let mut source =
            String::from("#include <stddef.h>\n#include <stdint.h>\n#include <xen/xen.h>\n#include <xen/version.h>\n");
        let mut check = |expression: String, expected: usize| {
            writeln!(source, "_Static_assert({expression} == {expected}, \"{expression} is not {expected}\");")
                .unwrap();
        };
        check("sizeof(struct vcpu_guest_context)".into(), CONTEXT_LEN);
        for (field, offset) in context {
            check(format!("offsetof(struct vcpu_guest_context, {field})"), offset);
        }
        for (field, offset) in registers {
            check(format!("offsetof(struct cpu_user_regs, {field})"), offset);
        }
        check("sizeof(((struct cpu_user_regs *)0)->cs)".into(), 2);
        check("sizeof(xen_extraversion_t)".into(), VERSION_EXTRA_LEN);
        check("VGCF_in_kernel".into(), VGCF_IN_KERNEL as usize);
        check("VGCF_online".into(), VGCF_ONLINE as usize);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout.c");
        std::fs::write(&path, &source).unwrap();
        let output = Command::new("cc")
            .args(["-fsyntax-only", "-std=c11"])
            .arg(&path)
            .output()
            .expect("cannot run cc: install the Debian package gcc");
        assert!(
            output.status.success(),
            "the layout constants disagree with the Xen headers:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
