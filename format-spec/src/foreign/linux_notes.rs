//! Layouts of the notes that Linux (`fs/binfmt_elf.c`) and gdb's `gcore`
//! write into the core file of an x86_64 process: `NT_PRSTATUS` (one per
//! thread), `NT_PRPSINFO`, `NT_SIGINFO`, `NT_AUXV` and `NT_FILE`. Each decoder checks the
//! descriptor length before it reads, and names the note and its file
//! offset when the descriptor is malformed.

use super::elf::{read_u32, read_u64, Note};
use super::error::CoreFileError;
use crate::model::{RegisterGroups, VcpuState};

/// Owner name of the standard core notes.
pub(super) const CORE_NOTE_NAME: &[u8] = b"CORE";
/// Note type of `struct elf_prstatus`.
pub(super) const NT_PRSTATUS: u32 = 1;
/// Note type of `struct elf_prpsinfo`.
pub(super) const NT_PRPSINFO: u32 = 3;
/// Note type of the auxiliary vector.
pub(super) const NT_AUXV: u32 = 6;
/// Note type of the `siginfo_t` of the signal that dumped core ("SIGI").
pub(super) const NT_SIGINFO: u32 = 0x5349_4749;
/// Note type of the file mappings ("FILE" as a little-endian u32).
pub(super) const NT_FILE: u32 = 0x4649_4c45;

/// Length of `struct elf_prstatus` on Linux x86_64.
pub(super) const PRSTATUS_LEN: usize = 336;
/// Offset of `pr_cursig` (u16), the signal that stopped the thread.
const PRSTATUS_CURSIG: usize = 12;
/// Offset of `pr_pid`, the thread id.
pub(super) const PRSTATUS_PID: usize = 32;
/// Offset of `pr_reg`, a `struct user_regs_struct` of 27 u64: r15, r14,
/// r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax,
/// rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs.
pub(super) const PRSTATUS_REGS: usize = 112;

/// Length of `struct elf_prpsinfo` on Linux x86_64.
const PRPSINFO_LEN: usize = 136;
/// Offset of `pr_pid`, the process id.
const PRPSINFO_PID: usize = 24;
/// Offset and length of `pr_fname`, the command name (NUL-padded).
const PRPSINFO_FNAME: usize = 40;
const PRPSINFO_FNAME_LEN: usize = 16;
/// Offset and length of `pr_psargs`, the start of the command line.
const PRPSINFO_PSARGS: usize = 56;
const PRPSINFO_PSARGS_LEN: usize = 80;

/// Length of `siginfo_t` on Linux x86_64.
const SIGINFO_LEN: usize = 128;
/// Offsets of `si_signo`, `si_code` and the union that follows. The union
/// contains `si_addr` for a fault and `si_pid`, `si_uid` for a sent signal.
const SIGINFO_SIGNO: usize = 0;
const SIGINFO_CODE: usize = 8;
const SIGINFO_FIELDS: usize = 16;

/// Length of the `NT_FILE` header: entry count and page size, both u64.
const FILE_HEADER_LEN: usize = 16;
/// Length of one `NT_FILE` entry: start, end and file offset in pages.
const FILE_ENTRY_LEN: usize = 24;

/// Auxiliary vector key that ends the vector.
pub(super) const AT_NULL: u64 = 0;
/// Auxiliary vector key of the address of the executable's program headers.
pub(super) const AT_PHDR: u64 = 3;
/// Auxiliary vector key of the executable's entry point.
pub(super) const AT_ENTRY: u64 = 9;

/// One thread's registers from its `NT_PRSTATUS` note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ThreadStatus {
    /// Register state with `id` left for the caller to set.
    pub vcpu: VcpuState,
    /// `pr_cursig`: the signal that stopped the thread, 0 when none.
    pub signal: u16,
}

/// The process description of `NT_PRPSINFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessInfo {
    /// `pr_pid`.
    pub pid: u32,
    /// `pr_fname`: the command name, at most 15 bytes.
    pub command: String,
    /// `pr_psargs`: the command line, cut at 79 bytes.
    pub arguments: String,
}

/// The `siginfo_t` of the signal that dumped core, from `NT_SIGINFO`, kept
/// raw: which union member is meaningful depends on the signal and code,
/// which is the reader's to interpret (see `sigaction(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    /// `si_signo`.
    pub signal: u32,
    /// `si_code`: above 0 when the kernel raised the signal for a fault
    /// (`SEGV_MAPERR`), 0 or below when a process sent it (`SI_USER`,
    /// `SI_TKILL`).
    pub code: i32,
    /// The first union member read as `si_addr`: the faulting address
    /// for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP faults.
    pub address: u64,
    /// The same bytes read as `si_pid`: the sender of a signal sent with
    /// `kill` or `tgkill`.
    pub sender_pid: u32,
    /// `si_uid`, the sender's real user id, after `si_pid`.
    pub sender_uid: u32,
}

