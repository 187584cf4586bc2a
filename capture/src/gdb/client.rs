//! A GDB remote serial protocol client over TCP: connection set-up and
//! feature negotiation, request/reply with acknowledgements, threads,
//! registers and memory.
//!
//! Every socket read has a short timeout, so a stub that stops replying
//! becomes [`GdbError::Timeout`] and a signal recorded in the cancel flag is
//! seen within [`POLL_INTERVAL`]. Received packets are bounded by the
//! negotiated packet size.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use super::error::{display_packet, GdbError};
use super::packet::{self, Frame, FrameError};
use super::target_xml::{parse_target_description, RegisterLayout};

/// How often a blocked read wakes up to look at the cancel flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Packet size assumed until `qSupported` states one; gdb's own default
/// buffer is about this large.
const DEFAULT_PACKET_BYTES: usize = 4096;
/// Upper bound on a stated `PacketSize`, so a hostile stub cannot make the
/// client buffer without bound.
const MAX_PACKET_BYTES: usize = 1 << 20;
/// Maximum number of threads accepted from `qfThreadInfo`/`qsThreadInfo`.
const MAX_THREADS: usize = 4096;
/// Maximum size of one target description file.
const MAX_XML_BYTES: usize = 1 << 20;
/// Maximum size of one monitor command's output.
const MAX_MONITOR_BYTES: usize = 4 << 20;
/// Bytes requested from the socket per read.
const RECEIVE_BYTES: usize = 16 * 1024;
/// How many corrupt packets in a row the client asks the stub to resend.
const MAX_RETRANSMISSIONS: u32 = 3;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long to wait for any one reply.
    pub timeout: Duration,
    /// Set to a signal number by a signal handler; the client then stops
    /// with [`GdbError::Interrupted`] between packets or while waiting.
    pub cancel: Option<Arc<AtomicUsize>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            cancel: None,
        }
    }
}

/// Features reported by `qSupported`.
#[derive(Debug, Clone, Default)]
pub struct StubFeatures {
    /// The maximum packet the stub accepts, in bytes.
    pub packet_size: Option<usize>,
    /// The `feature+`, `feature-` and `feature=value` entries as sent.
    pub entries: Vec<String>,
}

impl StubFeatures {
    /// Returns whether the stub listed `name+`.
    pub fn supports(&self, name: &str) -> bool {
        self.entries.iter().any(|entry| entry.strip_suffix('+') == Some(name))
    }
}

/// A thread as the stub identifies it, kept in the stub's own syntax
/// (`1`, `p1.2`) so it can be sent back unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadId {
    /// The id as sent by the stub.
    pub text: String,
    /// The thread part as a number, when it parses.
    pub number: Option<u64>,
}

impl ThreadId {
    /// Returns the process part of a multiprocess id (`1` of `p1.2`).
    pub fn process(&self) -> Option<&str> {
        let rest = self.text.strip_prefix('p')?;
        rest.split_once('.').map(|(process, _)| process)
    }

    fn parse(text: &str) -> ThreadId {
        let thread_part = text.rsplit('.').next().unwrap_or(text);
        let thread_part = thread_part.strip_prefix('p').unwrap_or(thread_part);
        ThreadId {
            text: text.to_owned(),
            number: u64::from_str_radix(thread_part, 16).ok(),
        }
    }
}

/// Packet kind used for memory reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPacket {
    /// Not probed yet.
    Unknown,
    /// `x addr,len` with binary replies.
    Binary,
    /// `m addr,len` with hex replies.
    Hex,
}

