//! An image: the ELF file code was loaded from, such as the unikernel, or a
//! Linux program or shared object.
//!
//! [`Image::open`] maps the file and extracts what the engine needs: the GNU
//! build id, the function symbols, the `PT_LOAD` segments (to read code bytes
//! by virtual address) and the unwind sections. The DWARF for symbolization
//! is decompressed and indexed on first use, so a shared object that no
//! frame touches costs no DWARF work.
//! [`Image::open_split`] adds a separate debug file (from `objcopy
//! --only-keep-debug`), which supplies the DWARF, `.debug_frame` and the full
//! symbol table that a stripped file lacks. Addresses are the file's own
//! (its link-time virtual addresses); [`crate::modules`] adds the load bias.
//! Symbolization itself lives in [`crate::symbolize`], unwinding in
//! [`crate::unwind`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionKind, SymbolKind};

use crate::variables::dwarf::DebugInfo;

/// The reader type every gimli structure of an image uses.
pub type DwarfReader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// Errors from loading an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The image path.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ELF file object can parse.
    #[error("invalid ELF file {path}: {source}")]
    InvalidElf {
        /// The image path.
        path: PathBuf,
        /// The error object reported.
        #[source]
        source: object::Error,
    },
    /// The file is an ELF file for another architecture.
    #[error("unsupported architecture {architecture:?} in {path}: only x86_64 is supported")]
    UnsupportedArchitecture {
        /// The image path.
        path: PathBuf,
        /// The architecture the file declares.
        architecture: object::Architecture,
    },
    /// A section could not be read or decompressed.
    #[error("invalid section {section} in {path}: {source}")]
    InvalidSection {
        /// The image path.
        path: PathBuf,
        /// Section name.
        section: String,
        /// The error object reported.
        #[source]
        source: object::Error,
    },
    /// The DWARF could not be indexed.
    #[error("invalid DWARF in {path}: {source}")]
    InvalidDwarf {
        /// The image path.
        path: PathBuf,
        /// The error gimli reported.
        #[source]
        source: gimli::Error,
    },
}

/// How many zero-sized labels [`Image::symbol_for`] looks past to find the
/// sized function symbol that contains an address.
const MAX_LABELS_INSIDE_FUNCTION: usize = 64;

/// DWARF sections that `gimli::Dwarf::load` requests and that neither
/// addr2line 0.27 nor the analyzer reads, left empty so that the macro
/// tables of a `-g3` build are not decompressed.
const UNREAD_DWARF_SECTIONS: [gimli::SectionId; 3] =
    [gimli::SectionId::DebugMacinfo, gimli::SectionId::DebugMacro, gimli::SectionId::DebugNames];

/// A function symbol from the ELF symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSymbol {
    /// The symbol's name.
    pub name: String,
    /// Its virtual address.
    pub address: u64,
    /// Its size in bytes; 0 for assembler labels without `.size`.
    pub size: u64,
}

/// A `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSegment {
    /// Virtual address of the first byte.
    pub address: u64,
    /// Size in memory, in bytes.
    pub memory_len_bytes: u64,
    /// Offset of the segment's bytes in the file.
    pub file_offset: u64,
    /// Bytes present in the file; the rest of the segment is zero-filled.
    pub file_len_bytes: u64,
    /// Whether the segment is executable (`PF_X`).
    pub executable: bool,
    /// Whether the segment is writable (`PF_W`).
    pub writable: bool,
}

/// A section of call frame information with its virtual address, which
/// pc-relative pointers in `.eh_frame` are resolved against.
#[derive(Debug, Clone)]
pub struct UnwindSectionData {
    /// Virtual address of the section.
    pub address: u64,
    /// Its contents.
    pub data: DwarfReader,
}

/// The `.gnu_debuglink` section of a stripped file: the separate debug
/// file's name and the CRC-32 of its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugLink {
    /// File name of the debug file, without a directory.
    pub file_name: String,
    /// CRC-32 (the zlib polynomial) of the whole debug file.
    pub crc: u32,
}

