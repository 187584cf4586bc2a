//! The capture flow of a Linux process: stop every thread, read registers,
//! the memory map and memory, detach, then find build ids and compress and
//! write the snapshot while the process runs again.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stardump_format::{
    FileMapping, MemoryRange, Metadata, RegisterGroups, SnapshotWriter, SourceKind, VcpuState, WriterOptions,
};
use tracing::{info, info_span, warn};

use super::attach::{check_cancel, TracedProcess};
use super::build_id::mapping_build_id;
use super::error::PtraceError;
use super::maps::{parse_maps, MapEntry};
use super::memory::{copy_mappings, ProcessCopy, ProcessMemory};
use super::sys;
use crate::capture::CaptureSummary;
use crate::memory::{MemoryBudget, MemoryCopy, PAGE_SIZE};

/// Target, output and settings of one process capture.
#[derive(Debug, Clone)]
pub struct ProcessCaptureOptions {
    /// The process id.
    pub pid: i32,
    /// The snapshot's final path.
    pub output: PathBuf,
    /// Leave the process stopped (SIGSTOP) instead of letting it run.
    pub leave_stopped: bool,
    /// How long to wait for each thread to stop.
    pub timeout: Duration,
    /// Set to a signal number by the caller's signal handler.
    pub cancel: Option<Arc<AtomicUsize>>,
    /// Compression settings.
    pub writer: WriterOptions,
    /// Bytes of page data held in memory before the rest is spilled to a
    /// file next to the output.
    pub memory_budget: u64,
}

/// Registers, thread names, memory map and memory, read while the process
/// was stopped.
struct StoppedState {
    vcpus: Vec<VcpuState>,
    thread_names: Vec<String>,
    maps: Vec<MapEntry>,
    copy: ProcessCopy,
    /// Path of the executable, from `/proc/PID/exe`.
    executable: Option<String>,
}

/// Converts ptrace's register block into the model.
fn vcpu_from_registers(id: u32, tid: i32, regs: &libc::user_regs_struct) -> VcpuState {
    // The selectors are 16-bit values that user_regs_struct widens to 64.
    let selector = |value: u64| value as u16;
    VcpuState {
        id,
        thread_id: Some(tid as u64),
        rax: regs.rax,
        rbx: regs.rbx,
        rcx: regs.rcx,
        rdx: regs.rdx,
        rsi: regs.rsi,
        rdi: regs.rdi,
        rbp: regs.rbp,
        rsp: regs.rsp,
        r8: regs.r8,
        r9: regs.r9,
        r10: regs.r10,
        r11: regs.r11,
        r12: regs.r12,
        r13: regs.r13,
        r14: regs.r14,
        r15: regs.r15,
        rip: regs.rip,
        rflags: regs.eflags,
        cs: selector(regs.cs),
        ss: selector(regs.ss),
        ds: selector(regs.ds),
        es: selector(regs.es),
        fs: selector(regs.fs),
        gs: selector(regs.gs),
        fs_base: regs.fs_base,
        gs_base: regs.gs_base,
        present: RegisterGroups { general: true, segment_bases: true, control: false },
        ..VcpuState::default()
    }
}

/// Returns the name of thread `tid` from `/proc/PID/task/TID/comm`, with
/// bytes that are not UTF-8 replaced. A thread that exited has none.
fn thread_name(pid: i32, tid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
    let name = String::from_utf8_lossy(&bytes);
    Some(name.strip_suffix('\n').unwrap_or(&name).to_owned())
}

/// Checks that `pid` names a running process other than this one.
fn check_process(pid: i32) -> Result<(), PtraceError> {
    if pid <= 0 {
        return Err(PtraceError::ProcessNotFound { pid });
    }
    if pid as u32 == std::process::id() {
        return Err(PtraceError::OwnProcess { pid });
    }
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let status = match std::fs::read_to_string(&path) {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(PtraceError::ProcessNotFound { pid }),
        Err(source) => return Err(PtraceError::Proc { path, source }),
    };
    let field = |name: &str| status.lines().find_map(|line| line.strip_prefix(name)).map(str::trim);
    if let Some(tgid) = field("Tgid:").and_then(|value| value.parse::<i32>().ok()) {
        if tgid != pid {
            return Err(PtraceError::NotProcess { pid, tgid });
        }
    }
    if field("State:").is_some_and(|state| state.starts_with('Z')) {
        return Err(PtraceError::Zombie { pid });
    }
    Ok(())
}