/// A connection to a GDB remote stub.
pub struct GdbClient {
    stream: TcpStream,
    received: Vec<u8>,
    /// Buffer for socket reads, reused because a capture reads thousands
    /// of multi-kilobyte replies.
    scratch: Box<[u8]>,
    ack_mode: bool,
    max_packet_bytes: usize,
    features: StubFeatures,
    options: ClientOptions,
    last_sent: Vec<u8>,
    /// Replies owed by the stub for requests whose wait was interrupted;
    /// they are drained before the next request.
    pending_replies: usize,
    read_packet: ReadPacket,
    layout: Option<RegisterLayout>,
    first_frame: bool,
    /// Process id of the stub's threads when it uses multiprocess thread
    /// ids (`p1.2`), needed to detach from such a stub.
    process_id: Option<String>,
}

impl GdbClient {
    /// Connects to `address` (`HOST:PORT`) and negotiates features:
    /// `qSupported`, then `QStartNoAckMode` when the stub accepts it.
    pub fn connect(address: &str, options: ClientOptions) -> Result<GdbClient, GdbError> {
        let socket_address = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| GdbError::InvalidAddress {
                address: address.to_owned(),
            })?;
        let stream = TcpStream::connect_timeout(&socket_address, options.timeout)
            .map_err(|error| GdbError::Connect { error })?;
        let io_error = |source| GdbError::Io {
            activity: "configuring the socket".to_owned(),
            source,
        };
        // One request is in flight at a time, so Nagle's delay would add
        // up to 40 ms to every packet.
        stream.set_nodelay(true).map_err(io_error)?;
        stream.set_read_timeout(Some(POLL_INTERVAL)).map_err(io_error)?;
        stream.set_write_timeout(Some(options.timeout)).map_err(io_error)?;
        debug!(%socket_address, "connected");

