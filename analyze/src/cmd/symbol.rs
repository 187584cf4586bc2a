//! `stardump info symbol ADDR`: which symbol an address is in, printed as
//! gdb does (`worker_config in section .data`, `main + 12 in section .text`).

use std::io::Write;

use serde::Serialize;

use super::inspect::{ContextArgs, Session};
use super::{Outcome, JSON_SCHEMA_VERSION};
use crate::symbolize::demangle_symbol;
use crate::variables::expr::{parse, Evaluator};
use crate::variables::types::Type;
use crate::variables::value::le_unsigned;

/// Arguments of `stardump info symbol`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[allow(missing_docs)] // The shared options document themselves.
    #[command(flatten)]
    pub context: ContextArgs,
    /// The address, a C expression (`$rip`, `0xffffffff80100b62`, `&counter`).
    pub address: String,
}

#[derive(Debug, Serialize)]
struct SymbolReport {
    schema_version: u32,
    command: &'static str,
    warnings: Vec<String>,
    address: String,
    symbol: Option<String>,
    offset: Option<u64>,
    section: Option<String>,
}

/// Runs `stardump info symbol`; warnings about the image go to `err` in
/// text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    let memory = session.memory();
    let frame = (args.context.frame < session.report.frames.len()).then_some(args.context.frame);
    let (value, inspector) = session.evaluate_in_scopes(&memory, frame, |inspector, frame| {
        let is_type = |name: &str| !inspector.info.types_named(name).is_empty();
        Evaluator { inspector, frame }.evaluate(&parse(&args.address, &is_type)?)
    })?;
    let address = match inspector.types().resolve_stripped(&value.ty) {
        Type::Array { .. } | Type::Function(_) | Type::Aggregate { .. } => value.address(),
        _ => None,
    };
    let address = match address {
        Some(address) => address,
        None => {
            let bytes = value.read(&memory, 0, 8.min(inspector.types().size_of(&value.ty).unwrap_or(8)))
                .map_err(|hole| anyhow::anyhow!("cannot read the address: {}", hole.marker()))?;
            le_unsigned(&bytes)
        }
    };
    let location = session.symbols.locate(address);
    let found = location.map(|location| (location.symbol, location.offset));
    let section = location.map(|location| location.section.to_owned());
    if args.context.json {
        let report = SymbolReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "info symbol",
            warnings: session.json_warnings(),
            address: super::hex(address),
            symbol: found.map(|(symbol, _)| demangle_symbol(&symbol.name)),
            offset: found.map(|(_, offset)| offset),
            section,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        // With more than one object file loaded, as for a process with its
        // shared libraries, gdb names the file after the section.
        let section = match (section, location.and_then(|location| location.file), session.core.file_mappings().is_empty()) {
            (Some(section), Some(file), _) => Some(format!("{section} of {file}")),
            (Some(section), None, false) => {
                let path = std::fs::canonicalize(session.image.path()).unwrap_or_else(|_| session.image.path().to_owned());
                Some(format!("{section} of {}", path.display()))
            }
            (section, _, _) => section,
        };
        match found {
            Some((symbol, 0)) => writeln!(out, "{} in section {}", demangle_symbol(&symbol.name), section.unwrap_or_default())?,
            Some((symbol, offset)) => {
                writeln!(out, "{} + {offset} in section {}", demangle_symbol(&symbol.name), section.unwrap_or_default())?
            }
            None => writeln!(out, "No symbol matches {}.", args.address)?,
        }
    }
    Ok(session.outcome(true))
}
