//! Checks that an image is the one the snapshot was taken from.
//!
//! A backtrace symbolized with the wrong image looks plausible and is wrong,
//! so the commands run [`check_image`] first and print what it finds as
//! warnings: a build id that differs from the one the capture recorded, and
//! code bytes in the snapshot that differ from the image's.

use stardump_format::{MemoryError, Target};

use crate::image::Image;

/// How many bytes at the start of each executable segment are compared.
/// Enough to catch a different build; reading all of `.text` would touch
/// many chunks of a large snapshot.
pub const COMPARED_CODE_BYTES: u64 = 16 * 1024;

/// A reason to distrust the image for this snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageMismatch {
    /// The build ids differ.
    #[error("image build id {image} differs from the snapshot's {snapshot}: frames and names may be wrong")]
    BuildId {
        /// The image's build id, in hex.
        image: String,
        /// The build id the capture recorded, in hex.
        snapshot: String,
    },
    /// The image has no build id but the snapshot records one.
    #[error("image has no build id but the snapshot records {snapshot}: cannot tell whether they match")]
    MissingBuildId {
        /// The build id the capture recorded, in hex.
        snapshot: String,
    },
    /// Code bytes in the snapshot differ from the image file.
    #[error("code at {address:#x} in the snapshot differs from the image: frames and names may be wrong")]
    CodeDiffers {
        /// First differing address.
        address: u64,
    },
    /// The code could not be read from the snapshot, so it was not compared.
    #[error("cannot compare the image's code with the snapshot: {error}")]
    CodeUnreadable {
        /// The failed read.
        error: MemoryError,
    },
}

/// Formats bytes as lowercase hex, as `readelf -n` prints build ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Compares `image` with `target` through the address space rooted at
/// `cr3`; returns every mismatch found.
pub fn check_image(image: &Image, target: &dyn Target, cr3: u64) -> Vec<ImageMismatch> {
    let mut mismatches = Vec::new();
    if let Some(snapshot_id) = target.metadata().image_build_id.as_deref() {
        match image.build_id() {
            Some(image_id) if image_id != snapshot_id => {
                mismatches.push(ImageMismatch::BuildId { image: hex(image_id), snapshot: hex(snapshot_id) })
            }
            Some(_) => {}
            None => mismatches.push(ImageMismatch::MissingBuildId { snapshot: hex(snapshot_id) }),
        }
    }

    // Xen writes the hypercall stubs into the page the image reserves when it
    // builds the domain, so those bytes differ from the file in every Xen
    // guest and prove nothing.
    let hypercall_page = image
        .symbols()
        .iter()
        .find(|symbol| symbol.name == crate::unwind::hypercall::HYPERCALL_PAGE_SYMBOL)
        .map(|symbol| symbol.address..symbol.address.saturating_add(4096));
    let written_by_xen = |address: u64| hypercall_page.as_ref().is_some_and(|page| page.contains(&address));

    for segment in image.segments().iter().filter(|segment| segment.executable) {
        let len = segment.file_len_bytes.min(COMPARED_CODE_BYTES);
        let Ok(len) = usize::try_from(len) else { continue };
        let Some(expected) = image.bytes_at(segment.address, len) else { continue };
        let mut actual = vec![0u8; len];
        if let Err(error) = target.read_virtual(cr3, segment.address, &mut actual) {
            mismatches.push(ImageMismatch::CodeUnreadable { error });
            continue;
        }
        let differs = expected
            .iter()
            .zip(&actual)
            .enumerate()
            .map(|(offset, bytes)| (segment.address.wrapping_add(offset as u64), bytes))
            .find(|&(address, (a, b))| a != b && !written_by_xen(address));
        if let Some((address, _)) = differs {
            mismatches.push(ImageMismatch::CodeDiffers { address });
        }
    }
    for mismatch in &mismatches {
        tracing::debug!(%mismatch, image = %image.path().display(), "image check");
    }
    mismatches
}

#[cfg(test)]
mod tests {
    use stardump_format::{MemoryRange, Metadata, VcpuState};

    use super::*;
    use crate::test_fixtures;

    /// Memory that holds the image's own bytes, with one byte changed.
    struct PatchedImage<'i> {
        image: &'i Image,
        metadata: Metadata,
        patched_address: u64,
    }

    impl Target for PatchedImage<'_> {
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
            let bytes = self
                .image
                .bytes_at(address, buf.len())
                .ok_or(MemoryError::NotCaptured { address, len: buf.len() })?;
            buf.copy_from_slice(bytes);
            if let Some(offset) = self.patched_address.checked_sub(address).filter(|&offset| offset < buf.len() as u64) {
                buf[offset as usize] ^= 0xff;
            }
            Ok(())
        }

        fn memory_map(&self) -> Vec<MemoryRange> {
            Vec::new()
        }
    }

    fn hypercall_page(image: &Image) -> u64 {
        image.symbols().iter().find(|symbol| symbol.name == "hypercall_page").unwrap().address
    }

    #[test]
    fn hypercall_page_bytes_ignored() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let page = hypercall_page(&image);
        let target = PatchedImage { image: &image, metadata: Metadata::default(), patched_address: page + 40 };
        assert_eq!(check_image(&image, &target, 0), Vec::new());
    }

    #[test]
    fn code_outside_hypercall_page_compared() {
        let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
        let blocker = image.symbols().iter().find(|symbol| symbol.name == "blocker").unwrap().address;
        let target = PatchedImage { image: &image, metadata: Metadata::default(), patched_address: blocker };
        assert_eq!(check_image(&image, &target, 0), vec![ImageMismatch::CodeDiffers { address: blocker }]);
    }
}
