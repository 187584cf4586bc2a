//! ELF symbols of every kind, for naming what a pointer points to
//! (`<worker_config>`, `<thread_pool+216>`) and for `info symbol`.
//!
//! [`crate::image::Image`] keeps only function symbols, for unwinding, but a
//! data pointer needs the data symbols too. gdb's rule applies: a symbol
//! names an address in its own section, within its size when it has one.

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::tls::TlsTemplate;
use crate::image::Image;

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
}

impl SymbolTable {
    /// Reads the symbols of `image`'s ELF file. A file object cannot parse
    /// yields an empty table: pointers then print without names.
    pub fn from_image(image: &Image) -> SymbolTable {
        let Ok(elf) = object::File::parse(image.elf_bytes()) else {
            return SymbolTable::default();
        };
        let mut sections = Vec::new();
        let mut section_index = std::collections::HashMap::new();
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
        let mut symbols: Vec<Symbol> = elf
            .symbols()
            .filter(|symbol| symbol.is_definition() || symbol.kind() == SymbolKind::Label)
            .filter(|symbol| !matches!(symbol.kind(), SymbolKind::Section | SymbolKind::File))
            .filter_map(|symbol| {
                let name = symbol.name().ok().filter(|name| !name.is_empty())?;
                let section = *section_index.get(&symbol.section_index()?)?;
                let linkage_name = name.to_owned();
                let name = demangle(name);
                Some(Symbol { name, linkage_name, address: symbol.address(), size: symbol.size(), section })
            })
            .collect();
        // At one address, prefer a global sized symbol (as gdb prefers
        // global over static ones), then the name, for a stable choice.
        symbols.sort_by(|a, b| a.address.cmp(&b.address).then((b.size != 0).cmp(&(a.size != 0))).then(a.name.cmp(&b.name)));
        symbols.dedup_by(|later, earlier| later.address == earlier.address);
        let tls = TlsTemplate::from_elf(image.elf_bytes());
        SymbolTable { symbols, sections, tls, load_bias: 0 }
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
    pub fn lookup(&self, address: u64) -> Option<(&Symbol, u64)> {
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
    /// after a pointer.
    pub fn annotation(&self, address: u64) -> Option<String> {
        let (symbol, offset) = self.lookup(address)?;
        Some(if offset == 0 { format!("<{}>", symbol.name) } else { format!("<{}+{offset}>", symbol.name) })
    }

    /// The name of section `index`.
    pub fn section_name(&self, index: usize) -> &str {
        self.sections.get(index).map_or("?", |section| section.name.as_str())
    }
}
