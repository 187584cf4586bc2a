//! Live targets: `gdb:HOST:PORT` in place of a snapshot file, for every
//! command.
//!
//! [`open`] attaches through the capture crate's [`GdbTarget`], which
//! pauses the target and reads every vCPU's registers once. The engine then
//! reads memory on demand through the `Target` trait, from the page cache
//! that `GdbTarget` keeps while the target stays paused. The target is
//! resumed (detach, which continues it) when the returned [`Core`] is
//! dropped: when the command ends, when it fails, and when SIGINT or SIGTERM
//! arrives. With `--leave-paused` the connection is closed instead and the
//! target stays stopped.
//!
//! NOTE: a `stardump` killed with SIGKILL cannot resume the target; QEMU
//! 7.2 then keeps the VM stopped until a debugger continues it.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use anyhow::{bail, Context as _};
use stardump_capture::gdb::{ClientOptions, GdbError};
use stardump_capture::GdbTarget;
use stardump_format::foreign::LiveCore;
use stardump_format::{Core, MemoryError, MemoryRange, Metadata, Target, VcpuState};
use tracing::{debug, info};

/// Prefix of a GDB remote stub target.
pub const GDB_PREFIX: &str = "gdb:";
/// Prefix of a Xen domain target.
pub const XEN_PREFIX: &str = "xen:";

/// Settings for opening and releasing live targets, set once by `main`.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Close the connection without resuming, so the target stays stopped.
    pub leave_paused: bool,
    /// How long to wait for any one reply from the stub.
    pub timeout: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions { leave_paused: false, timeout: Duration::from_secs(10) }
    }
}

static OPTIONS: OnceLock<LiveOptions> = OnceLock::new();

/// Sets the options of every live target this process opens. Only the first
/// call counts, because a target opened before a second call would not see
/// it.
pub fn configure(options: LiveOptions) {
    let _ = OPTIONS.set(options);
}

fn options() -> &'static LiveOptions {
    OPTIONS.get_or_init(LiveOptions::default)
}

/// A live target as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSpec<'a> {
    /// `gdb:HOST:PORT`: the `HOST:PORT` part.
    Gdb(&'a str),
    /// `xen:DOMID` or `xen:NAME`: the part after the prefix.
    Xen(&'a str),
}

/// Returns the live target that `argument` names, or `None` for a file.
/// A file whose name starts with `gdb:` or `xen:` is opened as `./gdb:...`.
pub fn parse_spec(argument: &Path) -> Option<LiveSpec<'_>> {
    let text = argument.to_str()?;
    if let Some(address) = text.strip_prefix(GDB_PREFIX) {
        return Some(LiveSpec::Gdb(address));
    }
    text.strip_prefix(XEN_PREFIX).map(LiveSpec::Xen)
}

/// Attaches to the live target `spec` and returns it as a [`Core`] that
/// resumes the target when dropped.
pub fn open(spec: LiveSpec<'_>) -> anyhow::Result<Core> {
    match spec {
        LiveSpec::Gdb(address) => open_gdb(address),
        LiveSpec::Xen(domain) => bail!(
            "live Xen targets (xen:{domain}) are not supported by the analyzer yet: capture the domain with \
             `stardump-capture xen:{domain} -o FILE` in dom0 and analyze FILE"
        ),
    }
}

fn open_gdb(address: &str) -> anyhow::Result<Core> {
    let name = format!("{GDB_PREFIX}{address}");
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => bail!("invalid live target '{name}': expected gdb:HOST:PORT, such as gdb:127.0.0.1:1234"),
    }
    let options = options();
    let signals = signal_state().context("installing the SIGINT and SIGTERM handler")?;
    let client_options = ClientOptions { timeout: options.timeout, cancel: Some(Arc::clone(&signals.cancel)) };

    let target = GdbTarget::attach(address, client_options).with_context(|| format!("cannot attach to {name}"))?;
    if !target.has_physical_memory() {
        debug!(target = %name, "the stub has no physical memory mode; it translates virtual addresses itself");
    }
    let target = Arc::new(target);
    signals.attach(&target, options.leave_paused);
    // A signal that came while attaching was only recorded, so the attach
    // could finish and the target can be released properly now.
    if let Some(signal) = interrupting_signal() {
        let _ = release(&target, options.leave_paused);
        signals.released();
        bail!("interrupted by {} while attaching to {name}", signal_name(signal));
    }
    info!(target = %name, vcpus = target.vcpus().len(), "attached to a live target");
    let live = LiveGdb { target, leave_paused: options.leave_paused };
    Ok(Core::Live(LiveCore::new(name, Box::new(live))))
}

