//! Reader of Xen `xl dump-core` files of 64-bit x86 guests.
//!
//! A dump-core is an ELF64 `ET_CORE` file with no program headers. Its
//! sections contain the notes (`.note.Xen`), one `vcpu_guest_context` per
//! vCPU (`.xen_prstatus`) and the page contents (`.xen_pages`). The frame
//! numbers of the pages follow in the same order: `.xen_p2m` (pairs of
//! pseudo-physical and machine frame) for PV guests, `.xen_pfn` for HVM.
//! All-ones entries are padding, and their pages are not guest memory.
//!
//! Addresses given to `read_physical` are guest (pseudo-)physical for both
//! kinds. A PV guest's cr3 and page-table entries hold machine frames: this
//! reader reports each vCPU's cr3 as the guest-physical address of the same
//! table, and `read_virtual` takes that value and walks the tables through
//! the machine-to-pseudo-physical map built from `.xen_p2m`.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::elf::{self, read_u64, Note, SectionHeader};
use super::error::{CoreFileError, OpenError};
use super::xen_context;
use super::xen_layout as layout;
use super::FileBytes;
use crate::model::{Metadata, SourceKind, VcpuState};
use crate::paging;
use crate::target::{MemoryError, MemoryRange, Target};

/// The only page size of x86 guests.
const PAGE_SIZE: u64 = 4096;
/// Frame numbers from here on have no 64-bit address; entries holding them
/// are skipped as damaged.
const FRAME_LIMIT: u64 = 1 << 52;
/// Bits 51:12 of cr3: the frame of the top-level page table.
const CR3_FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The kind of domain a dump-core was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenGuestKind {
    /// Paravirtualized: page tables hold machine frames, `.xen_p2m` maps them.
    Pv,
    /// HVM or PVH: frames are guest-physical, `.xen_pfn` lists them.
    Hvm,
}

/// One dumped page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    /// Guest (pseudo-)physical frame number.
    pfn: u64,
    /// Machine frame number; equal to `pfn` for HVM guests.
    mfn: u64,
    /// Position of the page in `.xen_pages`.
    page_index: u64,
}

/// Facts from the `.note.Xen` notes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct XenNotes {
    kind: XenGuestKind,
    nr_vcpus: u64,
    nr_pages: u64,
    /// `major.minor` and the extra version, e.g. "4.17.5".
    xen_version: Option<String>,
    /// (major, minor) of the dump-core format.
    format_version: (u32, u32),
}

/// An opened `xl dump-core` file.
pub struct XenDumpCore {
    path: PathBuf,
    bytes: FileBytes,
    metadata: Metadata,
    vcpus: Vec<VcpuState>,
    kind: XenGuestKind,
    format_version: (u32, u32),
    /// File offset of `.xen_pages`.
    pages_offset: u64,
    /// Dumped frames sorted by `pfn`.
    by_pfn: Vec<Frame>,
    /// (mfn, pfn) sorted by mfn; empty for HVM guests.
    machine_to_pseudo: Vec<(u64, u64)>,
    /// Damage that left the registers readable but not the memory.
    damage: Vec<CoreFileError>,
    /// PV cr3 values whose machine frame was not dumped, kept as machine
    /// addresses in the vCPU state, so `read_virtual` must not read them as
    /// guest-physical.
    untranslated_roots: Vec<u64>,
}

