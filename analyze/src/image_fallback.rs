//! Reading code and read-only data from the image where a dump lacks them.
//!
//! `xl dump-core` leaves out guest frames it could not map (all-ones
//! padding entries in `.xen_p2m`), a walk capture has only the frames the
//! page tables map, and a damaged chunk loses its pages. A Linux kernel core
//! and a gdb 13 `gcore` file leave out file-backed mappings that were never
//! written to (with the default `coredump_filter` of 0x33, only the first
//! page of a mapped ELF file is kept), so a program's `.rodata` and a shared
//! library's `.text` are missing. Code and read-only data do not change while the target runs, so
//! the file bytes are what the target had there. [`ImageBacked`] serves
//! those reads from the unikernel's image or from the module of a process
//! that contains the address, at that module's load bias, and records every
//! page it served, so the command can warn about them. A value read from a
//! file is never passed off as captured memory.
//!
//! Writable segments, the part of a segment past its file bytes (`.bss`)
//! and Xen's hypercall page (which Xen fills when it builds the domain) are
//! never served from a file, because their bytes at run time differ from
//! the file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use stardump_format::{MemoryError, MemoryRange, Metadata, Target, VcpuState};

use crate::image::Image;
use crate::modules::ModuleSet;
use crate::unwind::hypercall::HYPERCALL_PAGE_SYMBOL;

const PAGE_BYTES: u64 = 4096;

/// Maximum number of served pages listed in the warning; the count is
/// always exact.
const LISTED_PAGES: usize = 8;

