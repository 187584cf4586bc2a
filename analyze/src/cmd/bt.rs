//! `stardump bt`: a backtrace of every vCPU or thread, printed like gdb's
//! `thread apply all bt`.
//!
//! A unikernel snapshot needs `--image`. A Linux core or a snapshot of a
//! process lists its file mappings, and every mapped ELF file is loaded as a
//! module (see [`crate::modules`]). There `--image` only replaces the main
//! program's file. Each pc is symbolized in the module that contains it.
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

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use stardump_format::{Core, FileMapping, Target, VcpuState};

use super::inspect::{frame_arguments, variable_reports, VariableReport};
use super::module_debug::{ModuleDebugCache, ThreadModules};
use super::regs::select_vcpus;
use super::{hex, open_target, Outcome, JSON_SCHEMA_VERSION};
use crate::check;
use crate::debug_file::DebugSearch;
use crate::image::Image;
use crate::image_fallback::ImageBacked;
use crate::modules::{executable_mapping, Module, ModuleSet, ModuleWarning, VDSO_NAME};
use crate::symbolize::{self, SourceFrame};
use crate::threads::tail_calls::TailCallFrame;
use crate::variables::dwarf::DebugInfo;
use crate::variables::format::{PrintOptions, Printer};
use crate::variables::location::CallerScope;
use crate::link_map;
use crate::variables::symbols::SymbolTable;
use crate::variables::Inspector;
use crate::unwind::{
    Backtrace, Frame, Pc, Registers, TargetMemory, UnwindOptions, Unwinder, DEFAULT_MAX_FRAMES,
};

/// `found_by` of a function that left the stack through a tail call.
pub(crate) const TAIL_CALL_FOUND_BY: &str = "tail-call";

/// Arguments of `stardump bt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot or core file.
    pub file: PathBuf,
    /// The unikernel's ELF file, with DWARF for names and lines. Optional
    /// for a Linux process, whose mapped files are found by their paths, and
    /// there it replaces the main program's file.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Directory to search for ELF and debug files by build id
    /// (`DIR/.build-id/xx/yyyy.debug`), by name (`DIR/NAME`) and by
    /// `.gnu_debuglink`. Repeatable. The directories are searched in order,
    /// then /usr/lib/debug.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
    /// The vCPU or thread to read.
    #[command(flatten)]
    pub selection: super::regs::Selection,
    /// Maximum number of frames per backtrace; 0 for no limit, as gdb's
    /// `set backtrace limit 0`.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAMES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1_000_000_000))]
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
    /// Whether the text output prints the address, as gdb decides.
    #[serde(rename = "address_shown")]
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
    /// The mapped path of the shared object the pc is in, for a process.
    /// `None` in the main program and in a unikernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// The path the dynamic linker opened that shared object by, which
    /// gdb shows (`/lib/x86_64-linux-gnu/libc.so.6`), when the core's
    /// `link_map` list names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_name: Option<String>,
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

/// One vCPU's or thread's backtrace.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadReport {
    /// vCPU id, or for a process the thread's position in the file.
    pub vcpu: u32,
    /// Linux thread id (LWP), for a process.
    pub lwp: Option<u64>,
    /// Thread name, when the source recorded it.
    pub name: Option<String>,
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
    image: Option<String>,
    image_build_id: Option<String>,
    /// The start of a Linux core's command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<String>,
    /// The signal that ended a Linux core's process.
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<crate::signal::SignalReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    modules: Vec<ModuleReport>,
    warnings: Vec<String>,
    threads: Vec<ThreadReport>,
}

/// One loaded module of a process, for the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// The path the process mapped the file by.
    pub path: String,
    /// The path the dynamic linker opened the file by, from the core's
    /// `link_map` list. `None` for the main program and the vDSO, and when
    /// the list cannot be read.
    pub name: Option<String>,
    /// The file symbols were read from.
    pub file: String,
    /// The separate debug file, when one was used.
    pub debug_file: Option<String>,
    /// GNU build id, lowercase hex.
    pub build_id: Option<String>,
    /// Run-time address minus file address, modulo 2^64.
    pub bias: String,
    /// Run-time address range of the module's segments.
    pub start: String,
    /// End of that range, exclusive.
    pub end: String,
    /// Whether the module has DWARF.
    pub has_debug_info: bool,
}