/// Returns the section named `name`, if the file has it.
///
/// A truncated dump-core loses its section names because `xl` writes the
/// string table last. Then the section is recognized by what `xg_core.c`
/// gives each section: its type, alignment and entry size.
fn find_section<'a>(sections: &'a [SectionHeader], name: &str) -> Option<&'a SectionHeader> {
    if let Some(section) = sections.iter().find(|section| section.name == name) {
        return Some(section);
    }
    if !sections.iter().all(|section| section.name.is_empty()) {
        return None;
    }
    let page_size = PAGE_SIZE;
    sections.iter().find(|section| {
        let progbits = section.sh_type == elf::SHT_PROGBITS;
        match name {
            layout::SECTION_NOTE => section.sh_type == elf::SHT_NOTE,
            layout::SECTION_PRSTATUS => progbits && section.sh_entsize == layout::CONTEXT_LEN as u64,
            // .xen_shared_info has the same entry size but 8-byte alignment.
            layout::SECTION_PAGES => progbits && section.sh_entsize == page_size && section.sh_addralign == page_size,
            layout::SECTION_P2M => progbits && section.sh_entsize == layout::P2M_ENTRY_LEN as u64,
            layout::SECTION_PFN => progbits && section.sh_entsize == layout::PFN_ENTRY_LEN as u64,
            _ => false,
        }
    })
}

/// Returns the contents of the section found as `name`, checked against the
/// file length. Errors use `name` because a truncated file has lost its names.
fn section_bytes<'a>(file: &'a [u8], section: &SectionHeader, name: &str) -> Result<&'a [u8], CoreFileError> {
    elf::file_range(file, || format!("section {name}"), section.sh_offset, section.sh_size)
}

/// Returns the section named `name` or a `MissingSection` error.
fn require_section<'a>(
    sections: &'a [SectionHeader],
    name: &'static str,
    table_offset: u64,
) -> Result<&'a SectionHeader, CoreFileError> {
    find_section(sections, name).ok_or(CoreFileError::MissingSection { section: name, offset: table_offset })
}

/// Returns whether `sections` mark a Xen dump-core: a `.note.Xen` section,
/// or, when the names are lost, a note section with the dump-core notes.
pub(super) fn is_dump_core(file: &[u8], sections: &[SectionHeader]) -> bool {
    if sections.iter().any(|section| section.name == layout::SECTION_NOTE) {
        return true;
    }
    let Some(section) = find_section(sections, layout::SECTION_NOTE) else {
        return false;
    };
    let Ok(data) = section_bytes(file, section, layout::SECTION_NOTE) else {
        return false;
    };
    let notes = elf::parse_notes(data, section.sh_offset).unwrap_or_default();
    notes.iter().any(|note| note.name == layout::NOTE_NAME && note.note_type == layout::NOTE_HEADER)
}

/// Returns the descriptor of `note` after checking that it has at least `len` bytes.
fn note_desc<'a>(note: &Note<'a>, name: &'static str, len: usize) -> Result<&'a [u8], CoreFileError> {
    if note.desc.len() < len {
        return Err(CoreFileError::InvalidNote {
            note: name,
            offset: note.desc_offset,
            reason: format!("descriptor is {} bytes, expected at least {len}", note.desc.len()),
        });
    }
    Ok(note.desc)
}

