//! The parts the variable commands (`print`, `ptype`, `x`, `frame`, `list`,
//! `info symbol`) share: opening the core file and image, unwinding the
//! selected vCPU, and the frame and print options.
//!
//! For a Linux process, names resolve in the DWARF of the module that
//! contains the selected frame's pc, as in gdb: a frame in glibc sees
//! glibc's locals, arguments, types and globals. A name that module lacks
//! is then looked up among the main program's globals (see
//! [`Session::evaluate_in_scopes`]).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use stardump_format::{Core, MemoryError, Target, VcpuState};

use super::bt::{
    file_address_frames, insert_tail_calls, line_groups, linker_names, thread_report, thread_report_in, warnings_for_frames,
    CodeImages, ThreadReport, TAIL_CALL_FOUND_BY,
};
use super::module_debug::{ModuleDebugCache, ThreadModules};
use super::regs::select_vcpus;
use crate::debug_file::DebugSearch;
use crate::image::Image;
use crate::image_fallback::{FileImages, ImageFallback};
use crate::modules::{executable_mapping, Module, ModuleSet};
use crate::unwind::{Backtrace, Registers, StackMemory, UnwindOptions, Unwinder};
use crate::variables::expr::ExprError;
use crate::variables::dwarf::DebugInfo;
use crate::variables::location::CallerScope;
use crate::variables::format::{PrintOptions, Printer, DEFAULT_MAX_DEPTH, DEFAULT_PRINT_ELEMENTS};
use crate::variables::symbols::{ModuleSymbolSet, SymbolTable};
use crate::variables::{Inspector, NamedValue};

/// Options every variable command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ContextArgs {
    /// The snapshot, or another core file stardump reads (a QEMU
    /// `dump-guest-memory` core, a Xen `xl dump-core` file), or a live
    /// target (`gdb:HOST:PORT`).
    pub file: PathBuf,
    /// The unikernel's ELF file, with DWARF; required for a unikernel. For
    /// a Linux process, the main program's file, which replaces the one its
    /// mappings name; without it the mapped file is used.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// For a Linux process: a directory to search for the shared objects'
    /// ELF and debug files (as for `bt`). Repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
    /// The vCPU or thread to read.
    #[command(flatten)]
    pub selection: super::regs::Selection,
    /// The frame whose scope names resolve in, numbered as `bt` does.
    #[arg(long, default_value_t = 0)]
    pub frame: usize,
    /// Print JSON (schema in analyze/JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Nesting depth after which structs and arrays print as `{...}`.
    #[arg(long, default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Maximum number of array elements and string characters printed.
    #[arg(long, default_value_t = DEFAULT_PRINT_ELEMENTS)]
    pub print_elements: usize,
}

impl ContextArgs {
    /// The print options the arguments select.
    pub fn print_options(&self) -> PrintOptions {
        PrintOptions { elements: self.print_elements, max_depth: self.max_depth, format: None }
    }
}

/// The DWARF, symbols and frames names resolve in: those of one module.
pub struct Scope {
    /// The module's DWARF.
    pub info: DebugInfo,
    /// The module's ELF file.
    pub image: Arc<Image>,
    /// The module's symbols, with those of the process's other modules.
    pub symbols: SymbolTable,
    /// The backtrace with the pcs of the module's frames turned into file
    /// addresses, which the inspector looks scopes up by.
    pub backtrace: Backtrace,
}

impl Scope {
    /// Returns the scope of `module`, the one at `module_index` of the
    /// module set, whose own symbols are `symbols`. Its DWARF is the one
    /// `debug` loaded, shared with the entry values' callers.
    fn of_module(
        module: &Module,
        module_index: usize,
        symbols: SymbolTable,
        runtime_frames: &Backtrace,
        debug: &ModuleDebugCache,
    ) -> Scope {
        let info = match debug.loaded(module_index) {
            Some(loaded) => loaded.info.clone(),
            None => DebugInfo::load(std::sync::Arc::clone(module.image.dwarf_sections())),
        };
        Scope { info, image: Arc::clone(&module.image), symbols, backtrace: file_address_frames(runtime_frames, module) }
    }
}

