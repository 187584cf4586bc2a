//! `stardump bt`: a backtrace of every vCPU, printed like gdb's
//! `thread apply all bt`.
//!
//! Each physical frame from [`crate::unwind`] becomes one line per function
//! at its pc: the innermost inlined function first, then the functions it
//! was inlined into. Like gdb, only the innermost line shows the address,
//! and a trap frame prints as `<signal handler called>`. How the frame was
//! found is appended in brackets, which gdb does not print.
//!
//! With DWARF, each line shows the function's arguments as gdb's frame
//! lines do (see [`crate::cmd::inspect::frame_arguments`]); `--full` adds
//! the locals below each line, like gdb's `bt full`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use stardump_format::{Target, VcpuState};

use super::inspect::{frame_arguments, variable_reports, VariableReport};
use super::regs::select_vcpus;
use super::{hex, open_target, Outcome, JSON_SCHEMA_VERSION};
use crate::check::{self, check_image};
use crate::image::Image;
use crate::image_fallback::ImageBacked;
use crate::symbolize::{self, SourceFrame};
use crate::variables::dwarf::DebugInfo;
use crate::variables::format::{PrintOptions, Printer};
use crate::variables::symbols::SymbolTable;
use crate::variables::Inspector;
use crate::unwind::{
    Backtrace, Frame, Pc, Registers, TargetMemory, UnwindOptions, Unwinder, DEFAULT_MAX_FRAMES,
};

/// Arguments of `stardump bt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file.
    pub file: PathBuf,
    /// The unikernel's ELF file, with DWARF for names and lines.
    #[arg(long)]
    pub image: PathBuf,
    /// Show only the vCPU with this id.
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Maximum number of frames per backtrace.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAMES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub limit: usize,
    /// Print JSON (schema in analyze/JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show every frame's arguments and locals, like gdb's `bt full`.
    #[arg(long)]
    pub full: bool,
    /// With `--full`: nesting depth after which structs and arrays print as `{...}`.
    #[arg(long, default_value_t = crate::variables::format::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// With `--full`: maximum number of array elements and string characters printed.
    #[arg(long, default_value_t = crate::variables::format::DEFAULT_PRINT_ELEMENTS)]
    pub print_elements: usize,
}

/// Kind of frame a line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrameKind {
    /// A function's own frame.
    Normal,
    /// A function inlined into the next frame; it has no frame of its own.
    Inline,
    /// An exception or interrupt entry (`<signal handler called>` in gdb).
    Trap,
}

/// One line of a backtrace; the JSON form is documented in analyze/JSON.md.
#[derive(Debug, Clone, Serialize)]
pub struct FrameReport {
    /// Position in the backtrace, counting inlined functions as gdb does.
    pub index: usize,
    /// Position of the physical frame this line belongs to.
    pub physical_index: usize,
    /// Kind of frame.
    pub kind: FrameKind,
    /// The frame's pc as the frame records it.
    pub pc: String,
    /// Whether `pc` is a return address (looked up one byte earlier).
    pub pc_is_return_address: bool,
    /// The address symbols and lines were looked up at.
    pub lookup_pc: String,
    /// Whether the address is printed, as gdb decides.
    #[serde(skip)]
    pub show_address: bool,
    /// The canonical frame address, when known.
    pub cfa: Option<String>,
    /// Strategy that found the physical frame.
    pub found_by: &'static str,
    /// Function name, if known.
    pub function: Option<String>,
    /// Offset from the ELF symbol, when the name came from the symbol table.
    pub symbol_offset: Option<u64>,
    /// Source file, joined with its compilation directory.
    pub file: Option<String>,
    /// Source file as the text output shows it (see [`Image::display_path`]).
    #[serde(skip)]
    pub display_file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// Source column.
    pub column: Option<u32>,
    /// Whether this function was inlined into the next line's function.
    pub inlined: bool,
    /// The registers known in this frame.
    pub registers: std::collections::BTreeMap<&'static str, String>,
    /// The function's arguments, when the image has DWARF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<VariableReport>>,
    /// With `--full`: the locals, innermost block first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals: Option<Vec<VariableReport>>,
    /// The arguments as the frame line shows them, when the image has DWARF.
    #[serde(skip)]
    pub argument_text: Option<String>,
}

/// One vCPU's backtrace.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadReport {
    /// vCPU id.
    pub vcpu: u32,
    /// Whether the walk reached the outermost frame.
    pub complete: bool,
    /// Reason the walk ended early.
    pub stop_reason: Option<String>,
    /// The lines, innermost first.
    pub frames: Vec<FrameReport>,
}

/// The whole `bt` report.
#[derive(Debug, Clone, Serialize)]
pub struct BtReport {
    schema_version: u32,
    command: &'static str,
    snapshot: String,
    image: String,
    image_build_id: Option<String>,
    warnings: Vec<String>,
    threads: Vec<ThreadReport>,
}

