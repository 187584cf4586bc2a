//! Writes snapshots with the public writer and reads them back: vCPUs,
//! metadata, mappings, pages with zero pages and gaps, virtual reads.

mod common;

use common::{sample_metadata, sample_vcpu, write_sample};
use stardump_format::{
    Mapping, MappingFlags, MemoryError, Snapshot, SnapshotWriter, Target, WriteError, WriterOptions,
};

#[test]
fn round_trip_registers_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let layout = write_sample(&path, WriterOptions::default());
    let snapshot = Snapshot::open(&path).unwrap();

    assert_eq!(snapshot.format_version(), (1, 1));
    assert_eq!(snapshot.metadata(), &sample_metadata());
    assert_eq!(snapshot.vcpus(), &[sample_vcpu(0, layout.cr3), sample_vcpu(1, layout.cr3)]);
    assert_eq!(snapshot.mappings().len(), 2);
    assert_eq!(snapshot.mappings()[0], (layout.cr3, layout.mappings.clone()));
    assert_eq!(snapshot.path(), path.as_path());
}

#[test]
fn round_trip_pages_zero_pages_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let options = WriterOptions { chunk_pages: 16, zstd_level: 3, threads: 2 };
    let layout = write_sample(&path, options);
    let snapshot = Snapshot::open(&path).unwrap();

    assert_eq!(snapshot.stored_page_count() + snapshot.zero_page_count(), layout.captured_pages());
    assert_eq!(snapshot.zero_page_count(), layout.zero_pages);
    for (&pfn, expected) in &layout.pages {
        let mut page = vec![0xaau8; 4096];
        snapshot.read_physical(pfn * 4096, &mut page).unwrap();
        assert_eq!(&page, expected, "page {pfn:#x}");
    }

    // A read spanning a chunk boundary (frames 15 and 16 with 16-page chunks).
    let mut span = vec![0u8; 8192];
    snapshot.read_physical(15 * 4096 + 2048, &mut span).unwrap();
    assert_eq!(&span[..2048], &layout.pages[&15][2048..]);
    assert_eq!(&span[2048..6144], &layout.pages[&16][..]);
    assert_eq!(&span[6144..], &layout.pages[&17][..2048]);
}

#[test]
fn uncaptured_page_is_an_error_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let layout = write_sample(&path, WriterOptions { chunk_pages: 16, zstd_level: 1, threads: 1 });
    let snapshot = Snapshot::open(&path).unwrap();

    let gap = layout.gap_pfn * 4096;
    let mut buf = [0u8; 16];
    assert_eq!(
        snapshot.read_physical(gap + 8, &mut buf),
        Err(MemoryError::NotCaptured { address: gap + 8, len: 16 })
    );
    // A read that starts in a captured page and runs into the gap names the gap's first byte.
    let mut buf = vec![0u8; 8192];
    assert_eq!(
        snapshot.read_physical(gap - 4096, &mut buf),
        Err(MemoryError::NotCaptured { address: gap, len: 8192 })
    );
    let mut buf = [0u8; 8];
    assert!(matches!(
        snapshot.read_physical(0x10_0000_0000, &mut buf),
        Err(MemoryError::NotCaptured { address: 0x10_0000_0000, .. })
    ));
    assert!(matches!(
        snapshot.read_physical(u64::MAX - 3, &mut buf),
        Err(MemoryError::NotCaptured { .. })
    ));
}

#[test]
fn virtual_reads_use_page_tables_and_mapping_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let layout = write_sample(&path, WriterOptions::default());
    let snapshot = Snapshot::open(&path).unwrap();

    // Through the captured page tables: virtual 0xffff_8000_0000_0000 + pfn*4096 -> pfn.
    let mut buf = vec![0u8; 4096];
    snapshot.read_virtual(layout.cr3, 0xffff_8000_0000_0000 + 3 * 4096, &mut buf).unwrap();
    assert_eq!(&buf, &layout.pages[&3]);

    // Not mapped by the page tables.
    assert_eq!(
        snapshot.read_virtual(layout.cr3, 0x1000, &mut buf),
        Err(MemoryError::NotMapped { address: 0x1000, len: 4096, cr3: layout.cr3 })
    );

    // The second cr3's tables were not captured; the mapping table resolves it.
    let mut buf = vec![0u8; 100];
    snapshot.read_virtual(layout.uncaptured_cr3, 0x40_0000 + 5 * 4096 + 7, &mut buf).unwrap();
    assert_eq!(&buf[..], &layout.pages[&5][7..107]);
    assert!(matches!(
        snapshot.read_virtual(layout.uncaptured_cr3, 0x7000_0000, &mut buf),
        Err(MemoryError::PageTableNotCaptured { address: 0x7000_0000, .. })
    ));
}

#[test]
fn memory_map_lists_captured_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let layout = write_sample(&path, WriterOptions { chunk_pages: 16, zstd_level: 1, threads: 1 });
    let snapshot = Snapshot::open(&path).unwrap();
    let expected: Vec<_> = layout.ranges.iter().map(|&(pfn, count)| (pfn * 4096, count * 4096)).collect();
    let actual: Vec<_> = snapshot.memory_map().iter().map(|r| (r.start, r.len_bytes)).collect();
    assert_eq!(actual, expected);
}