impl ModuleReport {
    fn new(module: &Module, name: Option<String>) -> ModuleReport {
        ModuleReport {
            path: module.mapped_path.clone(),
            name,
            file: module.image.path().display().to_string(),
            debug_file: module.image.debug_path().map(|path| path.display().to_string()),
            build_id: module.image.build_id().map(check::hex),
            bias: hex(module.bias),
            start: hex(module.start),
            end: hex(module.end),
            has_debug_info: module.image.has_debug_info(),
        }
    }
}

/// The code a backtrace's pcs are looked up in: one unikernel image linked
/// at its run-time addresses, or the modules of a process.
#[derive(Clone, Copy)]
pub enum CodeImages<'a> {
    /// One image, with bias 0, covering every address.
    One(&'a Image),
    /// The modules of a process.
    Modules {
        /// The loaded modules.
        set: &'a ModuleSet,
        /// The mapped path of the main program, whose frames name no library.
        main: Option<&'a str>,
        /// The dynamic linker's name of each module of `set`, by position,
        /// where known (see [`crate::link_map::module_names`]).
        names: &'a [Option<String>],
    },
}

/// The module a pc is in, as a frame line names it.
#[derive(Clone, Copy)]
struct Located<'a> {
    image: &'a Image,
    bias: u64,
    /// The mapped path of a shared object; `None` for the main program.
    library: Option<&'a str>,
    /// The dynamic linker's name of that shared object.
    library_name: Option<&'a str>,
}

impl<'a> CodeImages<'a> {
    /// Returns the image containing the run-time `address`, its bias, and
    /// the library path and name to show for it.
    fn locate(&self, address: u64) -> Option<Located<'a>> {
        match *self {
            CodeImages::One(image) => Some(Located { image, bias: 0, library: None, library_name: None }),
            CodeImages::Modules { set, main, names } => {
                let index = set.index_for(address)?;
                let module = &set.modules()[index];
                let is_library = Some(module.mapped_path.as_str()) != main;
                Some(Located {
                    image: &module.image,
                    bias: module.bias,
                    library: is_library.then_some(module.mapped_path.as_str()),
                    library_name: names.get(index).and_then(Option::as_deref).filter(|_| is_library),
                })
            }
        }
    }
}

/// Turns one physical frame into its lines.
fn frame_lines(images: CodeImages<'_>, frame: &Frame, physical_index: usize, first_index: usize) -> Vec<FrameReport> {
    let lookup = frame.pc.lookup_address();
    let located = images.locate(lookup);
    let library = located.and_then(|located| located.library).map(str::to_owned);
    let library_name = located.and_then(|located| located.library_name).map(str::to_owned);
    let mut sources = match located {
        Some(Located { image, bias, .. }) => symbolize::symbolize(image, lookup.wrapping_sub(bias)),
        None => Vec::new(),
    };
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
    // gdb omits the address when an exact pc is at the start of its source
    // line, as at a breakpoint. A return address is always shown.
    let at_line_start = match (frame.pc, located) {
        (Pc::Exact(pc), Some(Located { image, bias, .. })) => {
            let file_pc = pc.wrapping_sub(bias);
            symbolize::line_start(image, file_pc) == Some(file_pc)
        }
        _ => false,
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
                show_address: offset == 0 && !at_line_start && kind != FrameKind::Trap,
                cfa: frame.cfa.map(hex),
                found_by: frame.found_by.as_str(),
                function: source.function,
                symbol_offset: source.symbol_offset,
                display_file: source
                    .file
                    .as_deref()
                    .zip(located)
                    .map(|(file, located)| located.image.display_path(file).to_owned()),
                library: library.clone(),
                library_name: library_name.clone(),
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

/// Builds the report of one backtrace of code in `image`.
pub fn thread_report(image: &Image, vcpu: u32, backtrace: &Backtrace) -> ThreadReport {
    thread_report_in(CodeImages::One(image), vcpu, backtrace)
}

/// Builds the report of one backtrace of code in `images`.
pub fn thread_report_in(images: CodeImages<'_>, vcpu: u32, backtrace: &Backtrace) -> ThreadReport {
    let mut frames = Vec::new();
    for (physical_index, frame) in backtrace.frames.iter().enumerate() {
        let lines = frame_lines(images, frame, physical_index, frames.len());
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
        lwp: None,
        name: None,
        complete: backtrace.stop.is_none(),
        stop_reason: backtrace.stop.as_ref().map(ToString::to_string),
        frames,
    }
}

/// What the variables of one vCPU's frames are read from.
struct VariableTarget<'a> {
    info: &'a DebugInfo,
    /// The ELF file `info` describes.
    image: &'a Image,
    symbols: &'a SymbolTable,
    memory: &'a TargetMemory<'a>,
    vcpu: &'a VcpuState,
    /// The DWARF of frames in other modules (see [`CallerScope`]).
    callers: &'a [Option<CallerScope<'a>>],
}