/// Turns one physical frame into its lines.
fn frame_lines(image: &Image, frame: &Frame, physical_index: usize, first_index: usize) -> Vec<FrameReport> {
    let lookup = frame.pc.lookup_address();
    let mut sources = symbolize::symbolize(image, lookup);
    if sources.is_empty() {
        sources.push(SourceFrame {
            function: None,
            symbol_offset: None,
            file: None,
            line: None,
            column: None,
            inlined: false,
        });
    }
    // gdb omits the address when an exact pc is at the start of a line-table
    // row, as at a breakpoint. A return address is always shown.
    let at_line_start = match frame.pc {
        Pc::Exact(pc) => symbolize::line_row(image, pc).is_some_and(|row| row.start == pc),
        Pc::ReturnAddress(_) => false,
    };
    let registers: std::collections::BTreeMap<_, _> =
        frame.registers.known().map(|(name, value)| (name, hex(value))).collect();
    sources
        .into_iter()
        .enumerate()
        .map(|(offset, source)| {
            let kind = if frame.trap {
                FrameKind::Trap
            } else if source.inlined {
                FrameKind::Inline
            } else {
                FrameKind::Normal
            };
            FrameReport {
                index: first_index + offset,
                physical_index,
                kind,
                pc: hex(frame.pc.value()),
                pc_is_return_address: matches!(frame.pc, Pc::ReturnAddress(_)),
                lookup_pc: hex(lookup),
                // Lines for the functions an inlined call sits in show the
                // call site, not the pc, so gdb prints no address for them.
                show_address: offset == 0 && !at_line_start,
                cfa: frame.cfa.map(hex),
                found_by: frame.found_by.as_str(),
                function: source.function,
                symbol_offset: source.symbol_offset,
                display_file: source.file.as_deref().map(|file| image.display_path(file).to_owned()),
                file: source.file,
                line: source.line,
                column: source.column,
                inlined: source.inlined,
                registers: registers.clone(),
                arguments: None,
                locals: None,
                argument_text: None,
            }
        })
        .collect()
}

/// Builds the report of one backtrace.
pub fn thread_report(image: &Image, vcpu: u32, backtrace: &Backtrace) -> ThreadReport {
    let mut frames = Vec::new();
    for (physical_index, frame) in backtrace.frames.iter().enumerate() {
        let lines = frame_lines(image, frame, physical_index, frames.len());
        // A trap frame is one line in gdb, whatever code it is in.
        if frame.trap {
            frames.extend(lines.into_iter().last());
        } else {
            frames.extend(lines);
        }
    }
    for (index, frame) in frames.iter_mut().enumerate() {
        frame.index = index;
    }
    ThreadReport {
        vcpu,
        complete: backtrace.stop.is_none(),
        stop_reason: backtrace.stop.as_ref().map(ToString::to_string),
        frames,
    }
}

/// What the variables of one vCPU's frames are read from.
struct VariableTarget<'a> {
    info: &'a DebugInfo,
    symbols: &'a SymbolTable,
    memory: &'a TargetMemory<'a>,
    vcpu: &'a VcpuState,
}

/// Fills in the arguments of every frame of `report`, and with `full` the
/// locals. Only with `full` does a value that is not known make the output
/// incomplete: plain `bt` is complete when the walk is.
fn add_variables(
    report: &mut ThreadReport,
    backtrace: &Backtrace,
    target: &VariableTarget<'_>,
    options: PrintOptions,
    full: bool,
    incomplete: &mut bool,
) {
    let VariableTarget { info, symbols, memory, vcpu } = *target;
    let mut lines_per_frame = vec![0usize; backtrace.frames.len()];
    for line in &report.frames {
        if let Some(count) = lines_per_frame.get_mut(line.physical_index) {
            *count += 1;
        }
    }
    let inspector = Inspector::new(info, symbols, memory, &backtrace.frames, Some(vcpu), &lines_per_frame);
    let printer = Printer::new(inspector.types(), memory, symbols, options);
    for (index, frame) in report.frames.iter_mut().enumerate() {
        let arguments = inspector.arguments(index);
        frame.argument_text = Some(frame_arguments(&printer, &inspector, index, &arguments));
        let mut ignored = false;
        let incomplete = if full { &mut *incomplete } else { &mut ignored };
        frame.arguments = Some(variable_reports(&printer, &arguments, incomplete));
        if full {
            frame.locals = Some(variable_reports(&printer, &inspector.locals(index), incomplete));
        }
    }
}

fn unwind_vcpu(unwinder: &mut Unwinder<'_>, target: &dyn Target, vcpu: &VcpuState) -> Option<Backtrace> {
    if !vcpu.present.general {
        return None;
    }
    let _span = tracing::debug_span!("vcpu", id = vcpu.id).entered();
    let memory = TargetMemory::new(target, vcpu.cr3);
    Some(unwinder.walk(Registers::from_vcpu(vcpu), &memory))
}

/// Writes one frame line as gdb does, with how it was found appended.
pub fn write_text_frame(out: &mut dyn Write, frame: &FrameReport) -> std::io::Result<()> {
    write_frame(out, frame)
}