#[test]
fn writer_rejects_overlap_and_partial_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = SnapshotWriter::create(&dir.path().join("a.sdump"), WriterOptions::default()).unwrap();
    writer.add_pages(10, &vec![1u8; 4 * 4096]).unwrap();
    assert!(matches!(writer.add_pages(12, &vec![1u8; 4096]), Err(WriteError::OverlappingPages { .. })));
    assert!(matches!(writer.add_pages(8, &vec![1u8; 3 * 4096]), Err(WriteError::OverlappingPages { .. })));
    assert!(matches!(writer.add_pages(20, &[1u8; 100]), Err(WriteError::InvalidPageData { .. })));
    writer.add_pages(14, &vec![1u8; 4096]).unwrap();
    writer.add_pages(5, &vec![1u8; 5 * 4096]).unwrap();
}

#[test]
fn unfinished_snapshot_has_no_name() {
    // The test's directory is on a file system with O_TMPFILE (ext4, tmpfs),
    // so the file has no name until `finish`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let mut writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    writer.add_pages(0, &vec![1u8; 4096]).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    drop(writer);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn finished_snapshot_replaces_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    std::fs::write(&path, b"an older snapshot").unwrap();
    let mut writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    writer.add_pages(0, &vec![1u8; 4096]).unwrap();
    let summary = writer.finish().unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(names, ["a.sdump"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), summary.file_len_bytes);
    assert_eq!(Snapshot::open(&path).unwrap().stored_page_count(), 1);
}

#[test]
fn stale_temporary_files_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.sdump");
    // A pid above Linux's maximum (2^22) belongs to no process; pid 1 always runs.
    let stale = dir.path().join("guest.sdump.tmp.99999999");
    let live = dir.path().join("guest.sdump.tmp.1");
    let other = dir.path().join("other.sdump.tmp.99999999");
    for file in [&stale, &live, &other] {
        std::fs::write(file, b"partial").unwrap();
    }
    let writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    drop(writer);
    assert!(!stale.exists(), "the stale temporary file was kept");
    assert!(live.exists(), "a live process's temporary file was removed");
    assert!(other.exists(), "another snapshot's temporary file was removed");
}

#[test]
fn empty_snapshot_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sdump");
    let summary = SnapshotWriter::create(&path, WriterOptions::default()).unwrap().finish().unwrap();
    assert_eq!(summary.chunks, 0);
    assert_eq!(summary.file_len_bytes, std::fs::metadata(&path).unwrap().len());
    let snapshot = Snapshot::open(&path).unwrap();
    assert!(snapshot.vcpus().is_empty());
    assert!(snapshot.verify().is_empty());
    assert!(matches!(snapshot.read_physical(0, &mut [0u8; 1]), Err(MemoryError::NotCaptured { .. })));
}

#[test]
fn mostly_zero_guest_writes_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sdump");
    let mut memory = vec![0u8; 64 << 20];
    for (i, page) in memory.chunks_mut(4096).enumerate().step_by(97) {
        // i + 1 so that page 0 is not all zero.
        page[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    }
    let start = std::time::Instant::now();
    let mut writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    writer.add_pages(0, &memory).unwrap();
    let summary = writer.finish().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.stored_pages + summary.zero_pages, 16384);
    assert_eq!(summary.stored_pages, 16384usize.div_ceil(97) as u64);
    // Debug builds are several times slower than release; this bound only
    // catches a pathological slowdown.
    assert!(elapsed.as_secs() < 20, "writing 64 MiB took {elapsed:?}");

    let snapshot = Snapshot::open(&path).unwrap();
    let mut word = [0u8; 8];
    snapshot.read_physical(97 * 50 * 4096, &mut word).unwrap();
    assert_eq!(u64::from_le_bytes(word), 97 * 50 + 1);
}

#[test]
fn mapping_flags_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let mappings = [Mapping {
        virtual_start: 0xffff_ffff_8000_0000,
        physical_start: 0x20_0000,
        len_bytes: 0x40_0000,
        flags: MappingFlags { writable: false, user: true, no_execute: true, page_size: 2 << 20 },
    }];
    let mut writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    writer.add_mappings(0x5000, &mappings);
    writer.finish().unwrap();
    let snapshot = Snapshot::open(&path).unwrap();
    assert_eq!(snapshot.mappings(), &[(0x5000, mappings.to_vec())]);
}

#[test]
fn single_page_calls_fill_whole_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sdump");
    let page = |pfn: u64| vec![(pfn % 251) as u8 + 1; 4096];
    let mut writer = SnapshotWriter::create(&path, WriterOptions::default()).unwrap();
    for pfn in 10..610 {
        writer.add_pages(pfn, &page(pfn)).unwrap();
    }
    // A call that does not continue the run ends the pending chunk.
    writer.add_pages(1000, &page(1000)).unwrap();
    writer.add_pages(700, &page(700)).unwrap();
    let summary = writer.finish().unwrap();
    // Frames 10..256, 256..512, 512..610, 1000 and 700.
    assert_eq!(summary.chunks, 5);
    assert_eq!(summary.stored_pages, 602);

    let snapshot = Snapshot::open(&path).unwrap();
    assert_eq!(snapshot.chunk_count(), 5);
    let mut buf = vec![0u8; 4096];
    for pfn in (10..610).chain([700, 1000]) {
        snapshot.read_physical(pfn * 4096, &mut buf).unwrap();
        assert_eq!(buf, page(pfn), "frame {pfn}");
    }
    assert!(matches!(snapshot.read_physical(610 * 4096, &mut buf), Err(MemoryError::NotCaptured { .. })));
}

#[test]
fn snapshot_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
    assert_send_sync::<SnapshotWriter>();
}
