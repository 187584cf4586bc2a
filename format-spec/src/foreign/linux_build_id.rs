//! Finds the GNU build id of an ELF file mapped into a process, from the
//! process's memory alone.
//!
//! Neither Linux nor gdb writes build ids into a process core, but both
//! capture the first page of each file mapping that starts at file offset
//! 0. That page contains the ELF header, and usually the program headers and
//! the `.note.gnu.build-id` section too. So the build id is found by
//! reading the header, then each `PT_NOTE` segment, through the core's
//! memory. Anything unreadable or malformed gives `None`, never an error:
//! a mapping without a build id is ordinary.

use tracing::trace;

use super::elf::{self, read_u16, read_u32, read_u64};
use crate::target::MemoryError;

/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// `p_type` of a note segment.
const PT_NOTE: u32 = 4;
/// Owner name and type of the build-id note.
const GNU_NOTE_NAME: &[u8] = b"GNU";
const NT_GNU_BUILD_ID: u32 = 3;
/// Length of an ELF64 program header.
const PROGRAM_HEADER_LEN: usize = 56;
/// Program header count above which a mapped header is taken as garbage;
/// linkers emit about a dozen.
const MAX_PROGRAM_HEADERS: usize = 256;
/// Note segment length above which it is not read; build-id notes sit in
/// segments of a few hundred bytes.
const MAX_NOTE_SEGMENT_LEN: u64 = 0x1_0000;

/// Reads process memory at an address into the whole buffer.
pub(super) type ReadMemory<'a> = dyn Fn(u64, &mut [u8]) -> Result<(), MemoryError> + 'a;

/// Returns the build id of the ELF file whose first byte is mapped at
/// `start` by a mapping of `mapping_len` bytes. Returns `None` when the
/// mapped bytes are not a readable ELF64 file with a build-id note.
pub(super) fn mapped_build_id(read: &ReadMemory<'_>, start: u64, mapping_len: u64) -> Option<Vec<u8>> {
    let mut header = [0u8; elf::ELF_HEADER_LEN as usize];
    read(start, &mut header).ok()?;
    // ELF64, little endian: the only files an x86_64 process maps and runs.
    if !elf::has_elf_magic(&header) || header[4] != 2 || header[5] != 1 {
        trace!(start = format_args!("{start:#x}"), "mapping does not start with an ELF64 LSB header");
        return None;
    }
    let e_phoff = read_u64(&header, 32);
    let e_phentsize = usize::from(read_u16(&header, 54));
    let e_phnum = usize::from(read_u16(&header, 56));
    if e_phentsize != PROGRAM_HEADER_LEN || e_phnum == 0 || e_phnum > MAX_PROGRAM_HEADERS {
        trace!(e_phentsize, e_phnum, "mapped ELF header has no usable program header table");
        return None;
    }
    let mut table = vec![0u8; e_phnum * PROGRAM_HEADER_LEN];
    read(start.checked_add(e_phoff)?, &mut table).ok()?;
    let headers: Vec<&[u8]> = table.chunks_exact(PROGRAM_HEADER_LEN).collect();

    // The load bias: the lowest PT_LOAD maps file offset p_offset to p_vaddr,
    // and the mapping maps file offset 0 to `start`.
    let first_load = headers.iter().filter(|h| read_u32(h, 0) == PT_LOAD).min_by_key(|h| read_u64(h, 8));
    let bias = first_load.map(|h| start.wrapping_sub(read_u64(h, 16).wrapping_sub(read_u64(h, 8))));

    for note_header in headers.iter().filter(|h| read_u32(h, 0) == PT_NOTE) {
        let p_offset = read_u64(note_header, 8);
        let p_vaddr = read_u64(note_header, 16);
        let p_filesz = read_u64(note_header, 32);
        if p_filesz == 0 || p_filesz > MAX_NOTE_SEGMENT_LEN {
            continue;
        }
        // Notes inside the mapping of file offset 0 are read by file offset,
        // which needs no load bias; others through p_vaddr and the bias.
        let address = match p_offset.checked_add(p_filesz) {
            Some(end) if end <= mapping_len => start.checked_add(p_offset),
            _ => bias.map(|bias| bias.wrapping_add(p_vaddr)),
        };
        let Some(address) = address else { continue };
        let mut bytes = vec![0u8; p_filesz as usize];
        if let Err(error) = read(address, &mut bytes) {
            trace!(%error, "note segment of a mapped ELF file is not captured");
            continue;
        }
        let Ok(notes) = elf::parse_notes(&bytes, address) else { continue };
        let build_id = notes.iter().find(|n| n.name == GNU_NOTE_NAME && n.note_type == NT_GNU_BUILD_ID);
        if let Some(note) = build_id.filter(|note| !note.desc.is_empty()) {
            return Some(note.desc.to_vec());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the first page of a position-independent ELF file with a
    /// build-id note at file offset 0x200.
    fn elf_page(build_id: &[u8]) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        page[0..4].copy_from_slice(b"\x7fELF");
        page[4] = 2;
        page[5] = 1;
        page[32..40].copy_from_slice(&64u64.to_le_bytes());
        page[54..56].copy_from_slice(&56u16.to_le_bytes());
        page[56..58].copy_from_slice(&2u16.to_le_bytes());
        let load = 64;
        page[load..load + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        let note = 64 + 56;
        page[note..note + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        page[note + 8..note + 16].copy_from_slice(&0x200u64.to_le_bytes());
        page[note + 16..note + 24].copy_from_slice(&0x200u64.to_le_bytes());
        let desc_len = build_id.len() as u64;
        page[note + 32..note + 40].copy_from_slice(&(16 + desc_len).to_le_bytes());
        let at = 0x200;
        page[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
        page[at + 4..at + 8].copy_from_slice(&(build_id.len() as u32).to_le_bytes());
        page[at + 8..at + 12].copy_from_slice(&NT_GNU_BUILD_ID.to_le_bytes());
        page[at + 12..at + 16].copy_from_slice(b"GNU\0");
        page[at + 16..at + 16 + build_id.len()].copy_from_slice(build_id);
        page
    }

    fn reader(base: u64, page: &[u8]) -> impl Fn(u64, &mut [u8]) -> Result<(), MemoryError> + '_ {
        move |address, buf| {
            let not_captured = MemoryError::NotCaptured { address, len: buf.len() };
            let offset = address.checked_sub(base).ok_or(not_captured.clone())? as usize;
            let bytes = page.get(offset..offset + buf.len()).ok_or(not_captured)?;
            buf.copy_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn build_id_found_through_file_offset() {
        let page = elf_page(&[0xab; 20]);
        let read = reader(0x5555_0000, &page);
        assert_eq!(mapped_build_id(&read, 0x5555_0000, 0x1000), Some(vec![0xab; 20]));
    }

    #[test]
    fn build_id_absent_without_elf_magic() {
        let mut page = elf_page(&[1; 20]);
        page[1] = b'X';
        let read = reader(0x5555_0000, &page);
        assert_eq!(mapped_build_id(&read, 0x5555_0000, 0x1000), None);
    }

    #[test]
    fn build_id_absent_when_notes_not_captured() {
        let page = elf_page(&[1; 20]);
        let read = reader(0x5555_0000, &page[..0x100]);
        assert_eq!(mapped_build_id(&read, 0x5555_0000, 0x1000), None);
    }
}
