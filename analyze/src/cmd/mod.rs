//! The `stardump` subcommands, one module each.
//!
//! Every command writes its report to `out` and warnings to `err`, and
//! returns whether the report is complete; `main` turns that into the exit
//! status.

pub mod bt;
pub mod examine;
pub mod frame;
pub mod info;
pub mod inspect;
pub mod list;
mod module_debug;
pub mod print;
pub mod regs;
pub mod symbol;
pub mod threads;
mod time;
pub mod warnings;

use std::path::Path;

use stardump_format::Core;

/// Prefix of a live Linux process target, as `stardump-capture` takes it.
const PID_PREFIX: &str = "pid:";

/// Version of the JSON output schema that analyze/JSON.md documents.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Whether a command's output is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was printed.
    Complete,
    /// Some output is missing or cut short, such as a backtrace that
    /// stopped on an error; the reason was printed in place.
    Incomplete,
}

/// Opens the core file at `path`: a stardump snapshot, a QEMU dump or an
/// `xl dump-core` file, detected by its content. A `path` of the form
/// `gdb:HOST:PORT` attaches to that live target instead and pauses it until
/// the returned value is dropped (see [`crate::live`]). A live process
/// (`pid:PID`) is rejected with the command that captures it. The error
/// already names the path.
pub fn open_target(path: &Path) -> anyhow::Result<Core> {
    reject_live_process(path)?;
    if let Some(spec) = crate::live::parse_spec(path) {
        return crate::live::open(spec);
    }
    if path.is_dir() {
        anyhow::bail!("{} is a directory, not a snapshot or core file", path.display());
    }
    Ok(stardump_format::open_core(path)?)
}

/// Rejects a live Linux process target (`pid:PID`) with the command that
/// captures it, unless a file of that name exists.
fn reject_live_process(path: &Path) -> anyhow::Result<()> {
    let Some(pid) = path.to_str().and_then(|text| text.strip_prefix(PID_PREFIX)) else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    anyhow::bail!(
        "live processes ({PID_PREFIX}{pid}) are not supported by stardump: capture the process with \
         `stardump-capture {PID_PREFIX}{pid} -o FILE` and analyze FILE"
    )
}

/// Formats an address or register value as JSON and the text output show it.
pub fn hex(value: u64) -> String {
    format!("{value:#x}")
}

/// Returns the unwinder's frame limit for a `--limit` value, where 0
/// means no limit.
pub fn frame_limit(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

/// Returns whether `core` contains a Linux process (a core file or a `pid:`
/// snapshot) rather than a guest.
pub fn is_process(core: &stardump_format::Core) -> bool {
    use stardump_format::Target as _;
    matches!(
        core.metadata().source_kind,
        stardump_format::SourceKind::LinuxProcess | stardump_format::SourceKind::LinuxCore
    )
}
