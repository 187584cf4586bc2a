//! Finding ELF files and separate debug files by build id, by name and by
//! `.gnu_debuglink`, in the directories gdb searches.
//!
//! A debug directory is searched in two layouts: the build-id tree
//! `DIR/.build-id/xx/yyyy.debug` (the first byte of the build id in hex, then
//! the rest), and flat, `DIR/NAME`. For a `.gnu_debuglink` name, gdb 13 also
//! looks next to the stripped file and in its `.debug/` subdirectory. It
//! also joins each debug directory with the stripped file's directory, and
//! [`DebugSearch::find_by_debug_link`] searches the same places. A candidate counts only when its
//! build id or its CRC matches, because a debug file of another build gives
//! plausible and wrong names and lines.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::check::hex;
use crate::image::DebugLink;

/// The system-wide debug directory of Debian's `-dbg` and `-dbgsym` packages.
pub const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";

/// Maximum size of a debug file whose CRC is computed, so a path that
/// names a huge file cannot make the search read it all.
/// NOTE: a guess, above the 1 GiB debug files of the largest C++ programs.
const MAX_CRC_FILE_BYTES: u64 = 4 << 30;

/// The directories searched for ELF and debug files.
#[derive(Debug, Clone, Default)]
pub struct DebugSearch {
    /// Debug directories, searched in order before the system one.
    pub debug_dirs: Vec<PathBuf>,
    /// Whether to search [`SYSTEM_DEBUG_DIR`] after `debug_dirs`.
    pub system_dir: bool,
}

impl DebugSearch {
    /// Searches `debug_dirs`, then [`SYSTEM_DEBUG_DIR`].
    pub fn new(debug_dirs: Vec<PathBuf>) -> DebugSearch {
        DebugSearch { debug_dirs, system_dir: true }
    }

    /// Returns a warning for each directory given to search that does not
    /// exist or is not a directory, since searching it finds nothing.
    pub fn unusable_directories(&self) -> Vec<String> {
        self.debug_dirs
            .iter()
            .filter_map(|dir| match std::fs::metadata(dir) {
                Ok(metadata) if metadata.is_dir() => None,
                Ok(_) => Some(format!("--debug-dir {}: not a directory, so it is not searched", dir.display())),
                Err(error) => Some(format!("--debug-dir {}: {error}, so it is not searched", dir.display())),
            })
            .collect()
    }

    /// Returns the debug directories in search order.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs = self.debug_dirs.clone();
        if self.system_dir {
            dirs.push(PathBuf::from(SYSTEM_DEBUG_DIR));
        }
        dirs
    }

    /// Returns the paths where a file with `build_id` would be, in search
    /// order, whether or not they exist.
    pub fn build_id_candidates(&self, build_id: &[u8]) -> Vec<PathBuf> {
        let Some((first, rest)) = build_id.split_first() else {
            return Vec::new();
        };
        let relative = Path::new(".build-id").join(format!("{first:02x}")).join(format!("{}.debug", hex(rest)));
        self.directories().iter().map(|dir| dir.join(&relative)).collect()
    }

    /// Finds a file whose build id is `build_id`: in the build-id trees, then
    /// as `name` in each debug directory. Returns the first match.
    pub fn find_by_build_id(&self, build_id: &[u8], name: Option<&str>) -> Option<PathBuf> {
        let mut candidates = self.build_id_candidates(build_id);
        if let Some(name) = name {
            candidates.extend(self.debug_dirs.iter().map(|dir| dir.join(name)));
        }
        candidates.into_iter().find(|path| {
            let found = read_build_id(path);
            tracing::trace!(path = %path.display(), found = ?found.as_deref().map(hex), "build id candidate");
            found.as_deref() == Some(build_id)
        })
    }

    /// Finds the debug file that `link` in the file at `stripped` names,
    /// checking its CRC.
    pub fn find_by_debug_link(&self, stripped: &Path, link: &DebugLink) -> Option<PathBuf> {
        // The name must be a plain file name: a crafted section must not
        // send the search up the directory tree.
        if link.file_name.is_empty() || link.file_name.contains('/') || link.file_name == ".." {
            tracing::debug!(name = %link.file_name, "ignoring a .gnu_debuglink name that is not a file name");
            return None;
        }
        let stripped_dir = stripped.parent().unwrap_or(Path::new(""));
        let mut candidates = vec![stripped_dir.join(&link.file_name), stripped_dir.join(".debug").join(&link.file_name)];
        for dir in self.directories() {
            candidates.push(dir.join(&link.file_name));
            // gdb joins the debug directory and the stripped file's absolute
            // directory: /usr/lib/debug/usr/bin/prog.debug.
            if let Ok(relative) = stripped_dir.strip_prefix("/") {
                candidates.push(dir.join(relative).join(&link.file_name));
            }
        }
        candidates.dedup();
        candidates.into_iter().filter(|path| path != stripped).find(|path| {
            let crc = file_crc(path);
            tracing::trace!(path = %path.display(), ?crc, expected = link.crc, "debug link candidate");
            crc == Some(link.crc)
        })
    }
}

