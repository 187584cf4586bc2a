//! Notes that only a Linux process snapshot carries: the file mappings
//! (`NT_STARDUMP_FILE_MAPPINGS`) and the thread names
//! (`NT_STARDUMP_THREAD_NAME`). `SPEC.md` defines their byte layout.
//!
//! Decoders bound every count and length by the descriptor before they
//! allocate, and name the descriptor's file offset in their errors.

use super::error::SnapshotError;
use super::layout::{RecordBuilder, RecordReader};
use crate::model::FileMapping;

/// Stardump note: the file mappings of a Linux process.
pub const NT_STARDUMP_FILE_MAPPINGS: u32 = 0x5344_0006;
/// Stardump note: the name of the thread one vCPU record belongs to.
pub const NT_STARDUMP_THREAD_NAME: u32 = 0x5344_0007;

/// Fixed part of the file-mappings descriptor, before its entries.
pub const FILE_MAPPINGS_FIXED_LEN: usize = 24;
/// Fixed part of one file-mapping entry, before its path and build id.
pub const FILE_MAPPING_ENTRY_FIXED_LEN: usize = 32;
/// Fixed part of the thread-name descriptor, before the name.
pub const THREAD_NAME_FIXED_LEN: usize = 16;

/// Maximum length in bytes of a mapping's path. Linux prints paths of at
/// most `PATH_MAX` (4096) bytes in `/proc/PID/maps`, plus " (deleted)".
pub const MAX_PATH_LEN: usize = 8192;
/// Maximum length in bytes of a build id. GNU ld writes 20 (sha1) or 16
/// (md5) bytes, and `--build-id=0x…` takes any length.
pub const MAX_BUILD_ID_LEN: usize = 256;
/// Maximum length in bytes of a thread name. Linux keeps 15 bytes
/// (`TASK_COMM_LEN` minus the NUL). The larger limit leaves room for other
/// sources.
pub const MAX_THREAD_NAME_LEN: usize = 4096;

/// Encodes the file-mappings note. Paths longer than [`MAX_PATH_LEN`] and
/// build ids longer than [`MAX_BUILD_ID_LEN`] are cut on a character
/// boundary, so that the reader accepts what the writer wrote.
pub fn encode_file_mappings(mappings: &[FileMapping]) -> Vec<u8> {
    let mut b = RecordBuilder::stardump();
    b.u64(mappings.len() as u64).u64(0);
    for mapping in mappings {
        let path = truncate_utf8(&mapping.path, MAX_PATH_LEN);
        let build_id = mapping.build_id.as_deref().map(|id| &id[..id.len().min(MAX_BUILD_ID_LEN)]);
        let flags = u32::from(build_id.is_some());
        let build_id = build_id.unwrap_or(&[]);
        b.u64(mapping.start)
            .u64(mapping.end)
            .u64(mapping.file_offset)
            .u32(path.len() as u32)
            .u16(build_id.len() as u16)
            .u16(flags as u16)
            .bytes(path.as_bytes())
            .bytes(build_id)
            .pad8();
    }
    b.finish_stardump()
}

/// Decodes the file-mappings note.
pub fn decode_file_mappings(desc: &[u8], offset: u64) -> Result<Vec<FileMapping>, SnapshotError> {
    let r = RecordReader::new(desc, offset, "file mappings");
    r.check_stardump(FILE_MAPPINGS_FIXED_LEN)?;
    let invalid = |reason: String| SnapshotError::InvalidNote { note: "file mappings", offset, reason };
    let count = r.u64(8)?;
    let max_count = (r.len() - FILE_MAPPINGS_FIXED_LEN) / FILE_MAPPING_ENTRY_FIXED_LEN;
    if count > max_count as u64 {
        return Err(invalid(format!("entry count {count} does not fit in a {}-byte descriptor", r.len())));
    }
    let mut mappings = Vec::with_capacity(count as usize);
    let mut at = FILE_MAPPINGS_FIXED_LEN;
    for index in 0..count as usize {
        let entry_offset = offset + at as u64;
        let invalid_entry =
            |reason: String| invalid(format!("entry {index} at file offset {entry_offset:#x}: {reason}"));
        let start = r.u64(at)?;
        let end = r.u64(at + 8)?;
        let file_offset = r.u64(at + 16)?;
        let path_len = r.u32(at + 24)? as usize;
        let build_id_len = usize::from(r.u16(at + 28)?);
        let flags = r.u16(at + 30)?;
        if end < start {
            return Err(invalid_entry(format!("end {end:#x} is below start {start:#x}")));
        }
        if path_len > MAX_PATH_LEN {
            return Err(invalid_entry(format!("path length {path_len} exceeds {MAX_PATH_LEN}")));
        }
        if build_id_len > MAX_BUILD_ID_LEN {
            return Err(invalid_entry(format!("build id length {build_id_len} exceeds {MAX_BUILD_ID_LEN}")));
        }
        let path_at = at + FILE_MAPPING_ENTRY_FIXED_LEN;
        let path = r.slice(path_at, path_len)?;
        let path = String::from_utf8(path.to_vec()).map_err(|_| invalid_entry("path is not valid UTF-8".into()))?;
        let build_id = r.slice(path_at + path_len, build_id_len)?;
        mappings.push(FileMapping {
            start,
            end,
            file_offset,
            path,
            build_id: (flags & 1 != 0).then(|| build_id.to_vec()),
        });
        let entry_len = FILE_MAPPING_ENTRY_FIXED_LEN + path_len + build_id_len;
        at += entry_len.next_multiple_of(8);
    }
    Ok(mappings)
}