/// Decodes the `.note.Xen` notes.
fn parse_xen_notes(notes: &[Note<'_>], section_offset: u64) -> Result<XenNotes, CoreFileError> {
    let mut header = None;
    let mut xen_version = None;
    let mut format_version = None;
    for note in notes.iter().filter(|note| note.name == layout::NOTE_NAME) {
        match note.note_type {
            layout::NOTE_NONE => {}
            layout::NOTE_HEADER => {
                let desc = note_desc(note, "Xen header", layout::HEADER_LEN)?;
                let magic = read_u64(desc, layout::HEADER_MAGIC);
                let kind = match magic {
                    layout::MAGIC_PV => XenGuestKind::Pv,
                    layout::MAGIC_HVM => XenGuestKind::Hvm,
                    other => {
                        return Err(CoreFileError::Unsupported {
                            what: "dump-core magic",
                            value: other,
                            offset: note.desc_offset,
                            supported: "0xf00febed (PV) and 0xf00febee (HVM)",
                        })
                    }
                };
                let page_size = read_u64(desc, layout::HEADER_PAGE_SIZE);
                if page_size != PAGE_SIZE {
                    return Err(CoreFileError::Unsupported {
                        what: "page size",
                        value: page_size,
                        offset: note.desc_offset + layout::HEADER_PAGE_SIZE as u64,
                        supported: "4096",
                    });
                }
                header = Some((kind, read_u64(desc, layout::HEADER_NR_VCPUS), read_u64(desc, layout::HEADER_NR_PAGES)));
            }
            layout::NOTE_XEN_VERSION => {
                let desc = note_desc(note, "Xen version", layout::VERSION_EXTRA + layout::VERSION_EXTRA_LEN)?;
                let extra = &desc[layout::VERSION_EXTRA..layout::VERSION_EXTRA + layout::VERSION_EXTRA_LEN];
                let extra = extra.split(|&b| b == 0).next().unwrap_or_default();
                xen_version = Some(format!(
                    "{}.{}{}",
                    read_u64(desc, layout::VERSION_MAJOR),
                    read_u64(desc, layout::VERSION_MINOR),
                    String::from_utf8_lossy(extra)
                ));
            }
            layout::NOTE_FORMAT_VERSION => {
                let version = read_u64(note_desc(note, "Xen format version", 8)?, 0);
                let (major, minor) = ((version >> 32) as u32, version as u32);
                if u64::from(major) != layout::FORMAT_MAJOR {
                    return Err(CoreFileError::Unsupported {
                        what: "dump-core format version",
                        value: version,
                        offset: note.desc_offset,
                        supported: "major version 0",
                    });
                }
                format_version = Some((major, minor));
            }
            other => {
                debug!(note_type = format_args!("{other:#x}"), offset = note.desc_offset, "ignoring unknown Xen note")
            }
        }
    }
    let (kind, nr_vcpus, nr_pages) =
        header.ok_or(CoreFileError::MissingNote { note: "Xen header", offset: section_offset })?;
    let format_version = format_version.unwrap_or_else(|| {
        warn!("no format version note; reading as dump-core format 0.1");
        (0, 1)
    });
    Ok(XenNotes { kind, nr_vcpus, nr_pages, xen_version, format_version })
}

/// Returns the contents of the frame table section, checked to hold
/// `nr_pages` entries of `entry_len` bytes.
fn frame_table<'a>(
    file: &'a [u8],
    section: &SectionHeader,
    name: &str,
    nr_pages: u64,
    entry_len: usize,
) -> Result<&'a [u8], CoreFileError> {
    let data = section_bytes(file, section, name)?;
    let needed = nr_pages.checked_mul(entry_len as u64);
    match needed {
        Some(needed) if needed <= data.len() as u64 => Ok(&data[..needed as usize]),
        _ => Err(CoreFileError::InvalidSection {
            section: name.into(),
            offset: section.header_offset,
            reason: format!(
                "{} bytes cannot hold the {nr_pages} entries of {entry_len} bytes the header note announces",
                data.len()
            ),
        }),
    }
}

/// Reads the frame table and returns the dumped frames sorted by pfn,
/// without padding entries and without repeated pfns.
fn parse_frames(table: &[u8], kind: XenGuestKind, section: &str) -> Vec<Frame> {
    let entry_len = match kind {
        XenGuestKind::Pv => layout::P2M_ENTRY_LEN,
        XenGuestKind::Hvm => layout::PFN_ENTRY_LEN,
    };
    let mut frames: Vec<Frame> = table
        .chunks_exact(entry_len)
        .enumerate()
        .filter_map(|(index, entry)| {
            let pfn = read_u64(entry, 0);
            let mfn = match kind {
                XenGuestKind::Pv => read_u64(entry, 8),
                XenGuestKind::Hvm => pfn,
            };
            (pfn != layout::INVALID_FRAME).then_some(Frame { pfn, mfn, page_index: index as u64 })
        })
        .collect();
    let before = frames.len();
    frames.retain(|frame| frame.pfn < FRAME_LIMIT);
    if frames.len() != before {
        warn!(section, skipped = before - frames.len(), "skipping entries whose pfn exceeds 2^52");
    }
    frames.sort_by_key(|frame| (frame.pfn, frame.page_index));
    let before = frames.len();
    frames.dedup_by_key(|frame| frame.pfn);
    if frames.len() != before {
        warn!(
            section,
            repeated = before - frames.len(),
            "frame table lists some pfns more than once; reading the first page of each"
        );
    }
    frames
}

