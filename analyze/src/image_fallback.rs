//! Reading code and read-only data from the image where a dump lacks them.
//!
//! `xl dump-core` leaves out guest frames it could not map (all-ones
//! padding entries in `.xen_p2m`), a walk capture has only the frames the
//! page tables map, and a damaged chunk loses its pages. Code and read-only
//! data do not change while a unikernel runs, so the image's file bytes are
//! what the guest had there. [`ImageBacked`] serves those reads from the
//! image and records every page it served, so the command can warn about
//! them. A value read from the image is never passed off as captured memory.
//!
//! Writable segments and Xen's hypercall page (which Xen fills when it
//! builds the domain) are never served from the image, because their bytes
//! at run time differ from the file's.

use std::collections::BTreeSet;
use std::sync::Mutex;

use stardump_format::{MemoryError, MemoryRange, Metadata, Target, VcpuState};

use crate::image::Image;
use crate::unwind::hypercall::HYPERCALL_PAGE_SYMBOL;

const PAGE_BYTES: u64 = 4096;

/// Maximum number of served pages listed in the warning; the count is
/// always exact.
const LISTED_PAGES: usize = 8;

/// The pages read from the image so far, and the rules for which may be.
pub struct ImageFallback {
    hypercall_page: Option<u64>,
    /// Run-time address minus file address of the image: 0 for a unikernel,
    /// the load bias of a position-independent program.
    bias: u64,
    /// Virtual page addresses served from the image.
    served_pages: Mutex<BTreeSet<u64>>,
}

impl ImageFallback {
    /// Prepares to serve missing code and read-only data from `image`.
    pub fn new(image: &Image) -> ImageFallback {
        let hypercall_page = image
            .symbols()
            .iter()
            .find(|symbol| symbol.name == HYPERCALL_PAGE_SYMBOL)
            .map(|symbol| symbol.address);
        ImageFallback { hypercall_page, bias: 0, served_pages: Mutex::new(BTreeSet::new()) }
    }

    /// Prepares to serve missing pages from `image` loaded at `bias`
    /// (run-time address minus file address), as a position-independent
    /// program of a Linux process is.
    pub fn with_load_bias(image: &Image, bias: u64) -> ImageFallback {
        ImageFallback { bias, ..ImageFallback::new(image) }
    }

    /// Returns the virtual addresses of the pages read from the image, in
    /// address order.
    pub fn served_pages(&self) -> Vec<u64> {
        self.served_pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().copied().collect()
    }

    /// Returns a warning naming the pages read from `image`, if any.
    pub fn warning(&self, image: &Image) -> Option<String> {
        let pages = self.served_pages();
        if pages.is_empty() {
            return None;
        }
        let mut listed: Vec<String> = pages.iter().take(LISTED_PAGES).map(|page| format!("{page:#x}")).collect();
        if pages.len() > LISTED_PAGES {
            listed.push("...".to_owned());
        }
        Some(format!(
            "{} of code or read-only data not in the dump {} read from the image {}: {}",
            if pages.len() == 1 { "1 page".to_owned() } else { format!("{} pages", pages.len()) },
            if pages.len() == 1 { "was" } else { "were" },
            image.path().display(),
            listed.join(", ")
        ))
    }

    /// Returns whether `len` bytes at `address` may be served from `image`:
    /// they lie in the file-backed part of a segment that is not writable,
    /// and outside Xen's hypercall page.
    fn servable(&self, image: &Image, address: u64, len: u64) -> bool {
        let address = address.wrapping_sub(self.bias);
        let Some(end) = address.checked_add(len) else {
            return false;
        };
        let page = address & !(PAGE_BYTES - 1);
        if self.hypercall_page.is_some_and(|hypercall_page| page == hypercall_page & !(PAGE_BYTES - 1)) {
            return false;
        }
        image.segments().iter().any(|segment| {
            !segment.writable && address >= segment.address && end <= segment.address.saturating_add(segment.file_len_bytes)
        })
    }

    /// Reads one piece that does not cross a page boundary.
    fn read_piece(&self, target: &dyn Target, image: &Image, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let error = match target.read_virtual(cr3, address, buf) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let missing = matches!(
            error,
            MemoryError::NotCaptured { .. } | MemoryError::PageTableNotCaptured { .. } | MemoryError::Corrupt { .. }
        );
        let page = address & !(PAGE_BYTES - 1);
        if !missing || !self.servable(image, address, buf.len() as u64) {
            return Err(error);
        }
        let Some(bytes) = image.bytes_at(address.wrapping_sub(self.bias), buf.len()) else {
            return Err(error);
        };
        tracing::debug!(address = format_args!("{address:#x}"), %error, "read from the image");
        buf.copy_from_slice(bytes);
        self.served_pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(page);
        Ok(())
    }

