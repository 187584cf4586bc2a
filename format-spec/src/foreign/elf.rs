//! Just enough of ELF64 (little endian) to read core files written by other
//! programs: the file header, program headers, section headers with their
//! names, and notes. Every offset and count is checked against the file
//! length before it is used, and errors name the file offset.

use super::error::CoreFileError;

/// Length of the ELF64 file header.
pub const ELF_HEADER_LEN: u64 = 64;
/// Length of one ELF64 program header.
pub const PROGRAM_HEADER_LEN: u64 = 56;
/// Length of one ELF64 section header.
pub const SECTION_HEADER_LEN: u64 = 64;

/// `e_type` of a core file.
pub const ET_CORE: u16 = 4;
/// `e_machine` of x86_64.
pub const EM_X86_64: u16 = 62;
/// `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_type` of a note segment.
pub const PT_NOTE: u32 = 4;
/// `sh_type` of a section with program-defined contents.
pub const SHT_PROGBITS: u32 = 1;
/// `sh_type` of a note section.
pub const SHT_NOTE: u32 = 7;
/// `e_phnum` value meaning that section header 0's `sh_info` contains the count.
const PN_XNUM: u16 = 0xffff;
/// `e_shstrndx` value meaning that section header 0's `sh_link` contains the index.
const SHN_XINDEX: u16 = 0xffff;

/// Reads a little-endian u16 at `at`; the caller has checked the bounds.
pub fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a little-endian u32 at `at`; the caller has checked the bounds.
pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian u64 at `at`; the caller has checked the bounds.
pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Returns `file[offset..offset + len]`, or a truncation error naming `part`.
pub fn file_range(file: &[u8], part: impl FnOnce() -> String, offset: u64, len: u64) -> Result<&[u8], CoreFileError> {
    let file_len = file.len() as u64;
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(&file[offset as usize..end as usize]),
        _ => Err(CoreFileError::Truncated { part: part(), offset, needed: len, file_len }),
    }
}

/// The fields of the ELF64 file header that the readers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// `e_type`.
    pub e_type: u16,
    /// `e_machine`.
    pub e_machine: u16,
    /// `e_phoff`.
    pub e_phoff: u64,
    /// `e_shoff`.
    pub e_shoff: u64,
    /// `e_phentsize`.
    pub e_phentsize: u16,
    /// `e_phnum`.
    pub e_phnum: u16,
    /// `e_shentsize`.
    pub e_shentsize: u16,
    /// `e_shnum`.
    pub e_shnum: u16,
    /// `e_shstrndx`.
    pub e_shstrndx: u16,
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Position in the program header table.
    pub index: usize,
    /// File offset of this header.
    pub header_offset: u64,
    /// `p_type`.
    pub p_type: u32,
    /// `p_offset`.
    pub p_offset: u64,
    /// `p_vaddr`.
    pub p_vaddr: u64,
    /// `p_paddr`.
    pub p_paddr: u64,
    /// `p_filesz`.
    pub p_filesz: u64,
    /// `p_memsz`.
    pub p_memsz: u64,
}

/// The cut that the end of a core file makes in its `PT_LOAD` segments, as
/// when the disk filled up or `ulimit -c` stopped the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Length of the file.
    pub file_len: u64,
    /// End offset of the last segment's bytes according to its header.
    pub expected_len: u64,
    /// Number of segments that lack some or all of their bytes.
    pub segments: usize,
    /// Index of the first such segment's program header.
    pub first_header: usize,
}

impl Truncation {
    /// Returns how `file_len` bytes cut the `PT_LOAD` segments of
    /// `headers`, or `None` when every segment's bytes are present.
    pub fn of(headers: &[ProgramHeader], file_len: u64) -> Option<Truncation> {
        let cut: Vec<(usize, u64)> = headers
            .iter()
            .filter(|header| header.p_type == PT_LOAD && header.p_filesz > 0)
            .map(|header| (header.index, header.p_offset.saturating_add(header.p_filesz)))
            .filter(|&(_, end)| end > file_len)
            .collect();
        Some(Truncation {
            file_len,
            expected_len: cut.iter().map(|&(_, end)| end).max()?,
            segments: cut.len(),
            first_header: cut.iter().map(|&(index, _)| index).min()?,
        })
    }
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the file is truncated: {} bytes long, but its segments end at byte {}. ", self.file_len, self.expected_len)?;
        if self.segments == 1 {
            write!(f, "The segment of program header {} lacks some or all of its memory", self.first_header)?;
        } else {
            write!(f, "{} segments, from program header {} on, lack some or all of their memory", self.segments, self.first_header)?;
        }
        write!(f, ", which reads as not captured")
    }
}

