//! x86_64 4-level page-table walk (4 KiB, 2 MiB and 1 GiB pages), shared by
//! the capture tool, the snapshot reader and the analyzer.
//!
//! The caller supplies a physical-memory reader; this module does not know
//! where memory comes from. 5-level paging (LA57) is not handled.

use serde::Serialize;
use tracing::warn;

use crate::target::MemoryError;

/// Bits 51:12 of an entry or of cr3: the physical address of the next table
/// or of a 4 KiB page. Masks the PCID and flag bits of cr3, and the NX
/// (bit 63), protection-key and software bits (62:52, 11:9) of entries.
const ADDRESS_MASK_4K: u64 = 0x000f_ffff_ffff_f000;
/// Bits 51:21 of a 2 MiB page entry; bit 12 is the PAT bit, not an address bit.
const ADDRESS_MASK_2M: u64 = 0x000f_ffff_ffe0_0000;
/// Bits 51:30 of a 1 GiB page entry.
const ADDRESS_MASK_1G: u64 = 0x000f_ffff_c000_0000;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;

/// Upper bound on the page tables one walk reads. A self-referencing entry
/// (a recursive mapping) makes the same table appear at several levels; this
/// keeps such a walk finite and small. 2^20 tables map 2 TiB in 4 KiB pages.
const MAX_TABLES_PER_WALK: usize = 1 << 20;

/// Reader of guest physical memory: fills the buffer from the address, whole
/// or not at all.
pub type ReadPhysical<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), MemoryError> + 'a;

/// Page sizes in bytes, by level (PML4 is level 4, PT is level 1).
const PAGE_SIZE_4K: u64 = 1 << 12;
const PAGE_SIZE_2M: u64 = 1 << 21;
const PAGE_SIZE_1G: u64 = 1 << 30;

/// Permissions and page size of a mapped range, combined over every level:
/// writable and user only if every level allows it, no-execute if any level sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MappingFlags {
    /// Writes are allowed (R/W set at every level).
    pub writable: bool,
    /// User mode may access (U/S set at every level).
    pub user: bool,
    /// Instruction fetches are forbidden (XD set at some level).
    pub no_execute: bool,
    /// Size of the pages in the range: 4096, 2 MiB or 1 GiB.
    pub page_size: u64,
}

/// A range of guest virtual addresses mapped to consecutive physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// First virtual address, sign-extended from bit 47.
    pub virtual_start: u64,
    /// Physical address of `virtual_start`.
    pub physical_start: u64,
    /// Length of the range in bytes.
    pub len_bytes: u64,
    /// Permissions and page size.
    pub flags: MappingFlags,
}

impl Mapping {
    /// Returns the physical address of `virtual_address` if this range maps it.
    pub fn translate(&self, virtual_address: u64) -> Option<u64> {
        let offset = virtual_address.checked_sub(self.virtual_start)?;
        (offset < self.len_bytes).then(|| self.physical_start.wrapping_add(offset))
    }
}

/// Sign-extends a 48-bit virtual address from bit 47.
fn canonical(virtual_address: u64) -> u64 {
    (((virtual_address << 16) as i64) >> 16) as u64
}

/// Returns the index of `virtual_address` in the table of `level` (4 = PML4).
fn table_index(virtual_address: u64, level: u32) -> u64 {
    (virtual_address >> (12 + 9 * (level - 1))) & 0x1ff
}

/// Reads the 8-byte entry at `entry_address`.
fn read_entry(
    read_physical: &mut ReadPhysical<'_>,
    virtual_address: u64,
    entry_address: u64,
) -> Result<u64, MemoryError> {
    let mut bytes = [0u8; 8];
    match read_physical(entry_address, &mut bytes) {
        Ok(()) => Ok(u64::from_le_bytes(bytes)),
        Err(MemoryError::NotCaptured { .. }) => {
            Err(MemoryError::PageTableNotCaptured { address: virtual_address, entry_address })
        }
        Err(other) => Err(other),
    }
}