/// A paused GDB stub target; dropping it resumes the target, or leaves it
/// paused with `--leave-paused`.
struct LiveGdb {
    target: Arc<GdbTarget>,
    leave_paused: bool,
}

impl Target for LiveGdb {
    fn metadata(&self) -> &Metadata {
        self.target.metadata()
    }

    fn vcpus(&self) -> &[VcpuState] {
        self.target.vcpus()
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_physical(address, buf)
    }

    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target.read_virtual(cr3, address, buf)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.target.memory_map()
    }
}

impl Drop for LiveGdb {
    fn drop(&mut self) {
        let stats = self.target.read_stats();
        debug!(
            reads = stats.reads,
            requests = stats.requests,
            packets = stats.packets,
            pages_fetched = stats.pages_fetched,
            page_hits = stats.page_hits,
            uncached_reads = stats.uncached_reads,
            evictions = stats.evictions,
            paused_ms = self.target.paused_at().elapsed().as_millis() as u64,
            "live target memory reads"
        );
        let name = self.target.metadata().target_name.clone();
        if let Err(error) = release(&self.target, self.leave_paused) {
            record_release_error(format!("cannot {} {name}: {error}", verb(self.leave_paused)));
        }
        if let Some(signals) = SIGNALS.get() {
            signals.released();
        }
    }
}

fn verb(leave_paused: bool) -> &'static str {
    if leave_paused {
        "close the connection to"
    } else {
        "resume"
    }
}

/// Resumes `target` (detach), or closes the connection and leaves it paused.
/// Calling it again does nothing.
fn release(target: &GdbTarget, leave_paused: bool) -> Result<(), GdbError> {
    // A signal set the cancel flag that stops the client; the release must
    // still reach the stub.
    target.ignore_cancel();
    let result = if leave_paused { target.leave_paused() } else { target.resume() };
    match &result {
        Ok(()) if leave_paused => info!(target = %target.metadata().target_name, "left the target paused"),
        Ok(()) => info!(target = %target.metadata().target_name, "resumed the target"),
        // The caller reports the error to the user.
        Err(error) => debug!(target = %target.metadata().target_name, %error, "cannot release the target"),
    }
    result
}

static RELEASE_ERROR: Mutex<Option<String>> = Mutex::new(None);

fn record_release_error(message: String) {
    RELEASE_ERROR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get_or_insert(message);
}

/// Returns why a live target could not be resumed or left paused, if that
/// failed; `main` reports it and exits with an error.
pub fn take_release_error() -> Option<String> {
    RELEASE_ERROR.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
}

/// Returns the signal (SIGINT or SIGTERM) that arrived while a live target
/// was open, if one did.
pub fn interrupting_signal() -> Option<i32> {
    let signal = SIGNALS.get()?.signal.load(Ordering::SeqCst);
    (signal != 0).then_some(signal as i32)
}

/// Returns the conventional name of a signal the analyzer handles.
pub fn signal_name(signal: i32) -> String {
    stardump_capture::gdb::error::signal_name(signal)
}

/// State of the live target, shared with the signal thread.
enum Attachment {
    /// No target yet. The signal is recorded, and the attach in progress
    /// finishes before `open_gdb` releases the target: an attach cut short
    /// between connecting and storing the client would leave QEMU's VM
    /// stopped.
    Attaching,
    /// A paused target, with whether to leave it paused.
    Attached(Weak<GdbTarget>, bool),
    /// The target was released; the process can exit at once.
    Released,
}

