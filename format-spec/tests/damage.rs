//! Damaged snapshots: truncated files, flipped bytes in chunks and notes,
//! unknown versions. Every case must give an error naming the file offset
//! and the part, or open and report the damage; none may panic.

mod common;

use std::path::Path;

use common::write_sample;
use stardump_format::{MemoryError, Snapshot, SnapshotError, Target, WriterOptions};

/// File offset of the first chunk in files the writer produces (ELF header
/// plus two program headers).
const FIRST_CHUNK_OFFSET: usize = 64 + 2 * 56;

fn sample_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("sample.sdump");
    write_sample(&path, WriterOptions { chunk_pages: 16, zstd_level: 3, threads: 1 });
    std::fs::read(&path).unwrap()
}

fn note_segment(bytes: &[u8]) -> (usize, usize) {
    // The PT_NOTE program header is the first one.
    let header = &bytes[64..120];
    assert_eq!(u32::from_le_bytes(header[0..4].try_into().unwrap()), 4, "first program header is PT_NOTE");
    let offset = u64::from_le_bytes(header[8..16].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(header[32..40].try_into().unwrap()) as usize;
    (offset, len)
}

/// Returns the file offset of the descriptor of the first note in the
/// segment whose descriptor starts with a CRC and then `marker`.
fn find_descriptor(bytes: &[u8], marker: &[u8]) -> usize {
    let (offset, len) = note_segment(bytes);
    let notes = &bytes[offset..offset + len];
    let at = notes.windows(marker.len()).position(|w| w == marker).expect("marker in the note segment");
    offset + at - 8
}

fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Snapshot::open(&path)
}

#[test]
fn truncated_files_report_offset_or_damage() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample_bytes(dir.path());
    let path = dir.path().join("cut.sdump");
    let mut cuts: Vec<usize> = (0..bytes.len()).step_by(97).collect();
    cuts.extend(bytes.len().saturating_sub(600)..bytes.len());
    cuts.extend(0..200);
    for cut in cuts {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match Snapshot::open(&path) {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains("offset 0x"), "cut at {cut}: {message}");
            }
            Ok(snapshot) => {
                // Only a cut in the padding after the last note can leave a
                // readable file; it must then still verify.
                assert!(cut > bytes.len() - 4, "cut at {cut} opened");
                assert!(snapshot.verify().is_empty());
            }
        }
    }
}

#[test]
fn truncated_elf_header_names_part() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample_bytes(dir.path());
    let error = open_bytes(dir.path(), "cut.sdump", &bytes[..40]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "truncated ELF header at file offset 0x0: needs 64 bytes, file ends at 0x28"
    );
}

#[test]
fn corrupt_chunk_is_reported_and_other_chunks_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    let clean = open_bytes(dir.path(), "clean.sdump", &bytes).unwrap();
    assert!(clean.verify().is_empty());

    // The sample adds frames 48..60 first, so the first bytes of chunk data
    // belong to chunk 3 of the index (chunks 0-2 cover frames 0..40).
    bytes[FIRST_CHUNK_OFFSET + 20] ^= 0x55;
    let snapshot = open_bytes(dir.path(), "bad.sdump", &bytes).unwrap();
    let damage = snapshot.verify();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        matches!(damage[0], SnapshotError::ChunkChecksumMismatch { chunk: 3, offset, .. } if offset == FIRST_CHUNK_OFFSET as u64),
        "{}",
        damage[0]
    );
    assert!(damage[0].to_string().starts_with("chunk 3 at file offset 0xb0: checksum mismatch"), "{}", damage[0]);

    // Frame 49 is stored in chunk 3: its read fails and names the address.
    let mut page = vec![0u8; 4096];
    let error = snapshot.read_physical(49 * 4096, &mut page).unwrap_err();
    assert!(matches!(error, MemoryError::Corrupt { address: 0x31000, len: 4096, .. }), "{error}");
    assert!(error.to_string().contains("chunk 3 at file offset 0xb0"), "{error}");
    // Frame 55 is a zero page of chunk 3, recorded in the index: it still reads.
    snapshot.read_physical(55 * 4096, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0));
    // Frame 17 is in chunk 1.
    let mut expected = vec![0u8; 4096];
    clean.read_physical(17 * 4096, &mut expected).unwrap();
    snapshot.read_physical(17 * 4096, &mut page).unwrap();
    assert_eq!(page, expected);
}