/// Reads `/proc/PID/maps`.
fn read_maps(pid: i32) -> Result<Vec<MapEntry>, PtraceError> {
    let path = PathBuf::from(format!("/proc/{pid}/maps"));
    let text = std::fs::read_to_string(&path).map_err(|source| PtraceError::Proc { path: path.clone(), source })?;
    parse_maps(&path, &text)
}

/// Reads registers, names, the memory map and memory of the stopped process.
fn read_stopped(
    process: &TracedProcess,
    budget: MemoryBudget,
    cancel: Option<&Arc<AtomicUsize>>,
) -> Result<StoppedState, PtraceError> {
    let pid = process.pid();
    let mut vcpus = Vec::new();
    let mut thread_names = Vec::new();
    for tid in process.thread_ids() {
        let registers = match sys::get_registers(tid) {
            Ok(registers) => registers,
            // SIGKILL ends even a stopped thread.
            Err(errno) if errno.0 == libc::ESRCH => {
                warn!(tid, "thread exited while stopped; leaving it out");
                continue;
            }
            Err(errno) => return Err(PtraceError::Call { call: "PTRACE_GETREGS", tid, errno }),
        };
        vcpus.push(vcpu_from_registers(vcpus.len() as u32, tid, &registers));
        thread_names.push(thread_name(pid, tid).unwrap_or_default());
    }
    if vcpus.is_empty() {
        return Err(PtraceError::ProcessExited { pid });
    }

    let maps = read_maps(pid)?;
    let mut memory = ProcessMemory::open(pid);
    let copy = copy_mappings(&mut memory, &maps, budget, cancel)?;
    let totals = copy.totals;
    let (held_bytes, spilled_bytes) = copy.pages.held_and_spilled_bytes();
    info!(
        held_bytes,
        spilled_bytes,
        mappings_read = totals.mappings_read,
        mappings_skipped = totals.mappings_skipped,
        pages_unreadable = totals.pages_unreadable,
        pages_untouched = totals.pages_untouched,
        "memory copied"
    );
    let executable = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let executable = executable.and_then(|path| path.to_str().map(str::to_owned));
    Ok(StoppedState { vcpus, thread_names, maps, copy, executable })
}

/// Returns the file mappings, with the build ids of those at file offset 0,
/// and the `[vdso]` mapping. The analyzer loads the vDSO's symbols and CFI
/// from the snapshot's memory at that address.
fn file_mappings(pid: i32, maps: &[MapEntry], copy: &MemoryCopy) -> Vec<FileMapping> {
    maps.iter()
        .filter(|entry| entry.is_file() || entry.path == "[vdso]")
        .map(|entry| FileMapping {
            start: entry.start,
            end: entry.end,
            file_offset: entry.file_offset,
            path: entry.path.clone(),
            build_id: if entry.file_offset == 0 { mapping_build_id(pid, entry, copy) } else { None },
        })
        .collect()
}

/// Returns the build id of the process's executable: the mapping at file
/// offset 0 of the file `/proc/PID/exe` linked to.
fn executable_build_id(executable: Option<&str>, mappings: &[FileMapping]) -> Option<Vec<u8>> {
    let executable = executable?;
    mappings
        .iter()
        .find(|mapping| mapping.file_offset == 0 && mapping.path == executable)
        .and_then(|mapping| mapping.build_id.clone())
}

/// Returns the kernel release, stored as the snapshot's "hypervisor"
/// version: the kernel is what runs a process.
fn kernel_version() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(format!("Linux {}", release.trim()))
}

