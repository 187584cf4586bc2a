//! End-to-end tests of the Linux process core reader on real cores. They
//! build two C programs, one that dereferences a null pointer and one
//! with three threads blocked in known functions, and take cores of them
//! with gdb's `gcore` and from the kernel. gdb reading the same core is the
//! oracle for the threads' registers and the file mappings, `nm` for a
//! global's address and `readelf -n` for the build ids.
//!
//! Needs gcc (Debian package gcc), gdb (gdb) and binutils; the tests fail
//! naming the package when one is missing. The kernel cores need a
//! `/proc/sys/kernel/core_pattern` that writes a file. This test does not
//! change system settings, so when the pattern pipes cores to a handler, it
//! prints a message and checks the gcore cores only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stardump_format::foreign::{open_core, parse_core, Core, LinuxCore};
use stardump_format::{MemoryError, SourceKind, Target};
use stardump_tests::require_program;

/// Seconds after which `timeout` kills gdb even if this process died.
const GDB_DEADLINE_SECS: u32 = 120;
/// Value of the global `global_marker` in both programs.
const MARKER_VALUE: u64 = 0x1122_3344_5566_7788;

const CRASH_SOURCE: &str = r#"
#include <stdio.h>
volatile int *volatile null_pointer;
unsigned long long global_marker = 0x1122334455667788ULL;
int main(void) {
    printf("%llx\n", global_marker);
    fflush(stdout);
    return *null_pointer;
}
"#;

const THREADS_SOURCE: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
unsigned long long global_marker = 0x1122334455667788ULL;
static pthread_barrier_t ready;
__attribute__((noinline)) void wait_in_first_worker(void) { for (;;) pause(); }
__attribute__((noinline)) void wait_in_second_worker(void) { for (;;) pause(); }
__attribute__((noinline)) void wait_in_main(void) { for (;;) pause(); }
static void *first_worker(void *arg) { pthread_barrier_wait(&ready); wait_in_first_worker(); return arg; }
static void *second_worker(void *arg) { pthread_barrier_wait(&ready); wait_in_second_worker(); return arg; }
int main(void) {
    pthread_t threads[2];
    /* Ends the process if the test that started it dies. */
    alarm(120);
    pthread_barrier_init(&ready, 0, 3);
    pthread_create(&threads[0], 0, first_worker, 0);
    pthread_create(&threads[1], 0, second_worker, 0);
    pthread_barrier_wait(&ready);
    puts("ready");
    fflush(stdout);
    wait_in_main();
}
"#;

/// A started program; dropping it kills it by PID.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Compiles `source` into `dir/name` with debug info and a build id.
fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let gcc = require_program("gcc", "gcc");
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).unwrap();
    let binary = dir.join(name);
    let status = Command::new(gcc)
        .args(["-g", "-O0", "-pthread", "-Wl,--build-id", "-o"])
        .arg(&binary)
        .arg(&source_path)
        .status()
        .expect("cannot run gcc");
    assert!(status.success(), "gcc failed to build {name}");
    binary
}