/// A separate debug file opened with its image.
struct DebugFile {
    path: PathBuf,
    data: memmap2::Mmap,
}

/// The bytes of an image: a mapped file, or a copy read from a target's
/// memory (the vDSO of a Linux process).
enum ImageBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for ImageBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ImageBytes::Mapped(map) => map,
            ImageBytes::Owned(bytes) => bytes,
        }
    }
}

/// The DWARF of an image, read on first use.
struct DwarfData {
    context: addr2line::Context<DwarfReader>,
    /// The same sections as `context`, for reading types and variables.
    sections: Arc<gimli::Dwarf<DwarfReader>>,
}

/// The names gdb shows for source paths, computed on first use.
struct SourceNames {
    /// `DW_AT_comp_dir` of every compilation unit, longest first.
    compilation_dirs: Vec<String>,
    /// Source paths as addr2line joins them, mapped to the name gdb shows.
    display_names: HashMap<String, String>,
}

/// A loaded image: an ELF file, with its separate debug file when it has one.
pub struct Image {
    path: PathBuf,
    data: ImageBytes,
    /// The separate debug file that supplies the DWARF, if one was opened.
    debug: Option<DebugFile>,
    debug_link: Option<DebugLink>,
    build_id: Option<Vec<u8>>,
    /// Sorted by address; see [`Image::symbol_for`] for how ties are broken.
    symbols: Vec<ElfSymbol>,
    /// Every function symbol, also those `symbols` leaves out for another
    /// at the same address, sorted by name.
    symbols_by_name: Vec<ElfSymbol>,
    segments: Vec<LoadSegment>,
    text_address: Option<u64>,
    eh_frame: Option<UnwindSectionData>,
    eh_frame_hdr: Option<UnwindSectionData>,
    eh_frame_hdr_address: Option<u64>,
    debug_frame: Option<UnwindSectionData>,
    endian: gimli::RunTimeEndian,
    dwarf: OnceLock<DwarfData>,
    /// The DWARF as a tree of DIEs, read on first use.
    debug_info: OnceLock<DebugInfo>,
    has_debug_info: bool,
    source_names: OnceLock<SourceNames>,
    /// Statement rows of the line table, read per unit on first use and
    /// keyed by the unit's offset.
    statement_rows: Mutex<HashMap<gimli::UnitSectionOffset, Arc<crate::line_table::StatementRows>>>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("symbols", &self.symbols.len())
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl Image {
    /// Opens and indexes the ELF file at `path`.
    pub fn open(path: &Path) -> Result<Image, ImageError> {
        Self::parse(path, ImageBytes::Mapped(map_file(path)?), None)
    }

    /// Parses an ELF image held in memory, such as a vDSO copied out of a
    /// core; `name` stands for its path in errors and output.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<Image, ImageError> {
        Self::parse(name, ImageBytes::Owned(bytes), None)
    }

    /// Opens the stripped ELF file at `path` with its separate debug file at
    /// `debug_path`. Code bytes, segments and `.eh_frame` come from `path`;
    /// DWARF comes from `debug_path`; `.debug_frame` and symbols from either.
    /// The caller checks that the two files belong together (build id or
    /// debug link CRC).
    pub fn open_split(path: &Path, debug_path: &Path) -> Result<Image, ImageError> {
        let debug = DebugFile { path: debug_path.to_owned(), data: map_file(debug_path)? };
        Self::parse(path, ImageBytes::Mapped(map_file(path)?), Some(debug))
    }