/// Captures process `options.pid` into `options.output`.
pub fn capture_process(options: &ProcessCaptureOptions) -> Result<CaptureSummary, PtraceError> {
    let pid = options.pid;
    let span = info_span!("capture", pid);
    let _entered = span.enter();
    let started = Instant::now();
    let cancel = options.cancel.as_ref();

    check_process(pid)?;
    // Create the output first, so an unwritable path costs the process no
    // stop. Dropping the writer on an error deletes its temporary file.
    let mut writer = SnapshotWriter::create(&options.output, options.writer.clone())?;

    let capture_time_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |time| time.as_micros() as u64);
    // Dropping `process` on an error or a signal detaches every thread.
    let process = TracedProcess::attach(pid, options.timeout, cancel)?;
    let stopped_at = process.stopped_at();
    let budget = MemoryBudget::new(options.memory_budget, &MemoryBudget::directory_of(&options.output));
    let state = read_stopped(&process, budget, cancel)?;
    process.detach(options.leave_stopped)?;
    let pause_time_us = stopped_at.elapsed().as_micros() as u64;
    info!(pause_ms = pause_time_us / 1000, threads = state.vcpus.len(), "process released");

    check_cancel(cancel)?;
    let mappings = file_mappings(pid, &state.maps, &state.copy.pages);
    let metadata = Metadata {
        source_kind: SourceKind::LinuxProcess,
        target_name: format!("pid:{pid}"),
        domain_id: None,
        hypervisor_version: kernel_version(),
        capture_time_unix_us,
        pause_time_us,
        image_build_id: executable_build_id(state.executable.as_deref(), &mappings),
        page_size: PAGE_SIZE as u32,
    };
    for (vcpu, name) in state.vcpus.iter().zip(&state.thread_names) {
        writer.add_vcpu(vcpu);
        if !name.is_empty() {
            writer.set_thread_name(vcpu.id, name);
        }
    }
    writer.set_metadata(metadata.clone());
    // A process has no page tables: its mapping table is stored under cr3 0.
    writer.add_mappings(0, &state.copy.table);
    writer.add_file_mappings(&mappings);
    state.copy.write_to(&mut writer)?;
    check_cancel(cancel)?;
    let written = writer.finish()?;
    if let Err(error) = check_cancel(cancel) {
        // The signal arrived while the file was being finished: honour it
        // by removing what was written.
        let _ = std::fs::remove_file(&options.output);
        return Err(error);
    }

    let (data_pages, zero_pages) = state.copy.page_counts();
    Ok(CaptureSummary {
        target: metadata.target_name,
        output: options.output.clone(),
        vcpus: state.vcpus.len(),
        memory_ranges: state
            .copy
            .table
            .iter()
            .map(|mapping| MemoryRange { start: mapping.virtual_start, len_bytes: mapping.len_bytes })
            .collect(),
        page_table_roots: 0,
        stored_pages: written.stored_pages,
        zero_pages: written.zero_pages,
        guest_memory_bytes: (data_pages + zero_pages) * PAGE_SIZE,
        file_len_bytes: written.file_len_bytes,
        pause_time_us,
        total_time_us: started.elapsed().as_micros() as u64,
        left_paused: options.leave_stopped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_process_is_named() {
        // Linux pids stay below 2^22 (PID_MAX_LIMIT).
        let error = check_process(1 << 23).unwrap_err();
        assert_eq!(error.to_string(), "process 8388608 not found: /proc/8388608 does not exist");
    }

    #[test]
    fn zombie_is_named() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // The child stays a zombie until it is reaped below.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z ") {
            assert!(Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(Duration::from_millis(2));
        }
        let error = check_process(pid).unwrap_err();
        child.wait().unwrap();
        assert!(matches!(error, PtraceError::Zombie { .. }), "{error}");
    }

    #[test]
    fn own_process_is_rejected() {
        let error = check_process(std::process::id() as i32).unwrap_err();
        assert!(matches!(error, PtraceError::OwnProcess { .. }), "{error}");
    }

    #[test]
    fn selectors_are_truncated_to_16_bits() {
        // SAFETY: user_regs_struct is plain integers.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.cs = 0x33;
        regs.rip = 0x401000;
        regs.fs_base = 0x7f00_0000_1000;
        let vcpu = vcpu_from_registers(1, 42, &regs);
        assert_eq!(vcpu.cs, 0x33);
        assert_eq!(vcpu.rip, 0x401000);
        assert_eq!(vcpu.fs_base, 0x7f00_0000_1000);
        assert_eq!(vcpu.thread_id, Some(42));
    }
}
