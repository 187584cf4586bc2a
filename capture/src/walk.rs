//! Copying guest memory through the page tables: the frames that each
//! vCPU's page tables map, read through virtual addresses.
//!
//! This is the `--memory walk` strategy, for stubs that cannot read
//! physical memory. The page tables themselves are read physically when
//! the stub can. Otherwise the walk assumes the tables are identity-mapped,
//! as unikernels commonly map low memory. It then checks that each table
//! page it read maps to itself, so a wrong assumption is an error and
//! never a silently wrong snapshot.

use std::collections::{BTreeMap, HashMap};

use stardump_format::{paging, Mapping, MemoryError, MemoryRange, VcpuState};
use tracing::{debug, info, warn};

use crate::gdb::GdbError;
use crate::memory::{MemoryBudget, MemoryCopy, SpillError, PAGE_SIZE};
use crate::target::GdbTarget;

const PAGE_BYTES: usize = PAGE_SIZE as usize;
/// Pages per virtual read.
const BLOCK_PAGES: u64 = 256;
/// Bit 31 of cr0: paging enabled.
const CR0_PG: u64 = 1 << 31;
/// Bit 10 of EFER: long mode active.
const EFER_LMA: u64 = 1 << 10;

/// The mappings of the page tables rooted at a cr3, as
/// [`stardump_format::SnapshotWriter::add_mappings`] takes them.
pub type MappingTable = (u64, Vec<Mapping>);

/// A reader of guest physical memory, as the page-table walk takes it.
pub type ReadPhysical<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), MemoryError> + 'a;

/// Errors of the page-table copy.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The stub failed.
    #[error(transparent)]
    Gdb(#[from] GdbError),
    /// The page tables could not be walked.
    #[error("walking the page tables at cr3 {cr3:#x}: {source}")]
    PageTables {
        /// Root of the tables.
        cr3: u64,
        /// The failed read.
        #[source]
        source: MemoryError,
    },
    /// Pages past the memory budget could not be spilled.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// A page table was read at a virtual address that does not map to it.
    #[error("the page table at physical {table:#x} is not identity-mapped by cr3 {cr3:#x}, and the stub has no physical memory mode to read it")]
    NotIdentityMapped {
        /// Root of the tables.
        cr3: u64,
        /// Physical address of the table page.
        table: u64,
    },
}

/// Returns the distinct page-table roots of the vCPUs that run in 64-bit
/// long mode with paging, each with the first vCPU that uses it.
pub fn page_table_roots(vcpus: &[VcpuState]) -> Vec<(u64, usize)> {
    let mut roots: Vec<(u64, usize)> = Vec::new();
    for (index, vcpu) in vcpus.iter().enumerate() {
        if !vcpu.present.control || vcpu.cr0 & CR0_PG == 0 || vcpu.efer & EFER_LMA == 0 {
            debug!(vcpu = vcpu.id, cr0 = format_args!("{:#x}", vcpu.cr0), "vCPU not in long mode with paging");
            continue;
        }
        if !roots.iter().any(|&(cr3, _)| cr3 == vcpu.cr3) {
            roots.push((vcpu.cr3, index));
        }
    }
    roots
}

/// Walks the page tables at `cr3` through `read_physical`.
pub fn walk(
    cr3: u64,
    read_physical: &mut ReadPhysical<'_>,
) -> Result<Vec<Mapping>, WalkError> {
    let mappings = paging::walk_mappings(read_physical, cr3).map_err(|source| WalkError::PageTables { cr3, source })?;
    debug!(cr3 = format_args!("{cr3:#x}"), ranges = mappings.len(), "page tables walked");
    Ok(mappings)
}

/// Copies every frame mapped by the vCPUs' page tables and returns the
/// copy and the mapping table of each root.
///
/// `ram` limits the copy to frames inside known RAM when it is not empty,
/// so device memory that the tables map (an identity map of the first
/// 4 GiB, say) is not read. Without it, every mapped frame is read and
/// unreadable ones are skipped with a warning.
pub fn copy_mapped_memory(
    target: &GdbTarget,
    ram: &[MemoryRange],
    budget: MemoryBudget,
) -> Result<(MemoryCopy, Vec<MappingTable>), WalkError> {
    let mut copy = MemoryCopy::new(budget);
    let mut tables = Vec::new();
    for (cr3, vcpu) in page_table_roots(stardump_format::Target::vcpus(target)) {
        let mappings = walk_live(target, cr3, vcpu)?;
        copy_mappings(target, vcpu, &mappings, ram, &mut copy)?;
        tables.push((cr3, mappings));
    }
    let (data, zero) = copy.page_counts();
    info!(data_pages = data, zero_pages = zero, roots = tables.len(), "copied mapped memory");
    Ok((copy, tables))
}

