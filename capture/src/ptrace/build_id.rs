//! Finds the GNU build id of each ELF file a process maps, so the analyzer
//! can check that it loads the same shared objects.
//!
//! The copy of the process's memory comes first. A mapping at file offset
//! 0 starts with the ELF header. In the files that GNU ld and lld write,
//! the first `PT_LOAD` segment also contains the program headers and the
//! `.note.gnu.build-id` section, and within that segment, memory offsets
//! from the mapping's start equal file offsets. When the note is
//! not there, the file is read from disk through
//! `/proc/PID/map_files/START-END` (the file that is mapped, even when it
//! was replaced or deleted since) or its path.

use std::fs::File;

use object::read::elf::{FileHeader, ProgramHeader};
use object::{Endianness, ReadCache, ReadRef};
use tracing::{debug, trace};

use super::maps::MapEntry;
use crate::memory::{MemoryCopy, PAGE_SIZE};

/// Bytes of a mapping read from the copy to look for the note. Build-id
/// notes sit in the first pages, right after the program headers.
const MAX_PREFIX_BYTES: u64 = 1 << 20;

/// Returns the build id in the `PT_NOTE` segments of the ELF file in
/// `data`, addressed by file offset, or `None` when `data` is not an
/// ELF64 file or has no readable build-id note.
fn build_id_in<'data, R: ReadRef<'data>>(data: R) -> Option<Vec<u8>> {
    let header = object::elf::FileHeader64::<Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    for segment in header.program_headers(endian, data).ok()? {
        if segment.p_type(endian) != object::elf::PT_NOTE {
            continue;
        }
        let Ok(Some(mut notes)) = segment.notes(endian, data) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == object::elf::ELF_NOTE_GNU && note.n_type(endian) == object::elf::NT_GNU_BUILD_ID {
                return Some(note.desc().to_vec());
            }
        }
    }
    None
}

/// Returns the captured bytes from `start` on, up to `len` bytes and up to
/// the first page that was not captured.
fn captured_prefix(copy: &MemoryCopy, start: u64, len: u64) -> Vec<u8> {
    let len = len.min(MAX_PREFIX_BYTES);
    let mut data = Vec::new();
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let end = start.saturating_add(len);
    let mut at = start;
    while at < end {
        if copy.read_physical(at, &mut page).is_err() {
            break;
        }
        data.extend_from_slice(&page);
        let Some(next) = at.checked_add(PAGE_SIZE) else {
            break;
        };
        at = next;
    }
    data.truncate(len as usize);
    data
}

/// Returns the build id of the file that `entry` maps from offset 0, read
/// from the copy of process `pid`'s memory or else from the file.
pub fn mapping_build_id(pid: i32, entry: &MapEntry, copy: &MemoryCopy) -> Option<Vec<u8>> {
    let prefix = captured_prefix(copy, entry.start, entry.len_bytes());
    if let Some(id) = build_id_in(prefix.as_slice()) {
        trace!(path = %entry.path, "build id found in memory");
        return Some(id);
    }
    let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", entry.start, entry.end);
    for path in [map_file.as_str(), entry.path.as_str()] {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(error) => {
                trace!(path, %error, "cannot open the mapped file");
                continue;
            }
        };
        let cache = ReadCache::new(file);
        if let Some(id) = build_id_in(&cache) {
            debug!(path, "build id read from the file, not from memory");
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_has_build_id_in_memory() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let entries = super::super::maps::parse_maps("/proc/self/maps".as_ref(), &maps).unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let entry = entries
            .iter()
            .find(|entry| entry.file_offset == 0 && entry.path == exe.to_str().unwrap())
            .expect("the executable is mapped at offset 0");

        let mut memory = super::super::memory::ProcessMemory::open(std::process::id() as i32);
        let mut copy = MemoryCopy::new(crate::memory::MemoryBudget::unlimited());
        let mut data = vec![0u8; entry.len_bytes() as usize];
        memory.read(entry.start, &mut data).unwrap();
        copy.insert(entry.start / PAGE_SIZE, &data).unwrap();

        let from_memory = build_id_in(captured_prefix(&copy, entry.start, entry.len_bytes()).as_slice());
        let on_disk = build_id_in(&ReadCache::new(File::open(&exe).unwrap()));
        assert!(on_disk.is_some(), "cargo links test binaries with a build id");
        assert_eq!(from_memory, on_disk);
    }

    #[test]
    fn non_elf_data_has_no_build_id() {
        assert_eq!(build_id_in(&[0u8; 4096][..]), None);
    }
}
