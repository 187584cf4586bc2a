//! Warnings every command prints the same way: an image that may not be
//! the one the target runs, and damage that `open` skipped in a snapshot.
//!
//! Text output prints each warning on stderr as `warning: …` before the
//! report; JSON output lists them in the report's `warnings` array.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use stardump_format::{Core, Target};

use crate::check::{check_image, ImageMismatch};
use crate::image::Image;

/// Opens the image at `path`, after [`reject_directory`].
pub fn open_image(path: &Path) -> anyhow::Result<Image> {
    reject_directory(path)?;
    Image::open(path).context("cannot load the image")
}

/// Rejects an `--image` that is a directory by name, because mapping one
/// fails with `ENODEV` ("No such device"), which misleads.
pub fn reject_directory(image: &Path) -> anyhow::Result<()> {
    if image.is_dir() {
        anyhow::bail!("cannot load the image: {} is a directory, not an ELF file", image.display());
    }
    Ok(())
}

/// Compares `image` with the code in `core`'s memory (see
/// [`crate::check`]) and returns each mismatch as a warning.
pub fn image_warnings(image: &Image, core: &Core) -> Vec<String> {
    if image.lacks_code() {
        return vec![format!(
            "{} has no bytes in its code sections, as in a separate debug file: the image's code was not \
             compared, and frames without CFI in its DWARF cannot be unwound",
            image.path().display()
        )];
    }
    // The image's code is mapped in every address space of a unikernel, so
    // the first cr3 serves for the comparison.
    let Some(vcpu) = core.vcpus().iter().find(|vcpu| vcpu.present.control) else {
        let source = if core.is_live() { "target" } else { "snapshot" };
        return vec![format!("no vCPU has cr3: the image's code was not compared with the {source}")];
    };
    check_image(image, core, vcpu.cr3).iter().map(|mismatch| describe_mismatch(mismatch, core.is_live())).collect()
}

/// Formats `mismatch`. A live target has memory, not a snapshot, so its
/// messages name the target instead.
fn describe_mismatch(mismatch: &ImageMismatch, live: bool) -> String {
    if !live {
        return mismatch.to_string();
    }
    match mismatch {
        ImageMismatch::BuildId { image, snapshot } => {
            format!("image build id {image} differs from the target's {snapshot}: frames and names may be wrong")
        }
        ImageMismatch::MissingBuildId { snapshot } => {
            format!("image has no build id but the target reports {snapshot}: cannot tell whether they match")
        }
        ImageMismatch::CodeDiffers { address } => {
            format!("code at {address:#x} in the target's memory differs from the image: frames and names may be wrong")
        }
        ImageMismatch::CodeUnreadable { error } => {
            format!("cannot compare the image's code with the target's memory: {error}")
        }
    }
}

/// Returns the damage that opening `core` found and skipped: the end of a
/// QEMU dump or Linux core cutting its memory short, or a stardump
/// snapshot's notes that failed their checksum or did not decode, and vCPU
/// notes missing against the header's `vcpu_count`. Each one leaves a
/// vCPU, a mapping table or a thread name out of the report, so a command
/// that lists vCPUs reports it incomplete.
pub fn damage_warnings(core: &Core) -> Vec<String> {
    if let Some(truncation) = core.truncation() {
        return vec![format!("{}: {truncation}", core.path().display())];
    }
    let Some(snapshot) = core.as_snapshot() else {
        return Vec::new();
    };
    snapshot.note_damage().iter().map(|damage| format!("damaged snapshot: {damage}")).collect()
}

/// Checks that `core` lists mapped files when it is a Linux process, whose
/// symbols are found through them. A process snapshot whose file mappings
/// note is damaged has none, and its error names the damage.
pub fn check_process_mappings(core: &Core, file: &Path) -> anyhow::Result<()> {
    if !super::is_process(core) || !core.file_mappings().is_empty() {
        return Ok(());
    }
    let damage = damage_warnings(core);
    let reason = if damage.is_empty() { "the file records none".to_owned() } else { damage.join("; ") };
    anyhow::bail!("{} is a Linux process, but its mapped files are unknown, so no symbols can be found: {reason}", file.display())
}

/// Writes `warnings` to `err` as text mode shows them.
pub fn write_text(warnings: &[String], err: &mut dyn Write) -> std::io::Result<()> {
    for warning in warnings {
        writeln!(err, "warning: {warning}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_code_mismatch_names_target_memory() {
        let mismatch = ImageMismatch::CodeDiffers { address: 0xffff_ffff_8010_0008 };
        assert_eq!(
            describe_mismatch(&mismatch, true),
            "code at 0xffffffff80100008 in the target's memory differs from the image: frames and names may be wrong"
        );
        assert_eq!(
            describe_mismatch(&mismatch, false),
            "code at 0xffffffff80100008 in the snapshot differs from the image: frames and names may be wrong"
        );
    }

    #[test]
    fn live_messages_never_name_snapshot() {
        let mismatches = [
            ImageMismatch::BuildId { image: "aa".to_owned(), snapshot: "bb".to_owned() },
            ImageMismatch::MissingBuildId { snapshot: "bb".to_owned() },
            ImageMismatch::CodeDiffers { address: 0x1000 },
            ImageMismatch::CodeUnreadable { error: stardump_format::MemoryError::NotCaptured { address: 0x1000, len: 8 } },
        ];
        for mismatch in &mismatches {
            let text = describe_mismatch(mismatch, true);
            assert!(!text.contains("snapshot"), "{text}");
        }
    }

    #[test]
    fn directory_rejected_as_image() {
        let dir = std::env::temp_dir();
        let error = open_image(&dir).err().expect("a directory is not an image");
        assert_eq!(
            error.to_string(),
            format!("cannot load the image: {} is a directory, not an ELF file", dir.display())
        );
    }
}
