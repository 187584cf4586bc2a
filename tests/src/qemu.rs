//! Runs the test unikernel under QEMU with a gdbstub on loopback.
//!
//! QEMU runs under coreutils `timeout`, so a test process that dies without
//! unwinding still cannot leave a guest running past the deadline. Dropping
//! a [`Qemu`] ends it by PID.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::require_program;

/// Maximum run time of a test guest, in seconds, before `timeout` kills it.
const GUEST_DEADLINE_SECS: u32 = 300;

/// How a guest is started.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// The kernel ELF given to `-kernel`.
    pub kernel: PathBuf,
    /// The kernel command line given to `-append`.
    pub command_line: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
}

/// A running QEMU guest with a gdbstub on 127.0.0.1.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    serial_path: PathBuf,
    gdb_port: u16,
    _work_dir: tempfile::TempDir,
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a port on 127.0.0.1");
    listener.local_addr().expect("bound socket has an address").port()
}

impl Qemu {
    /// Starts a microvm guest running `config.kernel` under TCG.
    pub fn start(config: &GuestConfig) -> Result<Qemu> {
        let qemu = require_program("qemu-system-x86_64", "qemu-system-x86");
        require_program("timeout", "coreutils");
        let work_dir = tempfile::tempdir().context("creating a directory for the guest")?;
        let serial_path = work_dir.path().join("serial.log");
        let gdb_port = free_port();
        let stderr = fs::File::create(work_dir.path().join("qemu.stderr"))
            .context("creating the file for qemu's stderr")?;
        let child = Command::new("timeout")
            .args(["-s", "KILL", &GUEST_DEADLINE_SECS.to_string()])
            .arg(qemu)
            .args(["-machine", "microvm", "-accel", "tcg"])
            // pdpe1gb lets the unikernel map its direct map with a 1 GiB page,
            // so the page-table walk meets all three page sizes.
            .args(["-cpu", "qemu64,+pdpe1gb"])
            .args(["-m", &format!("{}M", config.memory_mib)])
            .args(["-smp", &config.vcpus.to_string()])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-serial")
            .arg(format!("file:{}", serial_path.display()))
            .arg("-kernel")
            .arg(&config.kernel)
            .args(["-append", &config.command_line])
            .args(["-gdb", &format!("tcp:127.0.0.1:{gdb_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(Qemu {
            child,
            serial_path,
            gdb_port,
            _work_dir: work_dir,
        })
    }

    /// Returns the gdbstub's port on 127.0.0.1.
    pub fn gdb_port(&self) -> u16 {
        self.gdb_port
    }

    /// Returns the target name that `stardump-capture` takes for this guest.
    pub fn gdb_target(&self) -> String {
        format!("gdb:127.0.0.1:{}", self.gdb_port)
    }

    /// Returns what the guest has written to its serial port so far.
    pub fn serial_output(&self) -> String {
        fs::read(&self.serial_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the serial output contains `marker`.
    pub fn wait_for_serial(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.serial_output().contains(marker) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().context("polling qemu")? {
                bail!(
                    "qemu exited with {status} before printing {marker:?}; serial output:\n{}",
                    self.serial_output()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {marker:?} on the serial port; output:\n{}",
                    self.serial_output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for QEMU to exit and returns its exit code.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("polling qemu")? {
                return Ok(status.code());
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for qemu to exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the path of the serial log.
    pub fn serial_path(&self) -> &Path {
        &self.serial_path
    }

    /// Ends the guest: SIGTERM to `timeout`, which passes it on to QEMU.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, which has not been reaped yet, so
        // the number cannot have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}