fn write_frame(out: &mut dyn Write, frame: &FrameReport) -> std::io::Result<()> {
    let file = frame.display_file.as_ref().or(frame.file.as_ref());
    write!(out, "#{:<3}", frame.index)?;
    if frame.kind == FrameKind::Trap {
        writeln!(out, "<signal handler called> [{}]", frame.found_by)?;
        if frame.locals.is_some() {
            writeln!(out, "No locals.")?;
        }
        return Ok(());
    }
    if frame.show_address {
        let pc = u64::from_str_radix(frame.pc.trim_start_matches("0x"), 16).unwrap_or(0);
        write!(out, "{pc:#018x} in ")?;
    }
    let arguments = frame.argument_text.as_deref().unwrap_or("");
    match (&frame.function, frame.symbol_offset) {
        (Some(name), Some(offset)) if offset != 0 => write!(out, "{name}+{offset:#x} ({arguments})")?,
        (Some(name), _) => write!(out, "{name} ({arguments})")?,
        (None, _) => write!(out, "?? ({arguments})")?,
    }
    if let (Some(file), Some(line)) = (file, frame.line) {
        write!(out, " at {file}:{line}")?;
    }
    writeln!(out, " [{}]", frame.found_by)?;
    if let Some(locals) = &frame.locals {
        if locals.is_empty() {
            writeln!(out, "No locals.")?;
        }
        for local in locals {
            writeln!(out, "        {} = {}", local.name, local.value)?;
        }
    }
    Ok(())
}

/// Writes the text form of `report`.
pub fn write_text(report: &BtReport, out: &mut dyn Write) -> std::io::Result<()> {
    for (index, thread) in report.threads.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        writeln!(out, "Thread {} (vCPU {}):", u64::from(thread.vcpu) + 1, thread.vcpu)?;
        for frame in &thread.frames {
            write_frame(out, frame)?;
        }
        if let Some(reason) = &thread.stop_reason {
            writeln!(out, "Backtrace stopped: {reason}")?;
        }
    }
    Ok(())
}

/// Runs `stardump bt`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let snapshot = open_target(&args.file)?;
    let image = Image::open(&args.image).with_context(|| "cannot load the image".to_string())?;
    let vcpus = select_vcpus(snapshot.vcpus(), args.vcpu)?;

    let mut warnings = Vec::new();
    // The image's code is mapped in every address space of a unikernel, so
    // the first cr3 serves for the comparison.
    match snapshot.vcpus().iter().find(|vcpu| vcpu.present.control) {
        Some(vcpu) => warnings.extend(check_image(&image, &snapshot, vcpu.cr3).iter().map(ToString::to_string)),
        None => warnings.push("no vCPU has cr3: the image's code was not compared with the snapshot".to_owned()),
    }

    // Unwinding and variables read code and read-only data the dump lacks
    // from the image; the image check above compares with the dump alone.
    let backed = ImageBacked::new(&snapshot, &image);
    let options = UnwindOptions { max_frames: args.limit, ..UnwindOptions::default() };
    let mut unwinder = Unwinder::new(&image, options);
    // Frame lines show arguments as gdb's do whenever there is DWARF.
    let variables = image.has_debug_info().then(|| {
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let symbols = SymbolTable::from_image(&image);
        (info, symbols)
    });
    let print_options = PrintOptions { elements: args.print_elements, max_depth: args.max_depth, format: None };
    let mut variables_incomplete = false;
    let mut threads = Vec::new();
    for vcpu in &vcpus {
        let thread = match unwind_vcpu(&mut unwinder, &backed, vcpu) {
            Some(backtrace) => {
                let mut report = thread_report(&image, vcpu.id, &backtrace);
                if let Some((info, symbols)) = &variables {
                    let memory = TargetMemory::new(&backed, vcpu.cr3);
                    let target = VariableTarget { info, symbols, memory: &memory, vcpu };
                    add_variables(&mut report, &backtrace, &target, print_options, args.full, &mut variables_incomplete);
                }
                report
            }
            None => ThreadReport {
                vcpu: vcpu.id,
                complete: false,
                stop_reason: Some(format!("general registers of vCPU {} were not captured", vcpu.id)),
                frames: Vec::new(),
            },
        };
        threads.push(thread);
    }
    warnings.extend(backed.warning());
    let complete = threads.iter().all(|thread| thread.complete) && !variables_incomplete;
    let outcome = if complete { Outcome::Complete } else { Outcome::Incomplete };

    let report = BtReport {
        schema_version: JSON_SCHEMA_VERSION,
        command: "bt",
        snapshot: args.file.display().to_string(),
        image: args.image.display().to_string(),
        image_build_id: image.build_id().map(check::hex),
        warnings,
        threads,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        for warning in &report.warnings {
            writeln!(err, "warning: {warning}")?;
        }
        write_text(&report, out)?;
    }
    Ok(outcome)
}