/// Fills in the arguments of every line of `report` whose frame
/// `in_scope` accepts, and with `full` the locals. `backtrace` has one
/// frame per group of lines, and `groups[i]` is the frame of line `i`
/// (see [`line_groups`]). Only with `full` does a value that is not known
/// make the output incomplete: plain `bt` is complete when the walk is.
#[allow(clippy::too_many_arguments)]
fn add_variables(
    report: &mut ThreadReport,
    backtrace: &Backtrace,
    groups: &[usize],
    target: &VariableTarget<'_>,
    options: PrintOptions,
    full: bool,
    incomplete: &mut bool,
    in_scope: &dyn Fn(usize) -> bool,
) {
    let VariableTarget { info, image, symbols, memory, vcpu, callers } = *target;
    let mut lines_per_frame = vec![0usize; backtrace.frames.len()];
    for &group in groups {
        if let Some(count) = lines_per_frame.get_mut(group) {
            *count += 1;
        }
    }
    let tail_calls: Vec<usize> = report
        .frames
        .iter()
        .zip(groups)
        .filter(|(line, _)| line.found_by == TAIL_CALL_FOUND_BY)
        .map(|(_, &group)| group)
        .collect();
    let inspector = Inspector::new(info, symbols, memory, &backtrace.frames, Some(vcpu), &lines_per_frame)
        .with_tail_calls(&tail_calls)
        .with_callers(callers.to_vec())
        .with_image(image);
    let printer = Printer::new(inspector.types(), memory, symbols, options);
    for (index, frame) in report.frames.iter_mut().enumerate() {
        if !groups.get(index).is_some_and(|&group| in_scope(group)) {
            continue;
        }
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
    writeln!(out, "{} [{}]", frame_line(frame), frame.found_by)?;
    if frame.kind == FrameKind::Trap {
        if frame.locals.is_some() {
            writeln!(out, "No locals.")?;
        }
        return Ok(());
    }
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

/// Returns the frame's line as gdb prints it, without how it was found.
pub fn frame_line(frame: &FrameReport) -> String {
    // gdb pads the number to two columns and always adds a space: "#0  ", "#10 ", "#100 ".
    let mut line = format!("#{:<2} ", frame.index);
    if frame.kind == FrameKind::Trap {
        line.push_str("<signal handler called>");
        return line;
    }
    if frame.show_address {
        let pc = u64::from_str_radix(frame.pc.trim_start_matches("0x"), 16).unwrap_or(0);
        line.push_str(&format!("{pc:#018x} in "));
    }
    let arguments = frame.argument_text.as_deref().unwrap_or("");
    // A name from the ELF symbol table prints without its offset, as in
    // gdb; the JSON keeps the offset in `symbol_offset`.
    line.push_str(&format!("{} ({arguments})", frame.function.as_deref().unwrap_or("??")));
    let file = frame.display_file.as_ref().or(frame.file.as_ref());
    let library = frame.library_name.as_ref().or(frame.library.as_ref());
    match (file, frame.line, library) {
        (Some(file), Some(number), _) => line.push_str(&format!(" at {file}:{number}")),
        // gdb names the shared object of a frame without a line, except
        // the vDSO, which has no file.
        (_, _, Some(library)) if library != VDSO_NAME => line.push_str(&format!(" from {library}")),
        _ => {}
    }
    line
}

/// Writes the text form of `report`.
pub fn write_text(report: &BtReport, out: &mut dyn Write) -> std::io::Result<()> {
    // What gdb prints when it opens a core, before any command.
    if let Some(command_line) = &report.command_line {
        writeln!(out, "Core was generated by `{command_line}'.")?;
    }
    if let Some(signal) = &report.signal {
        crate::signal::write_text(signal, out)?;
    }
    if report.command_line.is_some() || report.signal.is_some() {
        writeln!(out)?;
    }
    for (index, thread) in report.threads.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        let number = u64::from(thread.vcpu) + 1;
        match (thread.lwp, &thread.name) {
            (Some(lwp), Some(name)) => writeln!(out, "Thread {number} (LWP {lwp} \"{name}\"):")?,
            (Some(lwp), None) => writeln!(out, "Thread {number} (LWP {lwp}):")?,
            (None, _) => writeln!(out, "Thread {number} (vCPU {}):", thread.vcpu)?,
        }
        for frame in &thread.frames {
            write_frame(out, frame)?;
        }
        if let Some(reason) = &thread.stop_reason {
            writeln!(out, "Backtrace stopped: {reason}")?;
        }
    }
    Ok(())
}

/// The images a `bt` run symbolizes with.
enum LoadedImages {
    /// A unikernel image, with bias 0.
    Unikernel(Box<Image>),
    /// The modules of a process, and the mapped path of its program.
    Process {
        /// The loaded modules.
        modules: ModuleSet,
        /// The mapped path of the main program.
        main: Option<String>,
        /// The dynamic linker's name of each module, by position.
        names: Vec<Option<String>>,
        /// What is missing from some files, shown only for files that a
        /// frame falls in.
        module_warnings: Vec<ModuleWarning>,
    },
}

/// Loads `--image` for a unikernel, or every mapped ELF file of a process.
/// Warnings about files that were not found or do not match go to `warnings`.
fn load_images(args: &Args, core: &Core, warnings: &mut Vec<String>) -> anyhow::Result<LoadedImages> {
    super::warnings::check_process_mappings(core, &args.file)?;
    let mappings = core.file_mappings();
    if mappings.is_empty() {
        let Some(path) = &args.image else {
            anyhow::bail!(
                "{} lists no mapped files, so it needs the unikernel's ELF file: pass --image FILE",
                args.file.display()
            );
        };
        return Ok(LoadedImages::Unikernel(Box::new(super::warnings::open_image(path)?)));
    }
    if let Some(path) = &args.image {
        super::warnings::reject_directory(path)?;
    }
    let executable = executable_mapping(core);
    if executable.is_none() && args.image.is_some() {
        warnings.push("cannot tell which mapping is the main program, so --image was not used".to_owned());
    }
    let search = DebugSearch::new(args.debug_dirs.clone());
    warnings.extend(search.unusable_directories());
    let (mut modules, module_warnings) =
        ModuleSet::from_file_mappings(mappings, executable, args.image.as_deref(), &search);
    let mut module_warnings = module_warnings;
    module_warnings.extend(modules.add_vdso(core));
    let names = linker_names(&modules, executable.map(|mapping| mapping.path.as_str()), core);
    Ok(LoadedImages::Process { modules, main: executable.map(|mapping| mapping.path.clone()), names, module_warnings })
}

/// Returns `warnings` about the files that a pc of `pcs` falls in, each
/// file named as the dynamic linker names it when `names` knows it. gdb
/// says nothing about a library without symbols or DWARF, and a warning
/// about one that no frame uses is noise.
pub(crate) fn warnings_for_frames(
    warnings: &[ModuleWarning],
    modules: &ModuleSet,
    names: &[Option<String>],
    mappings: &[FileMapping],
    pcs: impl Iterator<Item = u64>,
) -> Vec<String> {
    // A file's mappings, or the module loaded from it (the vDSO has no
    // file mapping in a kernel core).
    let mut used: HashSet<&str> = HashSet::new();
    for pc in pcs {
        if let Some(mapping) = mappings.iter().find(|mapping| mapping.start <= pc && pc < mapping.end) {
            used.insert(mapping.path.as_str());
        }
        if let Some(module) = modules.module_for(pc) {
            used.insert(module.mapped_path.as_str());
        }
    }
    warnings
        .iter()
        .filter(|warning| used.contains(warning.mapped_path.as_str()))
        .map(|warning| {
            let position = modules.modules().iter().position(|module| module.mapped_path == warning.mapped_path);
            match position.and_then(|position| names.get(position)).cloned().flatten() {
                Some(name) => format!("{name} at {:#x}: {}", warning.address, warning.reason),
                None => warning.to_string(),
            }
        })
        .collect()
}

/// Parses a `0x…` address as the reports print it.
fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Returns the dynamic linker's name of each module of `modules`, by
/// position, read from the `link_map` list in `core` (see
/// [`crate::link_map`]); all `None` when the list cannot be read.
pub(crate) fn linker_names(modules: &ModuleSet, main: Option<&str>, core: &Core) -> Vec<Option<String>> {
    let main_index = modules.modules().iter().position(|module| Some(module.mapped_path.as_str()) == main);
    let Some(main_index) = main_index else {
        return vec![None; modules.modules().len()];
    };
    // The dynamic linker's data is written at run time, so it is in the
    // core itself, and the address space of a process is the same for
    // every thread.
    let cr3 = core.vcpus().first().map_or(0, |vcpu| vcpu.cr3);
    let memory = TargetMemory::new(core, cr3);
    link_map::module_names(modules, &link_map::read_link_map(modules, main_index, &memory))
}

/// Runs `stardump bt`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let snapshot = open_target(&args.file)?;
    let mut warnings = Vec::new();
    let loaded = load_images(args, &snapshot, &mut warnings)?;
    let damage = super::warnings::damage_warnings(&snapshot);
    let vcpus = select_vcpus(snapshot.vcpus(), super::is_process(&snapshot), &args.selection)?;
    let options = UnwindOptions { max_frames: super::frame_limit(args.limit), ..UnwindOptions::default() };
    let print_options = PrintOptions { elements: args.print_elements, max_depth: args.max_depth, format: None };
    let mut variables_incomplete = false;

    let (threads, image_path, image_build_id, modules) = match &loaded {
        LoadedImages::Unikernel(image) => {
            let threads =
                unikernel_threads(image, &snapshot, &vcpus, options, print_options, args.full, &mut warnings, &mut variables_incomplete);
            (threads, Some(image.path().display().to_string()), image.build_id().map(check::hex), Vec::new())
        }
        LoadedImages::Process { modules, main, names, module_warnings } => {
            let threads = process_threads(
                modules,
                main.as_deref(),
                names,
                &snapshot,
                &vcpus,
                options,
                print_options,
                args.full,
                &mut warnings,
                &mut variables_incomplete,
            );
            let pcs = threads.iter().flat_map(|thread| &thread.frames).filter_map(|frame| parse_hex(&frame.lookup_pc));
            warnings.extend(warnings_for_frames(module_warnings, modules, names, snapshot.file_mappings(), pcs));
            let main_module = modules.modules().iter().find(|module| Some(&module.mapped_path) == main.as_ref());
            (
                threads,
                main_module.map(|module| module.image.path().display().to_string()),
                main_module.and_then(|module| module.image.build_id()).map(check::hex),
                modules
                    .modules()
                    .iter()
                    .zip(names)
                    .map(|(module, name)| ModuleReport::new(module, name.clone()))
                    .collect(),
            )
        }
    };
    let complete = threads.iter().all(|thread| thread.complete) && !variables_incomplete && damage.is_empty();
    warnings.extend(damage);
    let outcome = if complete { Outcome::Complete } else { Outcome::Incomplete };

    let report = BtReport {
        schema_version: JSON_SCHEMA_VERSION,
        command: "bt",
        snapshot: args.file.display().to_string(),
        image: image_path,
        image_build_id,
        command_line: super::info::command_line(&snapshot),
        signal: crate::signal::report(&snapshot),
        modules,
        warnings,
        threads,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        super::warnings::write_text(&report.warnings, err)?;
        write_text(&report, out)?;
    }
    Ok(outcome)
}