/// Runs gdb in batch mode with `args` under a deadline and returns stdout.
fn run_gdb(args: &[&str], program: &Path, core: Option<&Path>) -> String {
    let gdb = require_program("gdb", "gdb");
    require_program("timeout", "coreutils");
    let mut command = Command::new("timeout");
    command.args(["-s", "KILL", &GDB_DEADLINE_SECS.to_string()]).arg(gdb).args(["-batch", "-nx"]);
    for arg in args {
        command.args(["-ex", arg]);
    }
    command.arg(program);
    if let Some(core) = core {
        command.arg(core);
    }
    let output = command.stdin(Stdio::null()).output().expect("cannot run gdb");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the rip and rsp that gdb reports for each thread of `core`, keyed by LWP.
fn gdb_thread_registers(program: &Path, core: &Path) -> BTreeMap<u64, (u64, u64)> {
    let output = run_gdb(&["thread apply all info registers rip rsp"], program, core.into());
    let mut threads = BTreeMap::new();
    let mut lwp = None;
    let mut rip = None;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("Thread ").and_then(|rest| rest.split("(LWP ").nth(1)) {
            lwp = rest.split(')').next().and_then(|n| n.parse::<u64>().ok());
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else { continue };
        let Some(value) = value.strip_prefix("0x").and_then(|hex| u64::from_str_radix(hex, 16).ok()) else {
            continue;
        };
        match name {
            "rip" => rip = Some(value),
            "rsp" => {
                let lwp = lwp.unwrap_or_else(|| panic!("gdb printed rsp outside a thread:\n{output}"));
                threads.insert(lwp, (rip.take().expect("gdb prints rip before rsp"), value));
            }
            _ => {}
        }
    }
    assert!(!threads.is_empty(), "no registers parsed from gdb's output:\n{output}");
    threads
}

/// Returns the file mappings that gdb's `info proc mappings` lists for
/// `core`, as (start, end, file offset, path).
fn gdb_mappings(program: &Path, core: &Path) -> Vec<(u64, u64, u64, String)> {
    let output = run_gdb(&["info proc mappings"], program, core.into());
    let hex = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok();
    let mut mappings = Vec::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 || !fields[0].starts_with("0x") {
            continue;
        }
        if let (Some(start), Some(end), Some(offset)) = (hex(fields[0]), hex(fields[1]), hex(fields[3])) {
            mappings.push((start, end, offset, fields[4].to_string()));
        }
    }
    assert!(!mappings.is_empty(), "no mappings parsed from gdb's output:\n{output}");
    mappings
}

/// Returns the build id that `readelf -n` prints for `file`, as bytes.
fn readelf_build_id(file: &Path) -> Vec<u8> {
    let readelf = require_program("readelf", "binutils");
    let output = Command::new(readelf).arg("-n").arg(file).output().expect("cannot run readelf");
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("readelf -n {} printed no build id:\n{text}", file.display()));
    (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap()).collect()
}

/// Returns the value of symbol `name` in `nm`'s output for `binary`.
fn nm_address(binary: &Path, name: &str) -> u64 {
    let nm = require_program("nm", "binutils");
    let output = Command::new(nm).arg(binary).output().expect("cannot run nm");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 3 && fields[2] == name).then(|| u64::from_str_radix(fields[0], 16).unwrap())
        })
        .unwrap_or_else(|| panic!("nm lists no {name} in {}", binary.display()))
}

fn open_linux_core(path: &Path) -> LinuxCore {
    match open_core(path).unwrap_or_else(|error| panic!("cannot open {}: {error:?}", path.display())) {
        Core::LinuxCore(core) => core,
        other => panic!("{} opened as {}, expected a Linux core", path.display(), other.format_name()),
    }
}

