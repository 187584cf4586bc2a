//! `stardump-capture`: pauses a target, copies its vCPUs and memory into a
//! snapshot, and resumes it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use stardump_capture::capture::{capture, CaptureError, CaptureOptions, CaptureSummary, MemoryStrategy, SummaryWording};
use stardump_format::WriterOptions;

/// Capture the registers and memory of a unikernel, a QEMU guest or a Linux
/// process into a stardump snapshot.
#[derive(Debug, Parser)]
#[command(name = "stardump-capture", version)]
struct Cli {
    /// The target: `gdb:HOST:PORT` for a GDB remote stub such as QEMU's
    /// `-gdb tcp:127.0.0.1:1234`, `xen:DOMID` or `xen:NAME` for a Xen
    /// domain (run in dom0; needs the `xen` build feature), or `pid:PID`
    /// for a Linux process, attached with ptrace.
    #[arg(required_unless_present = "list")]
    target: Option<String>,

    /// Path of the snapshot to write.
    #[arg(short, long, required_unless_present = "list")]
    output: Option<PathBuf>,

    /// Close the connection without resuming the target, which stays
    /// paused. A `pid:` process is left stopped with SIGSTOP; `kill -CONT`
    /// resumes it.
    #[arg(long)]
    leave_paused: bool,

    /// Destroy the Xen domain once its memory is copied, as `xl destroy`
    /// does.
    #[arg(long, conflicts_with = "leave_paused")]
    destroy_after: bool,

    /// List the Xen domains that can be captured (id, name, kind, vCPUs,
    /// memory, state) and exit.
    #[arg(long, conflicts_with_all = ["target", "output"])]
    list: bool,

    /// How to read guest memory: all RAM through physical addresses, or only
    /// the frames the page tables map.
    #[arg(long, value_enum, default_value_t = MemoryArg::Physical)]
    memory: MemoryArg,

    /// Seconds to wait for any one reply from the stub, or for each thread
    /// of a `pid:` process to stop.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,

    /// zstd compression level, from 1 (fastest) to 22 (smallest file).
    /// Levels above 19 are much slower and use more memory.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,

    /// Page data kept in memory while the target is paused, as bytes or
    /// with a K, M, G or T suffix (powers of 1024). The rest goes to an
    /// unnamed temporary file in the output's directory, which needs room
    /// for it until the capture ends. The default, 0, sends every non-zero
    /// page there.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    memory_budget: u64,

    /// The unikernel's ELF image: its GNU build id is stored in the
    /// snapshot, so the analyzer warns when given a different image.
    #[arg(long, value_name = "ELF")]
    image: Option<PathBuf>,

    /// Print the summary as a JSON object.
    #[arg(long)]
    json: bool,

    /// Log more (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MemoryArg {
    Physical,
    Walk,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);

    let target_name = cli.target.clone().unwrap_or_else(|| "--list".to_owned());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(signal) = interrupting_signal(&error) {
                // A target that was stopped before the capture stays stopped.
                // Written without eprintln!, which panics when stderr is closed.
                let _ = writeln!(
                    std::io::stderr(),
                    "stardump-capture: {target_name}: {error}; the target was released in the state it had before \
                     the capture, and no snapshot was written"
                );
                return ExitCode::from(128u8.saturating_add(signal as u8));
            }
            let _ = writeln!(std::io::stderr(), "stardump-capture: {target_name}: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("stardump_capture={level},stardump_format={level}")));
    // Colour codes only on a terminal: logs also go to files (the Xen lab's
    // NAME.capture.log) and pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // An internal error would be reported with eprintln!, which panics when
    // stderr is a closed pipe.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .init();
}

