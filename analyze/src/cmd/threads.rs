//! `stardump threads`: every thread of the unikernel's scheduler with its
//! backtrace, like gdb's `info threads` and `thread apply all bt` with a
//! thread-aware OS script.
//!
//! The thread list comes from a description (see [`crate::threads`]). A
//! running thread is unwound from its vCPU's registers, a sleeping one from
//! the stack pointer and resume address saved in its struct. A damaged
//! list entry is reported in place, and the rest of the list still prints.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use stardump_format::{Target, VcpuState};

use super::bt::{thread_report, write_text_frame, FrameKind, FrameReport};
use super::inspect::{frame_arguments, variable_reports};
use super::{hex, open_target, Outcome, JSON_SCHEMA_VERSION};
use crate::check;
use crate::image::Image;
use crate::image_fallback::ImageBacked;
use crate::symbolize;
use crate::threads::list::{self, ThreadEntry};
use crate::threads::state::{self, ThreadState};
use crate::threads::tail_calls::TailCalls;
use crate::threads::{Description, ThreadLayout};
use crate::unwind::{Backtrace, Frame, FoundBy, Pc, Registers, StackMemory, TargetMemory, UnwindOptions, Unwinder, DEFAULT_MAX_FRAMES};
use crate::variables::dwarf::DebugInfo;
use crate::variables::format::{PrintOptions, Printer};
use crate::variables::symbols::SymbolTable;
use crate::variables::Inspector;

/// `found_by` of the caller frame a pushed switch frame gives.
const SWITCH_FRAME_FOUND_BY: &str = "switch-frame";

/// `found_by` of a function that left the stack through a tail call.
const TAIL_CALL_FOUND_BY: &str = "tail-call";

/// Arguments of `stardump threads`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot file.
    pub file: PathBuf,
    /// The unikernel's ELF file, with DWARF for the thread struct's members
    /// (required).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// A thread description file (TOML, see analyze/threads/stardust-test.toml).
    #[arg(long, conflicts_with = "os")]
    pub description: Option<PathBuf>,
    /// A built-in thread description. Without this or `--description`, the
    /// first built-in one that fits the image's DWARF is used.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::threads::description::BUILT_IN.map(|(name, _)| name)))]
    pub os: Option<String>,
    /// Maximum number of frames per backtrace; 0 for no limit, as gdb's
    /// `set backtrace limit 0`.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAMES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1_000_000_000))]
    pub limit: usize,
    /// Print JSON (schema in analyze/JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One thread of the list; the JSON form is documented in analyze/JSON.md.
#[derive(Debug, Clone, Serialize)]
pub struct ListedThread {
    /// Position in the list, from 1, as gdb numbers threads.
    pub number: usize,
    /// Address of the thread struct.
    pub address: String,
    /// The name, when described and readable.
    pub name: Option<String>,
    /// The id, when described and readable.
    pub id: Option<i64>,
    /// The flags, when described and readable.
    pub flags: Option<String>,
    /// `running`, `sleeping`, `skipped`, `running-on-unknown-vcpu` or `unreadable`.
    pub state: &'static str,
    /// The vCPU a running thread is on.
    pub vcpu: Option<u32>,
    /// The saved stack pointer, when readable.
    pub saved_sp: Option<String>,
    /// The saved resume address, when readable.
    pub saved_ip: Option<String>,
    /// Members that could not be read, and why.
    pub errors: Vec<String>,
    /// Whether the backtrace reached the outermost frame; false without one.
    pub complete: bool,
    /// Reason the backtrace stopped early or is missing.
    pub stop_reason: Option<String>,
    /// The backtrace, innermost first; empty for skipped and unreadable threads.
    pub frames: Vec<FrameReport>,
}

/// The whole `threads` report.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsReport {
    schema_version: u32,
    command: &'static str,
    snapshot: String,
    image: String,
    image_build_id: Option<String>,
    description: String,
    description_source: String,
    thread_type: String,
    warnings: Vec<String>,
    list_complete: bool,
    list_stop_reason: Option<String>,
    threads: Vec<ListedThread>,
}

/// A description with the layout it resolved to, and where it came from.
struct Chosen {
    description: Description,
    layout: ThreadLayout,
    source: String,
}

