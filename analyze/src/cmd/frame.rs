//! `stardump frame N`: one frame's line, and with `--args` and `--locals`
//! its arguments and locals, like gdb's `frame N`, `info args` and
//! `info locals`.

use std::io::Write;

use serde::Serialize;

use super::inspect::{frame_arguments, variable_reports, ContextArgs, Session, VariableReport};
use super::{Outcome, JSON_SCHEMA_VERSION};
use crate::variables::format::Printer;

/// Arguments of `stardump frame`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[allow(missing_docs)] // The shared options document themselves.
    #[command(flatten)]
    pub context: ContextArgs,
    /// The frame to show, as gdb's `frame N` takes it; the same as `--frame N`.
    #[arg(value_name = "N", conflicts_with = "frame")]
    pub number: Option<usize>,
    /// Show the arguments, like gdb's `info args`.
    #[arg(long)]
    pub args: bool,
    /// Show the locals, innermost block first, like gdb's `info locals`.
    #[arg(long)]
    pub locals: bool,
}

#[derive(Debug, Serialize)]
struct FrameJson {
    schema_version: u32,
    command: &'static str,
    vcpu: u32,
    warnings: Vec<String>,
    frame: super::bt::FrameReport,
    text: String,
    has_debug_info: bool,
    arguments: Vec<VariableReport>,
    locals: Vec<VariableReport>,
}

/// Runs `stardump frame`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let mut context = args.context.clone();
    if let Some(number) = args.number {
        context.frame = number;
    }
    let session = Session::open(&context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    let index = context.frame;
    session.check_frame(index)?;
    let memory = session.memory();
    let inspector = session.inspector(&memory);
    let printer = Printer::new(inspector.types(), &memory, &session.symbols, args.context.print_options());
    let arguments = inspector.arguments(index);
    let locals = inspector.locals(index);
    let mut incomplete = false;
    let argument_reports = variable_reports(&printer, &arguments, &mut incomplete);
    let local_reports = variable_reports(&printer, &locals, &mut incomplete);
    let mut frame = session.report.frames[index].clone();
    frame.argument_text = Some(frame_arguments(&printer, &inspector, index, &arguments));
    let has_scope = inspector.source_frames.get(index).is_some_and(|source| source.scope.is_some());

    if args.context.json {
        let text = super::bt::frame_line(&frame);
        let report = FrameJson {
            schema_version: JSON_SCHEMA_VERSION,
            command: "frame",
            vcpu: session.vcpu.id,
            warnings: session.json_warnings(),
            frame,
            text,
            has_debug_info: has_scope,
            arguments: argument_reports,
            locals: local_reports,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        super::bt::write_text_frame(out, &frame)?;
        write_source_line(out, err, &frame)?;
        if !has_scope && (args.args || args.locals) {
            writeln!(out, "No symbol table info available.")?;
        } else if args.args {
            if argument_reports.is_empty() {
                writeln!(out, "No arguments.")?;
            }
            for argument in &argument_reports {
                writeln!(out, "{} = {}", argument.name, argument.value)?;
            }
        }
        if args.locals && has_scope {
            if local_reports.is_empty() {
                writeln!(out, "No locals.")?;
            }
            for local in &local_reports {
                writeln!(out, "{} = {}", local.name, local.value)?;
            }
        }
    }
    Ok(session.outcome(!incomplete && !printer.incomplete()))
}

/// Writes the frame's source line as gdb's `frame N` does, `20\t  walk(p);`,
/// or to `err` that the file was not found, as gdb does. The file is looked
/// up at the path DWARF records; `stardump list --source-dir` searches
/// elsewhere too.
fn write_source_line(out: &mut dyn Write, err: &mut dyn Write, frame: &super::bt::FrameReport) -> std::io::Result<()> {
    if frame.kind == super::bt::FrameKind::Trap {
        return Ok(());
    }
    let (Some(file), Some(line)) = (frame.file.as_deref(), frame.line) else { return Ok(()) };
    let display = frame.display_file.as_deref().unwrap_or(file);
    let text = super::list::find_source(file, display, &[])
        .and_then(|path| super::list::read_lines(&path, line, line).ok())
        .and_then(|lines| lines.into_iter().next());
    match text {
        Some((_, text)) => writeln!(out, "{line}\t{text}"),
        None => writeln!(err, "{line}\t{display}: No such file or directory."),
    }
}