#[test]
fn flipped_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = sample_bytes(dir.path());
    let path = dir.path().join("flip.sdump");
    for at in (0..bytes.len()).step_by(13) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        if let Ok(snapshot) = Snapshot::open(&path) {
            let _ = snapshot.verify();
            let mut buf = vec![0u8; 3 * 4096];
            for address in [0u64, 15 * 4096, 48 * 4096, 1 << 40] {
                let _ = snapshot.read_physical(address, &mut buf);
            }
            for vcpu in snapshot.vcpus() {
                let _ = snapshot.read_virtual(vcpu.cr3, 0xffff_8000_0000_0000, &mut buf);
            }
        }
    }
}

#[test]
fn damaged_vcpu_note_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    // vCPU 1's note: id 1, flags 0xf, thread id 101.
    let desc = find_descriptor(&bytes, &[1, 0, 0, 0, 0xf, 0, 0, 0, 101, 0, 0, 0, 0, 0, 0, 0]);
    bytes[desc + 40] ^= 1;
    let snapshot = open_bytes(dir.path(), "bad.sdump", &bytes).unwrap();
    assert_eq!(snapshot.vcpus().len(), 1);
    assert_eq!(snapshot.vcpus()[0].id, 0);
    let damage = snapshot.verify();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        matches!(damage[0], SnapshotError::NoteChecksumMismatch { note: "vcpu", offset, .. } if offset == desc as u64),
        "{}",
        damage[0]
    );
}

#[test]
fn damaged_chunk_index_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    // The chunk index is the last note; flip a byte inside its first entry.
    let (offset, len) = note_segment(&bytes);
    let end = offset + len;
    let at = end - 40;
    bytes[at] ^= 1;
    let error = open_bytes(dir.path(), "bad.sdump", &bytes).unwrap_err();
    assert!(matches!(error, SnapshotError::NoteChecksumMismatch { note: "chunk index", .. }), "{error}");
}

#[test]
fn unknown_major_version_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    let (offset, _) = note_segment(&bytes);
    // The header is the first note: 12-byte note header, "STARDUMP\0" padded to 12.
    let desc = offset + 24;
    assert_eq!(&bytes[desc + 8..desc + 12], &[1, 0, 1, 0]);
    bytes[desc + 8] = 2;
    let error = open_bytes(dir.path(), "v2.sdump", &bytes).unwrap_err();
    assert!(matches!(error, SnapshotError::UnsupportedVersion { major: 2, minor: 1, .. }), "{error}");
    assert!(error.to_string().contains(&format!("at file offset {desc:#x}")), "{error}");
}

#[test]
fn higher_minor_version_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    let (offset, _) = note_segment(&bytes);
    let desc = offset + 24;
    bytes[desc + 10] = 9;
    let crc = crc32fast::hash(&bytes[desc + 8..desc + 48]);
    bytes[desc..desc + 4].copy_from_slice(&crc.to_le_bytes());
    let snapshot = open_bytes(dir.path(), "v1.9.sdump", &bytes).unwrap();
    assert_eq!(snapshot.format_version(), (1, 9));
    assert_eq!(snapshot.vcpus().len(), 2);
}

#[test]
fn wrong_machine_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    bytes[18] = 183; // EM_AARCH64
    let error = open_bytes(dir.path(), "arm.sdump", &bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid ELF header at file offset 0x12: e_machine is 0xb7, expected 62 (EM_X86_64)"
    );
}

#[test]
fn huge_sizes_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_bytes(dir.path());
    // Program header count 0xffff: the table would extend past the file.
    bytes[56] = 0xff;
    bytes[57] = 0xff;
    let error = open_bytes(dir.path(), "phnum.sdump", &bytes).unwrap_err();
    assert!(matches!(error, SnapshotError::Truncated { .. }), "{error}");

    // A note descriptor size of 4 GiB.
    let mut bytes = sample_bytes(dir.path());
    let (offset, _) = note_segment(&bytes);
    bytes[offset + 4..offset + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = open_bytes(dir.path(), "descsz.sdump", &bytes).unwrap_err();
    assert!(matches!(error, SnapshotError::InvalidNote { .. }), "{error}");
}
