//! `stardump`: analyzes snapshots of unikernels and processes, and foreign
//! core files.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stardump::cmd::{self, Outcome};

/// Analyzes stardump snapshots, QEMU dumps, xl dump-cores and Linux core
/// files: registers, backtraces, variables, memory.
///
/// Every command's FILE may also be a live target, `gdb:HOST:PORT` (QEMU's
/// gdbstub, gdbserver): stardump pauses it, reads it while the command runs
/// and resumes it afterwards.
#[derive(Debug, Parser)]
#[command(name = "stardump", version)]
struct Cli {
    /// Log more (-v: debug, -vv: trace) to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// With a live target: leave it stopped when the command ends, instead
    /// of resuming it.
    #[arg(long, global = true)]
    leave_paused: bool,
    /// With a live target: seconds to wait for any one reply from its stub.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show how a snapshot was taken and what it contains.
    Info(cmd::info::Args),
    /// Show every vCPU's or thread's registers, like gdb's `info registers`.
    Regs(cmd::regs::Args),
    /// Show a backtrace of every vCPU or thread, like gdb's `thread apply all bt`.
    Bt(cmd::bt::Args),
    /// Show one frame, its arguments and locals, like gdb's `frame N`.
    Frame(cmd::frame::Args),
    /// Evaluate a C expression in a frame and print its value, like gdb's `print`.
    #[command(alias = "p")]
    Print(cmd::print::Args),
    /// Print the type of an expression or a type name, like gdb's `ptype`.
    Ptype(cmd::print::Args),
    /// Print the name of an expression's type, like gdb's `whatis`.
    Whatis(cmd::print::Args),
    /// Dump memory, like gdb's `x/FMT ADDR` (also written `stardump x/8xg ...`).
    X(cmd::examine::Args),
    /// Name the symbol an address is in, like gdb's `info symbol` (also written `stardump info symbol ...`).
    InfoSymbol(cmd::symbol::Args),
    /// Show the source lines around a frame's line, like gdb's `list`.
    List(cmd::list::Args),
    /// Show every unikernel thread and its backtrace, like gdb's `info threads` and `thread apply all bt`.
    Threads(cmd::threads::Args),
}

/// Rewrites gdb's spellings that clap cannot parse: `x/8xg` becomes
/// `x --format /8xg`, `p/x` becomes `print --format x`, and `info symbol`
/// becomes `info-symbol`.
fn gdb_style_arguments(mut arguments: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if let Some(first) = arguments.get(1).and_then(|argument| argument.to_str()).map(str::to_owned) {
        let print_format = first.strip_prefix("print/").or_else(|| first.strip_prefix("p/")).map(str::to_owned);
        if let Some(format) = first.strip_prefix("x/") {
            arguments.splice(1..2, ["x".into(), "--format".into(), format!("/{format}").into()]);
        } else if let Some(format) = print_format {
            arguments.splice(1..2, ["print".into(), "--format".into(), format.into()]);
        } else if first == "info" && arguments.get(2).and_then(|argument| argument.to_str()) == Some("symbol") {
            arguments.splice(1..3, ["info-symbol".into()]);
        }
    }
    arguments
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STARDUMP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only on a terminal, not in files and pipes.
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

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<serde_json::Error>().and_then(|json| json.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Joins the error and its causes in one line. A cause whose text already
/// ends the message is skipped, because many library errors print their
/// source in their own message too.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(gdb_style_arguments(std::env::args_os().collect()));
    init_logging(cli.verbose);
    if !(cli.timeout > 0.0 && cli.timeout.is_finite()) {
        let _ = writeln!(std::io::stderr(), "stardump: invalid --timeout {}: expected a positive number of seconds", cli.timeout);
        return ExitCode::from(1);
    }
    stardump::live::configure(stardump::live::LiveOptions {
        leave_paused: cli.leave_paused,
        timeout: std::time::Duration::from_secs_f64(cli.timeout),
    });

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    let result = match &cli.command {
        Command::Info(args) => cmd::info::run(args, &mut out, &mut err),
        Command::Regs(args) => cmd::regs::run(args, &mut out, &mut err),
        Command::Bt(args) => cmd::bt::run(args, &mut out, &mut err),
        Command::Frame(args) => cmd::frame::run(args, &mut out, &mut err),
        Command::Print(args) => cmd::print::run_print(args, &mut out, &mut err),
        Command::Ptype(args) => cmd::print::run_ptype(args, &mut out, &mut err),
        Command::Whatis(args) => cmd::print::run_whatis(args, &mut out, &mut err),
        Command::X(args) => cmd::examine::run(args, &mut out, &mut err),
        Command::InfoSymbol(args) => cmd::symbol::run(args, &mut out, &mut err),
        Command::List(args) => cmd::list::run(args, &mut out, &mut err),
        Command::Threads(args) => cmd::threads::run(args, &mut out, &mut err),
    }
    .and_then(|outcome| {
        out.flush()?;
        Ok(outcome)
    });

    // The command's target was dropped, so a live target was released (or
    // a signal handler is releasing it and ends the process).
    if let Some(signal) = stardump::live::interrupting_signal() {
        let _ = out.flush();
        let _ = writeln!(err, "stardump: interrupted by {}", stardump::live::signal_name(signal));
        return ExitCode::from(128u8.saturating_add(signal as u8));
    }
    if let Some(message) = stardump::live::take_release_error() {
        let _ = out.flush();
        if let Err(error) = &result {
            let _ = writeln!(err, "stardump: {}", error_line(error));
        }
        let _ = writeln!(err, "stardump: {message}");
        return ExitCode::from(1);
    }

    match result {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(2),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = out.flush();
            let _ = writeln!(err, "stardump: {}", error_line(&error));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn error_line_skips_repeated_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let error = anyhow::Error::new(io).context("cannot read x.elf: No such file").context("cannot load the image");
        assert_eq!(super::error_line(&error), "cannot load the image: cannot read x.elf: No such file");
    }

    #[test]
    fn command_definition_valid() {
        super::Cli::command().debug_assert();
    }
}
