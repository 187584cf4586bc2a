//! `stardump info`: what a snapshot or core file contains and how it was
//! taken.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;
use stardump_format::SourceKind;
use stardump_format::{Core, Target};

use super::{hex, open_target, time, Outcome, JSON_SCHEMA_VERSION};
use crate::check;

/// Arguments of `stardump info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot, QEMU dump or `xl dump-core` file, or a live target
    /// (`gdb:HOST:PORT`).
    pub file: PathBuf,
    /// Print JSON (schema in analyze/JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The `info` report; the JSON form is documented in analyze/JSON.md.
#[derive(Debug, Serialize)]
pub struct InfoReport {
    schema_version: u32,
    command: &'static str,
    snapshot: String,
    format: &'static str,
    /// Whether `snapshot` names a live target, paused while it was read.
    live: bool,
    format_version: Option<String>,
    source_kind: stardump_format::SourceKind,
    target_name: String,
    /// The start of a Linux core's command line (`NT_PRPSINFO`).
    command_line: Option<String>,
    /// The signal that ended a Linux core's process.
    signal: Option<crate::signal::SignalReport>,
    domain_id: Option<u32>,
    hypervisor_version: Option<String>,
    capture_time: Option<String>,
    capture_time_unix_us: u64,
    pause_time_us: u64,
    vcpu_count: usize,
    /// The vCPU count a snapshot's header records, which differs from
    /// `vcpu_count` when vCPU notes are missing or damaged.
    recorded_vcpu_count: Option<u32>,
    memory: MemoryReport,
    mappings: Vec<MappingCount>,
    image_build_id: Option<String>,
    warnings: Vec<String>,
    /// `start-end  size` per memory range, for the text form.
    #[serde(skip)]
    memory_ranges_text: Vec<String>,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    ranges: Vec<RangeReport>,
    total_bytes: u64,
    page_size: u32,
    stored_pages: Option<u64>,
    zero_pages: Option<u64>,
    chunks: Option<usize>,
    file_len_bytes: u64,
    /// Captured bytes (stored and zero pages) per byte of file; `None` for an
    /// empty file.
    compression_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RangeReport {
    start: String,
    len_bytes: u64,
}

#[derive(Debug, Serialize)]
struct MappingCount {
    cr3: String,
    ranges: usize,
}

/// Collects the report for `core`, whose file is `file_len_bytes` long.
/// Page counts, chunks and mappings exist only in stardump snapshots.
pub fn report(core: &Core, file_len_bytes: u64) -> InfoReport {
    let metadata = core.metadata();
    let ranges = core.memory_map();
    let total_bytes = ranges.iter().map(|range| range.len_bytes).sum();
    let snapshot = core.as_snapshot();
    let stored_pages = snapshot.map(|snapshot| snapshot.stored_page_count());
    let zero_pages = snapshot.map(|snapshot| snapshot.zero_page_count());
    let captured_bytes = match (stored_pages, zero_pages) {
        (Some(stored), Some(zero)) => (stored + zero).saturating_mul(u64::from(metadata.page_size)),
        _ => total_bytes,
    };
    InfoReport {
        schema_version: JSON_SCHEMA_VERSION,
        command: "info",
        snapshot: core.path().display().to_string(),
        format: core.format_name(),
        live: core.is_live(),
        format_version: snapshot.map(|snapshot| {
            let (major, minor) = snapshot.format_version();
            format!("{major}.{minor}")
        }),
        source_kind: metadata.source_kind,
        target_name: metadata.target_name.clone(),
        command_line: command_line(core),
        signal: crate::signal::report(core),
        domain_id: metadata.domain_id,
        hypervisor_version: metadata.hypervisor_version.clone(),
        // Formats other than snapshots record no capture or pause time.
        capture_time: (metadata.capture_time_unix_us != 0).then(|| time::iso8601_utc(metadata.capture_time_unix_us)),
        capture_time_unix_us: metadata.capture_time_unix_us,
        pause_time_us: metadata.pause_time_us,
        vcpu_count: core.vcpus().len(),
        recorded_vcpu_count: snapshot.map(|snapshot| snapshot.recorded_vcpu_count()),
        memory: MemoryReport {
            ranges: ranges.iter().map(|r| RangeReport { start: hex(r.start), len_bytes: r.len_bytes }).collect(),
            total_bytes,
            page_size: metadata.page_size,
            stored_pages,
            zero_pages,
            chunks: snapshot.map(|snapshot| snapshot.chunk_count()),
            file_len_bytes,
            compression_ratio: (file_len_bytes > 0).then(|| captured_bytes as f64 / file_len_bytes as f64),
        },
        mappings: snapshot
            .map(|snapshot| snapshot.mappings())
            .unwrap_or_default()
            .iter()
            .map(|(cr3, mappings)| MappingCount { cr3: hex(*cr3), ranges: mappings.len() })
            .collect(),
        image_build_id: metadata.image_build_id.as_deref().map(check::hex),
        warnings: super::warnings::damage_warnings(core),
        memory_ranges_text: ranges
            .iter()
            .map(|range| {
                let last = range.start.saturating_add(range.len_bytes.saturating_sub(1));
                format!("{:#x}-{last:#x}  {}", range.start, human_bytes(range.len_bytes))
            })
            .collect(),
    }
}

/// Returns the command line a Linux core records, when it records one.
pub fn command_line(core: &Core) -> Option<String> {
    match core {
        Core::LinuxCore(linux) => linux.command_line().filter(|line| !line.is_empty()).map(str::to_owned),
        _ => None,
    }
}

/// Runs `stardump info`; warnings about a damaged snapshot go to `err` in
/// text mode.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    let core = open_target(&args.file)?;
    let file_len_bytes = if core.is_live() {
        0
    } else {
        std::fs::metadata(&args.file)
            .with_context(|| format!("cannot read the size of {}", args.file.display()))?
            .len()
    };
    let report = report(&core, file_len_bytes);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        super::warnings::write_text(&report.warnings, err)?;
        write_text(&report, out)?;
    }
    Ok(if report.warnings.is_empty() { Outcome::Complete } else { Outcome::Incomplete })
}