/// A snapshot, its image and one vCPU's backtrace, ready for inspection.
pub struct Session {
    /// The snapshot or core file.
    pub core: Core,
    /// The image: the unikernel, or a process's main program.
    pub image: Arc<Image>,
    /// The DWARF names resolve in: the image's, or for a process the
    /// DWARF of the module that contains the selected frame's pc.
    pub info: DebugInfo,
    /// The ELF file that [`Session::info`] describes.
    pub info_image: Arc<Image>,
    /// The symbols of that module, with those of the other modules.
    pub symbols: SymbolTable,
    /// The selected vCPU.
    pub vcpu: VcpuState,
    /// Its backtrace. For a Linux process, the pcs of the frames in the
    /// module of [`Session::info`] are file addresses, which the inspector
    /// looks scopes up by.
    pub backtrace: Backtrace,
    /// For a process whose selected frame is in a shared object with
    /// DWARF: the main program's scope, where names that module lacks are
    /// looked up next.
    pub program: Option<Scope>,
    /// The backtrace as `bt` prints it.
    pub report: ThreadReport,
    /// For a Linux process, every loaded module, the main program included.
    pub modules: Option<ModuleSet>,
    /// For a Linux process, the DWARF of the modules that the frames fall in.
    debug: Option<ModuleDebugCache>,
    /// For a Linux process, the frames grouped by module, for the call
    /// sites that pass entry values.
    thread_modules: Option<ThreadModules>,
    /// Code and read-only data read from the image, or from the modules of
    /// a process, because the file lacks them.
    pub fallback: ImageFallback,
    /// Reasons to distrust the result, as `bt` reports them: the image
    /// differs from the code in memory, the file has damaged or missing
    /// vCPU notes, or for a process, a mapped file gave no symbols.
    pub warnings: Vec<String>,
    /// Whether opening the file skipped damaged notes, which makes every
    /// report incomplete, as `bt` and `regs` count it.
    pub damaged: bool,
    /// Whether a JSON report already lists the pages read from the image,
    /// so dropping the session does not print them again.
    fallback_reported: std::cell::Cell<bool>,
}

impl Session {
    /// Opens the snapshot and image of `args` and unwinds the selected vCPU.
    pub fn open(args: &ContextArgs) -> anyhow::Result<Session> {
        let core = super::open_target(&args.file)?;
        let vcpu = match args.selection.is_some() {
            true => select_vcpus(core.vcpus(), super::is_process(&core), &args.selection)?[0].clone(),
            false => core.vcpus().first().cloned().context("the file has no vCPU")?,
        };
        super::warnings::check_process_mappings(&core, &args.file)?;
        if !core.file_mappings().is_empty() {
            return Session::open_process(args, core, vcpu);
        }
        let Some(image_path) = &args.image else {
            anyhow::bail!(
                "{} lists no mapped files, so it needs the unikernel's ELF file: pass --image FILE",
                args.file.display()
            );
        };
        let image = Arc::new(super::warnings::open_image(image_path)?);
        let mut warnings = super::warnings::image_warnings(&image, &core);
        let damage = super::warnings::damage_warnings(&core);
        let damaged = !damage.is_empty();
        warnings.extend(damage);
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let symbols = SymbolTable::from_image(&image);
        let fallback = ImageFallback::new(&image);
        let backtrace = if vcpu.present.general {
            let memory = SessionMemory { core: &core, images: FileImages::Image(&image), fallback: &fallback, cr3: vcpu.cr3 };
            Unwinder::new(&image, UnwindOptions::default()).walk(Registers::from_vcpu(&vcpu), &memory)
        } else {
            Backtrace { frames: Vec::new(), stop: None }
        };
        let report = thread_report(&image, vcpu.id, &backtrace);
        let fallback_reported = std::cell::Cell::new(false);
        Ok(Session {
            core,
            info_image: Arc::clone(&image),
            image,
            info,
            symbols,
            vcpu,
            backtrace,
            report,
            program: None,
            modules: None,
            debug: None,
            thread_modules: None,
            fallback,
            warnings,
            damaged,
            fallback_reported,
        })
    }

