//! ELF symbols of every kind, for naming what a pointer points to
//! (`<worker_config>`, `<thread_pool+216>`) and for `info symbol`.
//!
//! [`crate::image::Image`] keeps only function symbols, for unwinding, but a
//! data pointer needs the data symbols too. gdb's rule applies: a symbol
//! names an address in its own section, within its size when it has one.
//!
//! For a Linux process the table also contains a table per shared object
//! (and the vDSO) at its load bias, so an address in libc is named as gdb names
//! it (`abort + 211 in section .text of .../libc.so.6`).

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::tls::TlsTemplate;
use super::dwarf::{DebugInfo, DieId};
use super::scope;
use super::types::TypeTable;
use crate::image::Image;
use crate::modules::ModuleSet;

/// One ELF symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Its name, demangled.
    pub name: String,
    /// Its name as the symbol table stores it, mangled for C++.
    pub linkage_name: String,
    /// Its address.
    pub address: u64,
    /// Its size in bytes; 0 when unknown.
    pub size: u64,
    /// Index of its section in `sections`.
    pub section: usize,
}

/// An allocated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its name (`.data`).
    pub name: String,
    /// Its address.
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it contains code (`SHF_EXECINSTR`).
    pub is_code: bool,
}

/// Prefixes of the Itanium C++ ABI's special names and the words gdb
/// (through libiberty) shows for them; cpp_demangle writes `{vtable(X)}`.
const SPECIAL_NAMES: [(&str, &str); 5] = [
    ("_ZTV", "vtable for "),
    ("_ZTI", "typeinfo for "),
    ("_ZTS", "typeinfo name for "),
    ("_ZTT", "VTT for "),
    ("_ZGV", "guard variable for "),
];

/// Demangles a symbol name as gdb shows it.
pub fn demangle(name: &str) -> String {
    for (prefix, words) in SPECIAL_NAMES {
        if let Some(rest) = name.strip_prefix(prefix) {
            let inner = addr2line::demangle_auto(format!("_Z{rest}").into(), None);
            return format!("{words}{inner}");
        }
    }
    if !crate::symbolize::is_mangled(name) {
        return name.to_owned();
    }
    addr2line::demangle_auto(name.into(), None).into_owned()
}

/// The symbols and sections of an image.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
    sections: Vec<Section>,
    tls: Option<TlsTemplate>,
    /// Run-time address minus file address, for a position-independent
    /// program loaded elsewhere than its file addresses.
    load_bias: u64,
    /// The name of the table's own file when it is a shared object, which
    /// [`SymbolLocation::file`] reports; `None` for a main program or a
    /// unikernel.
    file: Option<String>,
    /// The files a process has mapped (shared objects, the vDSO, the main
    /// program), searched for addresses the table's own file does not name.
    modules: ModuleSymbolSet,
    /// The DWARF of the table's own file, whose function names gdb prefers
    /// over the symbol table's in `<name+offset>`.
    functions: Option<FunctionNames>,
}

/// Function names from a file's DWARF, looked up by file address. The
/// DWARF is indexed on first use, because most tables never name a code
/// address.
#[derive(Clone)]
struct FunctionNames {
    image: Arc<Image>,
    info: Arc<OnceLock<DebugInfo>>,
}

impl std::fmt::Debug for FunctionNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionNames").finish_non_exhaustive()
    }
}

impl FunctionNames {
    fn new(image: Arc<Image>) -> FunctionNames {
        FunctionNames { image, info: Arc::new(OnceLock::new()) }
    }

    /// Returns the name gdb gives the DWARF function (not an inlined call)
    /// that contains file address `address`.
    fn function_at(&self, address: u64) -> Option<String> {
        let info = self.info.get_or_init(|| DebugInfo::load(Arc::clone(self.image.dwarf_sections())));
        let function = scope::scopes_at(info, address).last()?.physical_function;
        function_print_name(info, function)
    }
}

