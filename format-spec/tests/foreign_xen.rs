//! Tests of the `xl dump-core` reader on files this test builds itself in
//! the layout of Xen's `tools/libs/guest/xg_core.c` (Xen 4.17): ELF header,
//! section headers, `.note.Xen`, `.xen_prstatus`, `.xen_shared_info`, the
//! page-aligned `.xen_pages`, then `.xen_p2m` or `.xen_pfn` and `.shstrtab`.
//!
//! These files exercise the parsing and the PV machine-frame translation;
//! they are not dumps of a real domain.

use std::path::Path;

use stardump_format::foreign::{parse_core, Core, CoreFileError, OpenError, XenDumpCore, XenGuestKind};
use stardump_format::{MemoryError, SourceKind, Target};

const PAGE: usize = 4096;
const CONTEXT_LEN: usize = 5168;
const USER_REGS: usize = 520;
const INVALID: u64 = u64::MAX;
const PRESENT_WRITABLE: u64 = 0b11;
const KERNEL_VIRTUAL: u64 = 0xffff_ffff_8000_0000;

/// The parts of a dump-core to build.
struct DumpSpec {
    magic: u64,
    nr_vcpus: u64,
    page_size: u64,
    format_version: u64,
    contexts: Vec<Vec<u8>>,
    /// Page contents in `.xen_pages` order.
    pages: Vec<Vec<u8>>,
    /// One `.xen_p2m` (pfn, gmfn) or `.xen_pfn` (pfn, ignored) entry per page.
    frames: Vec<(u64, u64)>,
    /// Overrides the page count of the header note.
    nr_pages: Option<u64>,
    omit_section: Option<&'static str>,
}

fn push_note(out: &mut Vec<u8>, note_type: u32, desc: &[u8]) {
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&note_type.to_le_bytes());
    out.extend_from_slice(b"Xen\0");
    out.extend_from_slice(desc);
}

