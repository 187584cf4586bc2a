//! Helpers shared by the capture tests: the guest, the capture binary, the
//! unikernel's symbols and live checks of whether QEMU's VM is running.

#![allow(dead_code)]

pub mod fake_stub;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use object::{Object, ObjectSymbol};
use stardump_capture::gdb::ClientOptions;
use stardump_capture::GdbTarget;
use stardump_format::Target;
use stardump_tests::build::unikernel_image;
use stardump_tests::qemu::{GuestConfig, Qemu};

/// The unikernel's higher-half base: virtual = KERNEL_VMA + physical.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
/// The line the guest prints once it spins in `spin_here`.
pub const SPIN_MARKER: &str = "stardust-test: reached mode=spin";
const VARIANT: &str = "O0-fp";

/// Starts the test unikernel in `mode=spin` and waits until it spins.
pub fn start_spinning_guest(memory_mib: u32, vcpus: u32) -> Qemu {
    let config = GuestConfig {
        kernel: unikernel_image(VARIANT),
        command_line: "mode=spin".to_owned(),
        memory_mib,
        vcpus,
    };
    let mut qemu = Qemu::start(&config).expect("starting QEMU");
    qemu.wait_for_serial(SPIN_MARKER, Duration::from_secs(60)).expect("guest did not reach spin mode");
    qemu
}

/// Returns the address of `name` in the unikernel image.
pub fn symbol(name: &str) -> u64 {
    let data = std::fs::read(unikernel_image(VARIANT)).expect("reading the unikernel image");
    let file = object::File::parse(&*data).expect("parsing the unikernel image");
    file.symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .unwrap_or_else(|| panic!("symbol {name} not in the unikernel image"))
        .address()
}

/// Returns the capture binary built by cargo for these tests.
pub fn capture_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stardump-capture"))
}

/// Runs the capture binary and returns its output.
pub fn run_capture(args: &[&str]) -> Output {
    Command::new(capture_binary()).args(args).output().expect("running stardump-capture")
}

/// Returns the names of the files in `dir`.
pub fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("listing the output directory")
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Reads a little-endian u64 at `virtual_address` through vCPU 0's page
/// tables.
pub fn read_u64(target: &dyn Target, virtual_address: u64) -> u64 {
    let cr3 = target.vcpus()[0].cr3;
    let mut bytes = [0u8; 8];
    target.read_virtual(cr3, virtual_address, &mut bytes).expect("reading a u64");
    u64::from_le_bytes(bytes)
}

/// Attaches to the guest's stub with the library client, retrying while
/// QEMU still serves the previous client.
pub fn attach(port: u16) -> GdbTarget {
    let address = format!("127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        match GdbTarget::attach(&address, ClientOptions::default()) {
            Ok(target) => return target,
            Err(error) if started.elapsed() < Duration::from_secs(10) => {
                eprintln!("attach failed, retrying: {error}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("cannot attach to 127.0.0.1:{port}: {error}"),
        }
    }
}

/// Returns whether QEMU's VM was running when a client connected.
///
/// QEMU 7.2 stops a running VM when a gdb client connects and then sends a
/// stop reply (`T02...`) on its own. For a stopped VM it sends nothing until
/// a request arrives. The probe detaches (`D`) afterwards, which resumes the VM.
pub fn vm_was_running(port: u16) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the gdbstub");
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut received = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_millis(700) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => received.extend_from_slice(&buf[..len]),
            Err(_) => {}
        }
    }
    stream.write_all(b"$D#44").expect("sending D");
    // Wait for QEMU to acknowledge and reply before closing.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(len) if buf[..len].windows(3).any(|w| w == b"$OK") => break,
            _ => {}
        }
    }
    received.windows(4).any(|w| w == b"$T02")
}