/// Picks the description: the file or built-in one named, or else the
/// first built-in one whose list head and members resolve in the image.
fn choose_description(args: &Args, image: &Image, info: &DebugInfo) -> anyhow::Result<Chosen> {
    let named = match (&args.description, &args.os) {
        (Some(path), _) => Some((Description::from_file(path)?, path.display().to_string())),
        (None, Some(name)) => Some((Description::built_in(name)?, format!("built-in {name}"))),
        (None, None) => None,
    };
    if let Some((description, source)) = named {
        let layout = ThreadLayout::resolve(&description, image, info)
            .with_context(|| format!("thread description {source} does not fit the image"))?;
        return Ok(Chosen { description, layout, source });
    }
    let mut reasons = Vec::new();
    for description in Description::all_built_in()? {
        match ThreadLayout::resolve(&description, image, info) {
            Ok(layout) => {
                let source = format!("built-in {}", description.name);
                return Ok(Chosen { description, layout, source });
            }
            Err(error) => {
                tracing::debug!(description = description.name, %error, "built-in description does not fit");
                reasons.push(format!("{}: {error}", description.name));
            }
        }
    }
    anyhow::bail!(
        "no built-in thread description fits the image ({}); pass --description FILE",
        reasons.join("; ")
    )
}

/// The image, description and memory the backtraces are read from.
struct Context<'a> {
    image: &'a Image,
    description: &'a Description,
    target: &'a dyn Target,
    default_cr3: u64,
    variables: Option<(&'a DebugInfo, &'a SymbolTable)>,
    tail_calls: &'a TailCalls,
}

impl Context<'_> {
    fn memory_for(&self, vcpu: &VcpuState) -> TargetMemory<'_> {
        let cr3 = if vcpu.present.control { vcpu.cr3 } else { self.default_cr3 };
        TargetMemory::new(self.target, cr3)
    }
}

/// Fills in each frame line's arguments, as `bt` shows them.
fn add_arguments(frames: &mut [FrameReport], backtrace: &Backtrace, context: &Context<'_>, memory: &TargetMemory<'_>, vcpu: Option<&VcpuState>) {
    let Some((info, symbols)) = context.variables else { return };
    let mut lines_per_frame = vec![0usize; backtrace.frames.len()];
    for line in frames.iter() {
        if let Some(count) = lines_per_frame.get_mut(line.physical_index) {
            *count += 1;
        }
    }
    let inspector = Inspector::new(info, symbols, memory, &backtrace.frames, vcpu, &lines_per_frame).with_image(context.image);
    let options = PrintOptions {
        elements: crate::variables::format::DEFAULT_PRINT_ELEMENTS,
        max_depth: crate::variables::format::DEFAULT_MAX_DEPTH,
        format: None,
    };
    let printer = Printer::new(inspector.types(), memory, symbols, options);
    for (index, frame) in frames.iter_mut().enumerate() {
        let arguments = inspector.arguments(index);
        frame.argument_text = Some(frame_arguments(&printer, &inspector, index, &arguments));
        // As in `bt`, an argument that cannot be read leaves the backtrace complete.
        let mut ignored = false;
        frame.arguments = Some(variable_reports(&printer, &arguments, &mut ignored));
    }
}