fn u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl DumpSpec {
    fn is_pv(&self) -> bool {
        self.magic != 0xF00F_EBEE
    }

    fn build(&self) -> Vec<u8> {
        let mut notes = Vec::new();
        push_note(&mut notes, 0x200_0000, &[]);
        let nr_pages = self.nr_pages.unwrap_or(self.pages.len() as u64);
        push_note(&mut notes, 0x200_0001, &u64s(&[self.magic, self.nr_vcpus, nr_pages, self.page_size]));
        let mut version = vec![0u8; 1280];
        version[0..8].copy_from_slice(&4u64.to_le_bytes());
        version[8..16].copy_from_slice(&17u64.to_le_bytes());
        version[16..18].copy_from_slice(b".5");
        push_note(&mut notes, 0x200_0002, &version);
        push_note(&mut notes, 0x200_0003, &self.format_version.to_le_bytes());

        let prstatus: Vec<u8> = self.contexts.concat();
        let shared_info = vec![0u8; PAGE];
        let table: Vec<u8> = if self.is_pv() {
            self.frames.iter().flat_map(|&(pfn, mfn)| u64s(&[pfn, mfn])).collect()
        } else {
            self.frames.iter().flat_map(|&(pfn, _)| pfn.to_le_bytes()).collect()
        };
        let table_name = if self.is_pv() { ".xen_p2m" } else { ".xen_pfn" };

        let names = [".shstrtab", ".note.Xen", ".xen_prstatus", ".xen_shared_info", ".xen_pages", table_name];
        let names: Vec<&str> = names.into_iter().filter(|name| Some(*name) != self.omit_section).collect();
        let mut strtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in &names {
            name_offsets.push(strtab.len() as u32);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }

        let section_count = names.len() + 1;
        let mut offset = 64 + section_count * 64;
        let mut layout = Vec::new();
        let mut place = |len: usize, align: usize| {
            offset = offset.next_multiple_of(align);
            let at = offset;
            offset += len;
            (at, len)
        };
        let notes_at = place(notes.len(), 1);
        let prstatus_at = place(prstatus.len(), 1);
        let shared_at = place(shared_info.len(), 1);
        let pages_at = place(self.pages.len() * PAGE, PAGE);
        let table_at = place(table.len(), 1);
        let strtab_at = place(strtab.len(), 1);
        // (sh_type, placement, sh_addralign, sh_entsize) as xg_core.c sets them.
        for name in &names {
            layout.push(match *name {
                ".shstrtab" => (3u32, strtab_at, 0u64, 0u64),
                ".note.Xen" => (7, notes_at, 0, 0),
                ".xen_prstatus" => (1, prstatus_at, 8, CONTEXT_LEN as u64),
                ".xen_shared_info" => (1, shared_at, 8, PAGE as u64),
                ".xen_pages" => (1, pages_at, PAGE as u64, PAGE as u64),
                ".xen_p2m" => (1, table_at, 8, 16),
                _ => (1, table_at, 8, 8),
            });
        }

        let mut file = vec![0u8; offset];
        file[0..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[6] = 1;
        file[16..18].copy_from_slice(&4u16.to_le_bytes());
        file[18..20].copy_from_slice(&62u16.to_le_bytes());
        file[20..24].copy_from_slice(&1u32.to_le_bytes());
        file[40..48].copy_from_slice(&64u64.to_le_bytes());
        file[52..54].copy_from_slice(&64u16.to_le_bytes());
        file[58..60].copy_from_slice(&64u16.to_le_bytes());
        file[60..62].copy_from_slice(&(section_count as u16).to_le_bytes());
        file[62..64].copy_from_slice(&1u16.to_le_bytes());
        for (index, (&(sh_type, (at, len), align, entsize), name_offset)) in
            layout.iter().zip(&name_offsets).enumerate()
        {
            let header = 64 + (index + 1) * 64;
            file[header..header + 4].copy_from_slice(&name_offset.to_le_bytes());
            file[header + 4..header + 8].copy_from_slice(&sh_type.to_le_bytes());
            file[header + 24..header + 32].copy_from_slice(&(at as u64).to_le_bytes());
            file[header + 32..header + 40].copy_from_slice(&(len as u64).to_le_bytes());
            file[header + 48..header + 56].copy_from_slice(&align.to_le_bytes());
            file[header + 56..header + 64].copy_from_slice(&entsize.to_le_bytes());
        }
        let mut write = |(at, len): (usize, usize), bytes: &[u8]| file[at..at + len].copy_from_slice(bytes);
        write(notes_at, &notes);
        write(prstatus_at, &prstatus);
        write(shared_at, &shared_info);
        write(pages_at, &self.pages.concat());
        write(table_at, &table);
        write(strtab_at, &strtab);
        file
    }
}

/// Builds a 64-bit `vcpu_guest_context` with distinct register values.
fn context(seed: u64, flags: u64, cs: u16, cr3: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; CONTEXT_LEN];
    let mut put = |at: usize, value: u64| bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    put(512, flags);
    // r15 .. rdi: 15 registers, r15 first.
    for index in 0..15 {
        put(USER_REGS + index * 8, seed + index as u64);
    }
    put(USER_REGS + 128, KERNEL_VIRTUAL + 0x123); // rip
    put(USER_REGS + 144, 0x246); // rflags
    put(USER_REGS + 152, KERNEL_VIRTUAL + 0x1ff0); // rsp
    put(4984, 0x8000_003b); // cr0
    put(4984 + 16, 0xdead_0000); // cr2
    put(4984 + 24, cr3);
    put(4984 + 32, 0x6f0); // cr4
    put(5144, 0xf5); // fs_base
    put(5152, 0x1111); // gs_base_kernel
    put(5160, 0x2222); // gs_base_user
    bytes[USER_REGS + 136..USER_REGS + 138].copy_from_slice(&cs.to_le_bytes());
    bytes[USER_REGS + 160..USER_REGS + 162].copy_from_slice(&0xe02bu16.to_le_bytes());
    bytes
}