    /// Reads `target`'s virtual memory, taking missing code and read-only
    /// data from `image`.
    pub fn read_virtual(
        &self,
        target: &dyn Target,
        image: &Image,
        cr3: u64,
        address: u64,
        buf: &mut [u8],
    ) -> Result<(), MemoryError> {
        if target.read_virtual(cr3, address, buf).is_ok() {
            return Ok(());
        }
        // Page by page, so a read that spans a captured and a missing page
        // takes each from where it is.
        let mut done = 0;
        while done < buf.len() {
            let current = address.checked_add(done as u64).ok_or(MemoryError::NotCaptured { address, len: buf.len() })?;
            let page_left = (PAGE_BYTES - (current & (PAGE_BYTES - 1))) as usize;
            let len = page_left.min(buf.len() - done);
            self.read_piece(target, image, cr3, current, &mut buf[done..done + len]).map_err(|error| match error {
                MemoryError::NotCaptured { .. } => MemoryError::NotCaptured { address: current, len: buf.len() },
                other => other,
            })?;
            done += len;
        }
        Ok(())
    }
}

/// A target whose missing code and read-only data are read from the image.
pub struct ImageBacked<'a> {
    target: &'a dyn Target,
    image: &'a Image,
    fallback: ImageFallback,
}

impl<'a> ImageBacked<'a> {
    /// Wraps `target`, falling back to `image` for code and read-only data.
    pub fn new(target: &'a dyn Target, image: &'a Image) -> ImageBacked<'a> {
        ImageBacked { target, image, fallback: ImageFallback::new(image) }
    }

    /// Returns the virtual addresses of the pages read from the image.
    pub fn served_pages(&self) -> Vec<u64> {
        self.fallback.served_pages()
    }

    /// Returns a warning naming the pages read from the image, if any.
    pub fn warning(&self) -> Option<String> {
        self.fallback.warning(self.image)
    }
}

impl Target for ImageBacked<'_> {
    fn metadata(&self) -> &Metadata {
        self.target.metadata()
    }

    fn vcpus(&self) -> &[VcpuState] {
        self.target.vcpus()
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_physical(address, buf)
    }

    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.fallback.read_virtual(self.target, self.image, cr3, address, buf)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.target.memory_map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    /// A dump that has only the pages listed, filled with 0xaa.
    struct SparseDump {
        metadata: Metadata,
        pages: Vec<u64>,
    }

    impl Target for SparseDump {
        fn metadata(&self) -> &Metadata {
            &self.metadata
        }

        fn vcpus(&self) -> &[VcpuState] {
            &[]
        }

        fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            Err(MemoryError::NotCaptured { address, len: buf.len() })
        }

        fn read_virtual(&self, _cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let last = address + buf.len() as u64 - 1;
            for page in [address & !(PAGE_BYTES - 1), last & !(PAGE_BYTES - 1)] {
                if !self.pages.contains(&page) {
                    return Err(MemoryError::NotCaptured { address: page.max(address), len: buf.len() });
                }
            }
            buf.fill(0xaa);
            Ok(())
        }

        fn memory_map(&self) -> Vec<MemoryRange> {
            Vec::new()
        }
    }

    fn symbol(image: &Image, name: &str) -> u64 {
        image.symbols().iter().find(|symbol| symbol.name == name).unwrap().address
    }

    #[test]
    fn missing_code_read_from_image() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let dump = SparseDump { metadata: Metadata::default(), pages: Vec::new() };
        let backed = ImageBacked::new(&dump, &image);
        let blocker = symbol(&image, "blocker");
        let mut bytes = [0u8; 4];
        backed.read_virtual(0, blocker, &mut bytes).unwrap();
        assert_eq!(&bytes, image.bytes_at(blocker, 4).unwrap());
        assert_eq!(backed.served_pages(), vec![blocker & !(PAGE_BYTES - 1)]);
        let warning = backed.warning().unwrap();
        assert!(warning.starts_with("1 page of code or read-only data not in the dump"), "{warning}");
    }

    #[test]
    fn captured_bytes_preferred() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let blocker = symbol(&image, "blocker");
        let dump = SparseDump { metadata: Metadata::default(), pages: vec![blocker & !(PAGE_BYTES - 1)] };
        let backed = ImageBacked::new(&dump, &image);
        let mut bytes = [0u8; 4];
        backed.read_virtual(0, blocker, &mut bytes).unwrap();
        assert_eq!(bytes, [0xaa; 4]);
        assert_eq!(backed.warning(), None);
    }

    #[test]
    fn hypercall_page_not_served() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let dump = SparseDump { metadata: Metadata::default(), pages: Vec::new() };
        let backed = ImageBacked::new(&dump, &image);
        let page = symbol(&image, "hypercall_page");
        let mut bytes = [0u8; 4];
        let error = backed.read_virtual(0, page + 32, &mut bytes).unwrap_err();
        assert_eq!(error, MemoryError::NotCaptured { address: page + 32, len: 4 });
        assert_eq!(backed.served_pages(), Vec::<u64>::new());
    }

    #[test]
    fn writable_data_not_served() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let dump = SparseDump { metadata: Metadata::default(), pages: Vec::new() };
        let backed = ImageBacked::new(&dump, &image);
        let data = image.segments().iter().find(|segment| segment.writable && segment.file_len_bytes > 0).unwrap();
        let mut bytes = [0u8; 8];
        let error = backed.read_virtual(0, data.address, &mut bytes).unwrap_err();
        assert_eq!(error, MemoryError::NotCaptured { address: data.address, len: 8 });
        // Below the image there is nothing to serve either.
        assert!(backed.read_virtual(0, 0x1000, &mut bytes).is_err());
        assert_eq!(backed.warning(), None);
    }
}