    fn parse(path: &Path, data: ImageBytes, debug: Option<DebugFile>) -> Result<Image, ImageError> {
        let elf = parse_elf(path, &data)?;
        let endian = if elf.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let debug_elf = match &debug {
            Some(debug) => Some(parse_elf(&debug.path, &debug.data)?),
            None => None,
        };

        let build_id = elf
            .build_id()
            .map_err(|source| ImageError::InvalidElf { path: path.to_owned(), source })?
            .map(<[u8]>::to_vec);
        let debug_link = match elf.gnu_debuglink() {
            Ok(Some((name, crc))) => {
                Some(DebugLink { file_name: String::from_utf8_lossy(name).into_owned(), crc })
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an invalid .gnu_debuglink section");
                None
            }
        };

        // A debug-only file (`objcopy --only-keep-debug`) keeps the program
        // headers but not the bytes they point at, so none of its segment
        // bytes may be read as code.
        let has_code_bytes = elf.section_by_name(".text").map_or(true, |text| text.file_range().is_some());
        let segments = elf
            .segments()
            .map(|segment| {
                let (file_offset, file_len_bytes) = segment.file_range();
                let (executable, writable) = match segment.flags() {
                    object::SegmentFlags::Elf { p_flags, .. } => {
                        (p_flags.contains(object::elf::PF_X), p_flags.contains(object::elf::PF_W))
                    }
                    _ => (false, false),
                };
                LoadSegment {
                    address: segment.address(),
                    memory_len_bytes: segment.size(),
                    file_offset,
                    file_len_bytes: if has_code_bytes { file_len_bytes } else { 0 },
                    executable,
                    writable,
                }
            })
            .collect();

        // A shared object stripped of `.symtab` still has `.dynsym`, and a
        // separate debug file has the full `.symtab`; gdb reads all three.
        let mut symbols = code_symbols(&elf, elf.symbols());
        symbols.extend(code_symbols(&elf, elf.dynamic_symbols()));
        if let Some(debug_elf) = &debug_elf {
            symbols.extend(code_symbols(debug_elf, debug_elf.symbols()));
        }
        // At one address, prefer the symbol with a size (a function over a
        // label that marks its start), then the name that sorts last: gdb 13
        // sorts minimal symbols at one address by name and takes the last,
        // so the vDSO's `clock_gettime` wins over `__vdso_clock_gettime`.
        symbols.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then((b.size != 0).cmp(&(a.size != 0)))
                .then(b.name.cmp(&a.name))
        });
        let mut symbols_by_name = symbols.clone();
        symbols_by_name.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
        symbols_by_name.dedup();
        symbols.dedup_by(|later, earlier| later.address == earlier.address);

        let main_file = (path, &elf);
        let debug_file = debug.as_ref().zip(debug_elf.as_ref()).map(|(debug, elf)| (debug.path.as_path(), elf));
        // `objcopy --only-keep-debug` turns every other section into
        // SHT_NOBITS, so an empty section means "look in the other file".
        let section_in = |(file_path, file): (&Path, &object::File<'_>), name: &str| {
            section_data(file_path, file, name, endian)
        };
        let section_in_either = |name: &str| -> Result<Option<(u64, DwarfReader)>, ImageError> {
            match section_in(main_file, name)? {
                Some(found) => Ok(Some(found)),
                None => debug_file.map_or(Ok(None), |file| section_in(file, name)),
            }
        };
        let dwarf_file = debug_file.unwrap_or(main_file);

        let eh_frame = section_in_either(".eh_frame")?.map(|(address, data)| UnwindSectionData { address, data });
        let debug_frame =
            section_in_either(".debug_frame")?.map(|(address, data)| UnwindSectionData { address, data });
        let eh_frame_hdr = section_in(main_file, ".eh_frame_hdr")?.map(|(address, data)| UnwindSectionData { address, data });
        let eh_frame_hdr_address = elf.section_by_name(".eh_frame_hdr").map(|s| s.address());
        let text_address = elf.section_by_name(".text").map(|s| s.address());
        let (dwarf_path, dwarf_elf) = dwarf_file;
        let has_debug_info = has_section_bytes(dwarf_path, dwarf_elf, ".debug_info")?;

        let debug_path = debug.as_ref().map(|debug| &debug.path);
        tracing::debug!(
            path = %path.display(),
            debug_path = ?debug_path,
            symbols = symbols.len(),
            has_eh_frame = eh_frame.is_some(),
            has_debug_frame = debug_frame.is_some(),
            has_debug_info,
            "loaded image"
        );
        Ok(Image {
            path: path.to_owned(),
            data,
            debug,
            debug_link,
            build_id,
            symbols,
            symbols_by_name,
            segments,
            text_address,
            eh_frame,
            eh_frame_hdr,
            eh_frame_hdr_address,
            debug_frame,
            endian,
            dwarf: OnceLock::new(),
            debug_info: OnceLock::new(),
            has_debug_info,
            source_names: OnceLock::new(),
            statement_rows: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the DWARF, decompressing and indexing it on first use. A
    /// section that cannot be read or DWARF that addr2line cannot index is
    /// logged and left out, so names and lines come from the symbol table.
    fn dwarf_data(&self) -> &DwarfData {
        self.dwarf.get_or_init(|| {
            let _span = tracing::debug_span!("load DWARF", path = %self.path.display()).entered();
            let sections = Arc::new(self.load_dwarf_sections().unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the DWARF, so names come from the symbol table");
                self.empty_dwarf()
            }));
            let context = addr2line::Context::from_arc_dwarf(Arc::clone(&sections)).unwrap_or_else(|source| {
                let error = ImageError::InvalidDwarf { path: self.path.clone(), source };
                tracing::warn!(%error, "cannot index the DWARF, so names come from the symbol table");
                // Empty sections hold no unit that could fail to parse.
                addr2line::Context::from_dwarf(self.empty_dwarf()).expect("empty DWARF is indexed")
            });
            tracing::debug!("loaded DWARF");
            DwarfData { context, sections }
        })
    }

    fn empty_section(&self) -> DwarfReader {
        gimli::EndianArcSlice::new(Arc::from(&[][..]), self.endian)
    }

    fn empty_dwarf(&self) -> gimli::Dwarf<DwarfReader> {
        gimli::Dwarf::load(|_| Ok::<_, std::convert::Infallible>(self.empty_section())).unwrap_or_else(|never| match never {})
    }

    /// Reads the DWARF sections from the debug file, or from the image when
    /// it has none. Every unit's abbreviations are parsed once and shared,
    /// because addr2line, the source names and the variables each parse
    /// every unit.
    fn load_dwarf_sections(&self) -> Result<gimli::Dwarf<DwarfReader>, ImageError> {
        let (path, bytes): (&Path, &[u8]) = match &self.debug {
            Some(debug) => (&debug.path, &debug.data),
            None => (&self.path, &self.data),
        };
        let file = parse_elf(path, bytes)?;
        let mut dwarf = gimli::Dwarf::load(|id| -> Result<DwarfReader, ImageError> {
            if UNREAD_DWARF_SECTIONS.contains(&id) {
                return Ok(self.empty_section());
            }
            let section = section_data(path, &file, id.name(), self.endian)?;
            Ok(section.map(|(_, data)| data).unwrap_or_else(|| self.empty_section()))
        })?;
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::All);
        Ok(dwarf)
    }

    fn source_names(&self) -> &SourceNames {
        self.source_names.get_or_init(|| {
            let (compilation_dirs, display_names) = source_names(&self.dwarf_data().sections);
            SourceNames { compilation_dirs, display_names }
        })
    }

    /// Returns the statement row gdb shows for the line-table row starting
    /// at `row_address`, when it differs from the row addr2line reports.
    /// Only the line program of the unit that contains `row_address` is read.
    pub fn statement_row(&self, row_address: u64) -> Option<crate::line_table::StatementRow> {
        self.statement_rows(row_address)?.get(row_address)
    }

    /// Returns the statement rows of the unit that contains `address`,
    /// reading its line program on first use.
    fn statement_rows(&self, address: u64) -> Option<Arc<crate::line_table::StatementRows>> {
        let unit = self.dwarf().find_dwarf_and_unit(address).skip_all_loads()?;
        let offset = unit.unit.header.offset();
        let mut cache = self.statement_rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rows =
            cache.entry(offset).or_insert_with(|| Arc::new(crate::line_table::StatementRows::load_unit(unit.unit)));
        Some(Arc::clone(rows))
    }

    /// Returns where the row of gdb's line table that contains
    /// `address` starts, when that row is a statement (see
    /// [`crate::line_table`]).
    pub fn gdb_statement_start(&self, address: u64) -> Option<u64> {
        self.statement_rows(address)?.statement_start(address)
    }

    /// Returns the path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the path of the separate debug file, when one was opened.
    pub fn debug_path(&self) -> Option<&Path> {
        self.debug.as_ref().map(|debug| debug.path.as_path())
    }

    /// Returns whether the file has executable sections but none with bytes,
    /// as in a separate debug file (`objcopy --only-keep-debug`), whose
    /// code sections are `SHT_NOBITS`. Such a file has no code to compare
    /// and no `.eh_frame` to unwind with.
    pub fn lacks_code(&self) -> bool {
        use object::{Object as _, ObjectSection as _, SectionFlags};

        let Ok(elf) = object::File::parse(self.elf_bytes()) else {
            return false;
        };
        let executable = |section: &object::Section<'_, '_>| match section.flags() {
            SectionFlags::Elf { sh_flags, .. } => sh_flags.0 & object::elf::SHF_EXECINSTR.0 != 0,
            _ => false,
        };
        let mut sections = elf.sections().filter(executable).peekable();
        sections.peek().is_some() && sections.all(|section| section.file_range().is_none())
    }

    /// Returns the mapped bytes of the separate debug file, if one was opened.
    pub fn debug_bytes(&self) -> Option<&[u8]> {
        self.debug.as_ref().map(|debug| &debug.data[..])
    }

    /// Returns the `.gnu_debuglink` section, if the file has one.
    pub fn debug_link(&self) -> Option<&DebugLink> {
        self.debug_link.as_ref()
    }

    /// Returns the GNU build id from the `.note.gnu.build-id` note, if the image has one.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// Returns the `PT_LOAD` segments in file order.
    pub fn segments(&self) -> &[LoadSegment] {
        &self.segments
    }

    /// Returns function symbols sorted by address.
    pub fn symbols(&self) -> &[ElfSymbol] {
        &self.symbols
    }

    /// Returns the function symbols named `name`, from every symbol table
    /// of the image and its debug file, including aliases that
    /// [`Image::symbols`] leaves out (`__pthread_kill` at the address of
    /// `pthread_kill`).
    pub fn symbols_named(&self, name: &str) -> &[ElfSymbol] {
        let start = self.symbols_by_name.partition_point(|symbol| symbol.name.as_str() < name);
        let len = self.symbols_by_name[start..].partition_point(|symbol| symbol.name == name);
        &self.symbols_by_name[start..start + len]
    }

    /// Returns whether the image has a `.debug_info` section.
    pub fn has_debug_info(&self) -> bool {
        self.has_debug_info
    }

    /// Returns the `.eh_frame` section, if any.
    pub fn eh_frame(&self) -> Option<&UnwindSectionData> {
        self.eh_frame.as_ref()
    }

    /// Returns the `.eh_frame_hdr` section, if the image has its bytes.
    pub fn eh_frame_hdr(&self) -> Option<&UnwindSectionData> {
        self.eh_frame_hdr.as_ref()
    }

    /// Returns the virtual address of `.eh_frame_hdr`, if any.
    pub fn eh_frame_hdr_address(&self) -> Option<u64> {
        self.eh_frame_hdr_address
    }

    /// Returns the virtual address of `.text`, if any.
    pub fn text_address(&self) -> Option<u64> {
        self.text_address
    }

    /// Returns the `.debug_frame` section, if any.
    pub fn debug_frame(&self) -> Option<&UnwindSectionData> {
        self.debug_frame.as_ref()
    }

    /// Returns the DWARF symbolization context, reading the DWARF on
    /// first use.
    pub fn dwarf(&self) -> &addr2line::Context<DwarfReader> {
        &self.dwarf_data().context
    }

    /// Returns the DWARF sections, for reading types and variables, reading
    /// them on first use.
    pub fn dwarf_sections(&self) -> &Arc<gimli::Dwarf<DwarfReader>> {
        &self.dwarf_data().sections
    }

    /// Returns the DWARF as a tree of DIEs, shared by the names of C++
    /// frames and the variables of `bt`. Unit headers are read on first
    /// use, and the DIEs of a unit when a lookup first reaches it.
    pub fn debug_info(&self) -> &DebugInfo {
        self.debug_info.get_or_init(|| DebugInfo::load(Arc::clone(self.dwarf_sections())))
    }

    /// Returns the whole ELF file.
    pub fn elf_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Returns the name gdb shows for the source file `path` (a path as
    /// [`crate::symbolize`] returns it). gdb shows the line table's file name
    /// alone when its directory is the compilation directory, and joined
    /// with its directory otherwise. A path the line tables do not list is
    /// shown relative to a compilation directory it lies under.
    pub fn display_path<'p>(&'p self, path: &'p str) -> &'p str {
        let names = self.source_names();
        if let Some(name) = names.display_names.get(path) {
            return name;
        }
        names
            .compilation_dirs
            .iter()
            .find_map(|dir| path.strip_prefix(dir.as_str())?.strip_prefix('/'))
            .unwrap_or(path)
    }

    /// Returns the function symbol that contains `address`.
    ///
    /// A symbol with a size contains `[address, address + size)`. A symbol
    /// without one (an assembler label) is taken to extend to the next symbol
    /// within the same executable segment, but a sized symbol that contains
    /// the address wins over a closer label, as in gdb's minimal symbol lookup.
    pub fn symbol_for(&self, address: u64) -> Option<&ElfSymbol> {
        let index = self.symbols.partition_point(|symbol| symbol.address <= address);
        let preceding = &self.symbols[..index];
        let contains = |symbol: &ElfSymbol| {
            symbol.size != 0 && address - symbol.address < symbol.size
        };
        let nearest = preceding.last()?;
        if nearest.size != 0 {
            return contains(nearest).then_some(nearest);
        }
        // NOTE: only a few symbols back are searched for a sized one, so a
        // function with more labels than that inside it is named by its label.
        if let Some(sized) = preceding.iter().rev().take(MAX_LABELS_INSIDE_FUNCTION).find(|s| contains(s)) {
            return Some(sized);
        }
        let segment = self.executable_segment_for(nearest.address)?;
        let segment_end = segment.address.checked_add(segment.memory_len_bytes)?;
        (address < segment_end).then_some(nearest)
    }

    /// Returns the executable segment containing `address`.
    pub fn executable_segment_for(&self, address: u64) -> Option<&LoadSegment> {
        self.segments.iter().find(|segment| {
            segment.executable
                && address >= segment.address
                && address - segment.address < segment.memory_len_bytes
        })
    }

    /// Returns the file's bytes for `[address, address + len)`, when the whole
    /// range lies in the file-backed part of one `PT_LOAD` segment.
    pub fn bytes_at(&self, address: u64, len: usize) -> Option<&[u8]> {
        let len_u64 = u64::try_from(len).ok()?;
        self.segments.iter().find_map(|segment| {
            let offset_in_segment = address.checked_sub(segment.address)?;
            let end_in_segment = offset_in_segment.checked_add(len_u64)?;
            if end_in_segment > segment.file_len_bytes {
                return None;
            }
            let start = usize::try_from(segment.file_offset.checked_add(offset_in_segment)?).ok()?;
            self.data.get(start..start.checked_add(len)?)
        })
    }
}

