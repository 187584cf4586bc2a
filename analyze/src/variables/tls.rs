//! Thread-local variables (`__thread`, `thread_local`) of the executable.
//!
//! gcc locates a thread-local variable with `DW_OP_const8u OFFSET;
//! DW_OP_GNU_push_tls_address` (or `DW_OP_form_tls_address`): OFFSET is
//! the variable's offset in its module's TLS block, and the consumer turns
//! it into an address. On x86_64 (TLS variant II) the thread pointer is
//! `fs_base`, and the executable's block is the first one below it, at
//! `fs_base - tls_offset`. glibc's `_dl_determine_tlsoffset` places it at
//!
//! ```text
//! firstbyte  = -p_vaddr mod p_align
//! tls_offset = roundup(p_memsz - firstbyte, p_align) + firstbyte
//! ```
//!
//! from the executable's `PT_TLS` header. Blocks of shared objects are
//! placed by the dynamic loader at run time, which a core file does not
//! record; their variables are not supported.

use object::elf::{ET_DYN, PT_INTERP, PT_TLS};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use super::value::Hole;

/// The `PT_TLS` segment of an ELF file and whether the file is an
/// executable (whose block sits right below the thread pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsTemplate {
    /// `p_vaddr` of `PT_TLS`.
    pub vaddr: u64,
    /// `p_memsz`: the block's size in bytes.
    pub len_bytes: u64,
    /// `p_align`.
    pub align: u64,
    /// Whether the file is an executable: `ET_EXEC`, or `ET_DYN` with a
    /// `PT_INTERP` (a PIE). A shared object's block is placed at run time.
    pub executable: bool,
}

impl TlsTemplate {
    /// Reads the `PT_TLS` header of the ELF64 file `data`; `None` when the
    /// file has none or is not a 64-bit ELF file.
    pub fn from_elf(data: &[u8]) -> Option<TlsTemplate> {
        let header = object::elf::FileHeader64::<Endianness>::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let headers = header.program_headers(endian, data).ok()?;
        let has_interpreter = headers.iter().any(|ph| ph.p_type(endian) == PT_INTERP);
        let executable = header.e_type(endian) != ET_DYN || has_interpreter;
        let tls = headers.iter().find(|ph| ph.p_type(endian) == PT_TLS)?;
        Some(TlsTemplate {
            vaddr: tls.p_vaddr(endian),
            len_bytes: tls.p_memsz(endian),
            align: tls.p_align(endian).max(1),
            executable,
        })
    }

    /// Returns the executable's `tls_offset`: how far below the thread
    /// pointer its block starts. `None` on overflow or an alignment that is
    /// not a power of two.
    pub fn tls_offset(&self) -> Option<u64> {
        if !self.align.is_power_of_two() {
            return None;
        }
        let firstbyte = self.vaddr.wrapping_neg() & (self.align - 1);
        let unaligned = self.len_bytes.checked_sub(firstbyte)?;
        let rounded = unaligned.checked_add(self.align - 1)? & !(self.align - 1);
        rounded.checked_add(firstbyte)
    }

    /// Returns the address of the variable at `offset` in the executable's
    /// block, for thread pointer `thread_pointer` (x86_64 `fs_base`).
    pub fn address(&self, thread_pointer: u64, offset: u64) -> Result<u64, Hole> {
        if !self.executable {
            return Err(Hole::Unsupported("thread-local storage of a shared object".to_owned()));
        }
        if thread_pointer == 0 {
            return Err(Hole::Error("the thread pointer (fs_base) is 0".to_owned()));
        }
        let tls_offset = self.tls_offset().ok_or_else(|| {
            Hole::Error(format!("invalid PT_TLS: size {:#x}, alignment {:#x}", self.len_bytes, self.align))
        })?;
        thread_pointer
            .checked_sub(tls_offset)
            .and_then(|block| block.checked_add(offset))
            .ok_or_else(|| Hole::Error(format!("TLS offset {offset:#x} from fs_base {thread_pointer:#x} overflows")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_block_below_thread_pointer() {
        // gcc 12's PT_TLS for `__thread long a[3]; __thread int b;`:
        // 0x1c bytes aligned to 16, and gdb put b (offset 0x18) at fs_base - 8.
        let template = TlsTemplate { vaddr: 0x403e10, len_bytes: 0x1c, align: 0x10, executable: true };
        assert_eq!(template.tls_offset(), Some(0x20));
        assert_eq!(template.address(0x7fff_f7dc_f740, 0x18), Ok(0x7fff_f7dc_f738));
    }

    #[test]
    fn misaligned_vaddr_keeps_first_byte() {
        // p_vaddr 8 bytes past a 16-byte boundary: firstbyte 8.
        let template = TlsTemplate { vaddr: 0x403e08, len_bytes: 0x14, align: 0x10, executable: true };
        assert_eq!(template.tls_offset(), Some(0x18));
    }

    #[test]
    fn shared_object_not_supported() {
        let template = TlsTemplate { vaddr: 0, len_bytes: 8, align: 8, executable: false };
        let hole = template.address(0x1000, 0).unwrap_err();
        assert_eq!(hole.marker(), "<thread-local storage of a shared object: not supported>");
    }

    #[test]
    fn zero_thread_pointer_rejected() {
        let template = TlsTemplate { vaddr: 0, len_bytes: 8, align: 8, executable: true };
        assert!(template.address(0, 0).is_err());
    }

    #[test]
    fn bad_alignment_rejected() {
        let template = TlsTemplate { vaddr: 0, len_bytes: 8, align: 12, executable: true };
        assert_eq!(template.tls_offset(), None);
    }
}