/// One entry of `NT_FILE` before its build id is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileEntry {
    pub start: u64,
    pub end: u64,
    /// File offset in bytes (the note stores it in pages).
    pub file_offset: u64,
    pub path: String,
}

fn invalid(note: &'static str, offset: u64, reason: String) -> CoreFileError {
    CoreFileError::InvalidNote { note, offset, reason }
}

/// Returns the text of a NUL-padded fixed-size field.
fn fixed_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes an `NT_PRSTATUS` note into the thread id and registers.
pub(super) fn parse_prstatus(note: &Note<'_>) -> Result<ThreadStatus, CoreFileError> {
    let desc = note.desc;
    if desc.len() < PRSTATUS_LEN {
        return Err(invalid(
            "CORE NT_PRSTATUS",
            note.desc_offset,
            format!("descriptor is {} bytes, expected {PRSTATUS_LEN}", desc.len()),
        ));
    }
    let register = |index: usize| read_u64(desc, PRSTATUS_REGS + index * 8);
    // Selectors are 16 bits, which the kernel stores zero-extended to 64.
    let selector = |index: usize| register(index) as u16;
    let vcpu = VcpuState {
        id: 0,
        thread_id: Some(u64::from(read_u32(desc, PRSTATUS_PID))),
        r15: register(0),
        r14: register(1),
        r13: register(2),
        r12: register(3),
        rbp: register(4),
        rbx: register(5),
        r11: register(6),
        r10: register(7),
        r9: register(8),
        r8: register(9),
        rax: register(10),
        rcx: register(11),
        rdx: register(12),
        rsi: register(13),
        rdi: register(14),
        // Index 15 is orig_rax, the system call number, which the model has no place for.
        rip: register(16),
        cs: selector(17),
        rflags: register(18),
        rsp: register(19),
        ss: selector(20),
        fs_base: register(21),
        gs_base: register(22),
        ds: selector(23),
        es: selector(24),
        fs: selector(25),
        gs: selector(26),
        present: RegisterGroups { general: true, segment_bases: true, control: false },
        ..VcpuState::default()
    };
    let signal = u16::from_le_bytes([desc[PRSTATUS_CURSIG], desc[PRSTATUS_CURSIG + 1]]);
    Ok(ThreadStatus { vcpu, signal })
}

/// Decodes an `NT_PRPSINFO` note.
pub(super) fn parse_prpsinfo(note: &Note<'_>) -> Result<ProcessInfo, CoreFileError> {
    let desc = note.desc;
    if desc.len() < PRPSINFO_LEN {
        return Err(invalid(
            "CORE NT_PRPSINFO",
            note.desc_offset,
            format!("descriptor is {} bytes, expected {PRPSINFO_LEN}", desc.len()),
        ));
    }
    Ok(ProcessInfo {
        pid: read_u32(desc, PRPSINFO_PID),
        command: fixed_string(&desc[PRPSINFO_FNAME..PRPSINFO_FNAME + PRPSINFO_FNAME_LEN]),
        arguments: fixed_string(&desc[PRPSINFO_PSARGS..PRPSINFO_PSARGS + PRPSINFO_PSARGS_LEN]).trim_end().to_string(),
    })
}

/// Decodes an `NT_SIGINFO` note.
pub(super) fn parse_siginfo(note: &Note<'_>) -> Result<SignalInfo, CoreFileError> {
    let desc = note.desc;
    if desc.len() < SIGINFO_LEN {
        return Err(invalid(
            "CORE NT_SIGINFO",
            note.desc_offset,
            format!("descriptor is {} bytes, expected {SIGINFO_LEN}", desc.len()),
        ));
    }
    Ok(SignalInfo {
        signal: read_u32(desc, SIGINFO_SIGNO),
        code: read_u32(desc, SIGINFO_CODE) as i32,
        address: read_u64(desc, SIGINFO_FIELDS),
        sender_pid: read_u32(desc, SIGINFO_FIELDS),
        sender_uid: read_u32(desc, SIGINFO_FIELDS + 4),
    })
}

/// Decodes an `NT_AUXV` note into (key, value) pairs up to `AT_NULL`.
pub(super) fn parse_auxv(note: &Note<'_>) -> Result<Vec<(u64, u64)>, CoreFileError> {
    let desc = note.desc;
    if desc.len() % 16 != 0 {
        return Err(invalid(
            "CORE NT_AUXV",
            note.desc_offset,
            format!("descriptor is {} bytes, not a whole number of 16-byte entries", desc.len()),
        ));
    }
    let mut entries = Vec::with_capacity(desc.len() / 16);
    for pair in desc.chunks_exact(16) {
        let key = read_u64(pair, 0);
        if key == AT_NULL {
            break;
        }
        entries.push((key, read_u64(pair, 8)));
    }
    Ok(entries)
}