/// Maps the file at `path` read-only.
fn map_file(path: &Path) -> Result<memmap2::Mmap, ImageError> {
    let io_error = |source| ImageError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io_error)?;
    // SAFETY: the map is read-only and private to this process. The image
    // is a build artifact that nothing should modify while it is read,
    // and object validates every offset it reads from the map.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)
}

/// Parses `data` as an x86_64 ELF file.
fn parse_elf<'d>(path: &Path, data: &'d [u8]) -> Result<object::File<'d>, ImageError> {
    let elf = object::File::parse(data).map_err(|source| ImageError::InvalidElf { path: path.to_owned(), source })?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(ImageError::UnsupportedArchitecture { path: path.to_owned(), architecture: elf.architecture() });
    }
    Ok(elf)
}

/// Returns the address and contents of section `name` of `file`, or `None`
/// when the file has no such section or it is empty (`SHT_NOBITS`).
fn section_data(
    path: &Path,
    file: &object::File<'_>,
    name: &str,
    endian: gimli::RunTimeEndian,
) -> Result<Option<(u64, DwarfReader)>, ImageError> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(None);
    };
    let bytes = section.uncompressed_data().map_err(|source| ImageError::InvalidSection {
        path: path.to_owned(),
        section: name.to_owned(),
        source,
    })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let shared: Arc<[u8]> = Arc::from(&*bytes);
    Ok(Some((section.address(), gimli::EndianArcSlice::new(shared, endian))))
}