/// Returns the report of a vCPU whose general registers were not captured.
fn missing_registers(vcpu: &VcpuState) -> ThreadReport {
    ThreadReport {
        vcpu: vcpu.id,
        lwp: vcpu.thread_id,
        name: None,
        complete: false,
        stop_reason: Some(format!("general registers of vCPU {} were not captured", vcpu.id)),
        frames: Vec::new(),
    }
}

/// Unwinds and symbolizes every vCPU of a unikernel snapshot.
#[allow(clippy::too_many_arguments)]
fn unikernel_threads(
    image: &Image,
    snapshot: &Core,
    vcpus: &[&VcpuState],
    options: UnwindOptions,
    print_options: PrintOptions,
    full: bool,
    warnings: &mut Vec<String>,
    variables_incomplete: &mut bool,
) -> Vec<ThreadReport> {
    warnings.extend(super::warnings::image_warnings(image, snapshot));

    // Unwinding and variables read code and read-only data the dump lacks
    // from the image; the image check above compares with the dump alone.
    let backed = ImageBacked::new(snapshot, image);
    let mut unwinder = Unwinder::new(image, options);
    // Frame lines show arguments as gdb's do whenever there is DWARF.
    let variables = image.has_debug_info().then(|| {
        let info = image.debug_info().clone();
        let symbols = SymbolTable::from_image(image);
        (info, symbols)
    });
    let mut threads = Vec::new();
    for vcpu in vcpus {
        let thread = match unwind_vcpu(&mut unwinder, &backed, vcpu) {
            Some(backtrace) => {
                let mut report = thread_report(image, vcpu.id, &backtrace);
                if let Some((info, symbols)) = &variables {
                    let memory = TargetMemory::new(&backed, vcpu.cr3);
                    let target = VariableTarget { info, image, symbols, memory: &memory, vcpu, callers: &[] };
                    let groups: Vec<usize> = report.frames.iter().map(|line| line.physical_index).collect();
                    add_variables(
                        &mut report,
                        &backtrace,
                        &groups,
                        &target,
                        print_options,
                        full,
                        variables_incomplete,
                        &|_| true,
                    );
                }
                report
            }
            None => missing_registers(vcpu),
        };
        threads.push(thread);
    }
    warnings.extend(backed.warning());
    threads
}