/// Joins an error and its sources with ": ", skipping a source whose text
/// the outer message already contains.
fn chain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Returns the signal that interrupted a capture, if one did.
fn interrupting_signal(error: &anyhow::Error) -> Option<i32> {
    if let Some(CaptureError::Interrupted { signal }) = error.downcast_ref::<CaptureError>() {
        return Some(*signal);
    }
    if let Some(stardump_capture::ptrace::PtraceError::Interrupted { signal }) = error.downcast_ref() {
        return Some(*signal);
    }
    #[cfg(feature = "xen")]
    if let Some(stardump_capture::xen::XenError::Interrupted { signal }) = error.downcast_ref() {
        return Some(*signal);
    }
    None
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so
/// the capture can resume the target and remove its temporary file first.
fn install_cancel_flag() -> anyhow::Result<Arc<AtomicUsize>> {
    let cancel = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(signal, Arc::clone(&cancel), signal as usize)
            .context("installing the signal handler")?;
    }
    Ok(cancel)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.list {
        return list_xen_domains(cli.json);
    }
    let (Some(target), Some(output)) = (cli.target.as_deref(), cli.output.clone()) else {
        bail!("a target and --output are required");
    };
    check_output(&output)?;
    if let Some(domain) = target.strip_prefix("xen:") {
        return capture_xen(&cli, domain, output);
    }
    if let Some(pid) = target.strip_prefix("pid:") {
        return capture_pid(&cli, pid, output);
    }
    let Some(address) = target.strip_prefix("gdb:") else {
        bail!("unknown target kind; expected gdb:HOST:PORT, xen:DOMID or pid:PID");
    };
    if cli.destroy_after {
        bail!("--destroy-after applies to xen: targets only");
    }
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        bail!("invalid --timeout {}: expected a positive number of seconds", cli.timeout);
    }

    let cancel = install_cancel_flag()?;
    let options = CaptureOptions {
        address: address.to_owned(),
        output,
        leave_paused: cli.leave_paused,
        memory: match cli.memory {
            MemoryArg::Physical => MemoryStrategy::Physical,
            MemoryArg::Walk => MemoryStrategy::Walk,
        },
        timeout: Duration::from_secs_f64(cli.timeout),
        cancel: Some(cancel),
        writer: WriterOptions {
            zstd_level: cli.zstd_level,
            ..WriterOptions::default()
        },
        image_build_id: read_build_id(cli.image.as_deref())?,
        memory_budget: cli.memory_budget,
    };
    let summary = capture(&options)?;
    print_summary(&summary, cli.json, SummaryWording::Unikernel)
}

/// Parses a size in bytes: a decimal number with an optional K, M, G or T
/// suffix (also KiB, MiB, GiB, TiB), each a power of 1024.
fn parse_size(text: &str) -> Result<u64, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("invalid size {text:?}: expected a whole number of bytes, such as 0, 64M or 2G"));
    }
    if suffix.starts_with('.') {
        return Err(format!("invalid size {text:?}: expected a whole number; use a smaller unit, such as 1536M for 1.5G"));
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(format!("invalid size {text:?}: unknown suffix {suffix:?}, expected K, M, G or T")),
    };
    let too_large = || format!("invalid size {text:?}: more than 2^64 bytes");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    number.checked_mul(1 << shift).ok_or_else(too_large)
}

/// Checks that the snapshot's directory exists and is a directory, before
/// any target is contacted. Each capture then creates its temporary file in
/// that directory before it pauses the target, which also checks that the
/// directory is writable.
fn check_output(output: &Path) -> anyhow::Result<()> {
    if output.as_os_str().is_empty() {
        bail!("invalid --output \"\": expected the path of the snapshot to write");
    }
    let directory = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match std::fs::metadata(directory) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => bail!("cannot write --output {}: {} is not a directory", output.display(), directory.display()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("cannot write --output {}: directory {} does not exist", output.display(), directory.display())
        }
        Err(error) => bail!("cannot write --output {}: cannot open directory {}: {error}", output.display(), directory.display()),
    }
    if std::fs::metadata(output).is_ok_and(|metadata| metadata.is_dir()) {
        bail!("cannot write --output {}: it is a directory", output.display());
    }
    Ok(())
}