/// Returns whether section `name` of `file` has contents: it exists, is not
/// `SHT_NOBITS`, and is not empty once decompressed. Only headers are read.
fn has_section_bytes(path: &Path, file: &object::File<'_>, name: &str) -> Result<bool, ImageError> {
    let Some(section) = file.section_by_name(name) else {
        return Ok(false);
    };
    if section.file_range().is_none() {
        return Ok(false);
    }
    let range = section.compressed_file_range().map_err(|source| ImageError::InvalidSection {
        path: path.to_owned(),
        section: name.to_owned(),
        source,
    })?;
    Ok(range.uncompressed_size > 0)
}

/// Returns the symbols of `symbols` that name code in `file`.
fn code_symbols<'d, 'f>(
    file: &'f object::File<'d>,
    symbols: impl Iterator<Item = object::Symbol<'d, 'f>>,
) -> Vec<ElfSymbol> {
    symbols
        .filter(|symbol| symbol.is_definition() || symbol.kind() == SymbolKind::Label)
        .filter(|symbol| {
            // An executable section without file contents counts too: Xen
            // guests reserve their hypercall page as one, and Xen fills it.
            let in_code = symbol
                .section_index()
                .and_then(|index| file.section_by_index(index).ok())
                .is_some_and(|section| {
                    section.kind() == SectionKind::Text
                        || matches!(section.flags(), object::SectionFlags::Elf { sh_flags, .. }
                            if sh_flags.contains(object::elf::SHF_EXECINSTR))
                });
            in_code && matches!(symbol.kind(), SymbolKind::Text | SymbolKind::Label | SymbolKind::Unknown)
        })
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            if name.is_empty() {
                return None;
            }
            Some(ElfSymbol { name: name.to_owned(), address: symbol.address(), size: symbol.size() })
        })
        .collect()
}

