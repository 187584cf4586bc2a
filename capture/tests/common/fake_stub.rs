//! A scripted GDB stub on 127.0.0.1 that replies like QEMU 7.2 for one
//! vCPU, with knobs for what QEMU does not do: binary `x` reads, a target
//! that only stops on the interrupt byte, and a connection that drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Behaviour of the scripted stub.
#[derive(Debug, Clone)]
pub struct FakeStub {
    /// Guest RAM size reported through `info mtree -f`.
    pub ram_bytes: u64,
    /// Advertise `binary-upload+` and serve `x` requests.
    pub binary_reads: bool,
    /// Leave `?` unanswered until the client sends the interrupt byte.
    pub running: bool,
    /// Close the connection instead of serving this memory read (counted
    /// from 1), if set.
    pub drop_after_memory_reads: Option<usize>,
}

impl Default for FakeStub {
    fn default() -> Self {
        FakeStub {
            ram_bytes: 64 << 20,
            binary_reads: false,
            running: false,
            drop_after_memory_reads: None,
        }
    }
}

/// One message from the client.
enum Incoming {
    Packet(String),
    Interrupt,
}

/// Returns the byte the stub's memory holds at `address`: the low address
/// byte, so every value from 0 to 255, the protocol's reserved bytes
/// included, appears in each 256-byte block.
pub fn memory_byte(address: u64) -> u8 {
    address as u8
}

fn read_incoming(reader: &mut BufReader<TcpStream>) -> Option<Incoming> {
    let mut byte = [0u8; 1];
    loop {
        reader.read_exact(&mut byte).ok()?;
        match byte[0] {
            b'$' => break,
            0x03 => return Some(Incoming::Interrupt),
            _ => {}
        }
    }
    let mut payload = Vec::new();
    reader.read_until(b'#', &mut payload).ok()?;
    payload.pop();
    let mut checksum = [0u8; 2];
    reader.read_exact(&mut checksum).ok()?;
    Some(Incoming::Packet(String::from_utf8_lossy(&payload).into_owned()))
}

fn send_packet(stream: &mut TcpStream, payload: &[u8]) {
    let mut escaped = Vec::with_capacity(payload.len());
    for &byte in payload {
        if matches!(byte, b'$' | b'#' | b'}' | b'*') {
            escaped.push(b'}');
            escaped.push(byte ^ 0x20);
        } else {
            escaped.push(byte);
        }
    }
    let sum = escaped.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    let mut framed = b"+$".to_vec();
    framed.extend_from_slice(&escaped);
    framed.extend_from_slice(format!("#{sum:02x}").as_bytes());
    let _ = stream.write_all(&framed);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_address_length(arguments: &str) -> (u64, usize) {
    let (address, len) = arguments.split_once(',').expect("addr,length");
    (
        u64::from_str_radix(address, 16).expect("hex address"),
        usize::from_str_radix(len, 16).expect("hex length"),
    )
}

impl FakeStub {
    /// Serves one client on `listener` until it detaches or disconnects.
    pub fn serve(self, listener: TcpListener) {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut memory_reads = 0;
        let features = if self.binary_reads {
            "PacketSize=1000;qXfer:features:read+;binary-upload+"
        } else {
            "PacketSize=1000;qXfer:features:read+"
        };
        let mtree = format!(
            "FlatView #0\n AS \"memory\", root: system\n  0000000000000000-{:016x} (prio 0, ram): pc.ram\n",
            self.ram_bytes - 1
        );

        while let Some(incoming) = read_incoming(&mut reader) {
            let request = match incoming {
                Incoming::Interrupt => {
                    send_packet(&mut writer, b"S02");
                    continue;
                }
                Incoming::Packet(request) => request,
            };
            let reply: Vec<u8> = match request.as_str() {
                r if r.starts_with("qSupported") => features.into(),
                "?" if self.running => continue,
                "?" => b"S05".to_vec(),
                "qfThreadInfo" => b"m1".to_vec(),
                "qsThreadInfo" => b"l".to_vec(),
                "Hg1" => b"OK".to_vec(),
                r if r.starts_with("qXfer:features:read:target.xml") => {
                    br#"l<target><feature name="core"><reg name="rip" bitsize="64"/><reg name="cr3" bitsize="64"/></feature></target>"#.to_vec()
                }
                "g" => b"00100000000000000020000000000000".to_vec(),
                "qqemu.Supported" => b"sstepbits;sstep;PhyMemMode".to_vec(),
                "Qqemu.PhyMemMode:1" | "Qqemu.PhyMemMode:0" => b"OK".to_vec(),
                r if r == format!("qRcmd,{}", hex(b"info version")) => {
                    send_packet(&mut writer, format!("O{}", hex(b"7.2.0")).as_bytes());
                    b"OK".to_vec()
                }
                r if r == format!("qRcmd,{}", hex(b"info mtree -f")) => {
                    send_packet(&mut writer, format!("O{}", hex(mtree.as_bytes())).as_bytes());
                    b"OK".to_vec()
                }
                "D" => {
                    send_packet(&mut writer, b"OK");
                    return;
                }
                r if r.starts_with('m') || (r.starts_with('x') && self.binary_reads) => {
                    memory_reads += 1;
                    if self.drop_after_memory_reads.is_some_and(|limit| memory_reads > limit) {
                        return;
                    }
                    let (address, len) = parse_address_length(&r[1..]);
                    let data: Vec<u8> = (address..address + len as u64).map(memory_byte).collect();
                    if r.starts_with('x') {
                        let mut reply = b"b".to_vec();
                        reply.extend_from_slice(&data);
                        reply
                    } else {
                        hex(&data).into_bytes()
                    }
                }
                _ => Vec::new(),
            };
            send_packet(&mut writer, &reply);
        }
    }
}
