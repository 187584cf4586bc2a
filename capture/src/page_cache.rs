//! [`PageCache`]: whole guest pages read from a live target, kept while it
//! stays paused, so an analysis that reads a stack word by word costs one
//! request per page instead of one per word.
//!
//! Physical pages are keyed by frame number. Pages read through a stub's
//! own address translation (stubs without a physical memory mode) are keyed
//! by page-table root and virtual page. Translations of virtual pages are
//! cached next to them. The cache cannot tell when the target runs again,
//! so its owner drops it when it resumes the target.

use std::collections::HashMap;

use serde::Serialize;

use crate::memory::PAGE_SIZE;

/// Pages kept before the cache is emptied: 64 MiB of 4 KiB pages. A
/// command that reads more than this (a large `x` dump) reads some pages
/// twice, but the cache never keeps more than this much guest memory.
pub const DEFAULT_MAX_PAGES: usize = 16 * 1024;

/// Bits 51:12 of cr3: the physical address of the top-level table. The
/// PCID and flag bits below do not change the translation.
const CR3_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Identity of a cached page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKey {
    /// Guest physical frame number (physical address / 4096).
    Physical(u64),
    /// A virtual page read through the stub's own translation.
    Virtual {
        /// Root of the page tables, with the flag bits cleared.
        root: u64,
        /// Virtual address of the page.
        page: u64,
    },
}

impl PageKey {
    /// Key of the virtual page at `page` under the tables at `cr3`.
    pub fn virtual_page(cr3: u64, page: u64) -> PageKey {
        PageKey::Virtual { root: cr3 & CR3_ADDRESS_MASK, page }
    }
}

/// How many reads a live target served and what they cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// Reads the engine asked for.
    pub reads: u64,
    /// Memory requests sent to the stub. On QEMU the packets of one request
    /// are pipelined, so a request of up to 32 packets costs about one round
    /// trip.
    pub requests: u64,
    /// Memory packets (`m` or `x`) those requests took.
    pub packets: u64,
    /// Pages read into the cache.
    pub pages_fetched: u64,
    /// Pages served from the cache without a request.
    pub page_hits: u64,
    /// Reads outside known RAM, sent as they came and not cached.
    pub uncached_reads: u64,
    /// Times the cache was emptied because it was full.
    pub evictions: u64,
}

/// Guest pages and virtual-page translations read from a paused target.
#[derive(Debug)]
pub struct PageCache {
    pages: HashMap<PageKey, Box<[u8]>>,
    /// (root, virtual page) to physical page address.
    translations: HashMap<(u64, u64), u64>,
    max_pages: usize,
}

impl PageCache {
    /// Creates an empty cache that keeps at most `max_pages` pages.
    pub fn new(max_pages: usize) -> PageCache {
        PageCache { pages: HashMap::new(), translations: HashMap::new(), max_pages: max_pages.max(1) }
    }

    /// Returns the page stored under `key`.
    pub fn page(&self, key: PageKey) -> Option<&[u8]> {
        self.pages.get(&key).map(|page| &page[..])
    }

    /// Returns whether the page under `key` is cached.
    pub fn contains(&self, key: PageKey) -> bool {
        self.pages.contains_key(&key)
    }

    /// Returns the maximum number of pages kept.
    pub fn max_pages(&self) -> usize {
        self.max_pages
    }

    /// Makes room for `count` more pages: empties the cache when they would
    /// not fit, and returns whether it did. Callers reserve a batch before
    /// fetching it, so pages they are about to use are not evicted.
    pub fn reserve(&mut self, count: usize) -> bool {
        if self.pages.len().saturating_add(count) <= self.max_pages {
            return false;
        }
        self.pages.clear();
        true
    }

    /// Stores `data`, consecutive whole pages, under the keys `key_of(0)`,
    /// `key_of(1)`, ...
    pub fn insert_pages(&mut self, data: &[u8], key_of: impl Fn(u64) -> PageKey) {
        for (index, page) in data.chunks_exact(PAGE_SIZE as usize).enumerate() {
            self.pages.insert(key_of(index as u64), page.into());
        }
    }

    /// Returns the cached physical page address of the virtual page `page`
    /// under the tables at `cr3`.
    pub fn translation(&self, cr3: u64, page: u64) -> Option<u64> {
        self.translations.get(&(cr3 & CR3_ADDRESS_MASK, page)).copied()
    }

    /// Records that virtual page `page` under `cr3` maps physical page
    /// `physical_page`.
    pub fn insert_translation(&mut self, cr3: u64, page: u64, physical_page: u64) {
        if self.translations.len() >= self.max_pages {
            self.translations.clear();
        }
        self.translations.insert((cr3 & CR3_ADDRESS_MASK, page), physical_page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_pages_are_keyed_in_order() {
        let mut cache = PageCache::new(8);
        let mut data = vec![1u8; 4096];
        data.extend(vec![2u8; 4096]);
        cache.insert_pages(&data, |index| PageKey::Physical(10 + index));
        assert_eq!(cache.page(PageKey::Physical(10)).unwrap()[0], 1);
        assert_eq!(cache.page(PageKey::Physical(11)).unwrap()[4095], 2);
        assert!(cache.page(PageKey::Physical(12)).is_none());
    }

    #[test]
    fn reserve_empties_full_cache() {
        let mut cache = PageCache::new(2);
        cache.insert_pages(&[0u8; 8192], PageKey::Physical);
        assert!(!cache.reserve(0));
        assert!(cache.reserve(1));
        assert!(!cache.contains(PageKey::Physical(0)));
    }

    #[test]
    fn translation_ignores_cr3_flag_bits() {
        let mut cache = PageCache::new(4);
        cache.insert_translation(0x1000 | 0x18, 0xffff_8000_0000_0000, 0x5000);
        assert_eq!(cache.translation(0x1000, 0xffff_8000_0000_0000), Some(0x5000));
        assert_eq!(cache.translation(0x2000, 0xffff_8000_0000_0000), None);
    }

    #[test]
    fn virtual_keys_ignore_cr3_flag_bits() {
        assert_eq!(PageKey::virtual_page(0x1000 | 0x8, 0x4000), PageKey::virtual_page(0x1000, 0x4000));
    }
}