/// Returns the name gdb 13 prints for function `die`: its demangled
/// linkage name when it has one, which in C is an assembler name such as
/// glibc's `__GI_abort` for `abort`. Otherwise a C function gets its name,
/// and a C++ function (`main`, an `extern "C"` function) the qualified name
/// with the parameter types, which gdb computes for it (`main()`).
fn function_print_name(info: &DebugInfo, die: DieId) -> Option<String> {
    if let Some(linkage_name) = info.linkage_name(die) {
        return Some(demangle(&linkage_name));
    }
    if !info.unit(die).is_cplusplus() {
        return info.name(die);
    }
    let name = info.qualified_name(die)?;
    let types = TypeTable { info };
    let parameters: Vec<String> = scope::parameters(info, die)
        .into_iter()
        .filter(|&parameter| !info.flag(parameter, gimli::constants::DW_AT_artificial))
        // gdb's physical names write `char**` and `int&` without a space.
        .map(|parameter| types.name(&types.type_of(parameter)).replace(" *", "*").replace(" &", "&"))
        .collect();
    Some(format!("{name}({})", parameters.join(", ")))
}

/// The symbol tables of every module of a process, each at its load bias,
/// shared by the tables of all its modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleSymbolSet {
    modules: Arc<Vec<ModuleSymbols>>,
}

impl ModuleSymbolSet {
    /// Reads the symbols of every module of `modules`. `names[i]`, when
    /// present, is the name shown for module `i` (the dynamic linker's
    /// name, see [`crate::link_map`]); otherwise its mapped path is.
    pub fn new(modules: &ModuleSet, names: &[Option<String>]) -> ModuleSymbolSet {
        let modules = modules
            .modules()
            .iter()
            .enumerate()
            .map(|(index, module)| {
                let table =
                    SymbolTable::from_shared_object(&module.image).with_load_bias(module.bias).with_function_names(&module.image);
                tracing::debug!(path = %module.mapped_path, symbols = table.symbols.len(), "read a module's symbols");
                let path = names.get(index).cloned().flatten().unwrap_or_else(|| module.mapped_path.clone());
                ModuleSymbols { start: module.start, end: module.end, mapped_path: module.mapped_path.clone(), path, table }
            })
            .collect();
        ModuleSymbolSet { modules: Arc::new(modules) }
    }

    /// Returns the name shown for the module mapped from `mapped_path`.
    pub fn name_of(&self, mapped_path: &str) -> Option<&str> {
        self.modules.iter().find(|module| module.mapped_path == mapped_path).map(|module| module.path.as_str())
    }
}

/// The symbols of one module, with where it is mapped.
#[derive(Debug, Clone)]
struct ModuleSymbols {
    /// First run-time address of its `PT_LOAD` segments.
    start: u64,
    /// Run-time address one past its last segment.
    end: u64,
    /// The path the core's file mappings list.
    mapped_path: String,
    /// The name printed after `in section .text of`: the path the dynamic
    /// linker opened the file by when it is known, as gdb prints it, and
    /// otherwise the mapped path.
    path: String,
    /// Its symbols, with the module's load bias.
    table: SymbolTable,
}

/// The symbol that names an address, with its section and file.
#[derive(Debug, Clone, Copy)]
pub struct SymbolLocation<'a> {
    /// The symbol.
    pub symbol: &'a Symbol,
    /// Offset of the address from the symbol's start.
    pub offset: u64,
    /// Name of the symbol's section (`.text`).
    pub section: &'a str,
    /// Name of the shared object the symbol is in (see
    /// [`ModuleSymbolSet::new`]); `None` for the main program or the
    /// unikernel when the table is theirs.
    pub file: Option<&'a str>,
}

impl SymbolTable {
    /// Reads the symbols of `image`'s ELF file. A file object cannot parse
    /// yields an empty table: pointers then print without names.
    pub fn from_image(image: &Image) -> SymbolTable {
        let Ok(elf) = object::File::parse(image.elf_bytes()) else {
            return SymbolTable::default();
        };
        let (sections, section_index) = allocated_sections(&elf);
        let mut symbols: Vec<Symbol> = defined_symbols(elf.symbols(), |index| section_index.get(&index).copied()).collect();
        // At one address, prefer a global sized symbol (as gdb prefers
        // global over static ones), then the name, for a stable choice.
        symbols.sort_by(|a, b| a.address.cmp(&b.address).then((b.size != 0).cmp(&(a.size != 0))).then(a.name.cmp(&b.name)));
        symbols.dedup_by(|later, earlier| later.address == earlier.address);
        let tls = TlsTemplate::from_elf(image.elf_bytes());
        SymbolTable { symbols, sections, tls, load_bias: 0, file: None, modules: ModuleSymbolSet::default(), functions: None }
    }