    /// Opens a Linux process: unwinds across every mapped ELF file (see
    /// [`ModuleSet`]), with `--image`, or else the mapped file, as the main
    /// program, whose DWARF the variables come from.
    fn open_process(args: &ContextArgs, core: Core, vcpu: VcpuState) -> anyhow::Result<Session> {
        let executable = executable_mapping(&core)
            .context("cannot tell which file mapping is the main program of the process")?;
        if let Some(path) = &args.image {
            super::warnings::reject_directory(path)?;
        }
        let search = DebugSearch::new(args.debug_dirs.clone());
        let (mut modules, module_warnings) =
            ModuleSet::from_file_mappings(core.file_mappings(), Some(executable), args.image.as_deref(), &search);
        let mut warnings = search.unusable_directories();
        let mut module_warnings = module_warnings;
        module_warnings.extend(modules.add_vdso(&core));
        let damage = super::warnings::damage_warnings(&core);
        let damaged = !damage.is_empty();
        warnings.extend(damage);
        let main = modules
            .modules()
            .iter()
            .find(|module| module.mapped_path == executable.path)
            .with_context(|| match &args.image {
                Some(path) => format!("cannot load the image {} as the main program", path.display()),
                None => format!(
                    "cannot load the main program {}: pass its ELF file with --image FILE",
                    executable.path
                ),
            })?;
        let image = Arc::clone(&main.image);

        let fallback = ImageFallback::for_modules();
        let runtime_backtrace = if vcpu.present.general {
            let memory =
                SessionMemory { core: &core, images: FileImages::Modules(&modules), fallback: &fallback, cr3: vcpu.cr3 };
            Unwinder::for_modules(&modules, UnwindOptions::default()).walk(Registers::from_vcpu(&vcpu), &memory)
        } else {
            Backtrace { frames: Vec::new(), stop: None }
        };
        let main_index = modules.modules().iter().position(|module| module.mapped_path == executable.path);
        let names = linker_names(&modules, Some(executable.path.as_str()), &core);
        let images = CodeImages::Modules { set: &modules, main: Some(executable.path.as_str()), names: &names };
        let mut report = thread_report_in(images, vcpu.id, &runtime_backtrace);
        report.lwp = vcpu.thread_id;
        report.name = core.thread_name(vcpu.id).map(str::to_owned);
        let mut debug = ModuleDebugCache::new(&modules, Some(executable.path.as_str()), &names);
        insert_tail_calls(&mut report, &runtime_backtrace, images, &mut debug);
        let runtime_frames = frames_per_line_group(&mut report, &runtime_backtrace);
        let thread_modules = ThreadModules::new(&runtime_frames, &modules, &mut debug);
        let pcs = runtime_backtrace.frames.iter().map(|frame| frame.pc.lookup_address());
        warnings.extend(warnings_for_frames(&module_warnings, &modules, &names, core.file_mappings(), pcs));

        // Globals, function addresses and symbol names are relocated by
        // each module's load bias.
        let module_symbols = ModuleSymbolSet::new(&modules, &names);
        let program_symbols = SymbolTable::from_image(&image)
            .with_load_bias(main.bias)
            .with_function_names(&image)
            .with_modules(&module_symbols);
        let main_position = main_index.context("the main program is not among the loaded modules")?;
        let program = Scope::of_module(main, main_position, program_symbols, &runtime_frames, &debug);
        // The module of the selected frame, when it is a shared object with
        // DWARF; an unknown frame number is rejected later by check_frame.
        let frame_module = report
            .frames
            .get(args.frame)
            .and_then(|line| runtime_frames.frames.get(line.physical_index))
            .and_then(|frame| modules.index_for(frame.pc.lookup_address()))
            .filter(|&index| Some(index) != main_index)
            .filter(|&index| modules.modules()[index].image.has_debug_info());
        let (scope, program) = match frame_module {
            Some(index) => {
                let module = &modules.modules()[index];
                let name = module_symbols.name_of(&module.mapped_path).unwrap_or(&module.mapped_path).to_owned();
                tracing::debug!(module = %module.mapped_path, frame = args.frame, "names resolve in the frame's module");
                // A shared object's TLS block is not the executable's, so
                // its table has no TLS template (see from_shared_object).
                let symbols = SymbolTable::from_shared_object(&module.image)
                    .with_load_bias(module.bias)
                    .with_function_names(&module.image)
                    .with_file_name(name)
                    .with_modules(&module_symbols);
                (Scope::of_module(module, index, symbols, &runtime_frames, &debug), Some(program))
            }
            None => (program, None),
        };
        let fallback_reported = std::cell::Cell::new(false);
        Ok(Session {
            core,
            image,
            info: scope.info,
            info_image: scope.image,
            symbols: scope.symbols,
            vcpu,
            backtrace: scope.backtrace,
            report,
            program,
            modules: Some(modules),
            debug: Some(debug),
            thread_modules: Some(thread_modules),
            fallback,
            warnings,
            damaged,
            fallback_reported,
        })
    }

    /// Returns the warnings for a JSON report, once every read is done: the
    /// ones from opening the session and, as `bt` lists it, the pages read
    /// from the image instead of the file.
    pub fn json_warnings(&self) -> Vec<String> {
        let mut warnings = self.warnings.clone();
        if let Some(warning) = self.fallback.warning() {
            warnings.push(warning);
            self.fallback_reported.set(true);
        }
        warnings
    }