fn page_with_entries(entries: &[(usize, u64)]) -> Vec<u8> {
    let mut page = vec![0u8; PAGE];
    for &(index, value) in entries {
        page[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
    page
}

/// Machine frame of pseudo-physical frame `pfn` in the PV sample.
fn mfn_of(pfn: u64) -> u64 {
    0x5000 + (7 - pfn) * 3
}

/// Builds a PV guest of 8 frames: page tables at pfns 1-4 map KERNEL_VIRTUAL to
/// pfn 5, the next page to pfn 6 and the third to pfn 7, which is not
/// dumped. Every entry contains machine frames, and the table lists the pages
/// out of order with a padding entry.
fn pv_sample() -> DumpSpec {
    let entry = |pfn: u64| (mfn_of(pfn) << 12) | PRESENT_WRITABLE;
    let mut pages_by_pfn: Vec<Vec<u8>> = vec![vec![0u8; PAGE]; 7];
    pages_by_pfn[1] = page_with_entries(&[(511, entry(2))]);
    pages_by_pfn[2] = page_with_entries(&[(510, entry(3))]);
    pages_by_pfn[3] = page_with_entries(&[(0, entry(4))]);
    pages_by_pfn[4] = page_with_entries(&[(0, entry(5)), (1, entry(6)), (2, entry(7))]);
    pages_by_pfn[5] = vec![0xa5; PAGE];
    pages_by_pfn[6] = (0..PAGE).map(|i| i as u8).collect();
    let order = [6u64, 0, 4, 1, 5, 3, 2];
    let mut pages: Vec<Vec<u8>> = order.iter().map(|&pfn| pages_by_pfn[pfn as usize].clone()).collect();
    let mut frames: Vec<(u64, u64)> = order.iter().map(|&pfn| (pfn, mfn_of(pfn))).collect();
    pages.push(vec![0u8; PAGE]);
    frames.push((INVALID, INVALID));
    DumpSpec {
        magic: 0xF00F_EBED,
        nr_vcpus: 2,
        page_size: 4096,
        format_version: 1,
        contexts: vec![
            context(0x100, 0b10_0101, 0xe033, mfn_of(1) << 12),
            context(0x200, 0b10_0001, 0xe033, mfn_of(1) << 12),
        ],
        pages,
        frames,
        nr_pages: None,
        omit_section: None,
    }
}

fn open(spec: &DumpSpec) -> Result<XenDumpCore, OpenError> {
    XenDumpCore::from_bytes(Path::new("/dumps/guest.core"), spec.build())
}

fn core_error(spec: &DumpSpec) -> CoreFileError {
    match open(spec) {
        Err(OpenError::XenDumpCore { source, .. }) => source,
        Err(other) => panic!("unexpected error kind: {other}"),
        Ok(dump) => panic!("expected an error, opened {dump:?}"),
    }
}

#[test]
fn pv_dump_metadata_and_kind() {
    let dump = open(&pv_sample()).unwrap();
    assert_eq!(dump.guest_kind(), XenGuestKind::Pv);
    assert_eq!(dump.format_version(), (0, 1));
    assert_eq!(dump.page_count(), 7);
    let metadata = dump.metadata();
    assert_eq!(metadata.source_kind, SourceKind::XenDumpCore);
    assert_eq!(metadata.target_name, "guest.core");
    assert_eq!(metadata.hypervisor_version.as_deref(), Some("Xen 4.17.5"));
}

#[test]
fn pv_vcpu_registers() {
    let dump = open(&pv_sample()).unwrap();
    let vcpus = dump.vcpus();
    assert_eq!(vcpus.len(), 2);
    let first = &vcpus[0];
    assert_eq!(first.id, 0);
    assert_eq!((first.r15, first.r14, first.rbp, first.rax, first.rdi), (0x100, 0x101, 0x104, 0x10a, 0x10e));
    assert_eq!(first.rip, KERNEL_VIRTUAL + 0x123);
    assert_eq!(first.rsp, KERNEL_VIRTUAL + 0x1ff0);
    assert_eq!(first.rflags, 0x246);
    assert_eq!((first.cs, first.ss), (0xe033, 0xe02b));
    assert_eq!(first.cr3, 1 << 12, "cr3 is the guest-physical address of the L4 table");
    assert_eq!(first.cr2, 0xdead_0000);
    assert_eq!(first.cr0 & 0x8000_0001, 0x8000_0001, "a PV guest runs with PE and PG");
    assert_eq!(first.fs_base, 0xf5);
    assert_eq!((first.gs_base, first.kernel_gs_base), (0x1111, 0x2222), "in kernel mode");
    let second = &vcpus[1];
    assert_eq!(second.id, 1);
    assert_eq!((second.gs_base, second.kernel_gs_base), (0x2222, 0x1111), "in user mode");
}

#[test]
fn pv_reads_physical_by_pfn() {
    let dump = open(&pv_sample()).unwrap();
    let mut buf = [0u8; 8];
    dump.read_physical(6 * 4096 + 0x10, &mut buf).unwrap();
    assert_eq!(buf, [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
    let mut across = vec![0u8; 16];
    dump.read_physical(6 * 4096 - 8, &mut across).unwrap();
    assert_eq!(&across[..8], &[0xa5; 8]);
    assert_eq!(&across[8..], &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        dump.read_physical(7 * 4096 + 4, &mut buf),
        Err(MemoryError::NotCaptured { address: 7 * 4096 + 4, len: 8 })
    );
}

#[test]
fn pv_reads_virtual_through_machine_frames() {
    let dump = open(&pv_sample()).unwrap();
    let cr3 = dump.vcpus()[0].cr3;
    let mut buf = vec![0u8; 16];
    dump.read_virtual(cr3, KERNEL_VIRTUAL + 0xff8, &mut buf).unwrap();
    assert_eq!(&buf[..8], &[0xa5; 8]);
    assert_eq!(&buf[8..], &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        dump.read_virtual(cr3, KERNEL_VIRTUAL + 0x2010, &mut buf),
        Err(MemoryError::NotCaptured { address: KERNEL_VIRTUAL + 0x2010, len: 16 })
    );
    assert_eq!(
        dump.read_virtual(cr3, KERNEL_VIRTUAL + 0x3000, &mut buf),
        Err(MemoryError::NotMapped { address: KERNEL_VIRTUAL + 0x3000, len: 16, cr3 })
    );
}

#[test]
fn pv_memory_map_lists_dumped_frames() {
    let dump = open(&pv_sample()).unwrap();
    let ranges = dump.memory_map();
    assert_eq!(ranges.len(), 1);
    assert_eq!((ranges[0].start, ranges[0].len_bytes), (0, 7 * 4096));
}

#[test]
fn hvm_dump_reads_guest_physical_frames() {
    let mut spec = pv_sample();
    spec.magic = 0xF00F_EBEE;
    // HVM page tables hold guest-physical frames.
    let entry = |pfn: u64| (pfn << 12) | PRESENT_WRITABLE;
    let order = [6u64, 0, 4, 1, 5, 3, 2];
    for (page, &pfn) in spec.pages.iter_mut().zip(&order) {
        match pfn {
            1 => *page = page_with_entries(&[(511, entry(2))]),
            2 => *page = page_with_entries(&[(510, entry(3))]),
            3 => *page = page_with_entries(&[(0, entry(4))]),
            4 => *page = page_with_entries(&[(0, entry(5)), (1, entry(6))]),
            _ => {}
        }
    }
    spec.contexts = vec![context(0x300, 0, 0x10, 1 << 12)];
    spec.nr_vcpus = 1;
    let dump = open(&spec).unwrap();
    assert_eq!(dump.guest_kind(), XenGuestKind::Hvm);
    let vcpu = &dump.vcpus()[0];
    assert_eq!(vcpu.cr3, 1 << 12);
    assert_eq!(vcpu.cr0, 0x8000_003b, "an HVM cr0 is reported as Xen stores it");
    assert_eq!((vcpu.gs_base, vcpu.kernel_gs_base), (0x1111, 0x2222), "cs in ring 0");
    let mut buf = vec![0u8; 16];
    dump.read_virtual(vcpu.cr3, KERNEL_VIRTUAL + 0xff8, &mut buf).unwrap();
    assert_eq!(&buf[..8], &[0xa5; 8]);
    assert_eq!(&buf[8..], &[0, 1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn fewer_contexts_than_header_vcpus() {
    let mut spec = pv_sample();
    spec.nr_vcpus = 4;
    let dump = open(&spec).unwrap();
    assert_eq!(dump.vcpus().len(), 2);
}

#[test]
fn parse_core_recognizes_dump_core() {
    let core = parse_core(Path::new("guest.core"), pv_sample().build()).unwrap();
    assert!(matches!(core, Core::XenDumpCore(_)), "recognized as {}", core.format_name());
}

#[test]
fn rejects_unknown_magic() {
    let mut spec = pv_sample();
    spec.magic = 0x1234;
    assert!(matches!(core_error(&spec), CoreFileError::Unsupported { what: "dump-core magic", value: 0x1234, .. }));
}

#[test]
fn rejects_page_size_other_than_4096() {
    let mut spec = pv_sample();
    spec.page_size = 8192;
    assert!(matches!(core_error(&spec), CoreFileError::Unsupported { what: "page size", value: 8192, .. }));
}

#[test]
fn rejects_unknown_format_major() {
    let mut spec = pv_sample();
    spec.format_version = 1 << 32;
    assert!(matches!(core_error(&spec), CoreFileError::Unsupported { what: "dump-core format version", .. }));
}

#[test]
fn missing_pages_section_keeps_registers() {
    let mut spec = pv_sample();
    spec.omit_section = Some(".xen_pages");
    let dump = open(&spec).unwrap();
    assert_eq!(dump.vcpus().len(), 2);
    assert!(
        matches!(dump.damage(), [CoreFileError::MissingSection { section: ".xen_pages", .. }]),
        "{:?}",
        dump.damage()
    );
    let mut buf = [0u8; 8];
    assert_eq!(dump.read_physical(0x1000, &mut buf), Err(MemoryError::NotCaptured { address: 0x1000, len: 8 }));
    assert!(dump.memory_map().is_empty());
}

#[test]
fn page_count_beyond_section_is_damage() {
    let mut spec = pv_sample();
    spec.nr_pages = Some(u64::MAX / 2);
    let dump = open(&spec).unwrap();
    let damage = dump.damage();
    assert!(matches!(damage, [CoreFileError::InvalidSection { section, .. }] if section == ".xen_pages"), "{damage:?}");
    assert_eq!(dump.page_count(), 0);
}

#[test]
fn truncated_file_keeps_registers() {
    // Cutting the end loses the section names and the end of the p2m table.
    let bytes = pv_sample().build();
    let cut = bytes[..bytes.len() - 200].to_vec();
    let core = parse_core(Path::new("cut.core"), cut).unwrap();
    let Core::XenDumpCore(dump) = core else {
        panic!("recognized as {}", core.format_name());
    };
    assert_eq!(dump.vcpus().len(), 2);
    assert_eq!(dump.vcpus()[0].rip, KERNEL_VIRTUAL + 0x123);
    let damage = dump.damage();
    assert!(matches!(damage, [CoreFileError::Truncated { .. }]), "{damage:?}");
    assert!(damage[0].to_string().contains(".xen_p2m") || damage[0].to_string().contains("header"), "{}", damage[0]);
}

#[test]
fn truncated_contexts_name_file() {
    let bytes = pv_sample().build();
    // The contexts start after the notes, at about 0x600; cut inside them.
    let cut = bytes[..0x900].to_vec();
    let error = XenDumpCore::from_bytes(Path::new("cut.core"), cut).unwrap_err();
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(message.contains("cut.core"), "{message}");
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn undumped_cr3_is_not_walked() {
    // vCPU 1's top-level table is a machine frame the dump does not have;
    // its number is also a dumped pfn, which must not be walked instead.
    let mut spec = pv_sample();
    spec.contexts[1] = context(0x200, 0b10_0001, 0xe033, 5 << 12);
    let dump = open(&spec).unwrap();
    let cr3 = dump.vcpus()[1].cr3;
    assert_eq!(cr3, 5 << 12, "an untranslated cr3 stays a machine address");
    let mut buf = [0u8; 8];
    assert_eq!(
        dump.read_virtual(cr3, KERNEL_VIRTUAL, &mut buf),
        Err(MemoryError::PageTableNotCaptured { address: KERNEL_VIRTUAL, entry_address: 5 << 12 })
    );
    dump.read_virtual(dump.vcpus()[0].cr3, KERNEL_VIRTUAL, &mut buf).unwrap();
}

#[test]
fn intact_dump_has_no_damage() {
    assert!(open(&pv_sample()).unwrap().damage().is_empty());
}

#[test]
fn every_truncation_gives_error_or_dump() {
    let bytes = pv_sample().build();
    for len in (0..bytes.len()).step_by(97) {
        let _ = parse_core(Path::new("cut.core"), bytes[..len].to_vec());
    }
}