    /// Reads the symbols of a shared object: its `.symtab`, its `.dynsym`
    /// (all a stripped library has) and the `.symtab` of its separate debug
    /// file, as gdb reads all three. At one address it keeps the sized
    /// symbol whose name sorts last, because gdb 13 sorts minimal symbols at
    /// one address by name and takes the last (`abort` over `__GI_abort`).
    pub fn from_shared_object(image: &Image) -> SymbolTable {
        let Ok(elf) = object::File::parse(image.elf_bytes()) else {
            return SymbolTable::default();
        };
        let (sections, section_index) = allocated_sections(&elf);
        let mut symbols = Vec::new();
        symbols.extend(defined_symbols(elf.symbols(), |index| section_index.get(&index).copied()));
        symbols.extend(defined_symbols(elf.dynamic_symbols(), |index| section_index.get(&index).copied()));
        // The debug file has the same section headers, but its section
        // indices need not match, so its symbols are matched by section name.
        if let Some(debug_elf) = image.debug_bytes().and_then(|bytes| object::File::parse(bytes).ok()) {
            let by_name = |index: object::SectionIndex| {
                let name = debug_elf.section_by_index(index).ok()?.name().ok()?.to_owned();
                sections.iter().position(|section: &Section| section.name == name)
            };
            symbols.extend(defined_symbols(debug_elf.symbols(), by_name));
        }
        symbols.sort_by(|a, b| {
            a.address.cmp(&b.address).then((b.size != 0).cmp(&(a.size != 0))).then(b.linkage_name.cmp(&a.linkage_name))
        });
        symbols.dedup_by(|later, earlier| later.address == earlier.address);
        SymbolTable { symbols, sections, tls: None, load_bias: 0, file: None, modules: ModuleSymbolSet::default(), functions: None }
    }

    /// Returns the table with the symbols of every module of a process, so
    /// that lookups name addresses in the other modules. An address the
    /// table's own file does not name is looked up in the module that
    /// contains it.
    pub fn with_modules(mut self, modules: &ModuleSymbolSet) -> SymbolTable {
        self.modules = modules.clone();
        self
    }

    /// Returns the table with the function names of `image`'s DWARF, which
    /// `<name+offset>` prefers as gdb does (`<__GI_abort+211>` rather than
    /// the symbol table's `<abort+211>`). An image without DWARF changes
    /// nothing.
    pub fn with_function_names(mut self, image: &Arc<Image>) -> SymbolTable {
        if image.has_debug_info() {
            self.functions = Some(FunctionNames::new(Arc::clone(image)));
        }
        self
    }

    /// Returns the table of a shared object shown as `name`, which
    /// [`SymbolTable::locate`] reports as the file of its own symbols.
    pub fn with_file_name(mut self, name: String) -> SymbolTable {
        self.file = Some(name);
        self
    }

    /// Returns the table for the image loaded `load_bias` bytes above its
    /// file addresses: [`SymbolTable::lookup`] and
    /// [`SymbolTable::annotation`] then take run-time addresses.
    pub fn with_load_bias(mut self, load_bias: u64) -> SymbolTable {
        self.load_bias = load_bias;
        self
    }

    /// Returns the run-time address minus the file address.
    pub fn load_bias(&self) -> u64 {
        self.load_bias
    }

    /// Returns the image's `PT_TLS` segment, for thread-local variables.
    pub fn tls_template(&self) -> Option<&TlsTemplate> {
        self.tls.as_ref()
    }

    /// Returns the section containing file address `address`.
    pub fn section_for(&self, address: u64) -> Option<&Section> {
        self.sections.iter().find(|section| address >= section.address && address - section.address < section.size)
    }