/// Decodes an `NT_FILE` note: a count and a page size, `count` entries of
/// start, end and file offset in pages, then `count` NUL-terminated paths.
/// Returns the entries and the page size.
pub(super) fn parse_file_note(note: &Note<'_>) -> Result<(Vec<FileEntry>, u64), CoreFileError> {
    let desc = note.desc;
    let error = |offset: usize, reason: String| invalid("CORE NT_FILE", note.desc_offset + offset as u64, reason);
    if desc.len() < FILE_HEADER_LEN {
        return Err(error(0, format!("descriptor is {} bytes, too short for count and page size", desc.len())));
    }
    let count = read_u64(desc, 0);
    let page_size = read_u64(desc, 8);
    if !page_size.is_power_of_two() {
        return Err(error(8, format!("page size {page_size:#x} is not a power of two")));
    }
    // The count is checked against the descriptor before anything is allocated.

    let table_len = count
        .checked_mul(FILE_ENTRY_LEN as u64)
        .and_then(|len| len.checked_add(FILE_HEADER_LEN as u64))
        .filter(|&end| end <= desc.len() as u64)
        .ok_or_else(|| {
            error(0, format!("count {count} of {FILE_ENTRY_LEN}-byte entries does not fit in {} bytes", desc.len()))
        })? as usize;
    let mut name_at = table_len;
    let mut entries = Vec::with_capacity(count as usize);
    for index in 0..count as usize {
        let at = FILE_HEADER_LEN + index * FILE_ENTRY_LEN;
        let start = read_u64(desc, at);
        let end = read_u64(desc, at + 8);
        let offset_pages = read_u64(desc, at + 16);
        if end < start {
            return Err(error(at, format!("entry {index} ends at {end:#x}, before its start {start:#x}")));
        }
        let file_offset = offset_pages.checked_mul(page_size).ok_or_else(|| {
            error(at + 16, format!("entry {index}: file offset of {offset_pages:#x} pages overflows"))
        })?;
        let name_len = desc[name_at..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| error(name_at, format!("path of entry {index} is missing or not NUL-terminated")))?;
        let path = String::from_utf8_lossy(&desc[name_at..name_at + name_len]).into_owned();
        name_at += name_len + 1;
        entries.push(FileEntry { start, end, file_offset, path });
    }
    Ok((entries, page_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(desc: &[u8]) -> Note<'_> {
        Note { name: CORE_NOTE_NAME, note_type: NT_FILE, desc, header_offset: 0x100, desc_offset: 0x114 }
    }

    fn file_note(entries: &[(u64, u64, u64)], names: &[&str]) -> Vec<u8> {
        let mut desc = Vec::new();
        desc.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        desc.extend_from_slice(&4096u64.to_le_bytes());
        for &(start, end, pages) in entries {
            for value in [start, end, pages] {
                desc.extend_from_slice(&value.to_le_bytes());
            }
        }
        for name in names {
            desc.extend_from_slice(name.as_bytes());
            desc.push(0);
        }
        desc
    }

    #[test]
    fn file_note_decodes_entries_and_paths() {
        let desc = file_note(&[(0x1000, 0x3000, 0), (0x3000, 0x4000, 2)], &["/bin/a", "/lib/b.so"]);
        let (entries, page_size) = parse_file_note(&note(&desc)).unwrap();
        assert_eq!(page_size, 4096);
        assert_eq!(entries[1], FileEntry { start: 0x3000, end: 0x4000, file_offset: 0x2000, path: "/lib/b.so".into() });
        assert_eq!(entries[0].path, "/bin/a");
    }

    #[test]
    fn file_note_rejects_huge_count() {
        let mut desc = file_note(&[(0x1000, 0x2000, 0)], &["/bin/a"]);
        desc[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let error = parse_file_note(&note(&desc)).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidNote { offset: 0x114, .. }), "{error}");
    }

    #[test]
    fn file_note_rejects_missing_path() {
        let desc = file_note(&[(0x1000, 0x2000, 0), (0x2000, 0x3000, 0)], &["/bin/a"]);
        let error = parse_file_note(&note(&desc)).unwrap_err();
        assert!(error.to_string().contains("path of entry 1 is missing"), "{error}");
    }

    #[test]
    fn file_note_rejects_unterminated_path() {
        let mut desc = file_note(&[(0x1000, 0x2000, 0)], &["/bin/a"]);
        desc.pop();
        let error = parse_file_note(&note(&desc)).unwrap_err();
        assert!(error.to_string().contains("path of entry 0 is missing or not NUL-terminated"), "{error}");
    }

    #[test]
    fn auxv_stops_at_null() {
        let mut desc = Vec::new();
        for value in [AT_PHDR, 0x4000_0040, AT_NULL, 0, 7, 7] {
            desc.extend_from_slice(&u64::to_le_bytes(value));
        }
        assert_eq!(parse_auxv(&note(&desc)).unwrap(), vec![(AT_PHDR, 0x4000_0040)]);
    }

    #[test]
    fn prstatus_rejects_short_descriptor() {
        let error = parse_prstatus(&note(&[0; 100])).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidNote { note: "CORE NT_PRSTATUS", .. }), "{error}");
    }
}