/// Collects the compilation directories of `dwarf`'s units, longest first so
/// the most specific one is stripped, and the display name of every file in
/// the line tables. Units that fail to parse are skipped, because this only
/// affects how paths are shown.
fn source_names(dwarf: &gimli::Dwarf<DwarfReader>) -> (Vec<String>, HashMap<String, String>) {
    let text = |value: gimli::AttributeValue<DwarfReader>, unit: &gimli::Unit<DwarfReader>| -> Option<String> {
        let string = dwarf.attr_string(unit, value).ok()?;
        Some(gimli::Reader::to_string_lossy(&string).ok()?.into_owned())
    };
    let mut dirs = Vec::new();
    let mut names = HashMap::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else { continue };
        let comp_dir = unit
            .comp_dir
            .as_ref()
            .and_then(|dir| gimli::Reader::to_string_lossy(dir).ok())
            .map(|dir| dir.into_owned())
            .unwrap_or_default();
        let unit_name = unit
            .name
            .as_ref()
            .and_then(|name| gimli::Reader::to_string_lossy(name).ok())
            .map(|name| name.into_owned());
        let Some(program) = unit.line_program.as_ref() else { continue };
        let line_header = program.header();
        for file in line_header.file_names() {
            let Some(name) = text(file.path_name(), &unit) else { continue };
            // Directory 0 is the compilation directory: implicit in DWARF 4,
            // listed as entry 0 in DWARF 5.
            let directory = match file.directory_index() {
                0 => None,
                _ => file.directory(line_header).and_then(|dir| text(dir, &unit)),
            };
            let full = join_path(&join_path(&comp_dir, directory.as_deref().unwrap_or("")), &name);
            // gdb 13 names the unit's primary file as DW_AT_name does, and
            // joins every other file with its directory entry, which for a
            // DWARF 5 file in directory 0 makes the path absolute.
            // A relative compilation directory, as glibc's Debian build
            // records (`./nptl`), is shown joined even for the primary file:
            // gdb 13 prints `./nptl/pthread_kill.c`.
            let relative_comp_dir = !comp_dir.is_empty() && !comp_dir.starts_with('/');
            let display = if line_header.version() >= 5 && directory.is_none() && relative_comp_dir {
                full.clone()
            } else if Some(&name) == unit_name.as_ref() {
                name.clone()
            } else if let Some(directory) = &directory {
                join_path(directory, &name)
            } else if line_header.version() >= 5 {
                full.clone()
            } else {
                name.clone()
            };
            names.entry(full).or_insert(display);
        }
        let comp_dir = comp_dir.trim_end_matches('/').to_owned();
        if !comp_dir.is_empty() && !dirs.contains(&comp_dir) {
            dirs.push(comp_dir);
        }
    }
    dirs.sort_by_key(|dir: &String| std::cmp::Reverse(dir.len()));
    (dirs, names)
}