        let mut client = GdbClient {
            stream,
            received: Vec::new(),
            scratch: vec![0u8; RECEIVE_BYTES].into_boxed_slice(),
            ack_mode: true,
            max_packet_bytes: DEFAULT_PACKET_BYTES,
            features: StubFeatures::default(),
            options,
            last_sent: Vec::new(),
            pending_replies: 0,
            read_packet: ReadPacket::Unknown,
            layout: None,
            first_frame: true,
            process_id: None,
        };
        client.negotiate()?;
        Ok(client)
    }

    fn negotiate(&mut self) -> Result<(), GdbError> {
        let reply = self.request(b"qSupported:xmlRegisters=i386;vContSupported+")?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        let mut features = StubFeatures::default();
        for entry in text.split(';').filter(|entry| !entry.is_empty()) {
            if let Some(size) = entry.strip_prefix("PacketSize=") {
                let size = usize::from_str_radix(size, 16).ok().filter(|&size| size >= 64).ok_or_else(|| {
                    GdbError::InvalidReply {
                        request: "qSupported".to_owned(),
                        reply: display_packet(&reply),
                    }
                })?;
                features.packet_size = Some(size);
            }
            features.entries.push(entry.to_owned());
        }
        if let Some(size) = features.packet_size {
            if size > MAX_PACKET_BYTES {
                warn!(size, max = MAX_PACKET_BYTES, "stub packet size capped");
            }
            self.max_packet_bytes = size.min(MAX_PACKET_BYTES);
        }
        debug!(features = %text, max_packet_bytes = self.max_packet_bytes, "qSupported");
        self.features = features;

        // Stubs that do not know the request reply with an empty packet
        // (QEMU 7.2 does) and stay in acknowledgement mode.
        let reply = self.request(b"QStartNoAckMode")?;
        if reply == b"OK" {
            self.ack_mode = false;
        }
        debug!(ack_mode = self.ack_mode, "acknowledgement mode");
        Ok(())
    }

    /// Returns what `qSupported` reported.
    pub fn features(&self) -> &StubFeatures {
        &self.features
    }

    /// Returns the packet size in force, in bytes.
    pub fn max_packet_bytes(&self) -> usize {
        self.max_packet_bytes
    }

    /// Sends `payload` and returns the reply's payload.
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, GdbError> {
        let activity = format!("waiting for the reply to '{}'", display_packet(payload));
        self.request_for(payload, &activity)
    }

    /// Sends `payload` and returns the reply, naming `activity` in errors.
    pub fn request_for(&mut self, payload: &[u8], activity: &str) -> Result<Vec<u8>, GdbError> {
        self.check_cancel()?;
        self.drain_pending(activity)?;
        self.send_packet(payload, activity)?;
        self.pending_replies = 1;
        let mut reply = self.receive_packet(activity)?;
        // QEMU sends a stop reply on its own when a client connects to a
        // running VM (QEMU 7.2 sends `T02thread:01;`). Only `?` among the
        // requests this client makes gets a stop reply, so one
        // arriving for any other request is that notification.
        while is_stop_reply(&reply) {
            debug!(reply = %display_packet(&reply), "skipped an asynchronous stop reply");
            reply = self.receive_packet(activity)?;
        }
        self.pending_replies = 0;
        trace!(request = %display_packet(payload), reply = %display_packet(&reply), "exchange");
        Ok(reply)
    }

    /// Like [`GdbClient::request`], but turns `Enn` and empty replies into
    /// errors.
    pub fn request_ok(&mut self, payload: &[u8]) -> Result<Vec<u8>, GdbError> {
        let reply = self.request(payload)?;
        check_reply(payload, reply)
    }

    fn check_cancel(&self) -> Result<(), GdbError> {
        if let Some(cancel) = &self.options.cancel {
            let signal = cancel.load(Ordering::Relaxed);
            if signal != 0 {
                return Err(GdbError::Interrupted { signal: signal as i32 });
            }
        }
        Ok(())
    }

    /// Ignores the cancel flag from now on, so the pause guard can still
    /// resume the target after a signal.
    pub fn ignore_cancel(&mut self) {
        self.options.cancel = None;
    }

    fn drain_pending(&mut self, activity: &str) -> Result<(), GdbError> {
        while self.pending_replies > 0 {
            let stale = self.receive_packet(activity)?;
            debug!(reply = %display_packet(&stale), "discarded the reply to an interrupted request");
            self.pending_replies -= 1;
        }
        Ok(())
    }

    fn send_packet(&mut self, payload: &[u8], activity: &str) -> Result<(), GdbError> {
        self.last_sent = packet::encode_packet(payload);
        let framed = std::mem::take(&mut self.last_sent);
        let result = self.write_raw(&framed, activity);
        self.last_sent = framed;
        result
    }

    fn write_raw(&mut self, bytes: &[u8], activity: &str) -> Result<(), GdbError> {
        self.stream.write_all(bytes).map_err(|source| match source.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => GdbError::Closed {
                activity: activity.to_owned(),
            },
            _ => GdbError::Io {
                activity: activity.to_owned(),
                source,
            },
        })
    }

    /// Reads frames until a packet arrives, acknowledging it in
    /// acknowledgement mode and resending on `-`.
    fn receive_packet(&mut self, activity: &str) -> Result<Vec<u8>, GdbError> {
        let mut retransmissions = 0;
        loop {
            match self.receive_frame(activity)? {
                Frame::Ack => continue,
                Frame::Nak => {
                    retransmissions += 1;
                    // With several requests in flight, `last_sent` is not
                    // necessarily the packet the stub rejected.
                    if self.pending_replies > 1 {
                        return Err(GdbError::InvalidReply {
                            request: activity.to_owned(),
                            reply: "a retransmission request while several requests were in flight".to_owned(),
                        });
                    }
                    if retransmissions > MAX_RETRANSMISSIONS {
                        return Err(GdbError::InvalidReply {
                            request: activity.to_owned(),
                            reply: format!("{MAX_RETRANSMISSIONS} retransmission requests"),
                        });
                    }
                    let framed = self.last_sent.clone();
                    self.write_raw(&framed, activity)?;
                }
                Frame::Packet(payload) => {
                    if self.ack_mode {
                        self.write_raw(b"+", activity)?;
                    }
                    return Ok(payload);
                }
                Frame::Corrupt(error) => {
                    retransmissions += 1;
                    if !self.ack_mode || retransmissions > MAX_RETRANSMISSIONS {
                        return Err(GdbError::Frame {
                            activity: activity.to_owned(),
                            source: error,
                        });
                    }
                    warn!(%error, "corrupt packet, requesting retransmission");
                    self.write_raw(b"-", activity)?;
                }
            }
        }
    }

    fn receive_frame(&mut self, activity: &str) -> Result<Frame, GdbError> {
        let started = Instant::now();
        loop {
            match packet::next_frame(&self.received, self.max_packet_bytes) {
                Ok(Some((frame, used))) => {
                    self.received.drain(..used);
                    self.first_frame = false;
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(source @ FrameError::InvalidStart { .. }) if self.first_frame => {
                    return Err(GdbError::NotAStub { source });
                }
                Err(source) => {
                    return Err(GdbError::Frame {
                        activity: activity.to_owned(),
                        source,
                    })
                }
            }

            self.check_cancel()?;
            if started.elapsed() > self.options.timeout {
                return Err(GdbError::Timeout {
                    activity: activity.to_owned(),
                    timeout_secs: self.options.timeout.as_secs_f64(),
                });
            }
            let result = self.stream.read(&mut self.scratch);
            match result {
                Ok(0) => {
                    return Err(GdbError::Closed {
                        activity: activity.to_owned(),
                    })
                }
                Ok(len) => self.received.extend_from_slice(&self.scratch[..len]),
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return Err(GdbError::Closed {
                        activity: activity.to_owned(),
                    })
                }
                Err(source) => {
                    return Err(GdbError::Io {
                        activity: activity.to_owned(),
                        source,
                    })
                }
            }
        }
    }

    /// Sends `?` and returns the stop reply (`T05thread:01;`, `S05`).
    ///
    /// A stub whose target is running does not reply until it stops. When
    /// no reply arrives within `wait`, the client sends the interrupt byte
    /// 0x03 and waits for the stop reply that follows.
    pub fn stop_reason(&mut self, wait: Duration) -> Result<Vec<u8>, GdbError> {
        self.check_cancel()?;
        self.drain_pending("waiting for the stop reason")?;
        self.send_packet(b"?", "requesting the stop reason")?;
        self.pending_replies = 1;

        let saved_timeout = self.options.timeout;
        self.options.timeout = wait;
        let first = self.receive_packet("waiting for the stop reason");
        self.options.timeout = saved_timeout;
        match first {
            Ok(reply) => {
                self.pending_replies = 0;
                Ok(reply)
            }
            Err(GdbError::Timeout { .. }) => {
                debug!("no stop reply, interrupting the target");
                self.write_raw(&[0x03], "interrupting the target")?;
                let reply = self.receive_packet("waiting for the target to stop after an interrupt")?;
                self.pending_replies = 0;
                Ok(reply)
            }
            Err(error) => Err(error),
        }
    }

    /// Lists the stub's threads (vCPUs for QEMU) in the order it reports.
    pub fn threads(&mut self) -> Result<Vec<ThreadId>, GdbError> {
        let mut threads = Vec::new();
        let mut reply = self.request_ok(b"qfThreadInfo")?;
        loop {
            match reply.split_first() {
                Some((b'm', list)) => {
                    for id in String::from_utf8_lossy(list).split(',').filter(|id| !id.is_empty()) {
                        if threads.len() >= MAX_THREADS {
                            return Err(GdbError::InvalidReply {
                                request: "qsThreadInfo".to_owned(),
                                reply: format!("more than {MAX_THREADS} threads"),
                            });
                        }
                        let thread = ThreadId::parse(id);
                        if let Some(process) = thread.process() {
                            self.process_id = Some(process.to_owned());
                        }
                        threads.push(thread);
                    }
                }
                Some((b'l', _)) => break,
                _ => {
                    return Err(GdbError::InvalidReply {
                        request: "qsThreadInfo".to_owned(),
                        reply: display_packet(&reply),
                    })
                }
            }
            reply = self.request_ok(b"qsThreadInfo")?;
        }
        Ok(threads)
    }

    /// Reads a whole `qXfer:features:read` annex.
    pub fn read_feature_file(&mut self, annex: &str) -> Result<String, GdbError> {
        let mut contents = Vec::new();
        // The reply adds one type byte and escapes; ask for what fits.
        let chunk = self.max_packet_bytes.saturating_sub(16).max(64) / 2;
        loop {
            let request = format!("qXfer:features:read:{annex}:{:x},{chunk:x}", contents.len());
            let reply = self.request_ok(request.as_bytes())?;
            let (kind, data) = reply.split_first().ok_or_else(|| GdbError::Unsupported { request: request.clone() })?;
            contents.extend_from_slice(data);
            if contents.len() > MAX_XML_BYTES {
                return Err(GdbError::InvalidReply {
                    request,
                    reply: format!("target description larger than {MAX_XML_BYTES} bytes"),
                });
            }
            match kind {
                b'l' => break,
                b'm' if !data.is_empty() => continue,
                _ => {
                    return Err(GdbError::InvalidReply {
                        request,
                        reply: display_packet(&reply),
                    })
                }
            }
        }
        String::from_utf8(contents).map_err(|_| GdbError::InvalidReply {
            request: format!("qXfer:features:read:{annex}"),
            reply: "not UTF-8".to_owned(),
        })
    }

    /// Returns the register layout, reading `target.xml` and its includes
    /// on first use.
    pub fn register_layout(&mut self) -> Result<&RegisterLayout, GdbError> {
        if self.layout.is_none() {
            if !self.features.supports("qXfer:features:read") {
                return Err(GdbError::Unsupported {
                    request: "qXfer:features:read".to_owned(),
                });
            }
            let mut fetch_error = None;
            let result = parse_target_description("target.xml", &mut |file| {
                self.read_feature_file(file).map_err(|error| {
                    let text = error.to_string();
                    fetch_error.get_or_insert(error);
                    text
                })
            });
            let layout = match (result, fetch_error) {
                (Ok(layout), _) => layout,
                // A transport failure is reported as itself, not as a bad
                // description.
                (Err(_), Some(error)) => return Err(error),
                (Err(error), None) => return Err(error.into()),
            };
            debug!(registers = layout.registers.len(), architecture = ?layout.architecture, "target description");
            self.layout = Some(layout);
        }
        Ok(self.layout.as_ref().expect("layout set above"))
    }

    /// Selects `thread` for register and memory requests (`Hg`).
    pub fn select_thread(&mut self, thread: &ThreadId) -> Result<(), GdbError> {
        let request = format!("Hg{}", thread.text);
        let reply = self.request_ok(request.as_bytes())?;
        expect_ok(&request, &reply)
    }

    /// Reads all registers of the selected thread and returns each
    /// register's name and little-endian bytes, in register-number order.
    ///
    /// Registers that the `g` reply leaves out are read one by one with
    /// `p`, because a stub may send only the first ones. A register the
    /// stub marks unavailable (`xx`) is left out of the result.
    pub fn read_registers(&mut self) -> Result<Vec<(String, Vec<u8>)>, GdbError> {
        let hex = self.request_ok(b"g")?;
        let layout = self.register_layout()?.clone();
        let mut values = Vec::with_capacity(layout.registers.len());
        for (offset, reg) in layout.g_offsets() {
            let start = offset * 2;
            let end = start + reg.len_bytes() * 2;
            let text = match hex.get(start..end) {
                Some(text) => text.to_vec(),
                None => {
                    let request = format!("p{:x}", reg.regnum);
                    match self.request_ok(request.as_bytes()) {
                        Ok(text) => text,
                        Err(GdbError::ErrorReply { .. }) | Err(GdbError::Unsupported { .. }) => {
                            debug!(register = %reg.name, "register not available");
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
            };
            if text.iter().all(|&c| c == b'x') {
                continue;
            }
            let bytes = packet::decode_hex(&text).ok_or_else(|| GdbError::InvalidReply {
                request: format!("g (register {})", reg.name),
                reply: display_packet(&text),
            })?;
            values.push((reg.name.clone(), bytes));
        }
        Ok(values)
    }

    /// Returns the largest memory read one packet can carry.
    pub fn max_read_bytes(&self) -> usize {
        match self.read_packet {
            // A binary reply has one type byte; escapes at most double
            // the rest, so half the packet always fits.
            ReadPacket::Binary => (self.max_packet_bytes - 1) / 2,
            ReadPacket::Hex | ReadPacket::Unknown => self.max_packet_bytes / 2,
        }
    }

    /// Reads `buf.len()` bytes of target memory at `address`, in as few
    /// packets as the packet size allows.
    ///
    /// Uses binary `x` when the stub supports it (`binary-upload+`, or a
    /// probe), and hex `m` otherwise.
    pub fn read_memory(&mut self, address: u64, buf: &mut [u8]) -> Result<(), GdbError> {
        if self.read_packet == ReadPacket::Unknown {
            self.probe_binary_reads(address)?;
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = address.wrapping_add(done as u64);
            let len = (buf.len() - done).min(self.max_read_bytes());
            let received = self.read_memory_packet(at, &mut buf[done..done + len])?;
            done += received;
        }
        Ok(())
    }

    /// Reads like [`GdbClient::read_memory`], but keeps up to `depth`
    /// requests in flight.
    ///
    /// gdb keeps one request outstanding at a time, but a stub that reads
    /// its input sequentially (QEMU's gdbstub does) replies to queued
    /// requests in order. Keeping the queue full saves a round trip
    /// per packet, which is most of the cost of a 2 KiB `m` read.
    pub fn read_memory_pipelined(&mut self, address: u64, buf: &mut [u8], depth: usize) -> Result<(), GdbError> {
        if self.read_packet == ReadPacket::Unknown {
            self.probe_binary_reads(address)?;
        }
        if depth <= 1 {
            return self.read_memory(address, buf);
        }
        self.check_cancel()?;
        self.drain_pending("finishing an interrupted request")?;

        let chunk = self.max_read_bytes();
        let pieces: Vec<(usize, usize)> = (0..buf.len())
            .step_by(chunk)
            .map(|offset| (offset, chunk.min(buf.len() - offset)))
            .collect();
        let binary = self.read_packet == ReadPacket::Binary;
        let mut short_reads = Vec::new();
        let mut sent = 0usize;
        let mut received = 0usize;
        while received < pieces.len() {
            // A failed send is reported for the oldest read still waiting
            // for its reply: that is where the copy stopped.
            let oldest = address.wrapping_add(pieces[received].0 as u64);
            let send_activity = format!("reading memory at {oldest:#x}");
            while sent < pieces.len() && sent - received < depth {
                let (offset, len) = pieces[sent];
                let at = address.wrapping_add(offset as u64);
                let request = format!("{}{at:x},{len:x}", if binary { 'x' } else { 'm' });
                self.send_packet(request.as_bytes(), &send_activity)?;
                self.pending_replies += 1;
                sent += 1;
            }

            let (offset, len) = pieces[received];
            let at = address.wrapping_add(offset as u64);
            let activity = format!("reading memory at {at:#x}");
            let mut reply = self.receive_packet(&activity)?;
            while is_stop_reply(&reply) {
                debug!(reply = %display_packet(&reply), "skipped an asynchronous stop reply");
                reply = self.receive_packet(&activity)?;
            }
            self.pending_replies -= 1;
            received += 1;

            let request = format!("{}{at:x},{len:x}", if binary { 'x' } else { 'm' });
            let reply = check_reply(request.as_bytes(), reply)?;
            let done = decode_memory_reply(&request, &reply, binary, &mut buf[offset..offset + len])?;
            if done < len {
                short_reads.push((offset + done, len - done));
            }
            self.check_cancel()?;
        }

        // A stub may return fewer bytes than requested; fetch the rest one
        // request at a time.
        for (offset, len) in short_reads {
            let at = address.wrapping_add(offset as u64);
            self.read_memory(at, &mut buf[offset..offset + len])?;
        }
        Ok(())
    }

    fn probe_binary_reads(&mut self, address: u64) -> Result<(), GdbError> {
        self.read_packet = if self.features.supports("binary-upload") {
            ReadPacket::Binary
        } else {
            let request = format!("x{address:x},1");
            let reply = self.request(request.as_bytes())?;
            if reply.first() == Some(&b'b') {
                ReadPacket::Binary
            } else {
                ReadPacket::Hex
            }
        };
        debug!(binary = self.read_packet == ReadPacket::Binary, "memory read packets");
        Ok(())
    }

    /// Sends one read and returns how many bytes the stub returned (stubs
    /// may return fewer than requested).
    fn read_memory_packet(&mut self, address: u64, buf: &mut [u8]) -> Result<usize, GdbError> {
        let binary = self.read_packet == ReadPacket::Binary;
        let request = format!("{}{address:x},{:x}", if binary { 'x' } else { 'm' }, buf.len());
        let activity = format!("reading memory at {address:#x}");
        let reply = self.request_for(request.as_bytes(), &activity)?;
        let reply = check_reply(request.as_bytes(), reply)?;
        decode_memory_reply(&request, &reply, binary, buf)
    }

    /// Runs a monitor command (`qRcmd`) and returns its output.
    pub fn monitor(&mut self, command: &str) -> Result<String, GdbError> {
        let request = format!("qRcmd,{}", packet::encode_hex(command.as_bytes()));
        let activity = format!("running monitor command '{command}'");
        let mut output = Vec::new();
        let mut reply = self.request_for(request.as_bytes(), &activity)?;
        self.pending_replies = 1;
        loop {
            match reply.as_slice() {
                b"OK" => break,
                [b'O', hex @ ..] => {
                    let text = packet::decode_hex(hex).ok_or_else(|| GdbError::InvalidReply {
                        request: request.clone(),
                        reply: display_packet(&reply),
                    })?;
                    output.extend_from_slice(&text);
                    if output.len() > MAX_MONITOR_BYTES {
                        return Err(GdbError::InvalidReply {
                            request,
                            reply: format!("more than {MAX_MONITOR_BYTES} bytes of output"),
                        });
                    }
                }
                _ => {
                    self.pending_replies = 0;
                    check_reply(request.as_bytes(), reply)?;
                    break;
                }
            }
            reply = self.receive_packet(&activity)?;
        }
        self.pending_replies = 0;
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// Sends `D`: the stub detaches and resumes the target (QEMU resumes
    /// the VM), then closes the connection. When the stub rejects the
    /// detach, the target is still continued with `c` before the error is
    /// returned, so it does not stay paused.
    pub fn detach(mut self) -> Result<(), GdbError> {
        let result = self.request_detach();
        if result.is_err() {
            // The stop reply to `c` comes only when the target stops again,
            // so none is awaited.
            let _ = self.send_packet(b"c", "continuing the target after a failed detach");
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        result
    }

    fn request_detach(&mut self) -> Result<(), GdbError> {
        let reply = self.request(b"D")?;
        // QEMU keeps the multiprocess mode of an earlier client (gdb asks
        // for it), and then rejects a `D` without a process id with E22.
        let reply = match (&self.process_id, reply.first()) {
            (Some(process), Some(b'E')) => {
                let request = format!("D;{process}");
                let reply = self.request_ok(request.as_bytes())?;
                expect_ok(&request, &reply)?;
                reply
            }
            _ => check_reply(b"D", reply)?,
        };
        expect_ok("D", &reply)
    }

    /// Closes the connection without detaching. QEMU 7.2 then leaves the
    /// VM stopped.
    pub fn close(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Decodes the reply to a memory read into `buf` and returns how many
/// bytes it carried.
fn decode_memory_reply(request: &str, reply: &[u8], binary: bool, buf: &mut [u8]) -> Result<usize, GdbError> {
    let invalid = |text: String| GdbError::InvalidReply {
        request: request.to_owned(),
        reply: text,
    };
    if binary {
        let Some((b'b', data)) = reply.split_first() else {
            return Err(invalid(display_packet(reply)));
        };
        if data.is_empty() || data.len() > buf.len() {
            return Err(invalid(format!("{} bytes", data.len())));
        }
        buf[..data.len()].copy_from_slice(data);
        return Ok(data.len());
    }
    let len = reply.len() / 2;
    if reply.is_empty() || len > buf.len() {
        return Err(invalid(format!("{} hex digits", reply.len())));
    }
    packet::decode_hex_into(reply, &mut buf[..len]).ok_or_else(|| invalid(display_packet(reply)))?;
    Ok(len)
}

/// Returns whether `reply` is a stop reply: `S` or `T` and a two-digit
/// signal number, or `W`/`X` (exit) with one.
fn is_stop_reply(reply: &[u8]) -> bool {
    matches!(reply, [b'S' | b'T' | b'W' | b'X', a, b, ..] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

/// Turns `Enn` into [`GdbError::ErrorReply`] and an empty reply into
/// [`GdbError::Unsupported`].
fn check_reply(request: &[u8], reply: Vec<u8>) -> Result<Vec<u8>, GdbError> {
    if reply.is_empty() {
        return Err(GdbError::Unsupported {
            request: display_packet(request),
        });
    }
    let is_error = reply[0] == b'E'
        && (reply.len() == 3 && reply[1..].iter().all(u8::is_ascii_hexdigit) || reply.get(1) == Some(&b'.'));
    if is_error {
        return Err(GdbError::ErrorReply {
            request: display_packet(request),
            code: display_packet(&reply),
        });
    }
    Ok(reply)
}

fn expect_ok(request: &str, reply: &[u8]) -> Result<(), GdbError> {
    if reply == b"OK" {
        Ok(())
    } else {
        Err(GdbError::InvalidReply {
            request: request.to_owned(),
            reply: display_packet(reply),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_parse() {
        assert_eq!(ThreadId::parse("1").number, Some(1));
        assert_eq!(ThreadId::parse("p01.0a").number, Some(10));
        assert_eq!(ThreadId::parse("p01.0a").text, "p01.0a");
        assert_eq!(ThreadId::parse("p01.0a").process(), Some("01"));
        assert_eq!(ThreadId::parse("2").process(), None);
    }

    #[test]
    fn stop_replies_are_recognized() {
        assert!(is_stop_reply(b"T02thread:01;"));
        assert!(is_stop_reply(b"S05"));
        assert!(!is_stop_reply(b"sstepbits;sstep;PhyMemMode"));
        assert!(!is_stop_reply(b"PacketSize=1000"));
        assert!(!is_stop_reply(b"OK"));
    }

    #[test]
    fn error_replies_are_recognized() {
        assert!(matches!(check_reply(b"m0,1", b"E14".to_vec()), Err(GdbError::ErrorReply { .. })));
        assert!(matches!(check_reply(b"m0,1", Vec::new()), Err(GdbError::Unsupported { .. })));
        // A hex memory reply may start with 'e' or 'E' digits.
        assert_eq!(check_reply(b"m0,2", b"E1f0".to_vec()).unwrap(), b"E1f0");
    }
}
