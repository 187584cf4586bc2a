//! Symbolization: from a code address to function names and source lines.
//!
//! DWARF comes first, through addr2line, with one [`SourceFrame`] per inlined
//! call. Code without DWARF (assembler stubs, libraries built without `-g`)
//! falls back to the ELF symbol table and is named `func+0x12` as gdb does.
//! The caller chooses the lookup address: for a return address that is one
//! byte before it (see [`crate::unwind::Pc::lookup_address`]).

use crate::cpp_name;
use crate::function_name;
use crate::image::{DwarfReader, Image};
use crate::variables::dwarf::DieId;

/// One function at a code address: the physical function, or one of the
/// functions inlined into it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceFrame {
    /// The function name, demangled when DWARF names the language.
    pub function: Option<String>,
    /// Offset of the address from the ELF symbol's start, when the name came
    /// from the symbol table instead of DWARF.
    pub symbol_offset: Option<u64>,
    /// Source file, as DWARF names it joined with the compilation directory.
    pub file: Option<String>,
    /// Source line; for an outer frame of an inlined call, the call site.
    pub line: Option<u32>,
    /// Source column, when DWARF records it.
    pub column: Option<u32>,
    /// Whether this function was inlined into the next entry.
    pub inlined: bool,
}

/// Position of a code address in the line table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRow {
    /// First address of the line-table row that contains the address.
    pub start: u64,
}

/// Returns the functions at `address`, innermost inlined function first and
/// the physical function last; empty when neither DWARF nor the symbol
/// table covers the address.
pub fn symbolize(image: &Image, address: u64) -> Vec<SourceFrame> {
    let mut frames = dwarf_frames(image, address);
    let has_function = frames.iter().any(|frame| frame.function.is_some());
    if !has_function {
        if let Some(symbol) = image.symbol_for(address) {
            let location = frames.pop();
            frames.clear();
            frames.push(SourceFrame {
                function: Some(demangle_symbol(&symbol.name)),
                symbol_offset: Some(address - symbol.address),
                file: location.as_ref().and_then(|l| l.file.clone()),
                line: location.as_ref().and_then(|l| l.line),
                column: location.as_ref().and_then(|l| l.column),
                inlined: false,
            });
        }
    }
    frames
}

/// Demangles a name from the ELF symbol table as gdb shows it, with the
/// parameter list (`_ZSt9terminatev` is `std::terminate()`): the symbol
/// table does not say the language, so the Rust and then the Itanium C++
/// scheme are tried on names with their prefixes. Any other name, such as
/// a C function's, is returned unchanged.
pub fn demangle_symbol(name: &str) -> String {
    if !is_mangled(name) {
        return name.to_owned();
    }
    addr2line::demangle_auto(std::borrow::Cow::Borrowed(name), None).into_owned()
}

/// Returns whether `name` is an Itanium C++ (`_Z`) or Rust v0 (`_R`)
/// mangled name. The C++ demangler also accepts a bare type code, so a C
/// symbol such as `m` would otherwise print as `unsigned long`.
pub fn is_mangled(name: &str) -> bool {
    name.starts_with("_Z") || name.starts_with("_R")
}

/// Returns the line-table row containing `address`, if the DWARF has one.
pub fn line_row(image: &Image, address: u64) -> Option<LineRow> {
    let mut rows = image.dwarf().find_location_range(address, address.checked_add(1)?).ok()?;
    let (start, _len, _location) = rows.next()?;
    Some(LineRow { start })
}

/// Returns the first address of the row of gdb's line table that contains
/// `address`, when that row is a statement. gdb 13 shows frame #0's
/// address unless the pc is there: at pc 0x1247 of rows (0x1240, line 14,
/// statement) (0x1247, line 14, not a statement), it prints the address.
/// See [`crate::line_table`] for the rows gdb records.
pub fn line_start(image: &Image, address: u64) -> Option<u64> {
    image.gdb_statement_start(address)
}

fn dwarf_frames(image: &Image, address: u64) -> Vec<SourceFrame> {
    let mut frames = Vec::new();
    let mut iter = match image.dwarf().find_frames(address).skip_all_loads() {
        Ok(iter) => iter,
        Err(error) => {
            tracing::warn!(address = format_args!("{address:#x}"), %error, "invalid DWARF for address");
            return frames;
        }
    };
    // addr2line gives each frame's DIE as an offset in the unit it found
    // the address in, which is the unit this lookup returns.
    let unit = image.dwarf().find_dwarf_and_unit(address).skip_all_loads();
    let unit_header = unit.map(|unit| &unit.unit.header);
    loop {
        match iter.next() {
            Ok(Some(frame)) => {
                let function = frame.function.as_ref().and_then(|name| match name.language {
                    Some(language) if is_cpp(language) => {
                        let die = frame.dw_die_offset.zip(unit_header).and_then(|(offset, header)| {
                            image.debug_info().die_at_info_offset(offset.to_debug_info_offset(header)?)
                        });
                        cpp_function_name(image, die, name)
                    }
                    _ => Some(name.demangle().ok()?.into_owned()),
                });
                let location = frame.location.as_ref();
                frames.push(SourceFrame {
                    function,
                    symbol_offset: None,
                    file: location.and_then(|l| l.file.map(str::to_owned)),
                    line: location.and_then(|l| l.line),
                    column: location.and_then(|l| l.column),
                    inlined: true,
                });
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(address = format_args!("{address:#x}"), %error, "invalid DWARF for address");
                break;
            }
        }
    }
    // addr2line yields the innermost inlined function first and the physical
    // function last; only the last one was not inlined.
    if let Some(last) = frames.last_mut() {
        last.inlined = false;
    }
    // The innermost function's line comes from the line table, where gdb
    // prefers a statement row; the outer ones are call sites.
    if let (Some(innermost), Some(row)) = (frames.first_mut(), line_row(image, address)) {
        if let Some(statement) = image.statement_row(row.start) {
            innermost.line = Some(statement.line);
            innermost.column = statement.column;
        }
    }
    frames
}