fn capture_pid(cli: &Cli, pid: &str, output: PathBuf) -> anyhow::Result<()> {
    use stardump_capture::ptrace::{capture_process, ProcessCaptureOptions};

    let pid: i32 = match pid.parse::<i32>() {
        Ok(pid) if pid > 0 => pid,
        Err(_) if !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()) => {
            bail!("invalid process id {pid:?}: larger than any process id ({})", i32::MAX)
        }
        _ => bail!("invalid process id {pid:?}: expected a positive decimal number"),
    };
    if cli.destroy_after {
        bail!("--destroy-after applies to xen: targets only");
    }
    if cli.image.is_some() {
        bail!("--image applies to gdb: and xen: targets; a pid: capture reads the build ids of the mapped files");
    }
    if !matches!(cli.memory, MemoryArg::Physical) {
        bail!("--memory applies to gdb: targets only; a process has no page tables to walk");
    }
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        bail!("invalid --timeout {}: expected a positive number of seconds", cli.timeout);
    }
    let options = ProcessCaptureOptions {
        pid,
        output,
        leave_stopped: cli.leave_paused,
        timeout: Duration::from_secs_f64(cli.timeout),
        cancel: Some(install_cancel_flag()?),
        writer: WriterOptions {
            zstd_level: cli.zstd_level,
            ..WriterOptions::default()
        },
        memory_budget: cli.memory_budget,
    };
    let summary = capture_process(&options)?;
    print_summary(&summary, cli.json, SummaryWording::Process)
}

#[cfg(feature = "xen")]
fn capture_xen(cli: &Cli, domain: &str, output: PathBuf) -> anyhow::Result<()> {
    use stardump_capture::xen::{capture_domain, AfterCapture, XenCaptureOptions};

    let options = XenCaptureOptions {
        domain: domain.to_owned(),
        output,
        after: if cli.destroy_after {
            AfterCapture::Destroy
        } else if cli.leave_paused {
            AfterCapture::LeavePaused
        } else {
            AfterCapture::Resume
        },
        cancel: Some(install_cancel_flag()?),
        writer: WriterOptions {
            zstd_level: cli.zstd_level,
            ..WriterOptions::default()
        },
        memory_budget: cli.memory_budget,
    };
    let summary = capture_domain(&options)?;
    print_summary(&summary, cli.json, SummaryWording::Unikernel)
}

#[cfg(feature = "xen")]
fn list_xen_domains(json: bool) -> anyhow::Result<()> {
    use stardump_capture::xen::bindings::ctrl::XenCtrl;
    use stardump_capture::xen::domain::{format_table, list_domains};

    let ctrl = XenCtrl::open()?;
    let domains = list_domains(&ctrl)?;
    let text = if json {
        serde_json::to_string(&domains)? + "\n"
    } else {
        format_table(&domains)
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the domain list"),
    }
}

#[cfg(not(feature = "xen"))]
fn capture_xen(_cli: &Cli, _domain: &str, _output: PathBuf) -> anyhow::Result<()> {
    bail!("this stardump-capture was built without Xen support; rebuild with `--features xen`")
}

#[cfg(not(feature = "xen"))]
fn list_xen_domains(_json: bool) -> anyhow::Result<()> {
    bail!("this stardump-capture was built without Xen support; rebuild with `--features xen`")
}

fn print_summary(summary: &CaptureSummary, json: bool, wording: SummaryWording) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let result = if json {
        serde_json::to_writer(&mut stdout, summary)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        writeln!(stdout, "{}", summary.text_line(wording))
    };
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the summary"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("3KiB"), Ok(3 << 10));
        assert!(parse_size("16E").unwrap_err().contains("unknown suffix \"E\""));
        assert!(parse_size("M").unwrap_err().contains("expected a whole number of bytes"));
        assert!(parse_size("-5").unwrap_err().contains("expected a whole number of bytes"));
        assert!(parse_size("1.5G").unwrap_err().contains("1536M"));
        assert!(parse_size("20000000T").unwrap_err().contains("more than 2^64"));
        assert!(parse_size("99999999999999999999").unwrap_err().contains("more than 2^64"));
    }
}

/// Reads the GNU build id of the ELF file at `path`, if a path was given.
fn read_build_id(path: Option<&std::path::Path>) -> anyhow::Result<Option<Vec<u8>>> {
    use object::Object as _;

    let Some(path) = path else {
        return Ok(None);
    };
    let data = std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("parsing image {}", path.display()))?;
    let build_id = file
        .build_id()
        .with_context(|| format!("reading the build id of {}", path.display()))?
        .with_context(|| format!("image {} has no GNU build id note", path.display()))?;
    Ok(Some(build_id.to_vec()))
}