/// Unwinds and symbolizes every thread of a Linux process across its modules.
#[allow(clippy::too_many_arguments)]
fn process_threads(
    modules: &ModuleSet,
    main: Option<&str>,
    names: &[Option<String>],
    core: &Core,
    vcpus: &[&VcpuState],
    options: UnwindOptions,
    print_options: PrintOptions,
    full: bool,
    warnings: &mut Vec<String>,
    variables_incomplete: &mut bool,
) -> Vec<ThreadReport> {
    let images = CodeImages::Modules { set: modules, main, names };
    // Kernel cores and gcore files leave out file-backed pages that were
    // never written, such as glibc's code, so those are read from the files.
    let backed = ImageBacked::for_modules(core, modules);
    let mut unwinder = Unwinder::for_modules(modules, options);
    let mut debug = ModuleDebugCache::new(modules, main, names);
    let mut threads = Vec::new();
    for vcpu in vcpus {
        let Some(backtrace) = unwind_vcpu(&mut unwinder, &backed, vcpu) else {
            threads.push(missing_registers(vcpu));
            continue;
        };
        let mut report = thread_report_in(images, vcpu.id, &backtrace);
        report.lwp = vcpu.thread_id;
        report.name = core.thread_name(vcpu.id).map(str::to_owned);

        // Tail-call lines first, so that their arguments are read too and
        // the frames below see them as their callers, as in gdb.
        insert_tail_calls(&mut report, &backtrace, images, &mut debug);
        let (grouped, groups) = line_groups(&report, &backtrace);

        // Each module's DWARF describes the variables of its own frames, and
        // each caller's module the call sites that pass entry values.
        let memory = TargetMemory::new(&backed, vcpu.cr3);
        let thread_modules = ThreadModules::new(&grouped, modules, &mut debug);
        let callers = thread_modules.callers(modules, &debug);
        for (index, file_frames) in thread_modules.modules_with_frames() {
            let Some(module_debug) = debug.loaded(*index) else { continue };
            let target = VariableTarget {
                info: &module_debug.info,
                image: &modules.modules()[*index].image,
                symbols: &module_debug.symbols,
                memory: &memory,
                vcpu,
                callers: &callers,
            };
            let in_module = |group: usize| thread_modules.module_of(group) == Some(*index);
            add_variables(&mut report, file_frames, &groups, &target, print_options, full, variables_incomplete, &in_module);
        }
        threads.push(report);
    }
    warnings.extend(backed.warning());
    threads
}

