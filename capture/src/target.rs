//! [`GdbTarget`]: a live target behind a GDB remote stub, paused while the
//! connection lasts, readable through [`stardump_format::Target`].
//!
//! Connecting pauses the target: QEMU stops the VM when a client attaches,
//! and other stubs get the interrupt byte if they do not report a stop. The
//! target resumes when [`GdbTarget::resume`] is called or the value is
//! dropped, on every path, unless [`GdbTarget::leave_paused`] closed the
//! connection first.
//!
//! Reads through the [`Target`] trait are served on demand from a
//! [`PageCache`] of whole pages, so an analysis of the live target reads
//! each page once. With QEMU's physical memory mode, virtual addresses are
//! translated here through the page tables at the requested cr3, whose
//! pages are cached too. Without it, the stub translates with a vCPU that
//! runs on that cr3. The inherent `read_*_memory` methods that the capture
//! uses for bulk copies bypass the cache.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stardump_format::{paging, MemoryError, MemoryRange, Metadata, SourceKind, Target, VcpuState};
use tracing::{debug, info, info_span, trace, warn};

use crate::gdb::registers::vcpu_state_from_registers;
use crate::gdb::{qemu, ClientOptions, GdbClient, GdbError, ThreadId};
use crate::memory::PAGE_SIZE;
use crate::page_cache::{PageCache, PageKey, ReadStats, DEFAULT_MAX_PAGES};

