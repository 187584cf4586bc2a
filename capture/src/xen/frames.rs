//! [`FrameMap`]: the machine frame (MFN) that contains each guest frame
//! (PFN) of a PV domain, and the rewriting of PV page tables from MFNs to PFNs.
//!
//! A PV guest's cr3 and page-table entries hold machine frame numbers. The
//! snapshot stores memory by guest frame, and its readers walk page tables
//! as guest-physical ones, so the capture rewrites every page-table page it
//! stores: each present entry gets the guest frame of its machine frame,
//! with all other bits kept. This is what Xen's own save code does to page
//! tables ("normalising" them) before it writes a PV guest's memory. An
//! entry whose machine frame is not the domain's (Xen's own slots in the
//! top-level table, grant or foreign mappings) is cleared, because no
//! guest frame of the snapshot holds what it maps.

use std::collections::{BTreeMap, HashMap};

/// Bits 12-51 of an entry: the frame address.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1 << 0;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Top-level slots 256-271 (0xffff800000000000-0xffff87ffffffffff) belong
/// to Xen in every 64-bit PV guest's L4 table, as
/// ROOT_PAGETABLE_FIRST_XEN_SLOT and ROOT_PAGETABLE_LAST_XEN_SLOT in Xen
/// 4.17's asm/config.h define them. They map Xen itself and the read-only
/// M2P table.
const XEN_L4_SLOTS: std::ops::RangeInclusive<usize> = 256..=271;

/// The machine frames of a PV domain and the guest frame each one contains.
#[derive(Debug, Default)]
pub struct FrameMap {
    by_pfn: BTreeMap<u64, u64>,
    by_mfn: HashMap<u64, u64>,
}

impl FrameMap {
    /// Creates an empty map.
    pub fn new() -> FrameMap {
        FrameMap::default()
    }

    /// Records that machine frame `mfn` contains guest frame `pfn`. Returns
    /// the machine frame already recorded for `pfn` and changes nothing
    /// when there is one, because then the M2P table is inconsistent for
    /// that guest frame.
    pub fn insert(&mut self, mfn: u64, pfn: u64) -> Result<(), u64> {
        if let Some(&known) = self.by_pfn.get(&pfn) {
            if known != mfn {
                return Err(known);
            }
            return Ok(());
        }
        self.by_pfn.insert(pfn, mfn);
        self.by_mfn.insert(mfn, pfn);
        Ok(())
    }

    /// Returns the guest frame that machine frame `mfn` contains, if `mfn`
    /// is one of the domain's frames.
    pub fn pfn_of(&self, mfn: u64) -> Option<u64> {
        self.by_mfn.get(&mfn).copied()
    }

    /// Returns the `(pfn, mfn)` pairs in guest frame order.
    pub fn frames(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_pfn.iter().map(|(&pfn, &mfn)| (pfn, mfn))
    }

    /// Returns the number of frames.
    pub fn len(&self) -> usize {
        self.by_pfn.len()
    }

    /// Returns whether the map has no frame.
    pub fn is_empty(&self) -> bool {
        self.by_pfn.is_empty()
    }

    /// Translates a PV cr3 (`xen_pfn_to_cr3(mfn)`, a machine address) to
    /// the guest-physical address of the same table, keeping bits 0-11.
    pub fn translate_cr3(&self, cr3: u64) -> Option<u64> {
        let pfn = self.pfn_of((cr3 & ADDRESS_MASK) >> 12)?;
        Some((pfn << 12) | (cr3 & 0xfff))
    }
}

/// Counts of the entries [`canonicalize_page_table`] rewrote or cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanonicalCounts {
    /// Present entries whose machine frame was replaced by a guest frame.
    pub translated: u64,
    /// Present entries in Xen's top-level slots, cleared.
    pub hypervisor: u64,
    /// Present entries naming a machine frame the domain does not own
    /// (grant or foreign mappings), cleared.
    pub foreign: u64,
    /// Present large-page entries, cleared: Xen 4.17 gives PV guests no
    /// superpages, so such an entry is not expected.
    pub large_pages: u64,
}

impl CanonicalCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: CanonicalCounts) {
        self.translated += other.translated;
        self.hypervisor += other.hypervisor;
        self.foreign += other.foreign;
        self.large_pages += other.large_pages;
    }
}

