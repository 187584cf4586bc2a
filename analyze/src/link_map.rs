//! The dynamic linker's list of loaded objects (`struct link_map`), read
//! from a process's memory, for the names gdb shows for shared objects.
//!
//! gdb names a shared object by the path the dynamic linker opened it by
//! (`l_name`), such as `/lib/x86_64-linux-gnu/libc.so.6`, while the core's
//! file mappings list the path the kernel resolved, which on a merged-/usr
//! system is `/usr/lib/x86_64-linux-gnu/libc.so.6`. The list is found as gdb
//! finds it (its `svr4_fetch_objfile_link_map`): the `DT_DEBUG` entry of the
//! main program's dynamic section points to glibc's `struct r_debug`, whose
//! `r_map` heads the list.
//!
//! Everything here is read from the target, so it is untrusted: the
//! dynamic section, the list and each name are bounded, a cycle ends the
//! walk, and any failure leaves the caller with the mapped paths.

use std::collections::HashSet;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};

use crate::modules::{ModuleSet, VDSO_NAME};
use crate::unwind::StackMemory;

/// Size of one `Elf64_Dyn` entry: `d_tag` and `d_val`, 8 bytes each.
const DYN_ENTRY_BYTES: u64 = 16;

/// `d_tag` values of the ELF gABI: the end of the dynamic section, and the
/// entry the dynamic linker fills with the address of `struct r_debug`.
const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;

/// Maximum number of dynamic entries read before `DT_NULL`. glibc's
/// programs have about 30; a section without `DT_NULL` in this many is
/// damaged.
const MAX_DYNAMIC_ENTRIES: u64 = 1024;

/// Offset of `r_map` in glibc's `struct r_debug` on x86_64, after the
/// `int r_version` and its padding.
const R_MAP_OFFSET: u64 = 8;

/// Offsets of the fields of `struct link_map` on x86_64 that the SysV ABI
/// fixes (`<link.h>`): `l_addr`, `l_name`, `l_ld`, `l_next`.
const L_ADDR_OFFSET: u64 = 0;
const L_NAME_OFFSET: u64 = 8;
const L_LD_OFFSET: u64 = 16;
const L_NEXT_OFFSET: u64 = 24;

/// Maximum number of objects walked. NOTE: a guess, far above the few
/// hundred shared objects of a large process.
const MAX_ENTRIES: usize = 4096;

/// Maximum length of an `l_name`, Linux's `PATH_MAX` with its NUL.
const MAX_NAME_BYTES: usize = 4096;

/// Bytes of a name read at once, so a short name near the end of a mapping
/// does not need the bytes after the mapping.
const NAME_CHUNK_BYTES: usize = 64;

/// One object of the dynamic linker's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMapEntry {
    /// Run-time address minus file address (`l_addr`).
    pub l_addr: u64,
    /// The path the dynamic linker opened the object by (`l_name`); empty
    /// for the main program.
    pub l_name: String,
    /// Run-time address of the object's dynamic section (`l_ld`).
    pub l_ld: u64,
}

/// Reads the dynamic linker's list of `modules`'s process from `memory`.
/// `main` is the position in `modules` of the main program, whose dynamic
/// section holds `DT_DEBUG`. Returns an empty list when the program is
/// static, the dynamic linker had not yet filled in `DT_DEBUG`, or the
/// memory is missing or damaged; the reason goes to the debug log.
pub fn read_link_map(modules: &ModuleSet, main: usize, memory: &dyn StackMemory) -> Vec<LinkMapEntry> {
    let Some(module) = modules.modules().get(main) else {
        return Vec::new();
    };
    let Some(dynamic) = dynamic_address(module.image.elf_bytes()) else {
        tracing::debug!(path = %module.mapped_path, "the main program has no PT_DYNAMIC, so no link_map list is read");
        return Vec::new();
    };
    let dynamic = dynamic.wrapping_add(module.bias);
    let r_debug = match find_dt_debug(memory, dynamic) {
        Ok(Some(address)) if address != 0 => address,
        Ok(_) => {
            tracing::debug!(dynamic = format_args!("{dynamic:#x}"), "DT_DEBUG is missing or 0, so no link_map list is read");
            return Vec::new();
        }
        Err(reason) => {
            tracing::debug!(dynamic = format_args!("{dynamic:#x}"), %reason, "failed to read the main program's dynamic section");
            return Vec::new();
        }
    };
    let entries = walk(memory, r_debug);
    tracing::debug!(r_debug = format_args!("{r_debug:#x}"), objects = entries.len(), "read the link_map list");
    entries
}

/// Returns, for each module of `modules` in order, the name gdb shows for
/// it: the `l_name` of the list entry whose dynamic section lies in the
/// module, when that name is not empty. The main program and the vDSO
/// get `None`, as they do not print as shared objects.
pub fn module_names(modules: &ModuleSet, entries: &[LinkMapEntry]) -> Vec<Option<String>> {
    modules
        .modules()
        .iter()
        .map(|module| {
            if module.mapped_path == VDSO_NAME {
                return None;
            }
            entries
                .iter()
                .find(|entry| module.contains(entry.l_ld) && !entry.l_name.is_empty())
                .map(|entry| entry.l_name.clone())
        })
        .collect()
}

