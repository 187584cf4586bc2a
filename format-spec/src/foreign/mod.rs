//! Readers of core files that other programs write, and [`open_core`], which
//! recognizes a file by its contents and opens it with the right reader.
//!
//! - a stardump snapshot goes to [`Snapshot::open`];
//! - a QEMU `dump-guest-memory` ELF core (written with `paging=false`) to
//!   [`QemuDump`];
//! - a Xen `xl dump-core` file of a 64-bit PV or HVM guest to [`XenDumpCore`];
//! - the ELF core of an x86_64 Linux process, written by the kernel or by
//!   gdb's `gcore`, to [`LinuxCore`].
//!
//! Each reader implements [`Target`], so the analyzer reads all of them the
//! same way; [`Core`] keeps the concrete reader reachable for details that
//! only one format has. A [`LiveCore`] puts a live target, which a crate
//! with the live backends opened, in the same place.

mod elf;
mod error;
mod linux;
mod linux_build_id;
mod linux_notes;
mod live;
mod qemu;
mod xen;
pub mod xen_context;
mod xen_layout;

pub use elf::Truncation;

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

pub use error::{CoreFileError, OpenError};
pub use crate::model::FileMapping;
pub use linux::{LinuxCore, LoadSegment};
pub use linux_notes::SignalInfo;
pub use live::LiveCore;
pub use qemu::QemuDump;
pub use xen::{XenDumpCore, XenGuestKind};

use crate::model::{Metadata, VcpuState};
use crate::paging::ReadPhysical;
use crate::snapshot::layout::{PT_STARDUMP_CHUNKS, STARDUMP_NOTE_NAME};
use crate::snapshot::Snapshot;
use crate::target::{MemoryError, MemoryRange, Target};

/// Guest page size used to split virtual reads.
const PAGE_SIZE: u64 = 4096;

/// The bytes of a core file: mapped from disk, or owned (tests, fuzzing).
enum FileBytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps the file at `path` read-only.
    fn map(path: &Path) -> Result<FileBytes, OpenError> {
        let io_error = |source| OpenError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io_error)?;
        // SAFETY: the mapping is read-only. NOTE: another program truncating
        // the file while it is mapped makes reads of the lost pages fault
        // (SIGBUS); nothing here guards that.
        let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
        Ok(FileBytes::Mapped(map))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

/// Returns the file name of `path` for `Metadata::target_name`.
fn file_name(path: &Path) -> String {
    path.file_name().unwrap_or(path.as_os_str()).to_string_lossy().into_owned()
}

/// Reads guest virtual memory page by page: `translate` maps the virtual
/// address of each page to an address that `read` takes. Errors name the
/// virtual address and the length of the whole request.
fn read_virtual_paged(
    address: u64,
    buf: &mut [u8],
    translate: &mut dyn FnMut(u64) -> Result<u64, MemoryError>,
    read: &mut ReadPhysical<'_>,
) -> Result<(), MemoryError> {
    let request_len = buf.len();
    let mut done = 0;
    while done < request_len {
        let current = address.wrapping_add(done as u64);
        let offset_in_page = (current % PAGE_SIZE) as usize;
        let len = (PAGE_SIZE as usize - offset_in_page).min(request_len - done);
        let physical = translate(current).map_err(|error| match error {
            MemoryError::NotMapped { address, cr3, .. } => MemoryError::NotMapped { address, len: request_len, cr3 },
            other => other,
        })?;
        read(physical, &mut buf[done..done + len]).map_err(|error| match error {
            // Name the virtual address the caller asked for, not the physical one.
            MemoryError::NotCaptured { .. } => MemoryError::NotCaptured { address: current, len: request_len },
            MemoryError::Corrupt { reason, .. } => MemoryError::Corrupt { address: current, len: request_len, reason },
            other => other,
        })?;
        done += len;
    }
    Ok(())
}