/// Rewrites the page-table page `page` (4096 bytes) of `level` (4 = L4,
/// 1 = L1) from machine to guest frames in place. Entries that are not
/// present are left as they are.
pub fn canonicalize_page_table(page: &mut [u8], level: u32, frames: &FrameMap) -> CanonicalCounts {
    let mut counts = CanonicalCounts::default();
    for (index, slot) in page.chunks_exact_mut(8).enumerate() {
        let entry = u64::from_le_bytes(slot.try_into().expect("8-byte chunks"));
        if entry & PRESENT == 0 {
            continue;
        }
        let rewritten = if level == 4 && XEN_L4_SLOTS.contains(&index) {
            counts.hypervisor += 1;
            0
        } else if (level == 2 || level == 3) && entry & PAGE_SIZE_BIT != 0 {
            counts.large_pages += 1;
            0
        } else {
            match frames.pfn_of((entry & ADDRESS_MASK) >> 12) {
                Some(pfn) => {
                    counts.translated += 1;
                    (entry & !ADDRESS_MASK) | (pfn << 12)
                }
                None => {
                    counts.foreign += 1;
                    0
                }
            }
        };
        slot.copy_from_slice(&rewritten.to_le_bytes());
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u64 = 1 << 1;
    const USER: u64 = 1 << 2;
    const ACCESSED: u64 = 1 << 5;
    const NX: u64 = 1 << 63;

    fn frames() -> FrameMap {
        let mut frames = FrameMap::new();
        for (mfn, pfn) in [(0x7_1000, 0), (0x7_1001, 1), (0x3_0000, 2), (0x12_3456, 0x400)] {
            frames.insert(mfn, pfn).unwrap();
        }
        frames
    }

    fn page(entries: &[(usize, u64)]) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        for &(index, entry) in entries {
            page[index * 8..index * 8 + 8].copy_from_slice(&entry.to_le_bytes());
        }
        page
    }

    fn entry(page: &[u8], index: usize) -> u64 {
        u64::from_le_bytes(page[index * 8..index * 8 + 8].try_into().unwrap())
    }

    #[test]
    fn map_translates_both_ways() {
        let frames = frames();
        assert_eq!(frames.pfn_of(0x12_3456), Some(0x400));
        assert_eq!(frames.pfn_of(0x12_3457), None);
        assert_eq!(frames.len(), 4);
        let in_order: Vec<u64> = frames.frames().map(|(pfn, _)| pfn).collect();
        assert_eq!(in_order, [0, 1, 2, 0x400]);
    }

    #[test]
    fn map_rejects_second_frame_for_pfn() {
        let mut frames = frames();
        assert_eq!(frames.insert(0x9_9999, 1), Err(0x7_1001));
        assert_eq!(frames.insert(0x7_1001, 1), Ok(()));
        assert_eq!(frames.pfn_of(0x9_9999), None);
    }

    #[test]
    fn cr3_keeps_low_bits() {
        let frames = frames();
        assert_eq!(frames.translate_cr3(0x12_3456 << 12), Some(0x40_0000));
        assert_eq!(frames.translate_cr3((0x3_0000 << 12) | 0x18), Some(0x2000 | 0x18));
        assert_eq!(frames.translate_cr3(0x5_5555 << 12), None);
    }

    #[test]
    fn entries_get_guest_frames_and_keep_flags() {
        let frames = frames();
        let mut table = page(&[
            (0, (0x7_1001 << 12) | PRESENT | RW | USER | ACCESSED),
            (1, (0x12_3456 << 12) | PRESENT | NX | (0x5 << 9)),
            (2, (0x3_0000 << 12) | RW), // not present: left alone
        ]);
        let counts = canonicalize_page_table(&mut table, 1, &frames);
        assert_eq!(entry(&table, 0), (1 << 12) | PRESENT | RW | USER | ACCESSED);
        assert_eq!(entry(&table, 1), (0x400 << 12) | PRESENT | NX | (0x5 << 9));
        assert_eq!(entry(&table, 2), (0x3_0000 << 12) | RW);
        assert_eq!(counts, CanonicalCounts { translated: 2, ..CanonicalCounts::default() });
    }

    #[test]
    fn xen_slots_cleared_only_in_l4() {
        let frames = frames();
        let xen_entry = (0x99_0000 << 12) | PRESENT;
        let guest_entry = (0x3_0000 << 12) | PRESENT | RW;
        let mut l4 = page(&[(255, guest_entry), (256, xen_entry), (271, xen_entry), (272, guest_entry)]);
        let counts = canonicalize_page_table(&mut l4, 4, &frames);
        assert_eq!(entry(&l4, 255), (2 << 12) | PRESENT | RW);
        assert_eq!(entry(&l4, 256), 0);
        assert_eq!(entry(&l4, 271), 0);
        assert_eq!(entry(&l4, 272), (2 << 12) | PRESENT | RW);
        assert_eq!(counts, CanonicalCounts { translated: 2, hypervisor: 2, ..CanonicalCounts::default() });

        let mut l3 = page(&[(256, guest_entry)]);
        canonicalize_page_table(&mut l3, 3, &frames);
        assert_eq!(entry(&l3, 256), (2 << 12) | PRESENT | RW);
    }

    #[test]
    fn foreign_and_large_entries_cleared() {
        let frames = frames();
        let mut l2 = page(&[(0, (0x55_5555 << 12) | PRESENT), (1, (0x7_1000 << 12) | PRESENT | PAGE_SIZE_BIT)]);
        let counts = canonicalize_page_table(&mut l2, 2, &frames);
        assert_eq!((entry(&l2, 0), entry(&l2, 1)), (0, 0));
        assert_eq!(counts, CanonicalCounts { foreign: 1, large_pages: 1, ..CanonicalCounts::default() });
    }
}