/// Returns the file address of the dynamic section (`PT_DYNAMIC`'s
/// `p_vaddr`) of the 64-bit little-endian ELF file `bytes`.
fn dynamic_address(bytes: &[u8]) -> Option<u64> {
    let header = elf::FileHeader64::<object::LittleEndian>::parse(bytes).ok()?;
    let endian = header.endian().ok()?;
    let segments = header.program_headers(endian, bytes).ok()?;
    segments.iter().find(|segment| segment.p_type(endian) == elf::PT_DYNAMIC).map(|segment| segment.p_vaddr(endian))
}

/// Reads the dynamic entries at `dynamic` up to `DT_NULL` and returns the
/// value of `DT_DEBUG`, the address of `struct r_debug`.
fn find_dt_debug(memory: &dyn StackMemory, dynamic: u64) -> Result<Option<u64>, String> {
    for index in 0..MAX_DYNAMIC_ENTRIES {
        let entry = dynamic
            .checked_add(index * DYN_ENTRY_BYTES)
            .ok_or_else(|| format!("dynamic entry {index} at {dynamic:#x} overflows"))?;
        let tag = memory.read_u64(entry).map_err(|error| format!("d_tag of entry {index}: {error}"))?;
        match tag {
            DT_NULL => return Ok(None),
            DT_DEBUG => {
                let value = memory.read_u64(entry + 8).map_err(|error| format!("d_val of DT_DEBUG: {error}"))?;
                return Ok(Some(value));
            }
            _ => {}
        }
    }
    Err(format!("no DT_NULL in the first {MAX_DYNAMIC_ENTRIES} entries"))
}

/// Walks the list that `r_debug.r_map` heads. Stops at a null `l_next`, at
/// an entry seen before, after [`MAX_ENTRIES`] entries, or at the first
/// entry that cannot be read, keeping the entries read so far.
fn walk(memory: &dyn StackMemory, r_debug: u64) -> Vec<LinkMapEntry> {
    let mut entries = Vec::new();
    let mut next = match r_debug.checked_add(R_MAP_OFFSET).map(|field| memory.read_u64(field)) {
        Some(Ok(head)) => head,
        Some(Err(error)) => {
            tracing::debug!(r_debug = format_args!("{r_debug:#x}"), %error, "failed to read r_map");
            return entries;
        }
        None => return entries,
    };
    let mut seen = HashSet::new();
    while next != 0 {
        if !seen.insert(next) {
            tracing::debug!(link_map = format_args!("{next:#x}"), "the link_map list loops back, so the walk ends");
            break;
        }
        if entries.len() >= MAX_ENTRIES {
            tracing::debug!(max = MAX_ENTRIES, "the link_map list is longer than the maximum, so the walk ends");
            break;
        }
        match read_entry(memory, next) {
            Ok((entry, following)) => {
                entries.push(entry);
                next = following;
            }
            Err(reason) => {
                tracing::debug!(link_map = format_args!("{next:#x}"), %reason, "failed to read a link_map entry");
                break;
            }
        }
    }
    entries
}

/// Reads the `struct link_map` at `address`; returns it and its `l_next`.
fn read_entry(memory: &dyn StackMemory, address: u64) -> Result<(LinkMapEntry, u64), String> {
    let field = |offset: u64, name: &str| -> Result<u64, String> {
        let at = address.checked_add(offset).ok_or_else(|| format!("{name} overflows"))?;
        memory.read_u64(at).map_err(|error| format!("{name}: {error}"))
    };
    let l_addr = field(L_ADDR_OFFSET, "l_addr")?;
    let name_address = field(L_NAME_OFFSET, "l_name")?;
    let l_ld = field(L_LD_OFFSET, "l_ld")?;
    let l_next = field(L_NEXT_OFFSET, "l_next")?;
    let l_name = if name_address == 0 { String::new() } else { read_c_string(memory, name_address)? };
    Ok((LinkMapEntry { l_addr, l_name, l_ld }, l_next))
}