/// Inserts the lines of functions that left the stack through a tail call
/// between two physical frames, found from the DWARF call sites of the
/// caller's module and, for a call into another module, of the callee's
/// (see [`tail_call_chain`] and [`crate::threads::tail_calls`]), as gdb 13
/// shows them. Each inserted line has the physical index of the caller
/// frame whose call site revealed it.
pub(crate) fn insert_tail_calls(
    report: &mut ThreadReport,
    backtrace: &Backtrace,
    images: CodeImages<'_>,
    debug: &mut ModuleDebugCache,
) {
    let CodeImages::Modules { set: modules, main, names } = images else {
        return;
    };
    let mut lines = Vec::with_capacity(report.frames.len());
    let mut pending = std::mem::take(&mut report.frames).into_iter().peekable();
    for (physical_index, callee) in backtrace.frames.iter().enumerate() {
        while let Some(line) = pending.next_if(|line| line.physical_index == physical_index) {
            lines.push(line);
        }
        let Some(caller) = backtrace.frames.get(physical_index + 1) else { continue };
        let Pc::ReturnAddress(return_address) = caller.pc else { continue };
        if callee.trap {
            continue;
        }
        let callee_lookup = callee.pc.lookup_address();
        let Some((index, chain)) = tail_call_chain(modules, debug, return_address, callee_lookup) else { continue };
        let module = &modules.modules()[index];
        let image = &module.image;
        for tail_call in chain {
            let lookup = tail_call.return_address.wrapping_sub(1);
            let at_line_start = symbolize::line_start(image, tail_call.return_address) == Some(tail_call.return_address);
            // gdb 13 shows a tail-call frame as the innermost function at
            // the jump, without the functions it was inlined into.
            for source in symbolize::symbolize(image, lookup).into_iter().take(1) {
                lines.push(FrameReport {
                    index: 0,
                    physical_index: physical_index + 1,
                    kind: FrameKind::Normal,
                    pc: hex(module.runtime_address(tail_call.return_address)),
                    pc_is_return_address: true,
                    lookup_pc: hex(module.runtime_address(lookup)),
                    show_address: !at_line_start,
                    cfa: None,
                    found_by: TAIL_CALL_FOUND_BY,
                    function: source.function,
                    symbol_offset: source.symbol_offset,
                    display_file: source.file.as_deref().map(|file| image.display_path(file).to_owned()),
                    library: (Some(module.mapped_path.as_str()) != main).then(|| module.mapped_path.clone()),
                    library_name: names
                        .get(index)
                        .cloned()
                        .flatten()
                        .filter(|_| Some(module.mapped_path.as_str()) != main),
                    file: source.file,
                    line: source.line,
                    column: source.column,
                    inlined: false,
                    registers: Default::default(),
                    arguments: None,
                    locals: None,
                    argument_text: None,
                });
            }
        }
    }
    lines.extend(pending);
    for (index, line) in lines.iter_mut().enumerate() {
        line.index = index;
    }
    report.frames = lines;
}

