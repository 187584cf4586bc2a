//! End-to-end test of the QEMU dump reader. It boots the test unikernel
//! under QEMU until it halts after a #UD and writes a core with QMP
//! `dump-guest-memory` (`paging=false`). Then it checks the registers and
//! memory that `open_core` reads back against the serial log and the
//! kernel image.
//!
//! Needs qemu-system-x86_64 (Debian package qemu-system-x86), gcc, binutils
//! and make; the test fails naming the package when one is missing.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object::{Object, ObjectSection, ObjectSymbol};
use stardump_format::foreign::{open_core, Core, OpenError};
use stardump_format::{MemoryError, SourceKind, Target};
use stardump_tests::build::unikernel_image;
use stardump_tests::require_program;

/// Seconds after which `timeout` kills QEMU even if this process died.
const QEMU_DEADLINE_SECS: u32 = 120;
/// Serial line the unikernel prints once the crashed vCPU has halted.
const HALTED_MARKER: &str = "stardust-test: halted in crash_halt";
/// Start of the higher-half kernel image (`-mcmodel=kernel`).
const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// A QEMU guest with a QMP socket; dropping it ends QEMU by PID.
struct QmpGuest {
    child: Child,
    serial_path: PathBuf,
    qmp_path: PathBuf,
}

impl QmpGuest {
    fn start(kernel: &Path, dir: &Path) -> QmpGuest {
        let qemu = require_program("qemu-system-x86_64", "qemu-system-x86");
        require_program("timeout", "coreutils");
        let serial_path = dir.join("serial.log");
        let qmp_path = dir.join("qmp.sock");
        let child = Command::new("timeout")
            .args(["-s", "KILL", &QEMU_DEADLINE_SECS.to_string()])
            .arg(qemu)
            .args(["-machine", "microvm", "-accel", "tcg", "-cpu", "qemu64,+pdpe1gb"])
            .args(["-m", "64M", "-smp", "2", "-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial_path.display()))
            .arg("-kernel")
            .arg(kernel)
            .args(["-append", "mode=ud2"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start qemu-system-x86_64 under timeout");
        QmpGuest { child, serial_path, qmp_path }
    }

    fn serial_output(&self) -> String {
        std::fs::read(&self.serial_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    fn wait_for_serial(&mut self, marker: &str) -> String {
        let start = Instant::now();
        loop {
            let output = self.serial_output();
            if output.contains(marker) {
                return output;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("qemu exited with {status} before printing {marker:?}; serial output:\n{output}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {marker:?}; serial output:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs QMP `dump-guest-memory` into `output`, with or without `paging`.
    fn dump_guest_memory(&self, output: &Path, paging: bool) {
        let stream = UnixStream::connect(&self.qmp_path).expect("cannot connect to the QMP socket");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        reader.read_line(&mut greeting).expect("no QMP greeting");
        assert!(greeting.contains("\"QMP\""), "unexpected QMP greeting: {greeting}");
        let commands = [
            r#"{"execute": "qmp_capabilities"}"#.to_string(),
            format!(
                r#"{{"execute": "dump-guest-memory", "arguments": {{"paging": {paging}, "protocol": "file:{}"}}}}"#,
                output.display()
            ),
        ];
        for command in commands {
            writeln!(writer, "{command}").unwrap();
            // Events (STOP, DUMP_COMPLETED, RESUME) may come before the reply.
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("no QMP reply");
                assert!(!line.contains("\"error\""), "QMP command {command} failed: {line}");
                if line.contains("\"return\"") {
                    break;
                }
            }
        }
    }
}

impl Drop for QmpGuest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: the pid is our own unreaped child, so it cannot have been
        // reused. SIGTERM makes `timeout` end QEMU too.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Returns the address and bytes of the symbol `name` in the image.
fn symbol_bytes(image: &[u8], name: &str) -> (u64, Vec<u8>) {
    let file = object::File::parse(image).expect("the kernel image parses");
    let symbol = file
        .symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .unwrap_or_else(|| panic!("symbol {name} not in the kernel image"));
    let section = file.section_by_index(symbol.section_index().expect("symbol has a section")).unwrap();
    let bytes =
        section.data_range(symbol.address(), symbol.size()).expect("section data").expect("symbol lies in its section");
    (symbol.address(), bytes.to_vec())
}

/// Returns the cr3 value the unikernel printed after the exception.
fn printed_cr3(serial: &str) -> u64 {
    let value = serial
        .split_whitespace()
        .find_map(|word| word.strip_prefix("cr3=0x"))
        .unwrap_or_else(|| panic!("no cr3= in the serial output:\n{serial}"));
    u64::from_str_radix(value, 16).unwrap()
}

#[test]
fn qemu_dump_reads_registers_and_memory() {
    let kernel = unikernel_image("O2-fp");
    let dir = tempfile::tempdir().unwrap();
    let dump_path = dir.path().join("guest.core");
    let mut guest = QmpGuest::start(&kernel, dir.path());
    let serial = guest.wait_for_serial(HALTED_MARKER);
    guest.dump_guest_memory(&dump_path, false);
    let paging_dump_path = dir.path().join("guest-paging.core");
    guest.dump_guest_memory(&paging_dump_path, true);
    drop(guest);

    // A dump with paging=true has a segment per virtual mapping: rejected.
    let error = open_core(&paging_dump_path).expect_err("a paging=true dump is rejected");
    let message = format!("{error}: {}", std::error::Error::source(&error).expect("error has a cause"));
    assert!(message.contains("paging=false"), "{message}");

    let core = open_core(&dump_path).expect("open_core reads the QEMU dump");
    assert!(matches!(core, Core::QemuDump(_)), "recognized as {}", core.format_name());
    let metadata = core.metadata();
    assert_eq!(metadata.source_kind, SourceKind::QemuDump);
    assert_eq!(metadata.target_name, "guest.core");

    let vcpus = core.vcpus();
    assert_eq!(vcpus.iter().map(|vcpu| vcpu.id).collect::<Vec<_>>(), vec![0, 1]);
    let cr3 = printed_cr3(&serial);
    let image = std::fs::read(&kernel).unwrap();
    let (crash_halt, crash_halt_code) = symbol_bytes(&image, "crash_halt");
    let crashed = &vcpus[0];
    assert!(crashed.present.control, "the QEMU note provides control registers");
    assert_eq!(crashed.cr3 & !0xfff, cr3, "vCPU 0 cr3");
    assert!(crashed.rip >= KERNEL_BASE, "vCPU 0 rip {:#x} is in the higher half", crashed.rip);
    assert!(
        (crash_halt..crash_halt + crash_halt_code.len() as u64).contains(&crashed.rip),
        "vCPU 0 rip {:#x} is in crash_halt at {crash_halt:#x}",
        crashed.rip
    );
    assert_ne!(crashed.cr0 & (1 << 31), 0, "cr0.PG is set");
    assert_ne!(crashed.gs_base, 0, "per-CPU data sits behind gs_base");
    for vcpu in vcpus {
        assert_eq!(vcpu.cr3 & !0xfff, cr3, "vCPU {} shares the kernel page tables", vcpu.id);
        assert!(vcpu.rip >= KERNEL_BASE, "vCPU {} rip {:#x}", vcpu.id, vcpu.rip);
    }

    // The code of crash_halt read through the page tables equals the image's.
    let mut code = vec![0u8; crash_halt_code.len()];
    core.read_virtual(crashed.cr3, crash_halt, &mut code).expect("read crash_halt's code");
    assert_eq!(code, crash_halt_code);

    // So does the text of the marker string, wherever the compiler put it.
    let needle = HALTED_MARKER.as_bytes();
    let text_start = image.windows(needle.len()).position(|w| w == needle).expect("marker in the image");
    let file = object::File::parse(&*image).unwrap();
    let section = file
        .sections()
        .find(|s| s.file_range().is_some_and(|(off, len)| (off..off + len).contains(&(text_start as u64))))
        .expect("marker string lies in a section");
    let marker_address = section.address() + (text_start as u64 - section.file_range().unwrap().0);
    let mut marker = vec![0u8; needle.len()];
    core.read_virtual(crashed.cr3, marker_address, &mut marker).expect("read the marker string");
    assert_eq!(marker, needle);

    // RAM ends at 64 MiB; the next range is the BIOS at 0xffff0000.
    let ranges = core.memory_map();
    assert_eq!(ranges.first().map(|r| r.start), Some(0));
    assert!(ranges.iter().any(|r| r.start + r.len_bytes == 64 << 20), "{ranges:?}");
    let mut byte = [0u8; 1];
    assert_eq!(core.read_physical(64 << 20, &mut byte), Err(MemoryError::NotCaptured { address: 64 << 20, len: 1 }));
    let mut straddling = [0u8; 16];
    assert_eq!(
        core.read_physical((64 << 20) - 8, &mut straddling),
        Err(MemoryError::NotCaptured { address: 64 << 20, len: 16 })
    );
}

#[test]
fn open_core_rejects_kernel_image() {
    let kernel = unikernel_image("O2-fp");
    let error = open_core(&kernel).expect_err("an executable is not a core file");
    assert!(matches!(error, OpenError::UnknownFormat { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("ET_EXEC"), "{message}");
    assert!(message.contains(&kernel.display().to_string()), "{message}");
}

#[test]
fn open_core_rejects_text_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello").unwrap();
    let error = open_core(&path).expect_err("text is not a core file");
    assert!(error.to_string().contains("no ELF magic"), "{error}");
}