/// One section header, with its name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    /// Name from the section header string table; empty when it has none.
    pub name: String,
    /// File offset of this header.
    pub header_offset: u64,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_offset`.
    pub sh_offset: u64,
    /// `sh_size`.
    pub sh_size: u64,
    /// `sh_addralign`.
    pub sh_addralign: u64,
    /// `sh_entsize`.
    pub sh_entsize: u64,
}

/// One note of a note segment or section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Owner name without its terminating NUL.
    pub name: &'a [u8],
    /// `n_type`.
    pub note_type: u32,
    /// Descriptor bytes.
    pub desc: &'a [u8],
    /// File offset of the note header.
    pub header_offset: u64,
    /// File offset of the descriptor.
    pub desc_offset: u64,
}

/// Returns the ELF class, byte order and type of `file` without validating
/// more, or `None` when it does not start with the ELF magic.
pub fn identify(file: &[u8]) -> Option<(u8, u8, u16)> {
    if !has_elf_magic(file) || file.len() < 18 {
        return None;
    }
    Some((file[4], file[5], read_u16(file, 16)))
}

/// Returns whether `file` starts with the ELF magic.
pub fn has_elf_magic(file: &[u8]) -> bool {
    file.starts_with(&[0x7f, b'E', b'L', b'F'])
}

/// Parses the file header of a little-endian x86_64 ELF64 core file.
pub fn parse_file_header(file: &[u8]) -> Result<FileHeader, CoreFileError> {
    let header = file_range(file, || "ELF header".into(), 0, ELF_HEADER_LEN)?;
    let invalid =
        |offset: u64, field, value: u64, expected| CoreFileError::InvalidElfHeader { offset, field, value, expected };
    if header[0..4] != [0x7f, b'E', b'L', b'F'] {
        return Err(invalid(0, "e_ident[EI_MAG]", u64::from(read_u32(header, 0)), "0x464c457f (\\x7fELF)"));
    }
    if header[4] != 2 {
        return Err(invalid(4, "e_ident[EI_CLASS]", header[4].into(), "2 (ELFCLASS64)"));
    }
    if header[5] != 1 {
        return Err(invalid(5, "e_ident[EI_DATA]", header[5].into(), "1 (ELFDATA2LSB)"));
    }
    let parsed = FileHeader {
        e_type: read_u16(header, 16),
        e_machine: read_u16(header, 18),
        e_phoff: read_u64(header, 32),
        e_shoff: read_u64(header, 40),
        e_phentsize: read_u16(header, 54),
        e_phnum: read_u16(header, 56),
        e_shentsize: read_u16(header, 58),
        e_shnum: read_u16(header, 60),
        e_shstrndx: read_u16(header, 62),
    };
    if parsed.e_type != ET_CORE {
        return Err(invalid(16, "e_type", parsed.e_type.into(), "4 (ET_CORE)"));
    }
    if parsed.e_machine != EM_X86_64 {
        return Err(invalid(18, "e_machine", parsed.e_machine.into(), "62 (EM_X86_64)"));
    }
    Ok(parsed)
}

/// Reads section header 0, which contains the real section count, program
/// header count and string table index when they overflow the file header.
fn first_section_header<'a>(file: &'a [u8], header: &FileHeader) -> Result<Option<&'a [u8]>, CoreFileError> {
    if header.e_shoff == 0 {
        return Ok(None);
    }
    if u64::from(header.e_shentsize) != SECTION_HEADER_LEN {
        return Err(CoreFileError::InvalidElfHeader {
            offset: 58,
            field: "e_shentsize",
            value: header.e_shentsize.into(),
            expected: "64",
        });
    }
    file_range(file, || "section header 0".into(), header.e_shoff, SECTION_HEADER_LEN).map(Some)
}

/// Parses the program header table.
pub fn parse_program_headers(file: &[u8], header: &FileHeader) -> Result<Vec<ProgramHeader>, CoreFileError> {
    let count = if header.e_phnum == PN_XNUM {
        match first_section_header(file, header)? {
            Some(section_zero) => read_u32(section_zero, 44) as usize,
            None => {
                return Err(CoreFileError::InvalidElfHeader {
                    offset: 56,
                    field: "e_phnum",
                    value: PN_XNUM.into(),
                    expected: "a count, or 0xffff with a section header 0 holding the count",
                })
            }
        }
    } else {
        usize::from(header.e_phnum)
    };
    if count == 0 {
        return Ok(Vec::new());
    }
    if u64::from(header.e_phentsize) != PROGRAM_HEADER_LEN {
        return Err(CoreFileError::InvalidElfHeader {
            offset: 54,
            field: "e_phentsize",
            value: header.e_phentsize.into(),
            expected: "56",
        });
    }
    let table_len = count as u64 * PROGRAM_HEADER_LEN;
    let table = file_range(file, || format!("program header table of {count} entries"), header.e_phoff, table_len)?;
    let headers = table
        .chunks_exact(PROGRAM_HEADER_LEN as usize)
        .enumerate()
        .map(|(index, entry)| ProgramHeader {
            index,
            header_offset: header.e_phoff + index as u64 * PROGRAM_HEADER_LEN,
            p_type: read_u32(entry, 0),
            p_offset: read_u64(entry, 8),
            p_vaddr: read_u64(entry, 16),
            p_paddr: read_u64(entry, 24),
            p_filesz: read_u64(entry, 32),
            p_memsz: read_u64(entry, 40),
        })
        .collect();
    Ok(headers)
}

/// Parses the section header table and resolves section names through the
/// section header string table. A file without sections gives an empty list.
/// When the string table lies past the end of the file, as in a truncated
/// `xl dump-core` file whose string table comes last, every name is empty.
pub fn parse_section_headers(file: &[u8], header: &FileHeader) -> Result<Vec<SectionHeader>, CoreFileError> {
    let Some(section_zero) = first_section_header(file, header)? else {
        return Ok(Vec::new());
    };
    let count = match header.e_shnum {
        0 => read_u64(section_zero, 32),
        count => u64::from(count),
    };
    let table_len = count.checked_mul(SECTION_HEADER_LEN).ok_or_else(|| CoreFileError::InvalidSection {
        section: "0".into(),
        offset: header.e_shoff,
        reason: format!("section count {count:#x} overflows"),
    })?;
    let table = file_range(file, || format!("section header table of {count} entries"), header.e_shoff, table_len)?;
    let string_table_index = match header.e_shstrndx {
        SHN_XINDEX => read_u32(section_zero, 40) as usize,
        index => usize::from(index),
    };
    let entries: Vec<&[u8]> = table.chunks_exact(SECTION_HEADER_LEN as usize).collect();
    let strings: &[u8] = match entries.get(string_table_index) {
        Some(entry) if string_table_index != 0 => {
            let offset = read_u64(entry, 24);
            let size = read_u64(entry, 32);
            match file_range(
                file,
                || format!("section header string table (section {string_table_index})"),
                offset,
                size,
            ) {
                Ok(strings) => strings,
                Err(error) => {
                    tracing::warn!(%error, "section names are unavailable");
                    &[]
                }
            }
        }
        _ => &[],
    };
    let mut sections = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let header_offset = header.e_shoff + index as u64 * SECTION_HEADER_LEN;
        let name_offset = read_u32(entry, 0) as usize;
        let name = strings
            .get(name_offset..)
            .map(|rest| rest.split(|&b| b == 0).next().unwrap_or_default())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .unwrap_or_default();
        sections.push(SectionHeader {
            name,
            header_offset,
            sh_type: read_u32(entry, 4),
            sh_offset: read_u64(entry, 24),
            sh_size: read_u64(entry, 32),
            sh_addralign: read_u64(entry, 48),
            sh_entsize: read_u64(entry, 56),
        });
    }
    Ok(sections)
}

/// Splits a note segment or section that starts at file offset `offset`
/// into notes. Stops at the first malformed note and returns its error.
pub fn parse_notes(bytes: &[u8], offset: u64) -> Result<Vec<Note<'_>>, CoreFileError> {
    let mut notes = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header_offset = offset + at as u64;
        let invalid = |reason: String| CoreFileError::InvalidNote { note: "ELF", offset: header_offset, reason };
        let left = bytes.len() - at;
        if left < 12 {
            // Some writers pad the end of a note segment with zeroes.
            if bytes[at..].iter().all(|&b| b == 0) {
                break;
            }
            return Err(invalid(format!("{left} bytes left, a note header needs 12")));
        }
        let namesz = read_u32(bytes, at) as usize;
        let descsz = read_u32(bytes, at + 4) as usize;
        let note_type = read_u32(bytes, at + 8);
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz).and_then(|end| end.checked_next_multiple_of(4));
        let desc_end = desc_at.and_then(|d| d.checked_add(descsz));
        let (Some(desc_at), Some(desc_end)) = (desc_at, desc_end) else {
            return Err(invalid(format!("name size {namesz} and descriptor size {descsz} overflow")));
        };
        if desc_end > bytes.len() {
            return Err(invalid(format!(
                "name size {namesz} and descriptor size {descsz} extend past the notes' end at file offset {:#x}",
                offset + bytes.len() as u64
            )));
        }
        let name = &bytes[name_at..name_at + namesz];
        notes.push(Note {
            name: name.strip_suffix(&[0]).unwrap_or(name),
            note_type,
            desc: &bytes[desc_at..desc_end],
            header_offset,
            desc_offset: offset + desc_at as u64,
        });
        // The last note's padding may be missing.
        at = desc_end.checked_next_multiple_of(4).unwrap_or(usize::MAX).min(bytes.len());
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_header(index: usize, p_offset: u64, p_filesz: u64) -> ProgramHeader {
        ProgramHeader {
            index,
            header_offset: 64 + 56 * index as u64,
            p_type: PT_LOAD,
            p_offset,
            p_vaddr: 0x1000 * index as u64,
            p_paddr: 0,
            p_filesz,
            p_memsz: p_filesz,
        }
    }

    #[test]
    fn truncation_counts_cut_segments() {
        let headers = [load_header(1, 0x1000, 0x1000), load_header(2, 0x2000, 0x2000), load_header(3, 0x4000, 0x1000)];
        assert_eq!(Truncation::of(&headers, 0x5000), None);
        let truncation = Truncation::of(&headers, 0x3000).expect("two segments are cut");
        assert_eq!(truncation.expected_len, 0x5000);
        assert_eq!(truncation.segments, 2);
        assert_eq!(truncation.first_header, 2);
        assert!(truncation.to_string().contains("12288 bytes long, but its segments end at byte 20480"), "{truncation}");
    }

    /// Appends a note with 4-byte padding after the name and the descriptor.
    pub fn push_note(out: &mut Vec<u8>, name: &[u8], note_type: u32, desc: &[u8]) {
        out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&note_type.to_le_bytes());
        out.extend_from_slice(name);
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(desc);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    #[test]
    fn notes_parse_with_padding() {
        let mut bytes = Vec::new();
        push_note(&mut bytes, b"CORE", 1, &[1, 2, 3, 4, 5]);
        push_note(&mut bytes, b"QEMU", 0, &[9; 8]);
        let notes = parse_notes(&bytes, 0x100).unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].name, b"CORE");
        assert_eq!(notes[0].desc, &[1, 2, 3, 4, 5]);
        assert_eq!(notes[0].desc_offset, 0x100 + 20);
        assert_eq!(notes[1].name, b"QEMU");
        assert_eq!(notes[1].header_offset, 0x100 + 28);
    }

    #[test]
    fn notes_reject_oversized_descriptor() {
        let mut bytes = Vec::new();
        push_note(&mut bytes, b"CORE", 1, &[0; 8]);
        bytes[4..8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let error = parse_notes(&bytes, 0x40).unwrap_err();
        assert!(matches!(error, CoreFileError::InvalidNote { offset: 0x40, .. }), "{error}");
    }

    #[test]
    fn notes_accept_zero_padding_at_end() {
        let mut bytes = Vec::new();
        push_note(&mut bytes, b"Xen", 0x200_0000, &[]);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(parse_notes(&bytes, 0).unwrap().len(), 1);
    }

    #[test]
    fn file_header_rejects_executable() {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[16] = 2;
        let error = parse_file_header(&bytes).unwrap_err();
        assert_eq!(
            error,
            CoreFileError::InvalidElfHeader { offset: 16, field: "e_type", value: 2, expected: "4 (ET_CORE)" }
        );
    }

    #[test]
    fn program_header_count_from_section_zero() {
        // 0xffff program headers (PN_XNUM): section header 0's sh_info has the count.
        let mut bytes = vec![0u8; 64 + 64 + 2 * 56];
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[16] = 4;
        bytes[18] = 62;
        bytes[32..40].copy_from_slice(&128u64.to_le_bytes());
        bytes[40..48].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        bytes[58..60].copy_from_slice(&64u16.to_le_bytes());
        bytes[60..62].copy_from_slice(&1u16.to_le_bytes());
        bytes[64 + 44..64 + 48].copy_from_slice(&2u32.to_le_bytes());
        bytes[128..132].copy_from_slice(&PT_NOTE.to_le_bytes());
        bytes[184..188].copy_from_slice(&PT_LOAD.to_le_bytes());
        let header = parse_file_header(&bytes).unwrap();
        let headers = parse_program_headers(&bytes, &header).unwrap();
        assert_eq!(headers.iter().map(|h| h.p_type).collect::<Vec<_>>(), vec![PT_NOTE, PT_LOAD]);
        assert_eq!(headers[1].header_offset, 184);
    }

    #[test]
    fn program_headers_beyond_file_are_truncated() {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[16] = 4;
        bytes[18] = 62;
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&1000u16.to_le_bytes());
        let header = parse_file_header(&bytes).unwrap();
        let error = parse_program_headers(&bytes, &header).unwrap_err();
        assert!(matches!(error, CoreFileError::Truncated { offset: 64, needed: 56000, .. }), "{error}");
    }
}