/// Returns the functions that tail-called their way from the call before
/// run-time `return_address` to the function containing run-time
/// `callee_lookup`, innermost first, with the position of the module whose
/// DWARF describes them. Both modules need DWARF. When the call leaves its
/// module, through the PLT, its call site names a declaration, and the
/// callee's module defines the symbol of that name where the chain starts,
/// as gdb finds it (glibc's `qsort` jumps to `__qsort_r`).
fn tail_call_chain(
    modules: &ModuleSet,
    debug: &mut ModuleDebugCache,
    return_address: u64,
    callee_lookup: u64,
) -> Option<(usize, Vec<TailCallFrame>)> {
    let index = modules.index_for(return_address.wrapping_sub(1))?;
    let module = &modules.modules()[index];
    if !module.image.has_debug_info() {
        return None;
    }
    let caller_return_address = module.file_address(return_address);
    if module.contains(callee_lookup) {
        let image = &module.image;
        if !may_have_tail_calls(image, caller_return_address, module.file_address(callee_lookup)) {
            return None;
        }
        let tail_calls = debug.tail_calls(index, module, modules)?;
        return Some((index, tail_calls.chain(image, caller_return_address, module.file_address(callee_lookup))));
    }
    let callee_index = modules.index_for(callee_lookup)?;
    let callee_module = &modules.modules()[callee_index];
    if !callee_module.image.has_debug_info() {
        return None;
    }
    let names = debug.tail_calls(index, module, modules)?.declared_target(caller_return_address);
    let target = names.iter().find_map(|name| {
        let mut addresses = callee_module.image.symbols_named(name).iter().filter(|symbol| symbol.size != 0).map(|symbol| symbol.address);
        let address = addresses.next()?;
        // Symbols of one name at two addresses (symbol versions) are
        // ambiguous: the dynamic linker's choice is not known here.
        addresses.all(|other| other == address).then_some(address)
    })?;
    let tail_calls = debug.tail_calls(callee_index, callee_module, modules)?;
    Some((callee_index, tail_calls.chain_from(&callee_module.image, target, callee_module.file_address(callee_lookup))))
}