/// Translates `virtual_address` through the 4-level page tables rooted at
/// `cr3` and returns the physical address.
///
/// Returns `NotMapped` (with `len` 1) for a non-canonical address or a
/// non-present entry, and `PageTableNotCaptured` when an entry's page was not
/// captured. Other read errors are passed through.
pub fn translate(
    read_physical: &mut ReadPhysical<'_>,
    cr3: u64,
    virtual_address: u64,
) -> Result<u64, MemoryError> {
    let not_mapped = MemoryError::NotMapped { address: virtual_address, len: 1, cr3 };
    if canonical(virtual_address) != virtual_address {
        return Err(not_mapped);
    }
    let mut table = cr3 & ADDRESS_MASK_4K;
    for level in (1..=4).rev() {
        let entry_address = table + table_index(virtual_address, level) * 8;
        let entry = read_entry(read_physical, virtual_address, entry_address)?;
        if entry & PRESENT == 0 {
            return Err(not_mapped);
        }
        let (mask, size) = match level {
            3 if entry & PAGE_SIZE_BIT != 0 => (ADDRESS_MASK_1G, PAGE_SIZE_1G),
            2 if entry & PAGE_SIZE_BIT != 0 => (ADDRESS_MASK_2M, PAGE_SIZE_2M),
            1 => (ADDRESS_MASK_4K, PAGE_SIZE_4K),
            _ => {
                table = entry & ADDRESS_MASK_4K;
                continue;
            }
        };
        return Ok((entry & mask) | (virtual_address & (size - 1)));
    }
    unreachable!("level 1 always returns")
}

/// State of one [`walk_mappings`] call.
struct Walker<'a> {
    read_physical: &'a mut ReadPhysical<'a>,
    mappings: Vec<Mapping>,
    tables_read: usize,
    limit_reported: bool,
}

impl Walker<'_> {
    fn walk_table(&mut self, table: u64, level: u32, virtual_base: u64, inherited: MappingFlags) {
        if self.tables_read >= MAX_TABLES_PER_WALK {
            if !self.limit_reported {
                warn!(limit = MAX_TABLES_PER_WALK, "page-table walk stopped after reading the maximum number of tables");
                self.limit_reported = true;
            }
            return;
        }
        self.tables_read += 1;
        let mut bytes = vec![0u8; 4096];
        if let Err(error) = (self.read_physical)(table, &mut bytes) {
            warn!(table = format_args!("{table:#x}"), level, %error, "skipping unreadable page table");
            return;
        }
        for index in 0..512u64 {
            let entry = u64::from_le_bytes(bytes[index as usize * 8..index as usize * 8 + 8].try_into().unwrap());
            if entry & PRESENT == 0 {
                continue;
            }
            let virtual_start = canonical(virtual_base | (index << (12 + 9 * (level - 1))));
            let flags = MappingFlags {
                writable: inherited.writable && entry & WRITABLE != 0,
                user: inherited.user && entry & USER != 0,
                no_execute: inherited.no_execute || entry & NO_EXECUTE != 0,
                page_size: 0,
            };
            let leaf = match level {
                3 if entry & PAGE_SIZE_BIT != 0 => Some((ADDRESS_MASK_1G, PAGE_SIZE_1G)),
                2 if entry & PAGE_SIZE_BIT != 0 => Some((ADDRESS_MASK_2M, PAGE_SIZE_2M)),
                1 => Some((ADDRESS_MASK_4K, PAGE_SIZE_4K)),
                _ => None,
            };
            match leaf {
                Some((mask, size)) => self.push(Mapping {
                    virtual_start,
                    physical_start: entry & mask,
                    len_bytes: size,
                    flags: MappingFlags { page_size: size, ..flags },
                }),
                None => self.walk_table(entry & ADDRESS_MASK_4K, level - 1, virtual_start, flags),
            }
        }
    }

    /// Appends `mapping`, merging it into the previous one when it continues it.
    fn push(&mut self, mapping: Mapping) {
        if let Some(last) = self.mappings.last_mut() {
            let continues = last.flags == mapping.flags
                && last.virtual_start.checked_add(last.len_bytes) == Some(mapping.virtual_start)
                && last.physical_start.checked_add(last.len_bytes) == Some(mapping.physical_start);
            if continues {
                last.len_bytes += mapping.len_bytes;
                return;
            }
        }
        self.mappings.push(mapping);
    }
}