/// Checks everything the reader gets from `core_path`, a core of
/// `program` with `expected_threads` threads.
fn check_core(program: &Path, core_path: &Path, expected_threads: usize) {
    let core = open_linux_core(core_path);
    let label = core_path.display().to_string();

    let metadata = core.metadata();
    assert_eq!(metadata.source_kind, SourceKind::LinuxCore, "{label}");
    let command: String = program.file_name().unwrap().to_string_lossy().chars().take(15).collect();
    assert_eq!(metadata.target_name, format!("{command} (pid {})", core.pid().unwrap()), "{label}");

    // Threads and their registers, against gdb reading the same core.
    let gdb_threads = gdb_thread_registers(program, core_path);
    assert_eq!(core.vcpus().len(), expected_threads, "{label}: thread count");
    assert_eq!(gdb_threads.len(), expected_threads, "{label}: gdb's thread count");
    for (index, vcpu) in core.vcpus().iter().enumerate() {
        assert_eq!(vcpu.id as usize, index, "{label}");
        let lwp = vcpu.thread_id.expect("every NT_PRSTATUS has a pid");
        let &(rip, rsp) = gdb_threads.get(&lwp).unwrap_or_else(|| panic!("{label}: gdb has no LWP {lwp}"));
        assert_eq!(vcpu.rip, rip, "{label}: rip of LWP {lwp}");
        assert_eq!(vcpu.rsp, rsp, "{label}: rsp of LWP {lwp}");
        assert!(vcpu.present.general, "{label}: general registers of LWP {lwp}");
        assert!(vcpu.present.segment_bases, "{label}: segment bases of LWP {lwp}");
        assert!(!vcpu.present.control, "{label}: a process core has no control registers");
        assert_ne!(vcpu.fs_base, 0, "{label}: fs_base of LWP {lwp} holds the thread pointer");
    }

    // File mappings, against gdb's view of NT_FILE.
    let expected: Vec<(u64, u64, u64, String)> = gdb_mappings(program, core_path);
    let found: Vec<(u64, u64, u64, String)> =
        core.file_mappings().iter().map(|m| (m.start, m.end, m.file_offset, m.path.clone())).collect();
    assert_eq!(found, expected, "{label}: file mappings");
    let program_path = program.canonicalize().unwrap().display().to_string();
    assert!(found.iter().any(|m| m.3 == program_path), "{label}: no mapping of {program_path}");
    let libc = core
        .file_mappings()
        .iter()
        .find(|m| m.file_offset == 0 && m.path.contains("/libc.so"))
        .unwrap_or_else(|| panic!("{label}: no mapping of libc at file offset 0"));

    // Build ids read through memory, against readelf on the files.
    let executable = core.executable().expect("the auxiliary vector points into the executable");
    assert_eq!(executable.path, program_path, "{label}");
    let program_build_id = readelf_build_id(program);
    assert_eq!(executable.build_id.as_ref(), Some(&program_build_id), "{label}: executable build id");
    assert_eq!(metadata.image_build_id.as_ref(), Some(&program_build_id), "{label}: image build id");
    assert_eq!(libc.build_id, Some(readelf_build_id(Path::new(&libc.path))), "{label}: libc build id");
    assert!(core.file_mappings().iter().filter(|m| m.file_offset != 0).all(|m| m.build_id.is_none()), "{label}");

    // A global of the position-independent executable: its first PT_LOAD
    // has p_vaddr 0, so the symbol value is an offset from the mapping.
    let marker_address = executable.start + nm_address(program, "global_marker");
    let mut value = [0u8; 8];
    core.read_virtual(0, marker_address, &mut value).unwrap();
    assert_eq!(u64::from_le_bytes(value), MARKER_VALUE, "{label}: global_marker");
    let mut physical = [0u8; 8];
    core.read_physical(marker_address, &mut physical).unwrap();
    assert_eq!(physical, value, "{label}: read_physical reads the same address space");

    // The auxiliary vector: AT_PAGESZ (6) is 4096 on x86_64.
    assert!(core.auxv().contains(&(6, 4096)), "{label}: auxv {:x?}", core.auxv());

    // libc's code is in a file mapping but neither writer stores it.
    let libc_text = core
        .file_mappings()
        .iter()
        .find(|m| m.path == libc.path && m.file_offset != 0)
        .expect("libc has more than one mapping");
    let mut byte = [0u8; 1];
    assert_eq!(
        core.read_virtual(0, libc_text.start, &mut byte),
        Err(MemoryError::NotCaptured { address: libc_text.start, len: 1 }),
        "{label}: libc code at {:#x}",
        libc_text.start
    );
    let mapped_bytes: u64 = core.memory_map().iter().map(|range| range.len_bytes).sum();
    assert!(mapped_bytes > 0, "{label}: empty memory map");
}

