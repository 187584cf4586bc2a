//! Symbolization: from a code address to function names and source lines.
//!
//! DWARF comes first, through addr2line, with one [`SourceFrame`] per inlined
//! call. Code without DWARF (assembler stubs, libraries built without `-g`)
//! falls back to the ELF symbol table and is named `func+0x12` as gdb does.
//! The caller chooses the lookup address: for a return address that is one
//! byte before it (see [`crate::unwind::Pc::lookup_address`]).

use crate::image::Image;

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
                function: Some(symbol.name.clone()),
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

/// Returns the line-table row containing `address`, if the DWARF has one.
pub fn line_row(image: &Image, address: u64) -> Option<LineRow> {
    let mut rows = image.dwarf().find_location_range(address, address.checked_add(1)?).ok()?;
    let (start, _len, _location) = rows.next()?;
    Some(LineRow { start })
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
    loop {
        match iter.next() {
            Ok(Some(frame)) => {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|name| name.demangle().ok().map(|name| name.into_owned()));
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
    frames
}