    /// Returns the symbol naming run-time address `address` and the offset
    /// into it, as gdb's `<symbol+offset>`. Like gdb 13's minimal-symbol
    /// lookup, it takes the
    /// closest sized symbol at or below `address` in the same section when
    /// that symbol contains `address`. Otherwise it takes the closest
    /// zero-sized symbol above that one, and otherwise none: the padding
    /// after a function's last byte has no name. Like gdb 13's
    /// `build_address_symbolic`, it does not name an address by a
    /// zero-sized symbol outside code, such as an assembler label in `.data`.
    ///
    /// An address the table's own file does not name is looked up in the
    /// module that contains it, if any.
    pub fn lookup(&self, address: u64) -> Option<(&Symbol, u64)> {
        self.locate(address).map(|location| (location.symbol, location.offset))
    }

    /// Returns the symbol naming run-time `address` as [`SymbolTable::lookup`]
    /// does, with its section and, for a shared object, its file.
    pub fn locate(&self, address: u64) -> Option<SymbolLocation<'_>> {
        if let Some((symbol, offset)) = self.lookup_own(address) {
            let section = self.section_name(symbol.section);
            return Some(SymbolLocation { symbol, offset, section, file: self.file.as_deref() });
        }
        let module = self.modules.modules.iter().find(|module| module.start <= address && address < module.end)?;
        let (symbol, offset) = module.table.lookup_own(address)?;
        let section = module.table.section_name(symbol.section);
        Some(SymbolLocation { symbol, offset, section, file: Some(module.path.as_str()) })
    }

    fn lookup_own(&self, address: u64) -> Option<(&Symbol, u64)> {
        let address = address.wrapping_sub(self.load_bias);
        let section = self.sections.iter().position(|section| {
            address >= section.address && address - section.address < section.size
        })?;
        let index = self.symbols.partition_point(|symbol| symbol.address <= address);
        let mut zero_sized = None;
        for symbol in self.symbols[..index].iter().rev().take_while(|symbol| symbol.section == section) {
            if symbol.size == 0 {
                zero_sized.get_or_insert(symbol);
                continue;
            }
            if address - symbol.address < symbol.size {
                return Some((symbol, address - symbol.address));
            }
            break;
        }
        let in_code = self.sections[section].is_code;
        zero_sized.filter(|_| in_code).map(|symbol| (symbol, address - symbol.address))
    }

    /// Returns the symbol named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Symbol> {
        self.symbols.iter().find(|symbol| symbol.name == name)
    }

    /// Returns `<symbol>` or `<symbol+offset>` for `address`, as gdb prints
    /// after a pointer. In code that the file's DWARF describes, the
    /// function's DWARF name replaces the symbol's, as gdb 13's
    /// `build_address_symbolic` prefers a function over a minimal symbol
    /// at the same address. A compiler-split part (`abort.cold`) and a C++
    /// symbol keep the symbol's name, which gdb shows for them too. NOTE:
    /// the offset stays the symbol's, where gdb counts from the function's
    /// entry, so the two differ for a function whose entry has no symbol.
    pub fn annotation(&self, address: u64) -> Option<String> {
        let (table, symbol, offset) = self.locate_in_table(address)?;
        let dwarf_name = table
            .functions
            .as_ref()
            .filter(|_| table.sections.get(symbol.section).is_some_and(|section| section.is_code))
            .filter(|_| !symbol.linkage_name.starts_with("_Z") && !symbol.linkage_name.contains('.'))
            .and_then(|functions| functions.function_at(address.wrapping_sub(table.load_bias)));
        let name = dwarf_name.as_deref().unwrap_or(&symbol.name);
        Some(if offset == 0 { format!("<{name}>") } else { format!("<{name}+{offset}>") })
    }

    /// Returns the table, own or a module's, whose symbol names `address`,
    /// with the symbol and the offset into it.
    fn locate_in_table(&self, address: u64) -> Option<(&SymbolTable, &Symbol, u64)> {
        if let Some((symbol, offset)) = self.lookup_own(address) {
            return Some((self, symbol, offset));
        }
        let module = self.modules.modules.iter().find(|module| module.start <= address && address < module.end)?;
        let (symbol, offset) = module.table.lookup_own(address)?;
        Some((&module.table, symbol, offset))
    }

    /// The name of section `index`.
    pub fn section_name(&self, index: usize) -> &str {
        self.sections.get(index).map_or("?", |section| section.name.as_str())
    }
}