/// How long to wait for the reply to `?` before interrupting the target.
const STOP_REPLY_WAIT: Duration = Duration::from_secs(1);
/// Memory requests kept in flight on QEMU's gdbstub.
const PIPELINE_DEPTH: usize = 32;
/// Maximum pages one cached read fetches with one request: 256 KiB, which
/// QEMU 7.2 returns in 128 pipelined packets of 2 KiB.
const MAX_FETCH_PAGES: u64 = 64;

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
    /// Pages read through the `Target` trait since the target was paused.
    cache: PageCache,
    stats: ReadStats,
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
        let client = GdbClient::connect(address, options)?;

        // QEMU stops the VM as soon as a client connects, so from here on
        // the client lives inside the target and an error below resumes it
        // in `Drop`.
        let mut target = GdbTarget {
            connection: Mutex::new(Connection {
                client: Some(client),
                mode: AddressMode::Virtual,
                selected: None,
                cache: PageCache::new(DEFAULT_MAX_PAGES),
                stats: ReadStats::default(),
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

        let connection = target.connection.get_mut().expect("not shared yet");
        let stop = connection.client()?.stop_reason(STOP_REPLY_WAIT)?;
        debug!(stop = %String::from_utf8_lossy(&stop), "target stopped");
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
        connection.select(vcpu, thread)?;
        connection.client()?.read_memory(address, buf)
    }

    /// Returns how many reads the [`Target`] methods served and how many
    /// stub requests they took, since the target was paused.
    pub fn read_stats(&self) -> ReadStats {
        self.lock().stats
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
        connection.forget_memory();
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
        connection.forget_memory();
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

    /// Selects `thread`, vCPU `vcpu`, for memory requests unless it is
    /// selected already.
    fn select(&mut self, vcpu: usize, thread: &ThreadId) -> Result<(), GdbError> {
        if self.selected != Some(vcpu) {
            self.client()?.select_thread(thread)?;
            self.selected = Some(vcpu);
        }
        Ok(())
    }

    /// Drops the cached pages, whose contents are stale once the target runs.
    fn forget_memory(&mut self) {
        self.cache = PageCache::new(self.cache.max_pages());
    }

    /// Reads `len` bytes at `address` with one request, counting it.
    fn fetch(&mut self, address: u64, buf: &mut [u8], pipelined: bool) -> Result<(), GdbError> {
        let client = self.client()?;
        let result = if pipelined {
            client.read_memory_pipelined(address, buf, PIPELINE_DEPTH)
        } else {
            client.read_memory(address, buf)
        };
        let packet_bytes = client.max_read_bytes().max(1) as u64;
        self.stats.requests += 1;
        self.stats.packets += (buf.len() as u64).div_ceil(packet_bytes);
        result
    }

    /// Reads guest physical memory through the cache: whole pages of known
    /// RAM, fetched in runs of missing pages, and the exact bytes elsewhere,
    /// because a page of device memory may change or have side effects
    /// when read. Errors name the physical address.
    fn read_physical_cached(&mut self, ram: &[MemoryRange], address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let end = address.checked_add(len as u64).ok_or_else(|| MemoryError::Target {
            address,
            len,
            reason: "the range ends past the top of the address space".to_owned(),
        })?;
        let failed = |at: u64, error: GdbError| MemoryError::Target { address: at, len, reason: error.to_string() };
        if len > 0 {
            self.set_mode(AddressMode::Physical).map_err(|error| failed(address, error))?;
        }

        let mut at = address;
        while at < end {
            let frame = at / PAGE_SIZE;
            let page_end = (frame + 1).saturating_mul(PAGE_SIZE).min(end);
            let offset = (at - address) as usize;
            if !in_ram(ram, frame) {
                let piece = &mut buf[offset..offset + (page_end - at) as usize];
                self.stats.uncached_reads += 1;
                self.fetch(at, piece, true).map_err(|error| failed(at, error))?;
                at = page_end;
                continue;
            }

            // The frames of RAM from here on that this read covers, at most
            // MAX_FETCH_PAGES of them.
            let last_frame = (end - 1) / PAGE_SIZE;
            let mut window_end = frame + 1;
            while window_end <= last_frame && window_end - frame < MAX_FETCH_PAGES && in_ram(ram, window_end) {
                window_end += 1;
            }
            let missing = (frame..window_end).filter(|&f| !self.cache.contains(PageKey::Physical(f))).count();
            if self.cache.reserve(missing) {
                self.stats.evictions += 1;
            }
            let mut run_start = frame;
            while run_start < window_end {
                if self.cache.contains(PageKey::Physical(run_start)) {
                    self.stats.page_hits += 1;
                    run_start += 1;
                    continue;
                }
                let mut run_end = run_start + 1;
                while run_end < window_end && !self.cache.contains(PageKey::Physical(run_end)) {
                    run_end += 1;
                }
                let mut data = vec![0u8; ((run_end - run_start) * PAGE_SIZE) as usize];
                let run_address = run_start * PAGE_SIZE;
                self.fetch(run_address, &mut data, true).map_err(|error| failed(run_address.max(at), error))?;
                self.stats.pages_fetched += run_end - run_start;
                self.cache.insert_pages(&data, |index| PageKey::Physical(run_start + index));
                run_start = run_end;
            }

            let window_stop = window_end.saturating_mul(PAGE_SIZE).min(end);
            while at < window_stop {
                let frame = at / PAGE_SIZE;
                let in_page = (at % PAGE_SIZE) as usize;
                let part = ((PAGE_SIZE - at % PAGE_SIZE).min(window_stop - at)) as usize;
                let page = self.cache.page(PageKey::Physical(frame)).expect("fetched above");
                let offset = (at - address) as usize;
                buf[offset..offset + part].copy_from_slice(&page[in_page..in_page + part]);
                at += part as u64;
            }
        }
        Ok(())
    }

    /// Reads guest virtual memory by translating each page through the
    /// tables at `cr3` (read physically, through the cache), then reading
    /// physically contiguous pieces through the cache. Errors name the
    /// virtual address.
    fn read_virtual_translated(
        &mut self,
        ram: &[MemoryRange],
        cr3: u64,
        address: u64,
        buf: &mut [u8],
    ) -> Result<(), MemoryError> {
        let len = buf.len();
        // A piece of `buf` (offset, length) and the physical address it maps.
        let mut pieces: Vec<(usize, usize, u64)> = Vec::new();
        let mut done = 0usize;
        while done < len {
            let at = address.checked_add(done as u64).ok_or(MemoryError::NotMapped { address, len, cr3 })?;
            let page = at & !(PAGE_SIZE - 1);
            let part = ((PAGE_SIZE - (at - page)) as usize).min(len - done);
            let physical_page = match self.cache.translation(cr3, page) {
                Some(physical_page) => physical_page,
                None => {
                    let mut read = |physical: u64, out: &mut [u8]| self.read_physical_cached(ram, physical, out);
                    let physical_page = paging::translate(&mut read, cr3, page).map_err(|error| match error {
                        MemoryError::NotMapped { .. } => MemoryError::NotMapped { address: at, len, cr3 },
                        MemoryError::Target { address: entry, reason, .. } => MemoryError::Target {
                            address: at,
                            len,
                            reason: format!("reading the page-table entry at physical {entry:#x}: {reason}"),
                        },
                        other => other,
                    })?;
                    self.cache.insert_translation(cr3, page, physical_page);
                    physical_page
                }
            };
            let physical = physical_page + (at - page);
            match pieces.last_mut() {
                Some((offset, piece_len, start)) if *start + *piece_len as u64 == physical && *offset + *piece_len == done => {
                    *piece_len += part;
                }
                _ => pieces.push((done, part, physical)),
            }
            done += part;
        }
        trace!(address = format_args!("{address:#x}"), len, pieces = pieces.len(), "translated read");

        for (offset, piece_len, physical) in pieces {
            self.read_physical_cached(ram, physical, &mut buf[offset..offset + piece_len]).map_err(|error| match error {
                MemoryError::Target { reason, .. } => MemoryError::Target {
                    address: address.wrapping_add(offset as u64),
                    len,
                    reason: format!("at physical {physical:#x}: {reason}"),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Reads guest virtual memory through the stub's own translation with
    /// vCPU `vcpu` selected, caching whole pages by `cr3` and virtual page.
    /// A page the stub cannot read whole is read as requested, uncached.
    fn read_virtual_through_stub(
        &mut self,
        vcpu: usize,
        thread: &ThreadId,
        cr3: u64,
        address: u64,
        buf: &mut [u8],
    ) -> Result<(), MemoryError> {
        let len = buf.len();
        let failed = |at: u64, error: GdbError| MemoryError::Target { address: at, len, reason: error.to_string() };
        if len == 0 {
            return Ok(());
        }
        self.set_mode(AddressMode::Virtual).map_err(|error| failed(address, error))?;
        self.select(vcpu, thread).map_err(|error| failed(address, error))?;

        let mut done = 0usize;
        while done < len {
            let at = address.checked_add(done as u64).ok_or(MemoryError::NotMapped { address, len, cr3 })?;
            let page = at & !(PAGE_SIZE - 1);
            let in_page = (at - page) as usize;
            let part = (PAGE_SIZE as usize - in_page).min(len - done);
            let key = PageKey::virtual_page(cr3, page);
            if self.cache.contains(key) {
                self.stats.page_hits += 1;
            } else {
                if self.cache.reserve(1) {
                    self.stats.evictions += 1;
                }
                let mut data = vec![0u8; PAGE_SIZE as usize];
                match self.fetch(page, &mut data, false) {
                    Ok(()) => {
                        self.stats.pages_fetched += 1;
                        self.cache.insert_pages(&data, |_| key);
                    }
                    Err(GdbError::ErrorReply { .. }) => {
                        self.stats.uncached_reads += 1;
                        self.fetch(at, &mut buf[done..done + part], false).map_err(|error| failed(at, error))?;
                        done += part;
                        continue;
                    }
                    Err(error) => return Err(failed(at, error)),
                }
            }
            let cached = self.cache.page(key).expect("fetched above");
            buf[done..done + part].copy_from_slice(&cached[in_page..in_page + part]);
            done += part;
        }
        Ok(())
    }
}

/// Returns whether `frame` lies in `ram`. With no known RAM layout, every
/// frame is taken as RAM.
fn in_ram(ram: &[MemoryRange], frame: u64) -> bool {
    let Some(address) = frame.checked_mul(PAGE_SIZE) else {
        return false;
    };
    ram.is_empty() || ram.iter().any(|range| address >= range.start && address - range.start < range.len_bytes)
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

impl Target for GdbTarget {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    /// Reads through the page cache with QEMU's physical memory mode.
    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if !self.phys_mem_mode {
            return Err(MemoryError::Target {
                address,
                len: buf.len(),
                reason: "the stub cannot read physical memory (no Qqemu.PhyMemMode)".to_owned(),
            });
        }
        let mut connection = self.lock();
        connection.stats.reads += 1;
        connection.read_physical_cached(&self.memory_map, address, buf)
    }

    /// Walks the page tables at `cr3` with physical reads when the stub has
    /// QEMU's physical memory mode. Otherwise the stub translates, with a
    /// vCPU that runs on `cr3` selected, or with any thread when no vCPU
    /// has control registers (gdbserver's threads share one address space).
    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if self.phys_mem_mode {
            let mut connection = self.lock();
            connection.stats.reads += 1;
            return connection.read_virtual_translated(&self.memory_map, cr3, address, buf);
        }
        let process_stub = self.vcpus.iter().all(|vcpu| !vcpu.present.control);
        let vcpu = self.vcpu_with_cr3(cr3).or_else(|| process_stub.then_some(0));
        let Some((vcpu, thread)) = vcpu.and_then(|vcpu| Some((vcpu, self.threads.get(vcpu)?))) else {
            return Err(MemoryError::Target {
                address,
                len: buf.len(),
                reason: format!("no vCPU runs on cr3 {cr3:#x} and the stub has no physical memory mode"),
            });
        };
        let mut connection = self.lock();
        connection.stats.reads += 1;
        connection.read_virtual_through_stub(vcpu, thread, cr3, address, buf)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.memory_map.clone()
    }
}