/// Formats microseconds in milliseconds, or in seconds from one second on.
fn human_duration(micros: u64) -> String {
    if micros >= 1_000_000 {
        format!("{:.3} s", micros as f64 / 1e6)
    } else {
        format!("{:.3} ms", micros as f64 / 1e3)
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Formats a byte count with a binary unit, as `1.5 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn write_text(report: &InfoReport, out: &mut dyn Write) -> std::io::Result<()> {
    let memory = &report.memory;
    let source_kind = serde_json::to_value(report.source_kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    if report.live {
        writeln!(out, "Live target:     {} (paused while stardump reads it)", report.snapshot)?;
    } else {
        writeln!(out, "Snapshot:        {}", report.snapshot)?;
    }
    match &report.format_version {
        Some(version) => writeln!(out, "Format version:  {version}")?,
        None => writeln!(out, "Format:          {}", report.format)?,
    }
    writeln!(out, "Source:          {source_kind}")?;
    writeln!(out, "Target:          {}", report.target_name)?;
    if let Some(command_line) = &report.command_line {
        writeln!(out, "Command line:    {command_line}")?;
    }
    if let Some(signal) = &report.signal {
        let thread = signal.lwp.map(|lwp| format!(", in LWP {lwp}")).unwrap_or_default();
        writeln!(out, "Signal:          {}, {}{thread}", signal.name, signal.description)?;
        if let Some((label, text)) = signal.detail() {
            writeln!(out, "{:<17}{text}", format!("{label}:"))?;
        }
    }
    if let Some(domain_id) = report.domain_id {
        writeln!(out, "Domain id:       {domain_id}")?;
    }
    // A process has threads and a kernel where a guest has vCPUs and a
    // hypervisor, and its mappings are not under any cr3.
    let process = matches!(report.source_kind, SourceKind::LinuxProcess | SourceKind::LinuxCore);
    if let Some(version) = &report.hypervisor_version {
        let label = if process { "Kernel:          " } else { "Hypervisor:      " };
        writeln!(out, "{label}{version}")?;
    }
    let time_label = if report.live { "Attached at:    " } else { "Captured at:    " };
    writeln!(out, "{time_label} {}", report.capture_time.as_deref().unwrap_or("unknown"))?;
    if report.format_version.is_some() {
        let label = if process { "Stop time:       " } else { "Pause time:      " };
        writeln!(out, "{label}{}", human_duration(report.pause_time_us))?;
    }
    let label = if process { "Threads:         " } else { "vCPUs:           " };
    match report.recorded_vcpu_count {
        Some(recorded) if u64::from(recorded) != report.vcpu_count as u64 => {
            writeln!(out, "{label}{} (the header records {recorded})", report.vcpu_count)?
        }
        _ => writeln!(out, "{label}{}", report.vcpu_count)?,
    }
    writeln!(out, "Memory:          {} in {}", human_bytes(memory.total_bytes), plural(memory.ranges.len(), "range"))?;
    for range in &report.memory_ranges_text {
        writeln!(out, "  {range}")?;
    }
    if let (Some(stored), Some(zero), Some(chunks)) = (memory.stored_pages, memory.zero_pages, memory.chunks) {
        writeln!(out, "Pages:           {stored} stored, {zero} zero, in {}", plural(chunks, "chunk"))?;
    }
    let ratio = match memory.compression_ratio {
        Some(ratio) => format!(" (compression ratio {ratio:.1}:1)"),
        None => String::new(),
    };
    if !report.live {
        writeln!(out, "File size:       {}{ratio}", human_bytes(memory.file_len_bytes))?;
    }
    if report.mappings.is_empty() && report.format_version.is_some() {
        writeln!(out, "Mappings:        none recorded")?;
    }
    for mapping in &report.mappings {
        if process {
            writeln!(out, "Mappings:        {}", plural(mapping.ranges, "range"))?;
        } else {
            writeln!(out, "Mappings:        {} for cr3 {}", plural(mapping.ranges, "range"), mapping.cr3)?;
        }
    }
    let label = if process { "Program build id:" } else { "Image build id: " };
    writeln!(out, "{label} {}", report.image_build_id.as_deref().unwrap_or("unknown"))?;
    Ok(())
}