/// The signal that arrived, the client's cancel flag, and the target to
/// release when a signal arrives.
struct SignalState {
    /// The signal number, 0 until SIGINT or SIGTERM arrives.
    signal: AtomicUsize,
    /// Set once a target is attached, so its requests in flight stop.
    cancel: Arc<AtomicUsize>,
    attachment: Mutex<Attachment>,
}

static SIGNALS: OnceLock<Arc<SignalState>> = OnceLock::new();

impl SignalState {
    fn lock(&self) -> MutexGuard<'_, Attachment> {
        self.attachment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn attach(&self, target: &Arc<GdbTarget>, leave_paused: bool) {
        *self.lock() = Attachment::Attached(Arc::downgrade(target), leave_paused);
    }

    fn released(&self) {
        *self.lock() = Attachment::Released;
    }

    /// Handles `signal` on the signal thread: releases the target, then
    /// ends the process with status 128 + `signal`, as a shell reports a
    /// process killed by it.
    fn handle(&self, signal: i32) {
        self.signal.store(signal as usize, Ordering::SeqCst);
        let attachment = self.lock();
        let (target, leave_paused) = match &*attachment {
            Attachment::Attaching => return,
            Attachment::Released => (None, false),
            Attachment::Attached(target, leave_paused) => (target.upgrade(), *leave_paused),
        };
        if let Some(target) = target {
            self.cancel.store(signal as usize, Ordering::SeqCst);
            let name = target.metadata().target_name.clone();
            let message = match release(&target, leave_paused) {
                Ok(()) if leave_paused => format!("stardump: interrupted by {}; {name} left paused", signal_name(signal)),
                Ok(()) => format!("stardump: interrupted by {}; {name} resumed", signal_name(signal)),
                Err(error) => format!(
                    "stardump: interrupted by {}; cannot {} {name}: {error}",
                    signal_name(signal),
                    verb(leave_paused)
                ),
            };
            // Written without eprintln!, which panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "{message}");
        }
        std::process::exit(128 + signal);
    }
}

/// Installs the SIGINT and SIGTERM handler on first use and returns its
/// state. The handler only records the signal, and a thread acts on it.
fn signal_state() -> anyhow::Result<&'static Arc<SignalState>> {
    if let Some(state) = SIGNALS.get() {
        *state.lock() = Attachment::Attaching;
        return Ok(state);
    }
    let state = Arc::new(SignalState {
        signal: AtomicUsize::new(0),
        cancel: Arc::new(AtomicUsize::new(0)),
        attachment: Mutex::new(Attachment::Attaching),
    });
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
    let handler_state = Arc::clone(&state);
    std::thread::Builder::new().name("signals".to_owned()).spawn(move || {
        for signal in signals.forever() {
            handler_state.handle(signal);
        }
    })?;
    Ok(SIGNALS.get_or_init(|| state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_gdb_address() {
        assert_eq!(parse_spec(Path::new("gdb:127.0.0.1:1234")), Some(LiveSpec::Gdb("127.0.0.1:1234")));
    }

    #[test]
    fn spec_xen_domain() {
        assert_eq!(parse_spec(Path::new("xen:web1")), Some(LiveSpec::Xen("web1")));
    }

    #[test]
    fn spec_file_paths() {
        assert_eq!(parse_spec(Path::new("guest.sdump")), None);
        assert_eq!(parse_spec(Path::new("./gdb:1234")), None);
        assert_eq!(parse_spec(Path::new("/tmp/gdb:1234")), None);
    }

    #[test]
    fn open_rejects_address_without_port() {
        let error = open(LiveSpec::Gdb("localhost")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid live target 'gdb:localhost': expected gdb:HOST:PORT, such as gdb:127.0.0.1:1234"
        );
    }

    #[test]
    fn open_xen_names_capture_command() {
        let error = open(LiveSpec::Xen("7")).unwrap_err();
        assert!(error.to_string().contains("stardump-capture xen:7 -o FILE"), "{error}");
    }
}