/// Builds the machine-to-pseudo-physical map of a PV guest.
fn machine_map(frames: &[Frame]) -> Vec<(u64, u64)> {
    let mut map: Vec<(u64, u64)> =
        frames.iter().filter(|frame| frame.mfn < FRAME_LIMIT).map(|frame| (frame.mfn, frame.pfn)).collect();
    map.sort_unstable();
    let before = map.len();
    map.dedup_by_key(|entry| entry.0);
    if map.len() != before {
        warn!(repeated = before - map.len(), "several pfns map to the same machine frame; using the lowest pfn");
    }
    map
}

/// Location of the dumped pages and the frame numbers of each.
struct FrameTables {
    /// File offset of `.xen_pages`.
    pages_offset: u64,
    /// Dumped frames sorted by pfn.
    by_pfn: Vec<Frame>,
    /// (mfn, pfn) sorted by mfn; empty for HVM guests.
    machine_to_pseudo: Vec<(u64, u64)>,
}

/// Finds the pages and their frame table.
fn load_frames(
    file: &[u8],
    sections: &[SectionHeader],
    notes: &XenNotes,
    table_offset: u64,
) -> Result<FrameTables, CoreFileError> {
    let pages = require_section(sections, layout::SECTION_PAGES, table_offset)?;
    let pages_data = section_bytes(file, pages, layout::SECTION_PAGES)?;
    let pages_needed = notes.nr_pages.checked_mul(PAGE_SIZE);
    if pages_needed.map_or(true, |needed| needed > pages_data.len() as u64) {
        return Err(CoreFileError::InvalidSection {
            section: layout::SECTION_PAGES.into(),
            offset: pages.header_offset,
            reason: format!(
                "{} bytes cannot hold the {} pages the header note announces",
                pages_data.len(),
                notes.nr_pages
            ),
        });
    }

    let (table_name, entry_len) = match notes.kind {
        XenGuestKind::Pv => (layout::SECTION_P2M, layout::P2M_ENTRY_LEN),
        XenGuestKind::Hvm => (layout::SECTION_PFN, layout::PFN_ENTRY_LEN),
    };
    let table_section = require_section(sections, table_name, table_offset)?;
    let table = frame_table(file, table_section, table_name, notes.nr_pages, entry_len)?;
    let by_pfn = parse_frames(table, notes.kind, table_name);
    let machine_to_pseudo = match notes.kind {
        XenGuestKind::Pv => machine_map(&by_pfn),
        XenGuestKind::Hvm => Vec::new(),
    };
    Ok(FrameTables { pages_offset: pages.sh_offset, by_pfn, machine_to_pseudo })
}