/// Turns `(start, len_bytes)` ranges in address order into memory ranges,
/// dropping empty ones and joining those that touch.
fn merge_adjacent(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<MemoryRange> {
    let mut merged: Vec<MemoryRange> = Vec::new();
    for (start, len_bytes) in ranges.filter(|&(_, len_bytes)| len_bytes > 0) {
        match merged.last_mut() {
            Some(last) if last.start.checked_add(last.len_bytes) == Some(start) => last.len_bytes += len_bytes,
            _ => merged.push(MemoryRange { start, len_bytes }),
        }
    }
    merged
}

/// A core file of any format stardump reads.
#[derive(Debug)]
pub enum Core {
    /// A stardump snapshot.
    Snapshot(Snapshot),
    /// A QEMU `dump-guest-memory` ELF core.
    QemuDump(QemuDump),
    /// A Xen `xl dump-core` file.
    XenDumpCore(XenDumpCore),
    /// The ELF core of a Linux process.
    LinuxCore(LinuxCore),
    /// A live target, paused while it is read.
    Live(LiveCore),
}

impl Core {
    /// Returns the snapshot, when the file is one.
    pub fn as_snapshot(&self) -> Option<&Snapshot> {
        match self {
            Core::Snapshot(snapshot) => Some(snapshot),
            _ => None,
        }
    }

    /// Returns the path the file was opened from, or a live target's name.
    pub fn path(&self) -> &Path {
        match self {
            Core::Snapshot(snapshot) => snapshot.path(),
            Core::QemuDump(dump) => dump.path(),
            Core::XenDumpCore(dump) => dump.path(),
            Core::LinuxCore(core) => core.path(),
            Core::Live(live) => live.name(),
        }
    }

    /// Returns how the end of the file cuts the memory segments of a QEMU
    /// dump or a Linux core short, if it does.
    pub fn truncation(&self) -> Option<&Truncation> {
        match self {
            Core::QemuDump(dump) => dump.truncation(),
            Core::LinuxCore(core) => core.truncation(),
            Core::Snapshot(_) | Core::XenDumpCore(_) | Core::Live(_) => None,
        }
    }

    /// Returns whether this is a live target rather than a file.
    pub fn is_live(&self) -> bool {
        matches!(self, Core::Live(_))
    }

    /// Returns the file mappings of a Linux process, in address order: from
    /// `NT_FILE` in a Linux core, or from the file-mappings note of a
    /// snapshot taken with ptrace. Empty for other formats.
    pub fn file_mappings(&self) -> &[FileMapping] {
        match self {
            Core::LinuxCore(core) => core.file_mappings(),
            Core::Snapshot(snapshot) => snapshot.file_mappings(),
            Core::QemuDump(_) | Core::XenDumpCore(_) | Core::Live(_) => &[],
        }
    }

    /// Returns the name of the thread recorded as vCPU `vcpu_id`, when
    /// the file records one (a snapshot of a Linux process does).
    pub fn thread_name(&self, vcpu_id: u32) -> Option<&str> {
        self.as_snapshot()?.thread_name(vcpu_id)
    }

    /// Returns a short name of the file's format ("stardump snapshot",
    /// "QEMU dump", "xl dump-core", "Linux core", "live target").
    pub fn format_name(&self) -> &'static str {
        match self {
            Core::Snapshot(_) => "stardump snapshot",
            Core::QemuDump(_) => "QEMU dump",
            Core::XenDumpCore(_) => "xl dump-core",
            Core::LinuxCore(_) => "Linux core",
            Core::Live(_) => "live target",
        }
    }

    fn target(&self) -> &(dyn Target + Send + Sync) {
        match self {
            Core::Snapshot(snapshot) => snapshot,
            Core::QemuDump(dump) => dump,
            Core::XenDumpCore(dump) => dump,
            Core::LinuxCore(core) => core,
            Core::Live(live) => live.target(),
        }
    }
}

impl Target for Core {
    fn metadata(&self) -> &Metadata {
        self.target().metadata()
    }

    fn vcpus(&self) -> &[VcpuState] {
        self.target().vcpus()
    }

    fn read_physical(&self, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target().read_physical(address, buf)
    }

    fn read_virtual(&self, cr3: u64, address: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.target().read_virtual(cr3, address, buf)
    }

    fn memory_map(&self) -> Vec<MemoryRange> {
        self.target().memory_map()
    }
}

/// Formats that [`detect_format`] recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Snapshot,
    QemuDump,
    XenDumpCore,
    LinuxCore,
}

/// Returns the name of an ELF `e_type` value.
fn elf_type_name(e_type: u16) -> String {
    match e_type {
        0 => "ET_NONE".into(),
        1 => "ET_REL".into(),
        2 => "ET_EXEC".into(),
        3 => "ET_DYN".into(),
        4 => "ET_CORE".into(),
        other => format!("{other:#x}"),
    }
}