/// Joins paths the way addr2line does: an absolute `child` replaces `base`.
fn join_path(base: &str, child: &str) -> String {
    if child.starts_with('/') || base.is_empty() {
        return child.to_owned();
    }
    if child.is_empty() {
        return base.to_owned();
    }
    format!("{}/{child}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    /// Builds a shared object whose `alias_name` is an alias of `aliased`,
    /// so both symbols have one address.
    fn aliased_library() -> PathBuf {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        PATH.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("alias.c");
            std::fs::write(
                &source,
                "int aliased(int x) { return x * 3 + 1; }\n\
                 int alias_name(int x) __attribute__((alias(\"aliased\")));\n",
            )
            .unwrap();
            let source = source.to_str().unwrap();
            test_fixtures::gcc("alias.so", &["-O2", "-g", "-shared", "-fPIC", "-nostdlib"], &[source])
        })
        .clone()
    }

    #[test]
    fn symbols_named_keeps_aliases() {
        let image = Image::open(&aliased_library()).unwrap();
        let aliased = image.symbols_named("aliased");
        let alias = image.symbols_named("alias_name");
        assert_eq!(aliased.len(), 1, "{aliased:?}");
        assert_eq!(alias.len(), 1, "{alias:?}");
        assert_eq!(alias[0].address, aliased[0].address);
        // The address-sorted table keeps one name per address.
        let at_address = image.symbols().iter().filter(|symbol| symbol.address == aliased[0].address).count();
        assert_eq!(at_address, 1);
        assert!(image.symbols_named("missing").is_empty());
    }

    #[test]
    fn dwarf_read_on_first_use() {
        let image = Image::open(&aliased_library()).unwrap();
        assert!(image.has_debug_info());
        assert!(image.dwarf.get().is_none(), "opening the image read its DWARF");

        let address = image.symbols_named("aliased")[0].address;
        let frames = crate::symbolize::symbolize(&image, address);
        assert!(image.dwarf.get().is_some());
        assert_eq!(frames[0].function.as_deref(), Some("aliased"));
        assert!(frames[0].line.is_some(), "no line for aliased(): {frames:?}");
    }
}