/// Reads the vCPU contexts of `.xen_prstatus`.
///
/// The section contains one context per vCPU whose context `xl` could read,
/// without the vCPU id. NOTE: the ids given here count those contexts from
/// 0, which differs from Xen's numbering when a vCPU in the middle was never
/// brought up.
fn parse_vcpus(file: &[u8], section: &SectionHeader, notes: &XenNotes) -> Result<Vec<VcpuState>, CoreFileError> {
    let data = section_bytes(file, section, layout::SECTION_PRSTATUS)?;
    let in_section = data.len() / layout::CONTEXT_LEN;
    if data.len() % layout::CONTEXT_LEN != 0 {
        warn!(
            len = data.len(),
            context_len = layout::CONTEXT_LEN,
            "{} is not a whole number of vCPU contexts; ignoring the tail",
            layout::SECTION_PRSTATUS
        );
    }
    if in_section as u64 != notes.nr_vcpus {
        warn!(
            in_section,
            nr_vcpus = notes.nr_vcpus,
            "{} holds a different number of vCPU contexts than the header note; reading those present",
            layout::SECTION_PRSTATUS
        );
    }
    let count = (in_section as u64).min(notes.nr_vcpus) as usize;
    if count == 0 {
        return Err(CoreFileError::InvalidSection {
            section: layout::SECTION_PRSTATUS.into(),
            offset: section.header_offset,
            reason: format!(
                "{} bytes hold no whole vCPU context of {} bytes, and the header note lists {} vCPUs",
                data.len(),
                layout::CONTEXT_LEN,
                notes.nr_vcpus
            ),
        });
    }
    Ok(data
        .chunks_exact(layout::CONTEXT_LEN)
        .take(count)
        .enumerate()
        .map(|(index, context)| {
            let id = index as u32;
            if xen_context::context_online(context) == Some(false) {
                debug!(vcpu = id, "vCPU context is marked offline");
            }
            // The chunks have exactly CONTEXT_LEN bytes, so the conversion succeeds.
            xen_context::vcpu_from_guest_context(id, context, notes.kind).unwrap_or_default()
        })
        .collect())
}

impl XenDumpCore {
    /// Opens and validates an `xl dump-core` file; the file is memory-mapped.
    pub fn open(path: &Path) -> Result<XenDumpCore, OpenError> {
        let bytes = FileBytes::map(path)?;
        XenDumpCore::parse(path, bytes).map_err(|source| OpenError::XenDumpCore { path: path.to_path_buf(), source })
    }