    /// Returns the outcome of a command whose own output is `complete`:
    /// incomplete as well when the file has damage that `open` skipped.
    pub fn outcome(&self, complete: bool) -> super::Outcome {
        if complete && !self.damaged {
            super::Outcome::Complete
        } else {
            super::Outcome::Incomplete
        }
    }

    /// Writes the warnings on `err` as `warning: …` lines, for text output.
    pub fn write_warnings(&self, err: &mut dyn std::io::Write) -> std::io::Result<()> {
        super::warnings::write_text(&self.warnings, err)
    }

    /// The memory of the vCPU's address space, with missing code and
    /// read-only data taken from the image or the modules.
    pub fn memory(&self) -> SessionMemory<'_> {
        let images = match &self.modules {
            Some(modules) => FileImages::Modules(modules),
            None => FileImages::Image(&self.image),
        };
        SessionMemory { core: &self.core, images, fallback: &self.fallback, cr3: self.vcpu.cr3 }
    }

    /// Creates the inspector over `memory` (from [`Session::memory`]).
    pub fn inspector<'s>(&'s self, memory: &'s SessionMemory<'s>) -> Inspector<'s> {
        let lines_per_frame = self.lines_per_frame();
        Inspector::new(&self.info, &self.symbols, memory, &self.backtrace.frames, Some(&self.vcpu), &lines_per_frame)
            .with_tail_calls(&self.tail_call_frames())
            .with_callers(self.callers())
            .with_image(&self.info_image)
    }

    /// Creates an inspector of the main program's scope, when names resolve
    /// in a shared object's (see [`Session::program`]).
    pub fn program_inspector<'s>(&'s self, memory: &'s SessionMemory<'s>) -> Option<Inspector<'s>> {
        let program = self.program.as_ref()?;
        let lines_per_frame = self.lines_per_frame();
        let inspector =
            Inspector::new(&program.info, &program.symbols, memory, &program.backtrace.frames, Some(&self.vcpu), &lines_per_frame);
        Some(inspector.with_tail_calls(&self.tail_call_frames()).with_image(&program.image))
    }

    /// Runs `evaluate` in the selected frame's scope. When that finds no
    /// symbol or type of the name, it runs again among the main program's
    /// globals and types, without a frame, because gdb looks a name up in
    /// the frame's module first and then in the others. Returns the result
    /// with the inspector that produced it. NOTE: gdb then searches every other module; only the main program
    /// is searched here.
    pub fn evaluate_in_scopes<'s, T>(
        &'s self,
        memory: &'s SessionMemory<'s>,
        frame: Option<usize>,
        evaluate: impl Fn(&Inspector<'s>, Option<usize>) -> Result<T, ExprError>,
    ) -> Result<(T, Inspector<'s>), ExprError> {
        let inspector = self.inspector(memory);
        match evaluate(&inspector, frame) {
            Err(error @ (ExprError::UnknownSymbol(_) | ExprError::UnknownType(_))) => {
                let Some(program) = self.program_inspector(memory) else { return Err(error) };
                match evaluate(&program, None) {
                    Ok(result) => Ok((result, program)),
                    Err(_) => Err(error),
                }
            }
            result => result.map(|result| (result, inspector)),
        }
    }

    /// Returns, for each frame of the inspector, the DWARF of its module,
    /// as `bt` reads it: the entry values that a caller in any module
    /// passed are read from that module's call sites.
    fn callers(&self) -> Vec<Option<CallerScope<'_>>> {
        match (&self.thread_modules, &self.modules, &self.debug) {
            (Some(thread_modules), Some(modules), Some(debug)) => thread_modules.callers(modules, debug),
            _ => Vec::new(),
        }
    }

    /// Returns the physical frames of the inspector that stand for tail calls.
    fn tail_call_frames(&self) -> Vec<usize> {
        let lines = self.report.frames.iter();
        lines.filter(|line| line.found_by == TAIL_CALL_FOUND_BY).map(|line| line.physical_index).collect()
    }

    fn lines_per_frame(&self) -> Vec<usize> {
        let mut lines_per_frame = vec![0usize; self.backtrace.frames.len()];
        for line in &self.report.frames {
            if let Some(count) = lines_per_frame.get_mut(line.physical_index) {
                *count += 1;
            }
        }
        lines_per_frame
    }

    /// Checks that source frame `frame` exists. The error gives the number
    /// of frames and the reason the unwind stopped there.
    pub fn check_frame(&self, frame: usize) -> anyhow::Result<()> {
        if frame < self.report.frames.len().max(1) {
            return Ok(());
        }
        let count = match self.report.frames.len() {
            1 => "1 frame".to_owned(),
            count => format!("{count} frames"),
        };
        let why = if !self.vcpu.present.general {
            format!("the general registers of vCPU {} were not captured", self.vcpu.id)
        } else {
            match &self.report.stop_reason {
                Some(reason) => format!("the unwind stopped: {reason}"),
                None => "the unwind reached the outermost frame".to_owned(),
            }
        };
        anyhow::bail!("no frame {frame}: the backtrace of vCPU {} has {count}; {why}", self.vcpu.id)
    }
}