/// Recognizes the format of `file` by its contents, or describes what the
/// file is instead.
fn detect_format(file: &[u8]) -> Result<Format, String> {
    let Some((class, data, e_type)) = elf::identify(file) else {
        // QEMU's dump-guest-memory writes these two when asked for a format
        // other than ELF.
        if file.starts_with(b"KDUMP   ") {
            return Err("a kdump-compressed dump; write it with dump-guest-memory's default ELF format".into());
        }
        if file.starts_with(b"PAGEDU64") {
            return Err("a Windows crash dump; write it with dump-guest-memory's default ELF format".into());
        }
        if elf::has_elf_magic(file) {
            return Err(format!("an ELF file of {} bytes, too short for an ELF header", file.len()));
        }
        let start = &file[..file.len().min(4)];
        return Err(if start.is_empty() {
            "the file is empty".into()
        } else {
            let bytes: Vec<String> = start.iter().map(|byte| format!("{byte:#04x}")).collect();
            format!("no ELF magic: the file starts with {}, not 0x7f 0x45 0x4c 0x46", bytes.join(" "))
        });
    };
    if class != 2 || data != 1 {
        return Err(format!("ELF class {class} and data encoding {data}, expected 64-bit little endian"));
    }
    if e_type != elf::ET_CORE {
        return Err(format!("ELF type {}", elf_type_name(e_type)));
    }
    let header = elf::parse_file_header(file).map_err(|error| error.to_string())?;

    let program_headers = elf::parse_program_headers(file, &header);
    if let Ok(headers) = &program_headers {
        if headers.iter().any(|h| h.p_type == PT_STARDUMP_CHUNKS) {
            return Ok(Format::Snapshot);
        }
    }
    // A dump-core has no program headers but a .note.Xen section.
    let sections = elf::parse_section_headers(file, &header);
    if let Ok(sections) = &sections {
        if xen::is_dump_core(file, sections) {
            return Ok(Format::XenDumpCore);
        }
    }
    let headers = program_headers.map_err(|error| format!("ELF core with unreadable program headers: {error}"))?;
    if let (true, Err(error)) = (headers.is_empty(), &sections) {
        return Err(format!(
            "ELF core without program headers whose section headers cannot be read (a truncated xl dump-core?): {error}"
        ));
    }
    let notes =
        qemu::segment_notes(file, &headers).map_err(|error| format!("ELF core with unreadable notes: {error}"))?;
    if qemu::has_qemu_notes(&notes) {
        return Ok(Format::QemuDump);
    }
    if notes.iter().any(|note| note.name == STARDUMP_NOTE_NAME) {
        return Err("ELF core with stardump notes but no stardump chunk segment (a damaged snapshot?)".into());
    }
    if linux::is_process_core(&notes) {
        return Ok(Format::LinuxCore);
    }
    Err("ELF core without stardump chunks, QEMU register notes, a .note.Xen section or \
         the NT_PRSTATUS with NT_FILE, NT_PRPSINFO or NT_AUXV notes of a process core"
        .into())
}

/// Opens a stardump snapshot, a QEMU `dump-guest-memory` core, an
/// `xl dump-core` file or a Linux process core, recognized by its contents.
pub fn open_core(path: &Path) -> Result<Core, OpenError> {
    let bytes = FileBytes::map(path)?;
    let format = detect_format(&bytes).map_err(|found| OpenError::UnknownFormat { path: path.to_path_buf(), found })?;
    tracing::debug!(path = %path.display(), ?format, "recognized core file");
    match format {
        Format::Snapshot => {
            drop(bytes);
            Snapshot::open(path)
                .map(Core::Snapshot)
                .map_err(|source| OpenError::Snapshot { path: path.to_path_buf(), source })
        }
        Format::QemuDump => QemuDump::parse(path, bytes)
            .map(Core::QemuDump)
            .map_err(|source| OpenError::QemuDump { path: path.to_path_buf(), source }),
        Format::XenDumpCore => XenDumpCore::parse(path, bytes)
            .map(Core::XenDumpCore)
            .map_err(|source| OpenError::XenDumpCore { path: path.to_path_buf(), source }),
        Format::LinuxCore => LinuxCore::parse(path, bytes)
            .map(Core::LinuxCore)
            .map_err(|source| OpenError::LinuxCore { path: path.to_path_buf(), source }),
    }
}

/// Recognizes and parses a core file held in memory; `path` names it in
/// metadata and errors. A stardump snapshot must be opened from a file, so
/// it gets an `UnknownFormat` error naming [`Snapshot::open`].
pub fn parse_core(path: &Path, bytes: Vec<u8>) -> Result<Core, OpenError> {
    let format = detect_format(&bytes).map_err(|found| OpenError::UnknownFormat { path: path.to_path_buf(), found })?;
    match format {
        Format::Snapshot => Err(OpenError::UnknownFormat {
            path: path.to_path_buf(),
            found: "a stardump snapshot, which Snapshot::open reads from a file".into(),
        }),
        Format::QemuDump => QemuDump::from_bytes(path, bytes).map(Core::QemuDump),
        Format::XenDumpCore => XenDumpCore::from_bytes(path, bytes).map(Core::XenDumpCore),
        Format::LinuxCore => LinuxCore::from_bytes(path, bytes).map(Core::LinuxCore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Core>();
    }

    #[test]
    fn detect_names_kdump_files() {
        let mut file = b"KDUMP   ".to_vec();
        file.resize(4096, 0);
        let found = detect_format(&file).unwrap_err();
        assert!(found.contains("kdump-compressed"), "{found}");
    }

    #[test]
    fn detect_names_empty_file() {
        assert_eq!(detect_format(&[]), Err("the file is empty".to_string()));
    }

    #[test]
    fn detect_names_elf_type() {
        let mut file = vec![0u8; 64];
        file[0..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[16] = 3;
        assert_eq!(detect_format(&file), Err("ELF type ET_DYN".to_string()));
    }
}