/// The files missing memory may be read from.
#[derive(Clone, Copy)]
pub enum FileImages<'a> {
    /// A unikernel's image, linked at its run-time addresses.
    Image(&'a Image),
    /// The loaded modules of a Linux process, each at its load bias.
    Modules(&'a ModuleSet),
}

impl<'a> FileImages<'a> {
    /// Returns the image that contains the run-time `address`, with its
    /// load bias (run-time address minus file address).
    fn locate(self, address: u64) -> Option<(&'a Image, u64)> {
        match self {
            FileImages::Image(image) => Some((image, 0)),
            FileImages::Modules(modules) => modules.module_for(address).map(|module| (&*module.image, module.bias)),
        }
    }
}

/// The pages read from files so far, and the rules for which may be.
pub struct ImageFallback {
    hypercall_page: Option<u64>,
    /// Whether the files are the modules of a Linux process.
    process: bool,
    /// Virtual page addresses served from a file, with the file's path.
    served_pages: Mutex<BTreeMap<u64, PathBuf>>,
}

impl ImageFallback {
    /// Prepares to serve missing code and read-only data from the
    /// unikernel `image`, which has Xen's hypercall page if it is a Xen guest.
    pub fn new(image: &Image) -> ImageFallback {
        let hypercall_page = image
            .symbols()
            .iter()
            .find(|symbol| symbol.name == HYPERCALL_PAGE_SYMBOL)
            .map(|symbol| symbol.address);
        ImageFallback { hypercall_page, process: false, served_pages: Mutex::new(BTreeMap::new()) }
    }

    /// Prepares to serve missing code and read-only data from the modules
    /// of a Linux process.
    pub fn for_modules() -> ImageFallback {
        ImageFallback { hypercall_page: None, process: true, served_pages: Mutex::new(BTreeMap::new()) }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, PathBuf>> {
        self.served_pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the virtual addresses of the pages read from files, in
    /// address order.
    pub fn served_pages(&self) -> Vec<u64> {
        self.served().keys().copied().collect()
    }

    /// Returns a warning naming the pages read from files, if any.
    pub fn warning(&self) -> Option<String> {
        let served = self.served();
        if served.is_empty() {
            return None;
        }
        let mut listed: Vec<String> = served.keys().take(LISTED_PAGES).map(|page| format!("{page:#x}")).collect();
        if served.len() > LISTED_PAGES {
            listed.push("...".to_owned());
        }
        let mut paths: Vec<&Path> = served.values().map(PathBuf::as_path).collect();
        paths.sort_unstable();
        paths.dedup();
        let listed_paths = paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ");
        let source = match (self.process, paths.len()) {
            (false, _) => format!("the image {listed_paths}"),
            (true, 1) => format!("the mapped file {listed_paths}"),
            (true, _) => format!("the mapped files {listed_paths}"),
        };
        Some(format!(
            "{} of code or read-only data not in the dump {} read from {source}: {}",
            if served.len() == 1 { "1 page".to_owned() } else { format!("{} pages", served.len()) },
            if served.len() == 1 { "was" } else { "were" },
            listed.join(", ")
        ))
    }

    /// Returns whether `len` bytes at the file address `address` may be
    /// served from `image`: they lie in the file-backed part of a segment
    /// that is not writable, and outside Xen's hypercall page.
    fn servable(&self, image: &Image, address: u64, len: u64) -> bool {
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
    fn read_piece(
        &self,
        target: &dyn Target,
        images: FileImages<'_>,
        cr3: u64,
        address: u64,
        buf: &mut [u8],
    ) -> Result<(), MemoryError> {
        let error = match target.read_virtual(cr3, address, buf) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let missing = matches!(
            error,
            MemoryError::NotCaptured { .. } | MemoryError::PageTableNotCaptured { .. } | MemoryError::Corrupt { .. }
        );
        let page = address & !(PAGE_BYTES - 1);
        if !missing {
            return Err(error);
        }
        let Some((image, bias)) = images.locate(address) else {
            return Err(error);
        };
        let file_address = address.wrapping_sub(bias);
        if !self.servable(image, file_address, buf.len() as u64) {
            return Err(error);
        }
        let Some(bytes) = image.bytes_at(file_address, buf.len()) else {
            return Err(error);
        };
        tracing::debug!(address = format_args!("{address:#x}"), file = %image.path().display(), %error, "read from the file");
        buf.copy_from_slice(bytes);
        self.served().insert(page, image.path().to_owned());
        Ok(())
    }

    /// Reads `target`'s virtual memory, taking missing code and read-only
    /// data from `images`.
    pub fn read_virtual(
        &self,
        target: &dyn Target,
        images: FileImages<'_>,
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
            self.read_piece(target, images, cr3, current, &mut buf[done..done + len]).map_err(|error| match error {
                MemoryError::NotCaptured { .. } => MemoryError::NotCaptured { address: current, len: buf.len() },
                other => other,
            })?;
            done += len;
        }
        Ok(())
    }
}

/// A target whose missing code and read-only data are read from files.
pub struct ImageBacked<'a> {
    target: &'a dyn Target,
    images: FileImages<'a>,
    fallback: ImageFallback,
}

impl<'a> ImageBacked<'a> {
    /// Wraps `target`, falling back to the unikernel `image` for code and
    /// read-only data.
    pub fn new(target: &'a dyn Target, image: &'a Image) -> ImageBacked<'a> {
        ImageBacked { target, images: FileImages::Image(image), fallback: ImageFallback::new(image) }
    }

    /// Wraps the Linux process `target`, falling back to the module of
    /// `modules` that contains an address for its code and read-only data.
    pub fn for_modules(target: &'a dyn Target, modules: &'a ModuleSet) -> ImageBacked<'a> {
        ImageBacked { target, images: FileImages::Modules(modules), fallback: ImageFallback::for_modules() }
    }

    /// Returns the virtual addresses of the pages read from files.
    pub fn served_pages(&self) -> Vec<u64> {
        self.fallback.served_pages()
    }

    /// Returns a warning naming the pages read from files, if any.
    pub fn warning(&self) -> Option<String> {
        self.fallback.warning()
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
        self.fallback.read_virtual(self.target, self.images, cr3, address, buf)
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