/// Returns the allocated sections of `elf` and, for each, its index in the
/// returned list keyed by its ELF section index.
fn allocated_sections(elf: &object::File<'_>) -> (Vec<Section>, HashMap<object::SectionIndex, usize>) {
    let mut sections = Vec::new();
    let mut section_index = HashMap::new();
    for section in elf.sections() {
        if section.address() == 0 || section.size() == 0 {
            continue;
        }
        section_index.insert(section.index(), sections.len());
        sections.push(Section {
            name: section.name().unwrap_or("?").to_owned(),
            address: section.address(),
            size: section.size(),
            is_code: section.kind() == object::SectionKind::Text,
        });
    }
    (sections, section_index)
}

/// Returns the named symbols defined in a section (and labels), with
/// `section_for` mapping their ELF section index to an index of the table's
/// sections.
fn defined_symbols<'data, 'file, S>(
    symbols: impl Iterator<Item = S> + 'file,
    section_for: impl Fn(object::SectionIndex) -> Option<usize> + 'file,
) -> impl Iterator<Item = Symbol> + 'file
where
    S: ObjectSymbol<'data>,
{
    symbols
        .filter(|symbol| symbol.is_definition() || symbol.kind() == SymbolKind::Label)
        .filter(|symbol| !matches!(symbol.kind(), SymbolKind::Section | SymbolKind::File))
        .filter_map(move |symbol| {
            let name = symbol.name().ok().filter(|name| !name.is_empty())?;
            // A `.symtab` names the default version of a versioned symbol
            // `pthread_kill@@GLIBC_2.34`, which gdb 13 prints as
            // `pthread_kill`. Other versions keep their `@VERSION`.
            let name = name.split_once("@@").map_or(name, |(base, _)| base);
            let section = section_for(symbol.section_index()?)?;
            let linkage_name = name.to_owned();
            let name = demangle(name);
            Some(Symbol { name, linkage_name, address: symbol.address(), size: symbol.size(), section })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, address: u64, size: u64, load_bias: u64) -> SymbolTable {
        let section = Section { name: ".text".to_owned(), address: 0x1000, size: 0x1000, is_code: true };
        let symbol = Symbol { name: name.to_owned(), linkage_name: name.to_owned(), address, size, section: 0 };
        SymbolTable {
            symbols: vec![symbol],
            sections: vec![section],
            tls: None,
            load_bias,
            file: None,
            modules: ModuleSymbolSet::default(),
            functions: None,
        }
    }

    #[test]
    fn locate_falls_back_to_modules() {
        let mut main = table("main", 0x1100, 0x20, 0x5555_0000_0000);
        let libc = ModuleSymbols {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_3000,
            mapped_path: "/usr/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
            path: "/lib/x86_64-linux-gnu/libc.so.6".to_owned(),
            table: table("abort", 0x1200, 0x100, 0x7f00_0000_0000),
        };
        main.modules = ModuleSymbolSet { modules: Arc::new(vec![libc]) };

        let in_main = main.locate(0x5555_0000_1104).expect("main's symbol");
        assert_eq!((in_main.symbol.name.as_str(), in_main.offset, in_main.file), ("main", 4, None));

        let in_libc = main.locate(0x7f00_0000_12d3).expect("libc's symbol");
        assert_eq!(in_libc.symbol.name, "abort");
        assert_eq!(in_libc.offset, 211);
        assert_eq!(in_libc.section, ".text");
        assert_eq!(in_libc.file, Some("/lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(main.annotation(0x7f00_0000_12d3).as_deref(), Some("<abort+211>"));

        // Past the end of abort, and outside every module, nothing names it.
        assert!(main.locate(0x7f00_0000_1300).is_none());
        assert!(main.locate(0x7e00_0000_1200).is_none());
    }
}
