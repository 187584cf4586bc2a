//! `stardump list`: the source lines around a frame's line, like gdb's
//! `list` after `frame N`: five lines before it and four after.
//!
//! The source file is looked up at the path DWARF records (joined with the
//! compilation directory), then under each `--source-dir` by its name as
//! DWARF writes it and by its base name.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::inspect::{ContextArgs, Session};
use super::{Outcome, JSON_SCHEMA_VERSION};

/// Arguments of `stardump list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[allow(missing_docs)] // The shared options document themselves.
    #[command(flatten)]
    pub context: ContextArgs,
    /// Directories to search for source files, in order.
    #[arg(long)]
    pub source_dir: Vec<PathBuf>,
}

/// Lines shown before the frame's line.
const LINES_BEFORE: u32 = 5;
/// Lines shown after it.
const LINES_AFTER: u32 = 4;
/// Largest source file read, in bytes.
const MAX_SOURCE_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize)]
struct ListReport {
    schema_version: u32,
    command: &'static str,
    warnings: Vec<String>,
    file: String,
    line: u32,
    lines: Vec<(u32, String)>,
}

/// Returns the first candidate path of the source file that exists.
pub fn find_source(file: &str, display: &str, source_dirs: &[PathBuf]) -> Option<PathBuf> {
    let direct = Path::new(file);
    if direct.is_file() {
        return Some(direct.to_owned());
    }
    let base = Path::new(file).file_name()?;
    source_dirs.iter().find_map(|dir| {
        [dir.join(display), dir.join(base)].into_iter().find(|candidate| candidate.is_file())
    })
}

/// Returns the lines `first..=last` of the source file at `path`, each
/// with its number from 1.
pub fn read_lines(path: &Path, first: u32, last: u32) -> anyhow::Result<Vec<(u32, String)>> {
    let metadata = std::fs::metadata(path)?;
    if metadata.len() > MAX_SOURCE_BYTES {
        anyhow::bail!("source file {} is larger than {MAX_SOURCE_BYTES} bytes", path.display());
    }
    let text = String::from_utf8_lossy(&std::fs::read(path)?).into_owned();
    Ok(text
        .lines()
        .enumerate()
        .map(|(index, text)| (index as u32 + 1, text.to_owned()))
        .filter(|(number, _)| (first..=last).contains(number))
        .collect())
}

/// Runs `stardump list`; warnings about the image go to `err` in text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    session.check_frame(args.context.frame)?;
    let frame = &session.report.frames[args.context.frame];
    let (Some(file), Some(line)) = (frame.file.as_deref(), frame.line) else {
        anyhow::bail!("frame {} has no source line", args.context.frame);
    };
    let display = frame.display_file.as_deref().unwrap_or(file);
    let path = find_source(file, display, &args.source_dir).ok_or_else(|| {
        anyhow::anyhow!("source file {file} not found; give its directory with --source-dir")
    })?;
    let first = line.saturating_sub(LINES_BEFORE).max(1);
    let last = line.saturating_add(LINES_AFTER);
    let lines = read_lines(&path, first, last)?;
    if args.context.json {
        let report = ListReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "list",
            warnings: session.json_warnings(),
            file: path.display().to_string(),
            line,
            lines,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        for (number, text) in &lines {
            writeln!(out, "{number}\t{text}")?;
        }
    }
    Ok(session.outcome(true))
}
