//! [`GdbTarget`]: a live target behind a GDB remote stub, paused while the
//! connection lasts, readable through [`stardump_format::Target`].
//!
//! Connecting pauses the target: QEMU stops the VM when a client attaches,
//! and other stubs get the interrupt byte if they do not report a stop. The
//! target resumes when [`GdbTarget::resume`] is called or the value is
//! dropped, on every path, unless [`GdbTarget::leave_paused`] closed the
//! connection first.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stardump_format::{paging, MemoryError, MemoryRange, Metadata, SourceKind, Target, VcpuState};
use tracing::{debug, info, info_span, warn};

use crate::gdb::registers::vcpu_state_from_registers;
use crate::gdb::{qemu, ClientOptions, GdbClient, GdbError, ThreadId};

/// How long to wait for the reply to `?` before interrupting the target.
const STOP_REPLY_WAIT: Duration = Duration::from_secs(1);
/// Memory requests kept in flight on QEMU's gdbstub.
const PIPELINE_DEPTH: usize = 32;

/// Address kind that memory packets currently use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressMode {
    Virtual,
    Physical,
}

struct Connection {
    /// `None` once the target was resumed or left paused.
    client: Option<GdbClient>,
    mode: AddressMode,
    /// Thread selected with `Hg`, as an index into `GdbTarget::threads`.
    selected: Option<usize>,
}

/// A target paused behind a GDB remote stub.
pub struct GdbTarget {
    connection: Mutex<Connection>,
    threads: Vec<ThreadId>,
    vcpus: Vec<VcpuState>,
    metadata: Metadata,
    memory_map: Vec<MemoryRange>,
    phys_mem_mode: bool,
    paused_at: Instant,
}

impl GdbTarget {
    /// Connects to the stub at `address` (`HOST:PORT`), pauses the target
    /// and reads every vCPU's registers.
    ///
    /// QEMU's RAM layout and version come from its monitor when the stub
    /// has QEMU's extensions; a failure there only leaves them unknown.
    pub fn attach(address: &str, options: ClientOptions) -> Result<GdbTarget, GdbError> {
        let span = info_span!("attach", target = %address);
        let _entered = span.enter();

        let paused_unix = SystemTime::now();
        let paused_at = Instant::now();
        let mut client = GdbClient::connect(address, options)?;
        let stop = client.stop_reason(STOP_REPLY_WAIT)?;
        debug!(stop = %String::from_utf8_lossy(&stop), "target stopped");

        let mut target = GdbTarget {
            connection: Mutex::new(Connection {
                client: None,
                mode: AddressMode::Virtual,
                selected: None,
            }),
            threads: Vec::new(),
            vcpus: Vec::new(),
            metadata: Metadata {
                source_kind: SourceKind::GdbRemote,
                target_name: format!("gdb:{address}"),
                capture_time_unix_us: paused_unix
                    .duration_since(UNIX_EPOCH)
                    .map(|since| since.as_micros() as u64)
                    .unwrap_or(0),
                ..Metadata::default()
            },
            memory_map: Vec::new(),
            phys_mem_mode: false,
            paused_at,
        };

        // From here on the target is paused: keep the client inside the
        // target so that an error below resumes it in `Drop`.
        target.connection.get_mut().expect("not shared yet").client = Some(client);
        target.read_vcpus()?;
        target.query_qemu()?;
        info!(vcpus = target.vcpus.len(), phys_mem_mode = target.phys_mem_mode, "attached");
        Ok(target)
    }

    fn read_vcpus(&mut self) -> Result<(), GdbError> {
        let connection = self.connection.get_mut().expect("not shared yet");
        let client = connection.client.as_mut().expect("attached");
        let threads = client.threads()?;
        let mut vcpus = Vec::with_capacity(threads.len());
        for (index, thread) in threads.iter().enumerate() {
            let span = info_span!("vcpu", id = index);
            let _entered = span.enter();
            client.select_thread(thread)?;
            let registers = client.read_registers()?;
            vcpus.push(vcpu_state_from_registers(index as u32, thread.number, &registers));
        }
        connection.selected = threads.len().checked_sub(1);
        self.threads = threads;
        self.vcpus = vcpus;
        Ok(())
    }