/// Returns whether the call before `return_address` may have reached the
/// function containing `callee_pc` through tail calls: it is not a direct
/// `call rel32` to that function's start. Both are file addresses. This
/// spares indexing the call sites of a large library, such as glibc's
/// DWARF, for the frames where no tail call can hide.
fn may_have_tail_calls(image: &Image, return_address: u64, callee_pc: u64) -> bool {
    const CALL_REL32: u8 = 0xe8;
    const CALL_LEN: u64 = 5;
    let Some(call) = return_address.checked_sub(CALL_LEN).and_then(|start| image.bytes_at(start, 5)) else {
        return true;
    };
    if call[0] != CALL_REL32 {
        return true;
    }
    let displacement = i32::from_le_bytes([call[1], call[2], call[3], call[4]]);
    let target = return_address.wrapping_add_signed(i64::from(displacement));
    let callee_entry = image.symbol_for(callee_pc).map(|symbol| symbol.address);
    callee_entry != Some(target)
}

/// Returns the frames the variables of `report`'s lines are read from, one
/// per group of lines, and the group of each line. A group is a physical
/// frame of `backtrace` with its inlined functions, or one tail-call line,
/// which `bt` numbers as gdb does but which has no stack frame. A
/// tail-call frame has its return address as pc and no registers, so its
/// variables that live in registers show as unknown.
pub(crate) fn line_groups(report: &ThreadReport, backtrace: &Backtrace) -> (Backtrace, Vec<usize>) {
    let mut frames: Vec<Frame> = Vec::new();
    let mut groups = Vec::with_capacity(report.frames.len());
    let mut previous: Option<(bool, usize)> = None;
    for line in &report.frames {
        let tail_call = line.found_by == TAIL_CALL_FOUND_BY;
        // Consecutive lines of one physical frame (its inlined functions)
        // share it; every tail-call line is a frame of its own.
        let group = (tail_call, if tail_call { line.index } else { line.physical_index });
        if previous != Some(group) {
            let frame = if tail_call {
                let pc = u64::from_str_radix(line.pc.trim_start_matches("0x"), 16).unwrap_or(0);
                Frame {
                    pc: Pc::ReturnAddress(pc),
                    registers: Registers::default(),
                    found_by: crate::unwind::FoundBy::Cfi,
                    cfa: None,
                    trap: false,
                }
            } else {
                match backtrace.frames.get(line.physical_index) {
                    Some(frame) => frame.clone(),
                    // A line without its physical frame joins the previous group.
                    None => {
                        groups.push(frames.len().saturating_sub(1));
                        continue;
                    }
                }
            };
            frames.push(frame);
            previous = Some(group);
        }
        groups.push(frames.len() - 1);
    }
    (Backtrace { frames, stop: backtrace.stop.clone() }, groups)
}

/// Returns `backtrace` with the pcs of frames in `module` turned into file
/// addresses.
pub(crate) fn file_address_frames(backtrace: &Backtrace, module: &Module) -> Backtrace {
    let mut copy = backtrace.clone();
    for frame in &mut copy.frames {
        if module.contains(frame.pc.lookup_address()) {
            frame.pc = match frame.pc {
                Pc::Exact(pc) => Pc::Exact(module.file_address(pc)),
                Pc::ReturnAddress(pc) => Pc::ReturnAddress(module.file_address(pc)),
            };
        }
    }
    copy
}
