//! Unwinding by scanning the stack for a return address.
//!
//! The last resort when neither CFI nor the frame pointer works: read the
//! words above the stack pointer and take the first one that points just
//! after a call instruction inside a known function of the image. Scanning
//! can pick up a stale return address that an earlier call left on the
//! stack, so frames found this way are marked `scan` for the user to weigh.

use stardump_format::model::dwarf_reg;
use stardump_format::MemoryError;

use super::memory::StackMemory;
use super::registers::Registers;
use crate::image::Image;

/// Default number of 8-byte words scanned above the stack pointer (4 KiB).
pub const DEFAULT_SCAN_WORDS: usize = 512;

/// Maximum length of the x86_64 call instructions this module recognizes: REX prefix,
/// `FF /2` with a SIB byte and a 32-bit displacement.
const MAX_CALL_LEN: usize = 8;

/// Finds the caller of the frame `callee` by scanning at most `max_words`
/// words from its stack pointer for a word that `is_return_address`
/// accepts (see [`is_return_address`]). Returns `Ok(None)` when no word qualifies;
/// an error only when the first word cannot be read.
pub fn unwind(
    is_return_address: &dyn Fn(u64) -> bool,
    callee: &Registers,
    memory: &dyn StackMemory,
    max_words: usize,
) -> Result<Option<Registers>, MemoryError> {
    let Some(rsp) = callee.rsp() else {
        return Ok(None);
    };
    for index in 0..max_words {
        let offset = u64::try_from(index).ok().and_then(|i| i.checked_mul(8));
        let Some(slot) = offset.and_then(|offset| rsp.checked_add(offset)) else {
            break;
        };
        let word = match memory.read_u64(slot) {
            Ok(word) => word,
            Err(error) if index == 0 => return Err(error),
            // The end of the captured stack ends the scan.
            Err(_) => break,
        };
        if !is_return_address(word) {
            continue;
        }
        let Some(caller_rsp) = slot.checked_add(8) else {
            break;
        };
        tracing::debug!(
            slot = format_args!("{slot:#x}"),
            return_address = format_args!("{word:#x}"),
            "found return address by stack scan"
        );
        let mut caller = Registers::default();
        caller.set(dwarf_reg::RA, Some(word));
        caller.set(dwarf_reg::RSP, Some(caller_rsp));
        // An rbp above the found slot may still be the caller's frame
        // pointer, which lets the next frame use the chain again.
        if let Some(rbp) = callee.rbp().filter(|&rbp| rbp >= caller_rsp) {
            caller.set(dwarf_reg::RBP, Some(rbp));
        }
        return Ok(Some(caller));
    }
    Ok(None)
}

/// Whether `address` follows a call instruction inside a function symbol of
/// an executable segment of `image`.
pub fn is_return_address(image: &Image, address: u64) -> bool {
    let Some(call_site) = address.checked_sub(1) else {
        return false;
    };
    if image.executable_segment_for(call_site).is_none() || image.symbol_for(call_site).is_none() {
        return false;
    }
    (2..=MAX_CALL_LEN).any(|len| {
        let Some(start) = address.checked_sub(len as u64) else {
            return false;
        };
        image.bytes_at(start, len).is_some_and(is_call)
    })
}

/// Checks that `bytes` is exactly one near call: `E8 rel32`, or `FF /2` with an
/// optional REX prefix and any ModRM addressing form.
fn is_call(bytes: &[u8]) -> bool {
    if bytes.len() == 5 && bytes[0] == 0xe8 {
        return true;
    }
    let rest = match bytes {
        [rex, rest @ ..] if (0x40..=0x4f).contains(rex) => rest,
        _ => bytes,
    };
    let [0xff, modrm, operands @ ..] = rest else {
        return false;
    };
    let mode = modrm >> 6;
    let reg = (modrm >> 3) & 7;
    let rm = modrm & 7;
    if reg != 2 {
        return false;
    }
    let has_sib = mode != 3 && rm == 4;
    let sib_base = operands.first().map(|sib| sib & 7);
    let displacement = match mode {
        0 if rm == 5 => 4,
        0 if has_sib && sib_base == Some(5) => 4,
        0 | 3 => 0,
        1 => 1,
        _ => 4,
    };
    operands.len() == usize::from(has_sib) + displacement
}

#[cfg(test)]
mod tests {
    use super::is_call;

    #[test]
    fn call_encodings_recognized() {
        assert!(is_call(&[0xe8, 1, 2, 3, 4]));
        assert!(is_call(&[0xff, 0xd0])); // call rax
        assert!(is_call(&[0x41, 0xff, 0xd3])); // call r11
        assert!(is_call(&[0xff, 0x55, 0x08])); // call [rbp+8]
        assert!(is_call(&[0xff, 0x14, 0x24])); // call [rsp]
        assert!(is_call(&[0xff, 0x15, 1, 2, 3, 4])); // call [rip+disp32]
        assert!(is_call(&[0xff, 0x14, 0xc5, 1, 2, 3, 4])); // call [rax*8+disp32]
        assert!(is_call(&[0x41, 0xff, 0x94, 0x24, 1, 2, 3, 4])); // call [r12+disp32]
    }

    #[test]
    fn non_calls_rejected() {
        assert!(!is_call(&[0xff, 0xe0])); // jmp rax
        assert!(!is_call(&[0xe9, 1, 2, 3, 4])); // jmp rel32
        assert!(!is_call(&[0x90, 0xff, 0xd0])); // nop; call rax: two instructions
        assert!(!is_call(&[0xff, 0x55])); // truncated
    }
}