/// Returns the GNU build id of the ELF file at `path`, or `None` when it
/// cannot be read, is not ELF or has none.
pub fn read_build_id(path: &Path) -> Option<Vec<u8>> {
    use object::Object;

    if !is_regular_file(path) {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only private map; object checks every offset it reads.
    let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*data).ok()?;
    elf.build_id().ok().flatten().map(<[u8]>::to_vec)
}

/// Returns the CRC-32 of the file at `path`, as `.gnu_debuglink` records
/// it, or `None` when it cannot be read or is larger than the limit.
fn file_crc(path: &Path) -> Option<u32> {
    if !is_regular_file(path) {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > MAX_CRC_FILE_BYTES {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Some(hasher.finalize())
}

/// Returns whether `path` names a regular file (after symbolic links).
/// Paths come from the core and may name a FIFO, whose `open` blocks until
/// a writer appears, or a device. So only regular files are opened.
pub fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_debug_dirs_warn() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let missing = dir.path().join("missing");
        let search = DebugSearch::new(vec![dir.path().to_path_buf(), file.clone(), missing.clone()]);
        let warnings = search.unusable_directories();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0], format!("--debug-dir {}: not a directory, so it is not searched", file.display()));
        assert!(warnings[1].starts_with(&format!("--debug-dir {}: No such file or directory", missing.display())), "{}", warnings[1]);
    }

    #[test]
    fn build_id_path_splits_first_byte() {
        let search = DebugSearch { debug_dirs: vec![PathBuf::from("/d")], system_dir: true };
        let paths = search.build_id_candidates(&[0xab, 0xcd, 0xef]);
        assert_eq!(paths[0], PathBuf::from("/d/.build-id/ab/cdef.debug"));
        assert_eq!(paths[1], PathBuf::from("/usr/lib/debug/.build-id/ab/cdef.debug"));
    }

    #[test]
    fn empty_build_id_has_no_candidates() {
        assert!(DebugSearch::new(Vec::new()).build_id_candidates(&[]).is_empty());
    }

    #[test]
    fn debug_link_checks_crc() {
        let dir = tempfile::tempdir().unwrap();
        let debug = dir.path().join("prog.debug");
        std::fs::write(&debug, b"debug file contents").unwrap();
        let crc = crc32fast::hash(b"debug file contents");
        let stripped = dir.path().join("prog");
        let search = DebugSearch { debug_dirs: Vec::new(), system_dir: false };

        let right = DebugLink { file_name: "prog.debug".into(), crc };
        assert_eq!(search.find_by_debug_link(&stripped, &right), Some(debug));
        let wrong = DebugLink { file_name: "prog.debug".into(), crc: crc ^ 1 };
        assert_eq!(search.find_by_debug_link(&stripped, &wrong), None);
    }

    #[test]
    fn fifo_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("running mkfifo");
        assert!(status.success());
        // Opening the FIFO would block this test forever.
        assert_eq!(read_build_id(&fifo), None);
        assert!(!is_regular_file(&fifo));
    }

    #[test]
    fn debug_link_rejects_paths() {
        let search = DebugSearch::new(Vec::new());
        let link = DebugLink { file_name: "../etc/passwd".into(), crc: 0 };
        assert_eq!(search.find_by_debug_link(Path::new("/usr/bin/prog"), &link), None);
    }
}