/// Lists every range mapped by the 4-level page tables rooted at `cr3`, in
/// virtual address order, with adjacent ranges of equal flags and consecutive
/// physical addresses merged.
///
/// A page table that cannot be read is logged with `tracing::warn` and
/// skipped, so the result may be partial. The walk reads at most 2^20 tables.
pub fn walk_mappings(
    read_physical: &mut ReadPhysical<'_>,
    cr3: u64,
) -> Result<Vec<Mapping>, MemoryError> {
    let mut walker = Walker { read_physical, mappings: Vec::new(), tables_read: 0, limit_reported: false };
    let all = MappingFlags { writable: true, user: true, no_execute: false, page_size: 0 };
    walker.walk_table(cr3 & ADDRESS_MASK_4K, 4, 0, all);
    Ok(walker.mappings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Sparse physical memory made of 4 KiB pages; absent pages are not captured.
    #[derive(Default)]
    struct PhysicalMemory {
        pages: HashMap<u64, Vec<u8>>,
    }

    impl PhysicalMemory {
        fn set_entry(&mut self, table: u64, index: u64, value: u64) {
            let page = self.pages.entry(table).or_insert_with(|| vec![0; 4096]);
            page[index as usize * 8..index as usize * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }

        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> Result<(), MemoryError> + '_ {
            move |address, buf| {
                let page = self.pages.get(&(address & !0xfff)).ok_or(MemoryError::NotCaptured { address, len: buf.len() })?;
                let offset = (address & 0xfff) as usize;
                buf.copy_from_slice(&page[offset..offset + buf.len()]);
                Ok(())
            }
        }
    }

    const CR3: u64 = 0x1000;

    /// Builds tables at 0x1000 (PML4), 0x2000/0x5000 (PDPT), 0x3000 (PD), 0x4000 (PT):
    /// - 0x0000_0000_0040_0000.. two 4 KiB pages -> 0x80_0000, 0x80_1000 (writable)
    /// - 0x0000_0000_0060_0000 one 2 MiB page -> 0x200_0000 (read-only, user)
    /// - 0x0000_0000_4000_0000 one 1 GiB page -> 0x1_0000_0000 (NX)
    /// - 0xffff_8000_0000_0000 one 1 GiB page -> 0x4000_0000 (PML4 index 256)
    fn memory() -> PhysicalMemory {
        let mut m = PhysicalMemory::default();
        m.set_entry(0x1000, 0, 0x2000 | PRESENT | WRITABLE | USER);
        m.set_entry(0x1000, 256, 0x5000 | PRESENT | WRITABLE);
        m.set_entry(0x2000, 0, 0x3000 | PRESENT | WRITABLE | USER);
        m.set_entry(0x2000, 1, 0x1_0000_0000 | PRESENT | WRITABLE | PAGE_SIZE_BIT | NO_EXECUTE);
        m.set_entry(0x3000, 2, 0x4000 | PRESENT | WRITABLE | USER);
        m.set_entry(0x3000, 3, 0x200_0000 | PRESENT | USER | PAGE_SIZE_BIT | (1 << 12));
        m.set_entry(0x4000, 0, 0x80_0000 | PRESENT | WRITABLE | (0x7 << 9));
        m.set_entry(0x4000, 1, 0x80_1000 | PRESENT | WRITABLE);
        m.set_entry(0x5000, 0, 0x4000_0000 | PRESENT | WRITABLE | PAGE_SIZE_BIT);
        m
    }

    #[test]
    fn translate_4k_page() {
        let m = memory();
        assert_eq!(translate(&mut m.reader(), CR3, 0x40_0123), Ok(0x80_0123));
        assert_eq!(translate(&mut m.reader(), CR3, 0x40_1fff), Ok(0x80_1fff));
    }

    #[test]
    fn translate_2m_page_masks_pat_bit() {
        let m = memory();
        assert_eq!(translate(&mut m.reader(), CR3, 0x60_1234), Ok(0x200_0000 + 0x1234));
    }

    #[test]
    fn translate_1g_pages_and_sign_extension() {
        let m = memory();
        assert_eq!(translate(&mut m.reader(), CR3, 0x4123_4567), Ok(0x1_0123_4567));
        assert_eq!(translate(&mut m.reader(), CR3, 0xffff_8000_0012_3456), Ok(0x4012_3456));
    }

    #[test]
    fn translate_masks_cr3_pcid_bits() {
        let m = memory();
        assert_eq!(translate(&mut m.reader(), CR3 | 0x5 | (1 << 63), 0x40_0123), Ok(0x80_0123));
    }

    #[test]
    fn translate_rejects_non_canonical_and_unmapped() {
        let m = memory();
        assert_eq!(
            translate(&mut m.reader(), CR3, 0x0000_8000_0000_0000),
            Err(MemoryError::NotMapped { address: 0x0000_8000_0000_0000, len: 1, cr3: CR3 })
        );
        assert_eq!(
            translate(&mut m.reader(), CR3, 0x40_2000),
            Err(MemoryError::NotMapped { address: 0x40_2000, len: 1, cr3: CR3 })
        );
    }

    #[test]
    fn translate_reports_missing_table() {
        let mut m = memory();
        m.pages.remove(&0x4000);
        assert_eq!(
            translate(&mut m.reader(), CR3, 0x40_1000),
            Err(MemoryError::PageTableNotCaptured { address: 0x40_1000, entry_address: 0x4008 })
        );
    }

    #[test]
    fn walk_lists_and_merges_mappings() {
        let m = memory();
        let mappings = walk_mappings(&mut m.reader(), CR3).unwrap();
        let rw = |page_size| MappingFlags { writable: true, user: false, no_execute: false, page_size };
        assert_eq!(
            mappings,
            vec![
                Mapping { virtual_start: 0x40_0000, physical_start: 0x80_0000, len_bytes: 0x2000, flags: rw(PAGE_SIZE_4K) },
                Mapping {
                    virtual_start: 0x60_0000,
                    physical_start: 0x200_0000,
                    len_bytes: PAGE_SIZE_2M,
                    flags: MappingFlags { writable: false, user: true, no_execute: false, page_size: PAGE_SIZE_2M },
                },
                Mapping {
                    virtual_start: 0x4000_0000,
                    physical_start: 0x1_0000_0000,
                    len_bytes: PAGE_SIZE_1G,
                    flags: MappingFlags { writable: true, user: false, no_execute: true, page_size: PAGE_SIZE_1G },
                },
                Mapping {
                    virtual_start: 0xffff_8000_0000_0000,
                    physical_start: 0x4000_0000,
                    len_bytes: PAGE_SIZE_1G,
                    flags: rw(PAGE_SIZE_1G),
                },
            ]
        );
    }

    #[test]
    fn walk_skips_unreadable_table() {
        let mut m = memory();
        m.pages.remove(&0x3000);
        let mappings = walk_mappings(&mut m.reader(), CR3).unwrap();
        assert_eq!(mappings.len(), 2);
        assert_eq!(mappings[0].virtual_start, 0x4000_0000);
    }

    #[test]
    fn walk_terminates_on_recursive_mapping() {
        let mut m = memory();
        m.set_entry(0x1000, 510, 0x1000 | PRESENT | WRITABLE);
        let mappings = walk_mappings(&mut m.reader(), CR3).unwrap();
        assert!(mappings.iter().any(|mapping| mapping.translate(0xffff_ff7f_bfdf_e000) == Some(0x1000)));
    }
}