/// Returns whether `language` is one of the C++ dialects.
fn is_cpp(language: gimli::DwLang) -> bool {
    matches!(
        language,
        gimli::DW_LANG_C_plus_plus
            | gimli::DW_LANG_C_plus_plus_03
            | gimli::DW_LANG_C_plus_plus_11
            | gimli::DW_LANG_C_plus_plus_14
            | gimli::DW_LANG_ObjC_plus_plus
    )
}

/// Returns the name gdb shows in a frame line for a C++ function: from
/// its DIE when it was found (see [`function_name`]), or else from the
/// name addr2line read, demangled, without its parameters.
fn cpp_function_name(image: &Image, die: Option<DieId>, name: &addr2line::FunctionName<DwarfReader>) -> Option<String> {
    if let Some(name) = die.and_then(|die| function_name::frame_function_name(image.debug_info(), die)) {
        return Some(name);
    }
    let raw = name.raw_name().ok()?;
    let demangled = cpp_name::demangle(&raw).unwrap_or_else(|| raw.into_owned());
    Some(cpp_name::without_parameters(&demangled).unwrap_or(demangled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    #[test]
    fn demangle_leaves_c_names() {
        // `m`, `i` and `c` are also C++ type codes (unsigned long, int, char).
        for name in ["m", "i", "c", "main", "abort"] {
            assert_eq!(demangle_symbol(name), name);
        }
        assert_eq!(demangle_symbol("_ZSt9terminatev"), "std::terminate()");
        assert_eq!(crate::variables::symbols::demangle("m"), "m");
        assert_eq!(crate::variables::symbols::demangle("_ZTVSt9exception"), "vtable for std::exception");
    }

    fn symbol_address(image: &Image, name: &str) -> u64 {
        image.symbols().iter().find(|s| s.name == name).unwrap().address
    }

    #[test]
    fn inlined_function_listed_first() {
        let path = test_fixtures::gcc("inline", &["-O2", "-g", "-no-pie"], &["inline.c"]);
        let image = Image::open(&path).unwrap();
        let outer = image.symbols().iter().find(|s| s.name == "outer").unwrap().clone();
        let inlined = (outer.address..outer.address + outer.size)
            .map(|address| symbolize(&image, address))
            .find(|frames| frames.len() == 2)
            .expect("no address of outer() is in the inlined scale()");

        assert_eq!(inlined[0].function.as_deref(), Some("scale"));
        assert!(inlined[0].inlined);
        assert_eq!(inlined[1].function.as_deref(), Some("outer"));
        assert!(!inlined[1].inlined);
        // The outer entry's line is the call site of scale().
        assert_eq!(inlined[1].line, Some(11));
        assert!(inlined[1].file.as_deref().unwrap().ends_with("inline.c"));
    }

    #[test]
    fn symbol_table_fallback_has_offset() {
        let path = test_fixtures::gcc(
            "trap_stack_nodebug.elf",
            &["-nostdlib", "-static", "-no-pie", "-g0", "-Wl,-e,entry"],
            &["trap_stack.S"],
        );
        let image = Image::open(&path).unwrap();
        assert!(!image.has_debug_info());
        let middle = symbol_address(&image, "middle");
        let ud2 = symbol_address(&image, "middle_ud2");

        let frames = symbolize(&image, ud2);
        assert_eq!(frames.len(), 1);
        // The sized function wins over the label at the same address.
        assert_eq!(frames[0].function.as_deref(), Some("middle"));
        assert_eq!(frames[0].symbol_offset, Some(ud2 - middle));
        assert_eq!(frames[0].line, None);
    }

    #[test]
    fn line_start_is_a_row_start() {
        // Its own output name: two tests building one file at once race.
        let path = test_fixtures::gcc("inline-line-start", &["-O2", "-g", "-no-pie"], &["inline.c"]);
        let image = Image::open(&path).unwrap();
        let outer = image.symbols().iter().find(|s| s.name == "outer").unwrap().clone();
        let mut starts = std::collections::BTreeSet::new();
        for address in outer.address..outer.address + outer.size {
            let Some(start) = line_start(&image, address) else { continue };
            assert!(start <= address, "{address:#x} starts at {start:#x}");
            assert_eq!(line_start(&image, start), Some(start));
            let row = line_row(&image, start).expect("a row at the start");
            assert_eq!(row.start, start, "{start:#x} is where a line-table row starts");
            starts.insert(start);
        }
        assert!(starts.len() > 1, "outer() spans several rows");
    }

    #[test]
    fn symbol_names_demangled() {
        assert_eq!(demangle_symbol("_ZSt9terminatev"), "std::terminate()");
        assert_eq!(demangle_symbol("_ZN9__gnu_cxx27__verbose_terminate_handlerEv"), "__gnu_cxx::__verbose_terminate_handler()");
        assert_eq!(demangle_symbol("__libc_start_call_main"), "__libc_start_call_main");
        assert_eq!(demangle_symbol("_Z"), "_Z");
    }

    #[test]
    fn unknown_address_has_no_frames() {
        let image = Image::open(test_fixtures::trap_image_path()).unwrap();
        assert_eq!(symbolize(&image, 0x9000_0000), Vec::new());
    }
}