    fn query_qemu(&mut self) -> Result<(), GdbError> {
        let connection = self.connection.get_mut().expect("not shared yet");
        let client = connection.client.as_mut().expect("attached");
        self.phys_mem_mode = qemu::supports_phys_mem_mode(client)?;
        if !self.phys_mem_mode {
            return Ok(());
        }
        match qemu::version(client) {
            Ok(version) => self.metadata.hypervisor_version = Some(version),
            Err(error @ GdbError::Interrupted { .. }) => return Err(error),
            Err(error) => warn!(%error, "cannot read QEMU's version"),
        }
        match qemu::ram_ranges(client) {
            Ok(ranges) => self.memory_map = ranges,
            Err(error @ GdbError::Interrupted { .. }) => return Err(error),
            Err(error) => warn!(%error, "cannot read QEMU's memory tree"),
        }
        Ok(())
    }

    /// Returns the stub's thread ids, one per vCPU, in vCPU order.
    pub fn threads(&self) -> &[ThreadId] {
        &self.threads
    }

    /// Returns whether the stub reads guest physical memory (QEMU's
    /// `PhyMemMode`).
    pub fn has_physical_memory(&self) -> bool {
        self.phys_mem_mode
    }

    /// Stops using QEMU's physical memory mode, so reads behave as with a
    /// stub that has none (the `--memory walk` path for other stubs).
    pub fn disable_physical_memory(&mut self) {
        self.phys_mem_mode = false;
    }

    /// Returns when the connection paused the target.
    pub fn paused_at(&self) -> Instant {
        self.paused_at
    }

    /// Returns the largest read one packet carries, for callers that want
    /// to size their blocks.
    pub fn max_read_bytes(&self) -> usize {
        self.lock().client.as_ref().map_or(4096, GdbClient::max_read_bytes)
    }

    /// Sets the memory map, for callers that discovered it another way
    /// (by probing).
    pub fn set_memory_map(&mut self, ranges: Vec<MemoryRange>) {
        self.memory_map = ranges;
    }

    /// Sets the stub's version string in the metadata.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: the
        // protocol state lives in the client, which drains stale replies.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads guest physical memory through QEMU's physical memory mode.
    pub fn read_physical_memory(&self, address: u64, buf: &mut [u8]) -> Result<(), GdbError> {
        if !self.phys_mem_mode {
            return Err(GdbError::Unsupported {
                request: "Qqemu.PhyMemMode".to_owned(),
            });
        }
        let mut connection = self.lock();
        connection.set_mode(AddressMode::Physical)?;
        // Physical memory mode means QEMU's gdbstub, which reads requests
        // in order and so serves a pipeline.
        connection.client()?.read_memory_pipelined(address, buf, PIPELINE_DEPTH)
    }

    /// Reads guest virtual memory through vCPU `vcpu`'s page tables (the
    /// stub translates with that vCPU's cr3).
    pub fn read_virtual_memory(&self, vcpu: usize, address: u64, buf: &mut [u8]) -> Result<(), GdbError> {
        let thread = self.threads.get(vcpu).ok_or_else(|| GdbError::InvalidReply {
            request: format!("vCPU {vcpu}"),
            reply: format!("the stub has {} threads", self.threads.len()),
        })?;
        let mut connection = self.lock();
        connection.set_mode(AddressMode::Virtual)?;
        if connection.selected != Some(vcpu) {
            connection.client()?.select_thread(thread)?;
            connection.selected = Some(vcpu);
        }
        connection.client()?.read_memory(address, buf)
    }

    /// Stops watching the cancel flag, so a resume after a signal still
    /// reaches the stub.
    pub fn ignore_cancel(&self) {
        if let Some(client) = self.lock().client.as_mut() {
            client.ignore_cancel();
        }
    }