    /// Parses a dump-core held in memory; `path` names it in metadata and errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<XenDumpCore, OpenError> {
        XenDumpCore::parse(path, FileBytes::Owned(bytes))
            .map_err(|source| OpenError::XenDumpCore { path: path.to_path_buf(), source })
    }

    pub(super) fn parse(path: &Path, bytes: FileBytes) -> Result<XenDumpCore, CoreFileError> {
        let file: &[u8] = &bytes;
        let header = elf::parse_file_header(file)?;
        let sections = elf::parse_section_headers(file, &header)?;
        let table_offset = header.e_shoff;

        let note_section = require_section(&sections, layout::SECTION_NOTE, table_offset)?;
        let notes = elf::parse_notes(section_bytes(file, note_section, layout::SECTION_NOTE)?, note_section.sh_offset)?;
        let notes = parse_xen_notes(&notes, note_section.sh_offset)?;

        // Without the pages or their frame table, the registers are still
        // worth reading: the dump opens and every memory read fails.
        let mut damage = Vec::new();
        let frames = load_frames(file, &sections, &notes, table_offset).unwrap_or_else(|error| {
            warn!(%error, "no page of the dump-core can be read");
            damage.push(error);
            FrameTables { pages_offset: 0, by_pfn: Vec::new(), machine_to_pseudo: Vec::new() }
        });

        let prstatus = require_section(&sections, layout::SECTION_PRSTATUS, table_offset)?;
        let mut vcpus = parse_vcpus(file, prstatus, &notes)?;

        let metadata = Metadata {
            source_kind: SourceKind::XenDumpCore,
            target_name: super::file_name(path),
            hypervisor_version: notes.xen_version.as_ref().map(|version| format!("Xen {version}")),
            // NOTE: the file records neither the domain id nor the time of
            // the dump, so they stay None and 0.
            ..Metadata::default()
        };
        let mut dump = XenDumpCore {
            path: path.to_path_buf(),
            metadata,
            vcpus: Vec::new(),
            kind: notes.kind,
            format_version: notes.format_version,
            pages_offset: frames.pages_offset,
            by_pfn: frames.by_pfn,
            machine_to_pseudo: frames.machine_to_pseudo,
            damage,
            untranslated_roots: Vec::new(),
            bytes,
        };
        if dump.kind == XenGuestKind::Pv {
            let mut translated_roots = Vec::new();
            for vcpu in &mut vcpus {
                match dump.pseudo_physical_cr3(vcpu.cr3) {
                    Some(cr3) => {
                        vcpu.cr3 = cr3;
                        translated_roots.push(cr3 & CR3_FRAME_MASK);
                    }
                    None => {
                        warn!(
                            vcpu = vcpu.id,
                            cr3 = format_args!("{:#x}", vcpu.cr3),
                            "cr3 is not a dumped machine frame; keeping the machine address"
                        );
                        dump.untranslated_roots.push(vcpu.cr3 & CR3_FRAME_MASK);
                    }
                }
            }
            // A value that is also another vCPU's translated cr3 stays readable.
            dump.untranslated_roots.retain(|root| !translated_roots.contains(root));
        }
        dump.vcpus = vcpus;
        debug!(
            path = %path.display(),
            kind = ?dump.kind,
            vcpus = dump.vcpus.len(),
            pages = dump.by_pfn.len(),
            "opened xl dump-core"
        );
        Ok(dump)
    }

    /// Path the dump-core was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns whether the domain was PV or HVM.
    pub fn guest_kind(&self) -> XenGuestKind {
        self.kind
    }

    /// Dump-core format version, (major, minor).
    pub fn format_version(&self) -> (u32, u32) {
        self.format_version
    }

    /// Damage found by `open` that left the registers readable but not the
    /// memory: a missing, short or truncated `.xen_pages` or frame table.
    pub fn damage(&self) -> &[CoreFileError] {
        &self.damage
    }

    /// Number of pages with contents in the file, padding excluded.
    pub fn page_count(&self) -> usize {
        self.by_pfn.len()
    }

    /// Returns the machine address of guest-physical `address`, when its
    /// page was dumped. For an HVM guest both are the same.
    pub fn machine_address(&self, address: u64) -> Option<u64> {
        let frame = self.frame_of_pfn(address / PAGE_SIZE)?;
        Some(frame.mfn.checked_mul(PAGE_SIZE)? | (address % PAGE_SIZE))
    }

    fn frame_of_pfn(&self, pfn: u64) -> Option<&Frame> {
        let index = self.by_pfn.binary_search_by_key(&pfn, |frame| frame.pfn).ok()?;
        Some(&self.by_pfn[index])
    }

    fn pfn_of_mfn(&self, mfn: u64) -> Option<u64> {
        let index = self.machine_to_pseudo.binary_search_by_key(&mfn, |entry| entry.0).ok()?;
        Some(self.machine_to_pseudo[index].1)
    }

    /// Translates a PV cr3 (`xen_pfn_to_cr3(mfn)`, a machine address) to
    /// the guest-physical address of the same table, keeping the low bits.
    fn pseudo_physical_cr3(&self, machine_cr3: u64) -> Option<u64> {
        let pfn = self.pfn_of_mfn((machine_cr3 & CR3_FRAME_MASK) >> 12)?;
        Some((pfn << 12) | (machine_cr3 & !CR3_FRAME_MASK))
    }

    /// Copies from the page of `frame`, at `offset_in_page`, into `out`.
    fn copy_from_page(&self, frame: &Frame, offset_in_page: u64, out: &mut [u8]) {
        // `parse` checked that .xen_pages contains every page index of the table.
        let start = (self.pages_offset + frame.page_index * PAGE_SIZE + offset_in_page) as usize;
        out.copy_from_slice(&self.bytes[start..start + out.len()]);
    }

    /// Reads memory page by page, looking each page's frame up with `lookup`.
    fn read_frames(
        &self,
        address: u64,
        buf: &mut [u8],
        lookup: impl Fn(u64) -> Option<u64>,
    ) -> Result<(), MemoryError> {
        let len = buf.len();
        if address.checked_add(len as u64).is_none() {
            return Err(MemoryError::NotCaptured { address, len });
        }
        let mut done = 0;
        while done < len {
            let current = address + done as u64;
            let offset_in_page = current % PAGE_SIZE;
            let count = ((PAGE_SIZE - offset_in_page) as usize).min(len - done);
            let frame = lookup(current / PAGE_SIZE)
                .and_then(|pfn| self.frame_of_pfn(pfn))
                .ok_or(MemoryError::NotCaptured { address: current, len })?;
            self.copy_from_page(frame, offset_in_page, &mut buf[done..done + count]);
            done += count;
        }
        Ok(())
    }

    /// Reads a PV guest's memory by machine address.
    fn read_machine(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_frames(address, buf, |mfn| self.pfn_of_mfn(mfn))
    }
}

