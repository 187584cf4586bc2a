//! QEMU's gdbstub extensions: physical memory mode and monitor commands.
//!
//! `qqemu.Supported` lists QEMU's extensions; `Qqemu.PhyMemMode:1` makes
//! memory packets use guest physical addresses. QEMU 7.2 reads unassigned
//! physical addresses as zeroes without an error, so the RAM layout comes
//! from the monitor's `info mtree -f` rather than from probing.

use stardump_format::MemoryRange;
use tracing::debug;

use super::client::GdbClient;
use super::error::GdbError;

/// Returns whether the stub is QEMU with physical memory mode.
pub fn supports_phys_mem_mode(client: &mut GdbClient) -> Result<bool, GdbError> {
    let reply = client.request(b"qqemu.Supported")?;
    let supported = String::from_utf8_lossy(&reply).split(';').any(|entry| entry == "PhyMemMode");
    debug!(supported, "qqemu.Supported");
    Ok(supported)
}

/// Switches memory packets between physical (`true`) and virtual
/// addresses.
pub fn set_phys_mem_mode(client: &mut GdbClient, physical: bool) -> Result<(), GdbError> {
    let request: &[u8] = if physical { b"Qqemu.PhyMemMode:1" } else { b"Qqemu.PhyMemMode:0" };
    let reply = client.request_ok(request)?;
    if reply != b"OK" {
        return Err(GdbError::InvalidReply {
            request: String::from_utf8_lossy(request).into_owned(),
            reply: String::from_utf8_lossy(&reply).into_owned(),
        });
    }
    Ok(())
}

/// Returns QEMU's version as `QEMU 7.2.22 (Debian 1:7.2+dfsg-7)`, from the
/// monitor's `info version`.
pub fn version(client: &mut GdbClient) -> Result<String, GdbError> {
    let output = client.monitor("info version")?;
    Ok(format_version(&output))
}

/// Formats the output of `info version`. QEMU prints its version and the
/// distribution's package version with nothing between them
/// (`7.2.22Debian 1:7.2+dfsg-7`), so the package version is split off.
fn format_version(output: &str) -> String {
    let output = output.trim();
    let number_len = output
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(output.len());
    let (number, package) = output.split_at(number_len);
    let package = package.trim();
    if package.is_empty() || package.starts_with('(') {
        format!("QEMU {number}{}{package}", if package.is_empty() { "" } else { " " })
    } else {
        format!("QEMU {number} ({package})")
    }
}

/// Reads the guest's RAM ranges from the monitor's `info mtree -f`.
pub fn ram_ranges(client: &mut GdbClient) -> Result<Vec<MemoryRange>, GdbError> {
    let output = client.monitor("info mtree -f")?;
    Ok(parse_mtree_ram(&output))
}

/// Extracts the RAM ranges of the system address space from the output of
/// `info mtree -f`, merging adjacent ranges.
///
/// The flat view that serves `AS "memory"` lists lines such as
/// `  0000000000100000-0000000003ffffff (prio 0, ram): microvm.ram @...`;
/// only `ram` regions are kept (not `rom`, `romd` or `i/o`).
pub fn parse_mtree_ram(output: &str) -> Vec<MemoryRange> {
    let mut ranges: Vec<MemoryRange> = Vec::new();
    let mut in_system_view = false;
    for line in output.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("FlatView") {
            in_system_view = false;
            continue;
        }
        if trimmed.starts_with("AS \"memory\"") {
            in_system_view = true;
            continue;
        }
        if !in_system_view {
            continue;
        }
        let Some((span, rest)) = trimmed.split_once(' ') else {
            continue;
        };
        if !rest.contains(", ram)") {
            continue;
        }
        let Some((start, end)) = span.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else {
            continue;
        };
        let Some(len_bytes) = end.checked_sub(start).and_then(|len| len.checked_add(1)) else {
            continue;
        };
        match ranges.last_mut() {
            Some(last) if last.start.checked_add(last.len_bytes) == Some(start) => last.len_bytes += len_bytes,
            _ => ranges.push(MemoryRange { start, len_bytes }),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_splits_package() {
        assert_eq!(super::format_version("7.2.22Debian 1:7.2+dfsg-7\n"), "QEMU 7.2.22 (Debian 1:7.2+dfsg-7)");
        assert_eq!(super::format_version("8.0.0"), "QEMU 8.0.0");
        assert_eq!(super::format_version("8.0.0 (v8.0.0)"), "QEMU 8.0.0 (v8.0.0)");
    }

    use super::*;

    const MICROVM_MTREE: &str = "FlatView #0
 AS \"memory\", root: system
 AS \"cpu-memory-0\", root: system
 Root memory region: system
  0000000000000000-00000000000effff (prio 0, ram): microvm.ram
  00000000000f0000-00000000000fffff (prio 0, ram): pc.bios
  0000000000100000-0000000003ffffff (prio 0, ram): microvm.ram @0000000000100000
  00000000feb00000-00000000feb001ff (prio 0, i/o): virtio-mmio
  00000000fed00000-00000000fed003ff (prio 0, romd): something
  00000000ffff0000-00000000ffffffff (prio 0, ram): pc.bios

FlatView #1
 AS \"I/O\", root: io
 Root memory region: io
  0000000000000000-000000000000001f (prio 0, ram): not-memory
";

    #[test]
    fn mtree_ram_is_merged() {
        let ranges = parse_mtree_ram(MICROVM_MTREE);
        assert_eq!(
            ranges,
            [
                MemoryRange { start: 0, len_bytes: 0x400_0000 },
                MemoryRange { start: 0xffff_0000, len_bytes: 0x1_0000 },
            ]
        );
    }

    #[test]
    fn mtree_without_memory_view_is_empty() {
        assert!(parse_mtree_ram("garbage\nFlatView #0\n AS \"I/O\"\n  0-f (prio 0, ram): x\n").is_empty());
    }
}
