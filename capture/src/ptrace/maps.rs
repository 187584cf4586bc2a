//! Parser of `/proc/PID/maps`: one [`MapEntry`] per line, and the rule
//! that decides which mappings a capture reads ([`MapEntry::skip_reason`]).

use std::path::Path;

use super::error::PtraceError;

/// Highest user-space address on x86_64 with 4-level paging, plus one.
/// `[vsyscall]` lies above it, in the kernel's half.
const USER_SPACE_END: u64 = 1 << 47;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping.
    pub start: u64,
    /// Address one past its last byte.
    pub end: u64,
    /// Readable (`r`).
    pub readable: bool,
    /// Writable (`w`).
    pub writable: bool,
    /// Executable (`x`).
    pub executable: bool,
    /// Shared (`s`) rather than private (`p`).
    pub shared: bool,
    /// Offset in the mapped file, in bytes.
    pub file_offset: u64,
    /// Inode of the mapped file; 0 for anonymous and special mappings.
    pub inode: u64,
    /// The path or the kernel's name (`[heap]`, `[stack]`, `[vdso]`), or
    /// empty for an anonymous mapping.
    pub path: String,
}

impl MapEntry {
    /// Returns the length of the mapping in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.end - self.start
    }

    /// Returns whether the mapping maps a file (its path is absolute).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// Returns why the capture does not read this mapping, or `None` when
    /// it does.
    pub fn skip_reason(&self) -> Option<&'static str> {
        if self.start >= USER_SPACE_END {
            return Some("it lies outside user space");
        }
        match self.path.as_str() {
            // [vvar] and [vvar_vclock] map the kernel's clock data pages as
            // VM_IO | VM_PFNMAP: reads from another process fail with EFAULT.
            "[vvar]" | "[vvar_vclock]" => {
                return Some("it is the kernel's vDSO data page, which other processes cannot read")
            }
            "[vsyscall]" => return Some("it is the kernel's legacy vsyscall page"),
            _ => {}
        }
        if !self.readable {
            return Some("it is not readable (a guard page or reserved address space)");
        }
        None
    }
}

/// Parses the contents of a maps file; `path` names it in errors.
pub fn parse_maps(path: &Path, text: &str) -> Result<Vec<MapEntry>, PtraceError> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let entry = parse_line(line).map_err(|reason| PtraceError::InvalidMapsLine {
            path: path.to_path_buf(),
            line_number: index + 1,
            line: line.to_owned(),
            reason,
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Parses `start-end perms offset major:minor inode [path]`; the path may
/// contain spaces and starts after the padding that follows the inode.
fn parse_line(line: &str) -> Result<MapEntry, String> {
    let mut rest = line;
    let mut field = |name: &str| -> Result<&str, String> {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        let (value, after) = trimmed.split_at(end);
        if value.is_empty() {
            return Err(format!("missing {name}"));
        }
        rest = after;
        Ok(value)
    };
    let range = field("address range")?;
    let perms = field("permissions")?;
    let offset = field("offset")?;
    let _device = field("device")?;
    let inode = field("inode")?;
    let path = rest.trim_start_matches(' ').to_owned();

    let (start, end) = range.split_once('-').ok_or_else(|| format!("address range {range:?} has no '-'"))?;
    let hex = |name: &str, value: &str| u64::from_str_radix(value, 16).map_err(|_| format!("invalid {name} {value:?}"));
    let start = hex("start address", start)?;
    let end = hex("end address", end)?;
    if end <= start {
        return Err(format!("end address {end:#x} is not above start address {start:#x}"));
    }
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return Err(format!("permissions {:?} are not 4 characters", String::from_utf8_lossy(perms)));
    }
    Ok(MapEntry {
        start,
        end,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        shared: perms[3] == b's',
        file_offset: hex("offset", offset)?,
        inode: inode.parse().map_err(|_| format!("invalid inode {inode:?}"))?,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d4c8a00000-55d4c8a02000 r--p 00000000 fe:01 1311302                    /usr/bin/cat
55d4c8a02000-55d4c8a07000 r-xp 00002000 fe:01 1311302                    /usr/bin/cat
55d4c9f7e000-55d4c9f9f000 rw-p 00000000 00:00 0                          [heap]
7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 
7f1c2a021000-7f1c2e000000 ---p 00000000 00:00 0 
7f1c2e0f0000-7f1c2e0f1000 rw-s 00000000 00:05 1042                       /dev/zero (deleted)
7f1c2e100000-7f1c2e101000 r--p 00000000 fe:01 42                         /tmp/name with spaces
7ffc8a5d2000-7ffc8a5f3000 rw-p 00000000 00:00 0                          [stack]
7ffc8a5f7000-7ffc8a5fb000 r--p 00000000 00:00 0                          [vvar]
7ffc8a5fb000-7ffc8a5fd000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn maps_sample_parses() {
        let entries = parse_maps(Path::new("maps"), SAMPLE).unwrap();
        assert_eq!(entries.len(), 11);
        assert_eq!(
            entries[1],
            MapEntry {
                start: 0x55d4_c8a0_2000,
                end: 0x55d4_c8a0_7000,
                readable: true,
                writable: false,
                executable: true,
                shared: false,
                file_offset: 0x2000,
                inode: 1_311_302,
                path: "/usr/bin/cat".into(),
            }
        );
        assert_eq!(entries[3].path, "");
        assert!(!entries[3].is_file());
        assert!(entries[5].shared);
        assert_eq!(entries[6].path, "/tmp/name with spaces");
        assert!(entries[6].is_file());
        assert!(!entries[2].is_file());
    }

    #[test]
    fn skip_reasons() {
        let entries = parse_maps(Path::new("maps"), SAMPLE).unwrap();
        let skipped: Vec<bool> = entries.iter().map(|entry| entry.skip_reason().is_some()).collect();
        assert_eq!(skipped, [false, false, false, false, true, false, false, false, true, false, true]);
    }

    #[test]
    fn invalid_line_names_line_and_field() {
        let error = parse_maps(Path::new("/proc/1/maps"), "00400000-00401000 r-xp 0 fe:01\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("line 1 of /proc/1/maps"), "{text}");
        assert!(text.contains("missing inode"), "{text}");
    }

    #[test]
    fn reversed_range_is_rejected() {
        let error = parse_maps(Path::new("maps"), "2000-1000 r--p 0 00:00 0\n").unwrap_err();
        assert!(error.to_string().contains("not above start"), "{error}");
    }
}