impl Target for XenDumpCore {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// vCPUs in `.xen_prstatus` order. For a PV guest, `cr3` is the
    /// guest-physical address of the top-level page table (Xen stores a
    /// machine address), or the machine address when that frame was not dumped.
    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_frames(address, buf, Some)
    }

    /// For a PV guest, `cr3` is guest-physical as [`Target::vcpus`] reports
    /// it, and a `PageTableNotCaptured` error names the machine address of
    /// the entry that could not be read.
    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match self.kind {
            XenGuestKind::Hvm => {
                let mut translate = |virtual_address: u64| {
                    let mut read = |physical: u64, out: &mut [u8]| self.read_physical(physical, out);
                    paging::translate(&mut read, cr3, virtual_address)
                };
                let mut read = |physical: u64, out: &mut [u8]| self.read_physical(physical, out);
                super::read_virtual_paged(address, buf, &mut translate, &mut read)
            }
            XenGuestKind::Pv => {
                let root_pfn = (cr3 & CR3_FRAME_MASK) >> 12;
                let untranslated = self.untranslated_roots.contains(&(cr3 & CR3_FRAME_MASK));
                let Some(root) = self.frame_of_pfn(root_pfn).filter(|_| !untranslated) else {
                    return Err(MemoryError::PageTableNotCaptured { address, entry_address: cr3 & CR3_FRAME_MASK });
                };
                // `machine_map` drops mfns from FRAME_LIMIT on, so a root without a
                // machine frame cannot be walked.
                if root.mfn >= FRAME_LIMIT {
                    return Err(MemoryError::PageTableNotCaptured { address, entry_address: cr3 & CR3_FRAME_MASK });
                }
                let machine_cr3 = root.mfn << 12;
                let mut translate = |virtual_address: u64| {
                    let mut read = |machine: u64, out: &mut [u8]| self.read_machine(machine, out);
                    paging::translate(&mut read, machine_cr3, virtual_address).map_err(|error| match error {
                        // Name the cr3 the caller passed, not the machine one.
                        MemoryError::NotMapped { address, len, .. } => MemoryError::NotMapped { address, len, cr3 },
                        other => other,
                    })
                };
                let mut read = |machine: u64, out: &mut [u8]| self.read_machine(machine, out);
                super::read_virtual_paged(address, buf, &mut translate, &mut read)
            }
        }
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        let mut ranges: Vec<MemoryRange> = Vec::new();
        for frame in &self.by_pfn {
            let start = frame.pfn * PAGE_SIZE;
            match ranges.last_mut() {
                Some(last) if last.start + last.len_bytes == start => last.len_bytes += PAGE_SIZE,
                _ => ranges.push(MemoryRange { start, len_bytes: PAGE_SIZE }),
            }
        }
        ranges
    }
}

impl std::fmt::Debug for XenDumpCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDumpCore")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("vcpus", &self.vcpus.len())
            .field("pages", &self.by_pfn.len())
            .finish_non_exhaustive()
    }
}