/// Encodes the thread-name note of vCPU `vcpu_id`. A name longer than
/// [`MAX_THREAD_NAME_LEN`] is cut on a character boundary.
pub fn encode_thread_name(vcpu_id: u32, name: &str) -> Vec<u8> {
    let name = truncate_utf8(name, MAX_THREAD_NAME_LEN);
    let mut b = RecordBuilder::stardump();
    b.u32(vcpu_id).u32(name.len() as u32).bytes(name.as_bytes()).pad8();
    b.finish_stardump()
}

/// Decodes a thread-name note into the vCPU id and the name.
pub fn decode_thread_name(desc: &[u8], offset: u64) -> Result<(u32, String), SnapshotError> {
    let r = RecordReader::new(desc, offset, "thread name");
    r.check_stardump(THREAD_NAME_FIXED_LEN)?;
    let invalid = |reason: String| SnapshotError::InvalidNote { note: "thread name", offset, reason };
    let vcpu_id = r.u32(8)?;
    let name_len = r.u32(12)? as usize;
    if name_len > MAX_THREAD_NAME_LEN {
        return Err(invalid(format!("name length {name_len} exceeds {MAX_THREAD_NAME_LEN}")));
    }
    let name = r.slice(THREAD_NAME_FIXED_LEN, name_len)?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| invalid("name is not valid UTF-8".into()))?;
    Ok((vcpu_id, name))
}

/// Cuts `text` to at most `max_len` bytes on a character boundary.
fn truncate_utf8(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_mappings() -> Vec<FileMapping> {
        vec![
            FileMapping {
                start: 0x5555_5555_4000,
                end: 0x5555_5555_5000,
                file_offset: 0,
                path: "/usr/bin/sleep".into(),
                build_id: Some(vec![0xab; 20]),
            },
            FileMapping {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0002_0000,
                file_offset: 0x3000,
                path: "/tmp/gone (deleted)".into(),
                build_id: None,
            },
            FileMapping {
                start: 0x7f00_0003_0000,
                end: 0x7f00_0003_1000,
                file_offset: 0,
                path: String::new(),
                build_id: Some(Vec::new()),
            },
        ]
    }

    #[test]
    fn file_mappings_round_trip() {
        let mappings = sample_mappings();
        let bytes = encode_file_mappings(&mappings);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(decode_file_mappings(&bytes, 0x200).unwrap(), mappings);
    }

    #[test]
    fn file_mappings_count_beyond_descriptor_is_rejected() {
        let mut bytes = encode_file_mappings(&sample_mappings());
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&bytes[8..]);
        bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        let error = decode_file_mappings(&bytes, 0x200).unwrap_err();
        assert!(error.to_string().contains("does not fit"), "{error}");
        assert!(error.to_string().contains("0x200"), "{error}");
    }

    #[test]
    fn file_mapping_path_past_descriptor_is_rejected() {
        let mut bytes = encode_file_mappings(&sample_mappings()[..1]);
        // The path length of entry 0 is at descriptor byte 24 + 24.
        bytes[48..52].copy_from_slice(&4000u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[8..]);
        bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        let error = decode_file_mappings(&bytes, 0x200).unwrap_err();
        assert!(matches!(error, SnapshotError::InvalidNote { offset: 0x200, .. }), "{error}");
    }

    #[test]
    fn thread_name_round_trip() {
        let bytes = encode_thread_name(3, "worker-2");
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(decode_thread_name(&bytes, 0x80).unwrap(), (3, "worker-2".to_owned()));
    }

    #[test]
    fn thread_name_with_bad_checksum_is_rejected() {
        let mut bytes = encode_thread_name(0, "main");
        bytes[16] ^= 1;
        let error = decode_thread_name(&bytes, 0x80).unwrap_err();
        assert!(matches!(error, SnapshotError::NoteChecksumMismatch { offset: 0x80, .. }), "{error}");
    }

    #[test]
    fn process_snapshot_round_trip() {
        use crate::model::{Metadata, SourceKind, VcpuState};
        use crate::snapshot::{Snapshot, SnapshotWriter, WriterOptions};
        use crate::target::{MemoryError, Target};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("process.sdump");
        let mut writer =
            SnapshotWriter::create(&path, WriterOptions { threads: 1, ..WriterOptions::default() }).unwrap();
        writer.set_metadata(Metadata { source_kind: SourceKind::LinuxProcess, ..Metadata::default() });
        for id in 0..2 {
            writer.add_vcpu(&VcpuState { id, thread_id: Some(100 + u64::from(id)), ..VcpuState::default() });
        }
        writer.set_thread_name(1, "worker");
        let mappings = sample_mappings();
        writer.add_file_mappings(&mappings[1..]);
        writer.add_file_mappings(&mappings[..1]);
        // A page at a user-space virtual address, stored at that address.
        let page_address = 0x7ffd_1234_5000u64;
        writer.add_pages(page_address / 4096, &[0x5a; 4096]).unwrap();
        writer.finish().unwrap();

        let snapshot = Snapshot::open(&path).unwrap();
        assert_eq!(snapshot.format_version(), (1, 1));
        assert_eq!(snapshot.file_mappings(), &mappings[..]);
        assert_eq!(snapshot.thread_name(0), None);
        assert_eq!(snapshot.thread_name(1), Some("worker"));
        let mut buf = [0u8; 8];
        snapshot.read_virtual(0, page_address + 8, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 8]);
        let error = snapshot.read_virtual(0, page_address + 4096, &mut buf).unwrap_err();
        assert_eq!(error, MemoryError::NotCaptured { address: page_address + 4096, len: 8 });
    }
}