/// Returns the path where the kernel writes the core of process `pid`
/// running `program`, from `core_pattern`. Returns `None`, after printing
/// why, when this test cannot predict or read that path.
fn kernel_core_path(dir: &Path, program: &Path, pid: u32) -> Option<PathBuf> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim_end();
    if pattern.starts_with('|') {
        eprintln!("core_pattern pipes cores to {pattern:?}; checking gcore cores only");
        return None;
    }
    let command: String = program.file_name().unwrap().to_string_lossy().chars().take(15).collect();
    let mut name = String::new();
    let mut specifiers = pattern.chars();
    let mut has_pid = false;
    while let Some(c) = specifiers.next() {
        if c != '%' {
            name.push(c);
            continue;
        }
        match specifiers.next() {
            Some('p') | Some('P') => {
                has_pid = true;
                name.push_str(&pid.to_string());
            }
            Some('e') => name.push_str(&command),
            Some('%') => name.push('%'),
            other => {
                eprintln!("core_pattern {pattern:?} uses %{other:?}, which this test does not expand; checking gcore cores only");
                return None;
            }
        }
    }
    let uses_pid = std::fs::read_to_string("/proc/sys/kernel/core_uses_pid").map(|v| v.trim() == "1").unwrap_or(false);
    if uses_pid && !has_pid {
        name.push_str(&format!(".{pid}"));
    }
    Some(dir.join(name))
}

/// Starts `program` in `dir` with an unlimited core size limit.
fn spawn_with_cores(dir: &Path, program: &Path, stdout: Stdio) -> ChildGuard {
    let script = format!("ulimit -c unlimited && exec '{}'", program.display());
    let child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .expect("cannot start sh");
    ChildGuard(child)
}

/// Waits for the child to end by a signal that dumped core, and returns
/// the core's path, or `None` when the kernel's core pattern cannot be used.
fn wait_for_kernel_core(dir: &Path, program: &Path, child: &mut ChildGuard) -> Option<PathBuf> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.0.id();
    let status = child.0.wait().unwrap();
    let path = kernel_core_path(dir, program, pid)?;
    assert!(
        status.core_dumped(),
        "{} ended with {status} without dumping core to {}",
        program.display(),
        path.display()
    );
    assert!(path.is_file(), "the kernel reported a core dump but {} does not exist", path.display());
    Some(path)
}

#[test]
fn crashed_process_cores_match_gdb() {
    let dir = tempfile::tempdir().unwrap();
    let program = compile(dir.path(), "crash", CRASH_SOURCE);

    let gcore_path = dir.path().join("crash.gcore");
    let gcore_command = format!("gcore {}", gcore_path.display());
    let output = run_gdb(&["run", &gcore_command], &program, None);
    assert!(gcore_path.is_file(), "gdb wrote no core:\n{output}");
    check_core(&program, &gcore_path, 1);
    let core = open_linux_core(&gcore_path);
    assert_eq!(core.thread_signals(), &[11], "gcore stopped at SIGSEGV");

    let mut child = spawn_with_cores(dir.path(), &program, Stdio::null());
    if let Some(kernel_core) = wait_for_kernel_core(dir.path(), &program, &mut child) {
        check_core(&program, &kernel_core, 1);
        let core = open_linux_core(&kernel_core);
        assert_eq!(core.thread_signals(), &[11], "the kernel core records SIGSEGV");
        // The kernel keeps the ELF header page of libc's first mapping
        // but not the rest: p_filesz is less than p_memsz there.
        assert!(core.segments().iter().any(|s| s.captured_len < s.memory_len), "no partly captured segment");
    }
}