/// Inserts the lines of functions that tail-called their way between two
/// physical frames (see [`crate::threads::tail_calls`]) and renumbers the
/// lines. Each inserted line has the physical index of the caller frame
/// whose call site revealed it.
fn insert_tail_calls(frames: &mut Vec<FrameReport>, backtrace: &Backtrace, context: &Context<'_>) {
    let mut lines = Vec::with_capacity(frames.len());
    let mut pending = std::mem::take(frames).into_iter().peekable();
    for (physical_index, callee) in backtrace.frames.iter().enumerate() {
        while let Some(line) = pending.next_if(|line| line.physical_index == physical_index) {
            lines.push(line);
        }
        let Some(caller) = backtrace.frames.get(physical_index + 1) else { continue };
        let Pc::ReturnAddress(return_address) = caller.pc else { continue };
        if callee.trap {
            continue;
        }
        for tail_call in context.tail_calls.chain(context.image, return_address, callee.pc.lookup_address()) {
            let lookup = tail_call.return_address.saturating_sub(1);
            for source in symbolize::symbolize(context.image, lookup) {
                lines.push(FrameReport {
                    index: 0,
                    physical_index: physical_index + 1,
                    kind: FrameKind::Normal,
                    pc: hex(tail_call.return_address),
                    pc_is_return_address: true,
                    lookup_pc: hex(lookup),
                    // gdb prints no address for a tail-call frame.
                    show_address: false,
                    cfa: None,
                    found_by: TAIL_CALL_FOUND_BY,
                    function: source.function,
                    symbol_offset: source.symbol_offset,
                    display_file: source.file.as_deref().map(|file| context.image.display_path(file).to_owned()),
                    library: None,
                    library_name: None,
                    file: source.file,
                    line: source.line,
                    column: source.column,
                    inlined: source.inlined,
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
    *frames = lines;
}

/// Unwinds a sleeping thread from its saved registers.
/// Returns the backtrace and whether a pushed switch frame gave frame 1.
fn unwind_sleeping(
    unwinder: &mut Unwinder<'_>,
    description: &Description,
    image: &Image,
    sp: u64,
    ip: u64,
    memory: &dyn StackMemory,
) -> (Backtrace, bool) {
    let start = match state::sleeping_start(description, image, sp, ip, memory) {
        Ok(start) => start,
        Err(error) => {
            let mut registers = Registers::default();
            registers.set(stardump_format::model::dwarf_reg::RA, Some(ip));
            registers.set(stardump_format::model::dwarf_reg::RSP, Some(sp));
            let frame = Frame { pc: Pc::Exact(ip), registers, found_by: FoundBy::Context, cfa: None, trap: false };
            return (Backtrace { frames: vec![frame], stop: Some(error.into()) }, false);
        }
    };
    let Some(caller) = start.caller else {
        return (unwinder.walk(start.context, memory), false);
    };
    // The switch function has no CFI: frame 0 is its resume address, and
    // the walk continues from the caller the pushed layout gives.
    let mut backtrace = unwinder.walk(caller, memory);
    if let Some(first) = backtrace.frames.first_mut() {
        first.pc = Pc::ReturnAddress(first.pc.value());
    }
    let frame0 = Frame { pc: Pc::Exact(ip), registers: start.context, found_by: FoundBy::Context, cfa: caller.rsp(), trap: false };
    backtrace.frames.insert(0, frame0);
    (backtrace, true)
}

/// Builds the report of one listed thread.
fn listed_thread(
    number: usize,
    entry: &ThreadEntry,
    thread_state: &ThreadState,
    unwinder: &mut Unwinder<'_>,
    context: &Context<'_>,
    vcpus: &[&VcpuState],
) -> ListedThread {
    let member_errors = [
        ("name", entry.name.as_ref().and_then(|name| name.as_ref().err())),
        ("id", entry.id.as_ref().and_then(|id| id.as_ref().err())),
        ("flags", entry.flags.as_ref().and_then(|flags| flags.as_ref().err())),
        ("sp", entry.sp.as_ref().err()),
        ("ip", entry.ip.as_ref().err()),
    ];
    let errors = member_errors
        .iter()
        .filter_map(|(member, error)| error.map(|error| format!("{member}: {error}")))
        .collect();
    let name = entry.name.as_ref().and_then(|name| name.as_ref().ok()).cloned();
    let id = entry.id.as_ref().and_then(|id| id.as_ref().ok()).copied();
    let flags = entry.flags.as_ref().and_then(|flags| flags.as_ref().ok()).map(|flags| hex(*flags));
    let mut listed = ListedThread {
        number,
        address: hex(entry.address),
        name,
        id,
        flags,
        state: "unreadable",
        vcpu: None,
        saved_sp: entry.sp.as_ref().ok().map(|sp| hex(*sp)),
        saved_ip: entry.ip.as_ref().ok().map(|ip| hex(*ip)),
        errors,
        complete: false,
        stop_reason: None,
        frames: Vec::new(),
    };
    let _span = tracing::debug_span!("thread", number).entered();
    match thread_state {
        ThreadState::Running { vcpu: id } => {
            listed.state = "running";
            listed.vcpu = Some(*id);
            let Some(vcpu) = vcpus.iter().find(|vcpu| vcpu.id == *id) else {
                listed.stop_reason = Some(format!("vCPU {id} is not in the snapshot"));
                return listed;
            };
            if !vcpu.present.general {
                listed.stop_reason = Some(format!("general registers of vCPU {id} were not captured"));
                return listed;
            }
            let memory = context.memory_for(vcpu);
            let backtrace = unwinder.walk(Registers::from_vcpu(vcpu), &memory);
            let report = thread_report(context.image, *id, &backtrace);
            listed.frames = report.frames;
            add_arguments(&mut listed.frames, &backtrace, context, &memory, Some(vcpu));
            insert_tail_calls(&mut listed.frames, &backtrace, context);
            listed.complete = report.complete;
            listed.stop_reason = report.stop_reason;
        }
        ThreadState::Sleeping { sp, ip } => {
            listed.state = "sleeping";
            let memory = TargetMemory::new(context.target, context.default_cr3);
            let (backtrace, pushed) = unwind_sleeping(unwinder, context.description, context.image, *sp, *ip, &memory);
            let report = thread_report(context.image, 0, &backtrace);
            listed.frames = report.frames;
            if pushed {
                for frame in listed.frames.iter_mut().filter(|frame| frame.physical_index == 1) {
                    frame.found_by = SWITCH_FRAME_FOUND_BY;
                }
            }
            add_arguments(&mut listed.frames, &backtrace, context, &memory, None);
            insert_tail_calls(&mut listed.frames, &backtrace, context);
            listed.complete = report.complete;
            listed.stop_reason = report.stop_reason;
        }
        ThreadState::Skipped { flags } => {
            listed.state = "skipped";
            // Nothing to unwind is the expected state of such a thread.
            listed.complete = true;
            let mask = context.description.flags.skip.unwrap_or(0);
            listed.stop_reason = Some(format!("flags {flags:#x} match the skip mask {mask:#x}: no saved context"));
        }
        ThreadState::RunningOnUnknownVcpu => {
            listed.state = "running-on-unknown-vcpu";
            listed.stop_reason = Some("the flags say the thread runs, but no vCPU's current thread is it".to_owned());
        }
        ThreadState::Unreadable { member, .. } => {
            // The member's error is already in `errors`.
            listed.state = "unreadable";
            listed.stop_reason = Some(format!("the {member} member cannot be read"));
        }
    }
    listed
}

fn write_text(report: &ThreadsReport, out: &mut dyn Write) -> std::io::Result<()> {
    for (index, thread) in report.threads.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        write!(out, "Thread {} ", thread.number)?;
        match &thread.name {
            Some(name) => write!(out, "{name:?}")?,
            None => write!(out, "<no name>")?,
        }
        let mut details = Vec::new();
        if let Some(id) = thread.id {
            details.push(format!("id {id}"));
        }
        match (thread.state, thread.vcpu) {
            ("running", Some(vcpu)) => details.push(format!("running on vCPU {vcpu}")),
            ("running-on-unknown-vcpu", _) => details.push("running on an unknown vCPU".to_owned()),
            (state, _) => details.push(state.to_owned()),
        }
        writeln!(out, " ({}) at {}:", details.join(", "), thread.address)?;
        for error in &thread.errors {
            writeln!(out, "<unreadable {error}>")?;
        }
        for frame in &thread.frames {
            write_text_frame(out, frame)?;
        }
        match (thread.state, &thread.stop_reason) {
            ("skipped", Some(reason)) => writeln!(out, "No backtrace: {reason}")?,
            (_, Some(reason)) if thread.frames.is_empty() => writeln!(out, "No backtrace: {reason}")?,
            (_, Some(reason)) => writeln!(out, "Backtrace stopped: {reason}")?,
            (_, None) => {}
        }
    }
    if let Some(reason) = &report.list_stop_reason {
        if !report.threads.is_empty() {
            writeln!(out)?;
        }
        writeln!(out, "Thread list stopped: {reason}")?;
    }
    Ok(())
}

/// Runs `stardump threads`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let snapshot = open_target(&args.file)?;
    if super::is_process(&snapshot) {
        anyhow::bail!(
            "{} is a Linux process, whose threads are the kernel's: `stardump bt {}` shows every thread",
            args.file.display(),
            args.file.display()
        );
    }
    let Some(image_path) = &args.image else {
        anyhow::bail!("stardump threads needs --image FILE, the unikernel's ELF file with DWARF for its thread list");
    };
    let image = super::warnings::open_image(image_path)?;
    let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
    let symbols = SymbolTable::from_image(&image);
    let chosen = choose_description(args, &image, &info)?;

    let mut warnings = Vec::new();
    let Some(control_vcpu) = snapshot.vcpus().iter().find(|vcpu| vcpu.present.control) else {
        anyhow::bail!("no vCPU in {} has cr3, so the thread list cannot be read", args.file.display());
    };
    // The thread list and the stacks are kernel memory, mapped alike in
    // every address space of a unikernel, so one cr3 serves.
    let default_cr3 = control_vcpu.cr3;
    warnings.extend(super::warnings::image_warnings(&image, &snapshot));
    let damage = super::warnings::damage_warnings(&snapshot);

    let backed = ImageBacked::new(&snapshot, &image);
    let tail_calls = TailCalls::new(&info);
    let vcpus: Vec<&VcpuState> = snapshot.vcpus().iter().collect();
    let context = Context {
        image: &image,
        description: &chosen.description,
        target: &backed,
        default_cr3,
        variables: image.has_debug_info().then_some((&info, &symbols)),
        tail_calls: &tail_calls,
    };
    let list_memory = TargetMemory::new(&backed, default_cr3);
    let thread_list = list::walk(&list_memory, &chosen.layout, chosen.description.list.max_threads);
    let current = state::current_threads(&chosen.description, &vcpus, &|vcpu| context.memory_for(vcpu));
    let single_vcpu = (vcpus.len() == 1).then(|| vcpus[0].id);

    let options = UnwindOptions { max_frames: super::frame_limit(args.limit), ..UnwindOptions::default() };
    let mut unwinder = Unwinder::new(&image, options);
    let threads: Vec<ListedThread> = thread_list
        .threads
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let thread_state = state::thread_state(&chosen.description, entry, &current, single_vcpu);
            listed_thread(index + 1, entry, &thread_state, &mut unwinder, &context, &vcpus)
        })
        .collect();
    warnings.extend(backed.warning());

    let complete = thread_list.stop.is_none()
        && threads.iter().all(|thread| thread.complete && thread.errors.is_empty())
        && damage.is_empty();
    warnings.extend(damage);
    let report = ThreadsReport {
        schema_version: JSON_SCHEMA_VERSION,
        command: "threads",
        snapshot: args.file.display().to_string(),
        image: image_path.display().to_string(),
        image_build_id: image.build_id().map(check::hex),
        description: chosen.description.name.clone(),
        description_source: chosen.source,
        thread_type: chosen.layout.type_name.clone(),
        warnings,
        list_complete: thread_list.stop.is_none(),
        list_stop_reason: thread_list.stop.as_ref().map(ToString::to_string),
        threads,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        super::warnings::write_text(&report.warnings, err)?;
        write_text(&report, out)?;
    }
    Ok(if complete { Outcome::Complete } else { Outcome::Incomplete })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::list::ListStop;
    use crate::unwind::ImageMemory;

    /// Builds the Mini-OS-shaped thread list of
    /// tests/fixtures/mini_os_threads.c once, and opens it.
    fn mini_os_image() -> Image {
        static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let path = PATH.get_or_init(|| {
            crate::test_fixtures::gcc(
                "mini_os_threads.elf",
                &["-nostdlib", "-static", "-no-pie", "-g", "-O0", "-Wl,-e,thread_body"],
                &["mini_os_threads.c", "mini_os_switch.S"],
            )
        });
        Image::open(path).unwrap()
    }

    fn address_of(image: &Image, name: &str) -> u64 {
        let symbols = SymbolTable::from_image(image);
        symbols.by_name(name).unwrap_or_else(|| panic!("no symbol {name}")).address
    }

    fn function_names(image: &Image, backtrace: &Backtrace) -> Vec<String> {
        backtrace
            .frames
            .iter()
            .map(|frame| image.symbol_for(frame.pc.lookup_address()).map_or("??".to_owned(), |symbol| symbol.name.clone()))
            .collect()
    }

    #[test]
    fn mini_os_description_resolves_nested_members() {
        let image = mini_os_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let description = Description::built_in("mini-os").unwrap();
        let layout = ThreadLayout::resolve(&description, &image, &info).unwrap();
        assert_eq!(layout.type_name, "struct thread");
        assert_eq!(layout.head_address, address_of(&image, "thread_list"));
        assert_eq!(layout.first_offset, 0);
        // name, stack, sp, ip, then the queue entry whose first member is tqe_next.
        assert_eq!(layout.sp.offset, 16);
        assert_eq!(layout.ip.offset, 24);
        assert_eq!(layout.next.offset, 32);
        assert_eq!(layout.flags.map(|flags| (flags.offset, flags.size)), Some((48, 4)));
        assert_eq!(layout.id, None);
    }

    #[test]
    fn test_description_rejects_mini_os_image() {
        let image = mini_os_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let description = Description::built_in("stardust-test").unwrap();
        let error = ThreadLayout::resolve(&description, &image, &info).unwrap_err();
        assert_eq!(error.to_string(), "list head thread_list has type struct thread_list, expected a pointer to a struct");
    }

    #[test]
    fn mini_os_list_walk_marks_damaged_thread() {
        let image = mini_os_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let description = Description::built_in("mini-os").unwrap();
        let layout = ThreadLayout::resolve(&description, &image, &info).unwrap();
        let memory = ImageMemory::new(&image);
        let list = list::walk(&memory, &layout, description.list.max_threads);

        // The damaged thread's link leads to 0x20, which is listed with
        // every member unreadable; its own link ends the walk.
        let names: Vec<_> = list.threads.iter().map(|thread| thread.name.clone().unwrap().ok()).collect();
        assert_eq!(names, [Some("sleeper".to_owned()), Some("fresh".to_owned()), None, None]);
        let damaged = &list.threads[2];
        assert_eq!(damaged.address, address_of(&image, "damaged_thread"));
        assert_eq!(damaged.sp, Ok(0x7000));
        assert_eq!(damaged.ip, Ok(0x8000));
        let unreadable = &list.threads[3];
        assert_eq!(unreadable.address, 0x20);
        assert!(unreadable.sp.is_err());
        assert!(matches!(list.stop, Some(ListStop::UnreadableLink { thread: 0x20, .. })), "{:?}", list.stop);
    }

    #[test]
    fn pushed_switch_frame_unwinds_sleeping_thread() {
        let image = mini_os_image();
        let description = Description::built_in("mini-os").unwrap();
        let memory = ImageMemory::new(&image);
        let stack = address_of(&image, "sleeper_stack");
        let ip = address_of(&image, "switch_resume");

        let start = state::sleeping_start(&description, &image, stack, ip, &memory).unwrap();
        let caller = start.caller.expect("ip is inside __arch_switch_threads");
        assert_eq!(caller.rip(), Some(address_of(&image, "schedule_return")));
        assert_eq!(caller.rsp(), Some(stack + 56));
        assert_eq!(caller.get(15), Some(0xf15));
        assert_eq!(caller.get(3), Some(0xb0b));
        assert_eq!(caller.rbp(), Some(0xb9b));

        let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
        let (backtrace, pushed) = unwind_sleeping(&mut unwinder, &description, &image, stack, ip, &memory);
        assert!(pushed);
        assert_eq!(function_names(&image, &backtrace), ["__arch_switch_threads", "fake_schedule", "thread_body"]);
        assert_eq!(backtrace.frames[0].pc, Pc::Exact(ip));
        assert_eq!(backtrace.frames[1].pc, Pc::ReturnAddress(address_of(&image, "schedule_return")));
        assert_eq!(backtrace.frames[2].found_by, FoundBy::Cfi);
        assert_eq!(backtrace.stop, None);
    }

    #[test]
    fn thread_that_never_ran_starts_at_ip() {
        let image = mini_os_image();
        let description = Description::built_in("mini-os").unwrap();
        let memory = ImageMemory::new(&image);
        let entry = address_of(&image, "thread_body");
        let top = address_of(&image, "fresh_stack") + 15 * 8;

        let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
        let (backtrace, pushed) = unwind_sleeping(&mut unwinder, &description, &image, top, entry, &memory);
        assert!(!pushed);
        assert_eq!(function_names(&image, &backtrace), ["thread_body"]);
        assert_eq!(backtrace.stop, None);
    }

    #[test]
    fn unreadable_switch_frame_stops_in_place() {
        let image = mini_os_image();
        let description = Description::built_in("mini-os").unwrap();
        let memory = ImageMemory::new(&image);
        let ip = address_of(&image, "switch_resume");

        let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
        let (backtrace, _) = unwind_sleeping(&mut unwinder, &description, &image, 0x7000, ip, &memory);
        assert_eq!(backtrace.frames.len(), 1);
        assert_eq!(backtrace.stop.map(|stop| stop.to_string()), Some("cannot read 8 bytes at 0x7000: page not captured".to_owned()));
    }
}