/// Reads the NUL-terminated string at `address`, at most [`MAX_NAME_BYTES`]
/// long. Reads one chunk at a time and falls back to single bytes when a
/// chunk crosses into unreadable memory.
fn read_c_string(memory: &dyn StackMemory, address: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_NAME_BYTES {
        let at = address
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| format!("the name at {address:#x} runs past the end of the address space"))?;
        let mut chunk = [0u8; NAME_CHUNK_BYTES];
        let read = match memory.read(at, &mut chunk) {
            Ok(()) => &chunk[..],
            Err(_) => {
                memory.read(at, &mut chunk[..1]).map_err(|error| format!("the name at {address:#x}: {error}"))?;
                &chunk[..1]
            }
        };
        match read.iter().position(|&byte| byte == 0) {
            Some(end) => {
                bytes.extend_from_slice(&read[..end]);
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            None => bytes.extend_from_slice(read),
        }
    }
    Err(format!("the name at {address:#x} has no NUL in its first {MAX_NAME_BYTES} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stardump_format::MemoryError;

    /// Memory made of one region of bytes at an address.
    struct Region {
        start: u64,
        bytes: Vec<u8>,
    }

    impl StackMemory for Region {
        fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            let offset = address.checked_sub(self.start).and_then(|offset| usize::try_from(offset).ok());
            let range = offset.and_then(|offset| Some(offset..offset.checked_add(buf.len())?));
            match range.and_then(|range| self.bytes.get(range)) {
                Some(bytes) => {
                    buf.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(MemoryError::NotCaptured { address, len: buf.len() }),
            }
        }
    }

    const BASE: u64 = 0x10_0000;

    fn put(region: &mut Region, address: u64, bytes: &[u8]) {
        let offset = (address - region.start) as usize;
        region.bytes[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Writes an r_debug at BASE and link_map entries at BASE + 0x100 *
    /// (i + 1), each named by `names[i]` at BASE + 0x800 + 0x40 * i, linked
    /// as `next[i]` says (an index, or `None` for the end).
    fn list(names: &[&str], next: &[Option<usize>]) -> Region {
        let mut region = Region { start: BASE, bytes: vec![0; 0x1000] };
        let entry = |index: usize| BASE + 0x100 * (index as u64 + 1);
        put(&mut region, BASE + R_MAP_OFFSET, &entry(0).to_le_bytes());
        for (index, name) in names.iter().enumerate() {
            let name_address = BASE + 0x800 + 0x40 * index as u64;
            put(&mut region, name_address, name.as_bytes());
            put(&mut region, entry(index) + L_ADDR_OFFSET, &(0x7f00_0000_0000 + index as u64).to_le_bytes());
            put(&mut region, entry(index) + L_NAME_OFFSET, &name_address.to_le_bytes());
            put(&mut region, entry(index) + L_LD_OFFSET, &(0x7f00_0001_0000 + index as u64).to_le_bytes());
            let following = next[index].map_or(0, entry);
            put(&mut region, entry(index) + L_NEXT_OFFSET, &following.to_le_bytes());
        }
        region
    }

    #[test]
    fn walk_reads_every_entry() {
        let region = list(&["", "/lib/x86_64-linux-gnu/libc.so.6"], &[Some(1), None]);
        let entries = walk(&region, BASE);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].l_name, "");
        assert_eq!(entries[1].l_name, "/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(entries[1].l_addr, 0x7f00_0000_0001);
        assert_eq!(entries[1].l_ld, 0x7f00_0001_0001);
    }

    #[test]
    fn walk_stops_at_cycle() {
        let region = list(&["a", "b", "c"], &[Some(1), Some(2), Some(0)]);
        let names: Vec<String> = walk(&region, BASE).into_iter().map(|entry| entry.l_name).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn walk_keeps_entries_before_unreadable_one() {
        let mut region = list(&["a", "b"], &[Some(1), None]);
        put(&mut region, BASE + 0x200 + L_NEXT_OFFSET, &0xdead_0000u64.to_le_bytes());
        let names: Vec<String> = walk(&region, BASE).into_iter().map(|entry| entry.l_name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn name_without_nul_is_rejected() {
        let region = Region { start: BASE, bytes: vec![b'x'; MAX_NAME_BYTES + 10] };
        let error = read_c_string(&region, BASE).expect_err("no NUL");
        assert!(error.contains("no NUL"), "{error}");
    }

    #[test]
    fn name_at_end_of_memory_is_read_bytewise() {
        let mut region = Region { start: BASE, bytes: vec![0; 16] };
        put(&mut region, BASE + 10, b"ld.so");
        region.bytes.truncate(16);
        // The last byte is the NUL; a 64-byte chunk would cross the end.
        region.bytes[15] = 0;
        assert_eq!(read_c_string(&region, BASE + 10).as_deref(), Ok("ld.so"));
    }

    #[test]
    fn dt_debug_found_before_dt_null() {
        let mut region = Region { start: BASE, bytes: vec![0; 0x100] };
        put(&mut region, BASE, &1u64.to_le_bytes());
        put(&mut region, BASE + 16, &DT_DEBUG.to_le_bytes());
        put(&mut region, BASE + 24, &0x4000u64.to_le_bytes());
        assert_eq!(find_dt_debug(&region, BASE), Ok(Some(0x4000)));
    }

    #[test]
    fn dynamic_section_without_dt_null_is_rejected() {
        let region = Region { start: BASE, bytes: vec![0xff; (MAX_DYNAMIC_ENTRIES * DYN_ENTRY_BYTES) as usize] };
        let error = find_dt_debug(&region, BASE).expect_err("no DT_NULL");
        assert!(error.contains("no DT_NULL"), "{error}");
    }
}