#[test]
fn threaded_process_cores_match_gdb() {
    let dir = tempfile::tempdir().unwrap();
    let program = compile(dir.path(), "threads", THREADS_SOURCE);
    require_program("gcore", "gdb");

    let mut child = spawn_with_cores(dir.path(), &program, Stdio::piped());
    let pid = child.0.id();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let start = Instant::now();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the threaded program did not start");
    assert!(start.elapsed() < Duration::from_secs(60));

    // gcore attaches to the running process and detaches again.
    let prefix = dir.path().join("threads");
    let gcore = require_program("gcore", "gdb");
    let output = Command::new("timeout")
        .args(["-s", "KILL", &GDB_DEADLINE_SECS.to_string()])
        .arg(gcore)
        .arg("-o")
        .arg(&prefix)
        .arg(pid.to_string())
        .output()
        .expect("cannot run gcore");
    let gcore_path = dir.path().join(format!("threads.{pid}"));
    assert!(gcore_path.is_file(), "gcore wrote no core: {}", String::from_utf8_lossy(&output.stderr));
    check_core(&program, &gcore_path, 3);

    // The three threads wait in the three known functions.
    let backtraces = run_gdb(&["thread apply all bt"], &program, Some(&gcore_path));
    for function in ["wait_in_main", "wait_in_first_worker", "wait_in_second_worker"] {
        assert!(backtraces.contains(function), "no thread in {function}:\n{backtraces}");
    }
    let core = open_linux_core(&gcore_path);
    let thread_ids: Vec<u64> = core.vcpus().iter().map(|vcpu| vcpu.thread_id.unwrap()).collect();
    assert!(thread_ids.contains(&u64::from(pid)), "the main thread's id is the pid: {thread_ids:?}");

    // SIGABRT makes the kernel dump the same process with all its threads.
    // SAFETY: kill has no memory-safety preconditions; the PID is our child's.
    let result = unsafe { libc::kill(pid as libc::pid_t, libc::SIGABRT) };
    assert_eq!(result, 0, "cannot send SIGABRT to {pid}");
    if let Some(kernel_core) = wait_for_kernel_core(dir.path(), &program, &mut child) {
        check_core(&program, &kernel_core, 3);
        let core = open_linux_core(&kernel_core);
        assert_eq!(core.thread_signals()[0], 6, "the first thread is the one that took SIGABRT");
    }
}

/// Returns the file range of the first `PT_NOTE` segment of an ELF64 file.
fn note_segment(file: &[u8]) -> std::ops::Range<usize> {
    let u16_at = |at: usize| usize::from(u16::from_le_bytes(file[at..at + 2].try_into().unwrap()));
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phnum) = (u64_at(32), u16_at(56));
    (0..phnum)
        .map(|index| phoff + index * 56)
        .find(|&header| file[header..header + 4] == 4u32.to_le_bytes())
        .map(|header| u64_at(header + 8)..u64_at(header + 8) + u64_at(header + 32))
        .expect("a core file has a PT_NOTE segment")
}

/// Opens `bytes` and, when that succeeds, reads what the analyzer reads
/// first. Any damage must give an error, never a panic.
fn open_and_read(bytes: Vec<u8>) {
    let Ok(core) = parse_core(Path::new("damaged.core"), bytes) else { return };
    let mut buf = vec![0u8; 4096];
    for vcpu in core.vcpus() {
        let _ = core.read_virtual(0, vcpu.rsp, &mut buf);
    }
    for range in core.memory_map() {
        let _ = core.read_physical(range.start, &mut buf);
    }
    if let Core::LinuxCore(process) = &core {
        for mapping in process.file_mappings() {
            let _ = process.read_virtual(0, mapping.start, &mut buf);
        }
    }
}

#[test]
fn damaged_gcore_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let program = compile(dir.path(), "crash", CRASH_SOURCE);
    let gcore_path = dir.path().join("crash.gcore");
    let gcore_command = format!("gcore {}", gcore_path.display());
    let output = run_gdb(&["run", &gcore_command], &program, None);
    let original = std::fs::read(&gcore_path).unwrap_or_else(|error| panic!("gdb wrote no core ({error}):\n{output}"));

    // Truncated at every 1/64 of its length.
    for step in 0..64 {
        open_and_read(original[..original.len() * step / 64].to_vec());
    }

    // Every aligned u32 of the notes overwritten by a u64 of all ones, zero
    // or 2^31, one at a time: this hits the counts, sizes and offsets of
    // every note the reader decodes.
    let core = open_linux_core(&gcore_path);
    for at in note_segment(&original).step_by(4) {
        for value in [u64::MAX, 0, 0x8000_0000] {
            let mut damaged = original.clone();
            let end = (at + 8).min(damaged.len());
            damaged[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            open_and_read(damaged);
        }
    }

    // Every program header field set to all ones, one at a time.
    for at in (64..64 + 56 * core.segments().len() + 56).step_by(8) {
        let mut damaged = original.clone();
        damaged[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        open_and_read(damaged);
    }
}