    /// Switches memory packets back to virtual addresses and detaches; the
    /// stub resumes the target. Calling it again does nothing.
    pub fn resume(&self) -> Result<(), GdbError> {
        let mut connection = self.lock();
        if connection.client.is_none() {
            return Ok(());
        }
        let restored = connection.set_mode(AddressMode::Virtual);
        let client = connection.client.take().expect("checked above");
        let detached = client.detach();
        restored?;
        detached?;
        debug!(paused_ms = self.paused_at.elapsed().as_millis() as u64, "resumed");
        Ok(())
    }

    /// Switches memory packets back to virtual addresses and closes the
    /// connection without detaching, so the target stays paused (QEMU 7.2
    /// keeps the VM stopped until a client continues it).
    pub fn leave_paused(&self) -> Result<(), GdbError> {
        let mut connection = self.lock();
        if connection.client.is_none() {
            return Ok(());
        }
        let restored = connection.set_mode(AddressMode::Virtual);
        if let Some(client) = connection.client.take() {
            client.close();
        }
        restored
    }

    fn vcpu_with_cr3(&self, cr3: u64) -> Option<usize> {
        const CR3_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
        self.vcpus
            .iter()
            .position(|vcpu| vcpu.present.control && vcpu.cr3 & CR3_ADDRESS_MASK == cr3 & CR3_ADDRESS_MASK)
    }
}

impl Connection {
    fn client(&mut self) -> Result<&mut GdbClient, GdbError> {
        self.client.as_mut().ok_or_else(|| GdbError::Closed {
            activity: "using a target that was already resumed".to_owned(),
        })
    }

    fn set_mode(&mut self, mode: AddressMode) -> Result<(), GdbError> {
        if self.mode != mode {
            qemu::set_phys_mem_mode(self.client()?, mode == AddressMode::Physical)?;
            self.mode = mode;
        }
        Ok(())
    }
}

impl Drop for GdbTarget {
    fn drop(&mut self) {
        if self.lock().client.is_none() {
            return;
        }
        self.ignore_cancel();
        match self.resume() {
            Ok(()) => info!("target resumed"),
            // A stub that closed the connection has nothing left to resume;
            // the error that closed it is reported by the caller.
            Err(error @ GdbError::Closed { .. }) => debug!(%error, "cannot resume the target"),
            Err(error) => warn!(%error, "cannot resume the target"),
        }
    }
}

fn memory_error(address: u64, len: usize, error: GdbError) -> MemoryError {
    MemoryError::Target {
        address,
        len,
        reason: error.to_string(),
    }
}

impl Target for GdbTarget {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_physical_memory(address, buf)
            .map_err(|error| memory_error(address, buf.len(), error))
    }

    /// Reads through the stub's own translation when a vCPU runs on `cr3`,
    /// and otherwise walks the page tables through physical reads.
    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if let Some(vcpu) = self.vcpu_with_cr3(cr3) {
            return self
                .read_virtual_memory(vcpu, address, buf)
                .map_err(|error| memory_error(address, buf.len(), error));
        }
        if !self.phys_mem_mode {
            return Err(MemoryError::Target {
                address,
                len: buf.len(),
                reason: format!("no vCPU runs on cr3 {cr3:#x} and the stub has no physical memory mode"),
            });
        }

        let len = buf.len();
        let mut done = 0usize;
        while done < len {
            let at = address.wrapping_add(done as u64);
            let page_left = (0x1000 - (at & 0xfff)) as usize;
            let part = page_left.min(len - done);
            let mut read = |physical: u64, out: &mut [u8]| self.read_physical(physical, out);
            let physical = paging::translate(&mut read, cr3, at).map_err(|error| match error {
                MemoryError::NotMapped { address, cr3, .. } => MemoryError::NotMapped { address, len, cr3 },
                other => other,
            })?;
            self.read_physical(physical, &mut buf[done..done + part])?;
            done += part;
        }
        Ok(())
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.memory_map.clone()
    }
}
