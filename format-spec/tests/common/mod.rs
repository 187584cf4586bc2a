//! A sample guest shared by the integration tests: two captured ranges with
//! zero pages and a gap, 4-level page tables, two vCPUs and metadata.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use stardump_format::{
    Mapping, MappingFlags, Metadata, RegisterGroups, SnapshotWriter, SourceKind, VcpuState, WriterOptions,
};

/// What `write_sample` wrote, for the tests to compare against.
pub struct SampleLayout {
    /// Contents of every captured frame, zero pages included.
    pub pages: BTreeMap<u64, Vec<u8>>,
    /// Number of all-zero captured frames.
    pub zero_pages: u64,
    /// Captured ranges as (first frame, page count), in frame order.
    pub ranges: Vec<(u64, u64)>,
    /// First frame of the gap between the two ranges.
    pub gap_pfn: u64,
    /// Root of the captured page tables.
    pub cr3: u64,
    /// Root of page tables that were not captured; only the mapping table covers it.
    pub uncaptured_cr3: u64,
    /// Mapping table recorded for `cr3`.
    pub mappings: Vec<Mapping>,
}

impl SampleLayout {
    pub fn captured_pages(&self) -> u64 {
        self.ranges.iter().map(|&(_, count)| count).sum()
    }
}

pub fn sample_vcpu(id: u32, cr3: u64) -> VcpuState {
    let base = u64::from(id) << 32;
    VcpuState {
        id,
        thread_id: Some(u64::from(id) + 100),
        rax: base | 0x1,
        rbx: base | 0x2,
        rcx: base | 0x3,
        rdx: base | 0x4,
        rsi: base | 0x5,
        rdi: base | 0x6,
        rbp: base | 0x7,
        rsp: base | 0x8,
        r8: base | 0x9,
        r9: base | 0xa,
        r10: base | 0xb,
        r11: base | 0xc,
        r12: base | 0xd,
        r13: base | 0xe,
        r14: base | 0xf,
        r15: base | 0x10,
        rip: 0xffff_ffff_8010_0000 + u64::from(id) * 0x10,
        rflags: 0x246,
        cs: 0x10,
        ss: 0x18,
        ds: 0x18,
        es: 0x18,
        fs: 0,
        gs: 0,
        fs_base: 0x1111,
        gs_base: 0x2222,
        kernel_gs_base: 0x3333,
        cr0: 0x8005_0033,
        cr2: 0xdead_0000,
        cr3,
        cr4: 0x20,
        cr8: 0,
        efer: 0xd01,
        present: RegisterGroups { general: true, segment_bases: true, control: true },
    }
}

pub fn sample_metadata() -> Metadata {
    Metadata {
        source_kind: SourceKind::GdbRemote,
        target_name: "gdb:127.0.0.1:1234".into(),
        domain_id: None,
        hypervisor_version: Some("QEMU 7.2".into()),
        capture_time_unix_us: 1_764_880_000_000_000,
        pause_time_us: 4321,
        image_build_id: Some(vec![1, 2, 3, 4, 5, 6, 7, 8]),
        page_size: 4096,
    }
}

/// Page-table frames: PML4, PDPT, PD, PT.
const TABLE_PFNS: [u64; 4] = [50, 51, 52, 53];
/// Frames the PT maps at 0xffff_8000_0000_0000 + pfn * 4096 -> pfn.
const MAPPED_PAGES: u64 = 64;

fn set_entry(page: &mut [u8], index: usize, value: u64) {
    page[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

fn page_contents(pfn: u64) -> Vec<u8> {
    let zero = matches!(pfn, 2 | 7 | 20..=23 | 31 | 32 | 55);
    if zero {
        return vec![0; 4096];
    }
    (0..4096u64).map(|i| (pfn.wrapping_mul(31) ^ i.wrapping_mul(7) ^ (i >> 5)) as u8).collect()
}

/// Writes the sample guest to `path` and returns what it contains.
pub fn write_sample(path: &Path, options: WriterOptions) -> SampleLayout {
    let ranges = vec![(0u64, 40u64), (48, 12)];
    let mut pages = BTreeMap::new();
    for &(first, count) in &ranges {
        for pfn in first..first + count {
            pages.insert(pfn, page_contents(pfn));
        }
    }
    let [pml4, pdpt, pd, pt] = TABLE_PFNS;
    let present_writable = 0x3;
    set_entry(pages.get_mut(&pml4).unwrap(), 256, (pdpt * 4096) | present_writable);
    set_entry(pages.get_mut(&pdpt).unwrap(), 0, (pd * 4096) | present_writable);
    set_entry(pages.get_mut(&pd).unwrap(), 0, (pt * 4096) | present_writable);
    let table = pages.get_mut(&pt).unwrap();
    table.fill(0);
    for pfn in 0..MAPPED_PAGES {
        set_entry(table, pfn as usize, (pfn * 4096) | present_writable);
    }
    let zero_pages = pages.values().filter(|page| page.iter().all(|&b| b == 0)).count() as u64;

    let cr3 = pml4 * 4096;
    let uncaptured_cr3 = 0x70_000;
    let rw4k = MappingFlags { writable: true, user: false, no_execute: false, page_size: 4096 };
    let mappings = vec![Mapping {
        virtual_start: 0xffff_8000_0000_0000,
        physical_start: 0,
        len_bytes: MAPPED_PAGES * 4096,
        flags: rw4k,
    }];

    let mut writer = SnapshotWriter::create(path, options).unwrap();
    writer.set_metadata(sample_metadata());
    // Added out of id order; the file stores them sorted.
    writer.add_vcpu(&sample_vcpu(1, cr3));
    writer.add_vcpu(&sample_vcpu(0, cr3));
    writer.add_mappings(cr3, &mappings);
    writer.add_mappings(
        uncaptured_cr3,
        &[Mapping { virtual_start: 0x40_0000, physical_start: 0, len_bytes: 40 * 4096, flags: rw4k }],
    );
    // The second range first: calls need not be ordered.
    for &(first, count) in ranges.iter().rev() {
        let mut data = Vec::new();
        for pfn in first..first + count {
            data.extend_from_slice(&pages[&pfn]);
        }
        writer.add_pages(first, &data).unwrap();
    }
    let summary = writer.finish().unwrap();
    assert_eq!(summary.zero_pages, zero_pages);

    SampleLayout { pages, zero_pages, ranges, gap_pfn: 40, cr3, uncaptured_cr3, mappings }
}