/// Walks the tables at `cr3` with live reads, one stub read per table page.
fn walk_live(target: &GdbTarget, cr3: u64, vcpu: usize) -> Result<Vec<Mapping>, WalkError> {
    let physical = target.has_physical_memory();
    let mut cache: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut gdb_error = None;
    let mut read = |address: u64, buf: &mut [u8]| -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = address + done as u64;
            let pfn = at / PAGE_SIZE;
            if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(pfn) {
                let mut page = vec![0u8; PAGE_BYTES];
                let result = if physical {
                    target.read_physical_memory(pfn * PAGE_SIZE, &mut page)
                } else {
                    target.read_virtual_memory(vcpu, pfn * PAGE_SIZE, &mut page)
                };
                if let Err(error) = result {
                    let reason = error.to_string();
                    gdb_error.get_or_insert(error);
                    return Err(MemoryError::Target { address: at, len: buf.len(), reason });
                }
                slot.insert(page);
            }
            let offset = (at % PAGE_SIZE) as usize;
            let part = (PAGE_BYTES - offset).min(buf.len() - done);
            buf[done..done + part].copy_from_slice(&cache[&pfn][offset..offset + part]);
            done += part;
        }
        Ok(())
    };
    let walked = walk(cr3, &mut read);
    let mappings = match (walked, gdb_error) {
        // A broken connection is reported as itself, not as a page-table
        // problem.
        (Err(_), Some(error @ (GdbError::Closed { .. } | GdbError::Timeout { .. } | GdbError::Interrupted { .. }))) => {
            return Err(error.into())
        }
        (result, _) => result?,
    };

    if !physical {
        for &table_pfn in cache.keys() {
            let table = table_pfn * PAGE_SIZE;
            let maps_itself = mappings.iter().any(|mapping| mapping.translate(table) == Some(table));
            if !maps_itself {
                return Err(WalkError::NotIdentityMapped { cr3, table });
            }
        }
    }
    Ok(mappings)
}

fn in_ram(ram: &[MemoryRange], physical: u64) -> bool {
    ram.is_empty()
        || ram
            .iter()
            .any(|range| physical >= range.start && physical - range.start < range.len_bytes)
}

/// Reads the frames of `mappings` through virtual addresses, skipping
/// frames already copied.
fn copy_mappings(
    target: &GdbTarget,
    vcpu: usize,
    mappings: &[Mapping],
    ram: &[MemoryRange],
    copy: &mut MemoryCopy,
) -> Result<(), WalkError> {
    // Group the wanted pages into runs that are consecutive both
    // virtually and physically, so each run is one block read.
    let mut runs: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // virtual -> (physical, pages)
    for mapping in mappings {
        let pages = mapping.len_bytes / PAGE_SIZE;
        let mut run: Option<(u64, u64, u64)> = None;
        for page in 0..pages {
            let virtual_address = mapping.virtual_start + page * PAGE_SIZE;
            let physical = mapping.physical_start + page * PAGE_SIZE;
            let needed = in_ram(ram, physical) && !copy.contains(physical / PAGE_SIZE);
            match (&mut run, needed) {
                (Some((_, _, count)), true) if *count < BLOCK_PAGES => *count += 1,
                (_, true) => {
                    if let Some((v, p, count)) = run.take() {
                        runs.insert(v, (p, count));
                    }
                    run = Some((virtual_address, physical, 1));
                }
                (_, false) => {
                    if let Some((v, p, count)) = run.take() {
                        runs.insert(v, (p, count));
                    }
                }
            }
        }
        if let Some((v, p, count)) = run {
            runs.insert(v, (p, count));
        }
    }

    let mut block = Vec::new();
    for (virtual_address, (physical, pages)) in runs {
        // Two virtual ranges may map the same frames; copy them once.
        if (0..pages).all(|index| copy.contains(physical / PAGE_SIZE + index)) {
            continue;
        }
        block.resize((pages * PAGE_SIZE) as usize, 0);
        match target.read_virtual_memory(vcpu, virtual_address, &mut block) {
            Ok(()) => copy.insert(physical / PAGE_SIZE, &block)?,
            Err(GdbError::ErrorReply { .. }) => {
                // Read page by page to keep what is readable.
                let mut page = vec![0u8; PAGE_BYTES];
                for index in 0..pages {
                    let at = virtual_address + index * PAGE_SIZE;
                    match target.read_virtual_memory(vcpu, at, &mut page) {
                        Ok(()) => copy.insert(physical / PAGE_SIZE + index, &page)?,
                        Err(GdbError::ErrorReply { code, .. }) => {
                            warn!(address = format_args!("{at:#x}"), %code, "mapped page not readable, left out");
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
