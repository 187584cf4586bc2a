//! Finding the end of guest RAM by probing physical reads, for stubs whose
//! RAM layout is not known otherwise.
//!
//! The probe reads one byte at growing addresses until a read fails, then
//! narrows the end down to a page with a binary search. It relies on the
//! stub reporting unreadable addresses as errors. QEMU 7.2 returns zeroes
//! for unassigned physical addresses instead, so QEMU's layout comes from
//! its memory tree. A probe that reaches [`PROBE_LIMIT`] without an error
//! is reported as an error, not taken as 3 GiB of RAM.

use stardump_format::MemoryRange;
use tracing::debug;

use crate::memory::PAGE_SIZE;

/// First probe step; RAM smaller than this is found by the binary search.
const FIRST_STEP_BYTES: u64 = 1 << 20;
/// End of the probed range. x86 machines keep RAM below the 32-bit MMIO
/// hole at 3 GiB (QEMU's microvm and pc machines among them) and put the
/// rest above 4 GiB, where the probe does not look.
pub const PROBE_LIMIT: u64 = 0xc000_0000;

/// Errors of the RAM probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError<E: std::error::Error + 'static> {
    /// Address 0 could not be read.
    #[error("cannot read guest physical address 0")]
    NoRamAtZero,
    /// Every probed address up to the limit was readable.
    #[error("the stub reads every physical address up to {PROBE_LIMIT:#x} without an error, so the end of RAM is unknown")]
    NoEnd,
    /// A probe failed for another reason than an unreadable address.
    #[error(transparent)]
    Read(E),
}

/// Finds the end of the RAM that starts at physical address 0.
///
/// `readable(address)` returns `Ok(false)` when the stub reports an error
/// for `address`, and `Err` for failures of the connection.
pub fn probe_ram_end<E: std::error::Error + 'static>(
    readable: &mut dyn FnMut(u64) -> Result<bool, E>,
) -> Result<MemoryRange, ProbeError<E>> {
    if !readable(0).map_err(ProbeError::Read)? {
        return Err(ProbeError::NoRamAtZero);
    }

    // lo is readable, hi is not (or is the limit).
    let mut lo = 0u64;
    let mut hi = FIRST_STEP_BYTES;
    loop {
        if hi >= PROBE_LIMIT {
            if readable(PROBE_LIMIT - PAGE_SIZE).map_err(ProbeError::Read)? {
                return Err(ProbeError::NoEnd);
            }
            hi = PROBE_LIMIT;
            break;
        }
        if !readable(hi).map_err(ProbeError::Read)? {
            break;
        }
        lo = hi;
        hi *= 2;
    }

    while hi - lo > PAGE_SIZE {
        let mid = lo + ((hi - lo) / 2) / PAGE_SIZE * PAGE_SIZE;
        if readable(mid).map_err(ProbeError::Read)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    debug!(end = format_args!("{hi:#x}"), "probed the end of RAM");
    Ok(MemoryRange { start: 0, len_bytes: hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_with_end(end: u64) -> (Result<MemoryRange, ProbeError<std::io::Error>>, usize) {
        let mut probes = 0;
        let result = probe_ram_end(&mut |address| {
            probes += 1;
            Ok::<_, std::io::Error>(address < end)
        });
        (result, probes)
    }

    #[test]
    fn probe_finds_page_aligned_end() {
        for end in [0x1000, 0x9f000, 0x400_0000, 0x400_1000, 0x7fff_f000, 0xbfff_f000] {
            let (result, probes) = probe_with_end(end);
            assert_eq!(result.unwrap(), MemoryRange { start: 0, len_bytes: end }, "end {end:#x}");
            assert!(probes < 64, "{probes} probes for end {end:#x}");
        }
    }

    #[test]
    fn probe_reports_stub_without_errors() {
        let (result, _) = probe_with_end(u64::MAX);
        assert!(matches!(result, Err(ProbeError::NoEnd)));
    }

    #[test]
    fn probe_reports_missing_ram_at_zero() {
        let (result, _) = probe_with_end(0);
        assert!(matches!(result, Err(ProbeError::NoRamAtZero)));
    }
}