impl Drop for Session {
    /// Warns, once the command's output is written, about values read from
    /// the image instead of the file.
    fn drop(&mut self) {
        if self.fallback_reported.get() {
            return;
        }
        if let Some(warning) = self.fallback.warning() {
            // Written without eprintln!, which panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "warning: {warning}");
        }
    }
}

/// Returns the frames the inspector reads, one per group of lines of
/// `report` (see [`line_groups`]), and renumbers each line's
/// `physical_index` to point into the result, so `frame N` names the same
/// function as line #N of `bt`.
fn frames_per_line_group(report: &mut ThreadReport, backtrace: &Backtrace) -> Backtrace {
    let (frames, groups) = line_groups(report, backtrace);
    for (line, group) in report.frames.iter_mut().zip(groups) {
        line.physical_index = group;
    }
    frames
}

/// The memory of a session's address space; see [`ImageFallback`].
pub struct SessionMemory<'s> {
    core: &'s Core,
    images: FileImages<'s>,
    fallback: &'s ImageFallback,
    cr3: u64,
}

impl StackMemory for SessionMemory<'_> {
    fn read(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.fallback.read_virtual(self.core, self.images, self.cr3, address, buf)
    }
}

/// A variable in JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct VariableReport {
    /// The variable's name.
    pub name: String,
    /// Its type, as gdb names it.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its value as the text output prints it.
    pub value: String,
    /// Whether every part of the value was known.
    pub complete: bool,
}

/// Formats `values` as `info locals` prints them and records whether any
/// was incomplete in `incomplete`.
pub fn variable_reports(printer: &Printer<'_>, values: &[NamedValue], incomplete: &mut bool) -> Vec<VariableReport> {
    values
        .iter()
        .map(|named| {
            let fresh = Printer::new(printer.types, printer.memory, printer.symbols, printer.options);
            let value = fresh.format(&named.value, 0);
            if fresh.incomplete() {
                *incomplete = true;
            }
            VariableReport {
                name: named.name.clone(),
                type_name: printer.types.name(&named.value.ty),
                value,
                complete: !fresh.incomplete(),
            }
        })
        .collect()
}

/// Formats arguments for a frame line as gdb 13 does with its defaults:
/// aggregates hidden as `a=...` (`print frame-arguments scalars`), and
/// entry values shown next to the value (`print entry-values default`):
/// `a=a@entry=5` when they are equal, `a=6, a@entry=5` when they differ,
/// and `a=<optimized out>, a@entry=5` when only the entry value is known.
pub fn frame_arguments(printer: &Printer<'_>, inspector: &Inspector<'_>, frame: usize, values: &[NamedValue]) -> String {
    let mut parts = Vec::new();
    for named in values {
        let name = &named.name;
        if crate::variables::format::is_aggregate(&printer.types, &named.value.ty) {
            parts.push(format!("{name}=..."));
            continue;
        }
        let quiet = Printer::new(printer.types, printer.memory, printer.symbols, printer.options);
        let actual = quiet.format(&named.value, 0);
        let actual_known = !quiet.incomplete();
        let entry = inspector.entry_value(frame, named.die).map(|value| {
            let entry_printer = Printer::new(printer.types, printer.memory, printer.symbols, printer.options);
            entry_printer.format(&value, 0)
        });
        match entry {
            Some(entry) if actual_known && entry == actual => parts.push(format!("{name}={name}@entry={actual}")),
            Some(entry) => parts.push(format!("{name}={actual}, {name}@entry={entry}")),
            None => {
                if !actual_known {
                    printer.mark_incomplete();
                }
                parts.push(format!("{name}={actual}"));
            }
        }
    }
    parts.join(", ")
}
