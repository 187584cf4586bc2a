//! Unwinding by DWARF call frame information (`.eh_frame`, `.debug_frame`).
//!
//! For one frame, [`CfiUnwinder::unwind`] finds the FDE that covers the
//! lookup address (through the binary search table of `.eh_frame_hdr`
//! when the image has one, because a linear search parses every FDE before
//! it), runs its CFA program to the row for that address and
//! applies the row's rules to recover the caller's registers. Expression
//! rules (`DW_CFA_def_cfa_expression`, `DW_CFA_expression`,
//! `DW_CFA_val_expression`) are evaluated with the frame's registers and the
//! target's memory. The caller validates the result (see [`super`]).

use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, EhFrameHdr, EvaluationResult, FrameDescriptionEntry,
    ParsedEhFrameHdr, RegisterRule, UnwindContext, UnwindSection, UnwindTableRow,
};
use stardump_format::model::dwarf_reg;
use stardump_format::MemoryError;

use super::memory::StackMemory;
use super::registers::{Registers, CALLEE_SAVED, TRACKED_REGISTERS};
use crate::image::{DwarfReader, Image};

/// Upper bound on the operations one CFI expression may execute, so a
/// malformed expression with a backward branch cannot hang the unwinder.
const MAX_EXPRESSION_STEPS: u32 = 10_000;

/// Errors from applying the CFI of a frame whose address has an FDE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfiError {
    /// A register value or an expression operand could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The FDE, its CIE or its instructions could not be parsed.
    #[error("invalid CFI for {address:#x}: {source}")]
    InvalidCfi {
        /// The lookup address.
        address: u64,
        /// The error gimli reported.
        #[source]
        source: gimli::Error,
    },
    /// A rule needs a register whose value is unknown in this frame.
    #[error("CFI for {address:#x} needs register {register}, which is unknown in this frame")]
    MissingRegister {
        /// The lookup address.
        address: u64,
        /// DWARF register number.
        register: u16,
    },
    /// The CFA or a saved register's address overflowed 64 bits.
    #[error("CFI for {address:#x} computes an address that overflows: {base:#x} + {offset}")]
    InvalidAddress {
        /// The lookup address.
        address: u64,
        /// The base value.
        base: u64,
        /// The signed offset added to it.
        offset: i64,
    },
    /// An expression needs something the unwinder cannot provide (TLS, an
    /// entry value, a typed value) or does not yield an address.
    #[error("unsupported CFI expression for {address:#x}: {what}")]
    UnsupportedExpression {
        /// The lookup address.
        address: u64,
        /// The operation or result the unwinder cannot handle.
        what: String,
    },
}

/// The result of applying one CFI row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfiStep {
    /// The caller's registers; rip is `None` when the CFI marks the return
    /// address undefined, which is how code marks the outermost frame.
    pub caller: Registers,
    /// The canonical frame address of the unwound frame.
    pub cfa: u64,
    /// Whether the FDE's CIE has the `S` augmentation: the unwound frame is
    /// a signal or trap frame and the caller's rip is the exact address of
    /// the interrupted instruction, not a return address.
    pub signal_frame: bool,
}

/// CFI from one image, with an unwind context reused across frames.
pub struct CfiUnwinder {
    eh_frame: Option<(EhFrame<DwarfReader>, BaseAddresses)>,
    /// The parsed `.eh_frame_hdr`, whose table indexes `eh_frame`'s FDEs.
    eh_frame_hdr: Option<ParsedEhFrameHdr<DwarfReader>>,
    debug_frame: Option<(DebugFrame<DwarfReader>, BaseAddresses)>,
    context: Box<UnwindContext<usize>>,
}

impl CfiUnwinder {
    /// Prepares the image's `.eh_frame` and `.debug_frame` for lookups.
    pub fn new(image: &Image) -> CfiUnwinder {
        let eh_frame = image.eh_frame().map(|section| {
            let mut eh_frame = EhFrame::from(section.data.clone());
            eh_frame.set_address_size(8);
            let mut bases = BaseAddresses::default().set_eh_frame(section.address);
            if let Some(text) = image.text_address() {
                bases = bases.set_text(text);
            }
            if let Some(hdr) = image.eh_frame_hdr_address() {
                bases = bases.set_eh_frame_hdr(hdr);
            }
            (eh_frame, bases)
        });
        let eh_frame_hdr = eh_frame.as_ref().zip(image.eh_frame_hdr()).and_then(|((_, bases), section)| {
            match EhFrameHdr::from(section.data.clone()).parse(bases, 8) {
                Ok(parsed) => Some(parsed),
                Err(error) => {
                    tracing::debug!(path = %image.path().display(), %error, "ignoring an invalid .eh_frame_hdr");
                    None
                }
            }
        });
        let debug_frame = image.debug_frame().map(|section| {
            let mut debug_frame = DebugFrame::from(section.data.clone());
            debug_frame.set_address_size(8);
            (debug_frame, BaseAddresses::default())
        });
        CfiUnwinder { eh_frame, eh_frame_hdr, debug_frame, context: Box::new(UnwindContext::new()) }
    }

    /// Unwinds the frame whose registers are `callee`, looking up CFI at
    /// `lookup_address`. Returns `Ok(None)` when no FDE covers the address.
    pub fn unwind(
        &mut self,
        lookup_address: u64,
        callee: &Registers,
        memory: &dyn StackMemory,
    ) -> Result<Option<CfiStep>, CfiError> {
        if let Some((eh_frame, bases)) = &self.eh_frame {
            // When the table misses the address or cannot be read, the
            // linear search decides, and it reports any damage.
            let indexed = self
                .eh_frame_hdr
                .as_ref()
                .and_then(ParsedEhFrameHdr::table)
                .and_then(|table| table.fde_for_address(eh_frame, bases, lookup_address, EhFrame::cie_from_offset).ok());
            let step = match indexed {
                Some(fde) => Some(apply_fde(eh_frame, bases, &mut self.context, lookup_address, &fde, callee, memory)?),
                None => unwind_with(eh_frame, bases, &mut self.context, lookup_address, callee, memory)?,
            };
            if step.is_some() {
                return Ok(step);
            }
        }
        if let Some((debug_frame, bases)) = &self.debug_frame {
            return unwind_with(debug_frame, bases, &mut self.context, lookup_address, callee, memory);
        }
        Ok(None)
    }
}

fn unwind_with<S: UnwindSection<DwarfReader>>(
    section: &S,
    bases: &BaseAddresses,
    context: &mut UnwindContext<usize>,
    address: u64,
    callee: &Registers,
    memory: &dyn StackMemory,
) -> Result<Option<CfiStep>, CfiError> {
    let fde = match section.fde_for_address(bases, address, S::cie_from_offset) {
        Ok(fde) => fde,
        Err(gimli::Error::NoUnwindInfoForAddress) => return Ok(None),
        Err(source) => return Err(CfiError::InvalidCfi { address, source }),
    };
    apply_fde(section, bases, context, address, &fde, callee, memory).map(Some)
}

/// Applies the row of `fde` for `address` to the frame whose registers are
/// `callee`.
fn apply_fde<S: UnwindSection<DwarfReader>>(
    section: &S,
    bases: &BaseAddresses,
    context: &mut UnwindContext<usize>,
    address: u64,
    fde: &FrameDescriptionEntry<DwarfReader>,
    callee: &Registers,
    memory: &dyn StackMemory,
) -> Result<CfiStep, CfiError> {
    let invalid = |source| CfiError::InvalidCfi { address, source };
    let signal_frame = fde.is_signal_trampoline();
    let row = fde.unwind_info_for_address(section, bases, context, address).map_err(invalid)?;
    tracing::trace!(
        address = format_args!("{address:#x}"),
        fde_start = format_args!("{:#x}", fde.initial_address()),
        signal_frame,
        "found CFI row"
    );
    let rules = RowEvaluator { section, address, callee, memory };
    rules.apply(row, signal_frame)
}

/// Applies one row's rules to one frame.
struct RowEvaluator<'a, S> {
    section: &'a S,
    address: u64,
    callee: &'a Registers,
    memory: &'a dyn StackMemory,
}

impl<S: UnwindSection<DwarfReader>> RowEvaluator<'_, S> {
    fn apply(&self, row: &UnwindTableRow<usize>, signal_frame: bool) -> Result<CfiStep, CfiError> {
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                let base = self.register(register.0)?;
                self.offset(base, *offset)?
            }
            CfaRule::Expression(expression) => self.evaluate(expression, None)?,
        };

        let mut caller = Registers::default();
        for number in 0..TRACKED_REGISTERS as u16 {
            let value = match row.register(gimli::Register(number)) {
                Some(rule) => self.apply_rule(number, &rule, cfa),
                None => Ok(self.default_rule(number, cfa)),
            };
            let value = match value {
                Ok(value) => value,
                // The return address and stack pointer are required to go on.
                Err(error) if number == dwarf_reg::RA || number == dwarf_reg::RSP => {
                    return Err(error)
                }
                // Another register saved on an unreadable page only becomes
                // unknown; it may not be needed further up.
                Err(error) => {
                    tracing::debug!(register = number, %error, "cannot recover register");
                    None
                }
            };
            caller.set(number, value);
        }
        Ok(CfiStep { caller, cfa, signal_frame })
    }

    /// Returns the value of a register without a rule in the row.
    ///
    /// The x86_64 psABI leaves these to the ABI: the stack pointer of the
    /// caller is the CFA, callee-saved registers keep their value, and
    /// caller-saved ones are unknown. A missing return address rule leaves
    /// rip unknown, which ends the walk like `DW_CFA_undefined rip`.
    fn default_rule(&self, number: u16, cfa: u64) -> Option<u64> {
        if number == dwarf_reg::RSP {
            Some(cfa)
        } else if CALLEE_SAVED.contains(&number) {
            self.callee.get(number)
        } else {
            None
        }
    }

    fn apply_rule(&self, number: u16, rule: &RegisterRule<usize>, cfa: u64) -> Result<Option<u64>, CfiError> {
        Ok(match rule {
            RegisterRule::Undefined | RegisterRule::Architectural => None,
            RegisterRule::SameValue => self.callee.get(number),
            RegisterRule::Offset(offset) => Some(self.memory.read_u64(self.offset(cfa, *offset)?)?),
            RegisterRule::ValOffset(offset) => Some(self.offset(cfa, *offset)?),
            RegisterRule::Register(register) => self.callee.get(register.0),
            RegisterRule::Expression(expression) => {
                let address = self.evaluate(expression, Some(cfa))?;
                Some(self.memory.read_u64(address)?)
            }
            RegisterRule::ValExpression(expression) => Some(self.evaluate(expression, Some(cfa))?),
            RegisterRule::Constant(value) => Some(*value),
        })
    }

    fn register(&self, number: u16) -> Result<u64, CfiError> {
        self.callee.get(number).ok_or(CfiError::MissingRegister { address: self.address, register: number })
    }

    fn offset(&self, base: u64, offset: i64) -> Result<u64, CfiError> {
        base.checked_add_signed(offset).ok_or(CfiError::InvalidAddress { address: self.address, base, offset })
    }

    /// Evaluates a DWARF expression; `initial` is pushed first, as the CFA is
    /// for register rules (DWARF 5 section 6.4.2.3).
    fn evaluate(&self, expression: &gimli::UnwindExpression<usize>, initial: Option<u64>) -> Result<u64, CfiError> {
        let address = self.address;
        let invalid = |source| CfiError::InvalidCfi { address, source };
        let unsupported = |what: String| CfiError::UnsupportedExpression { address, what };

        let expression = expression.get(self.section).map_err(invalid)?;
        let encoding = gimli::Encoding { address_size: 8, format: gimli::Format::Dwarf32, version: 4 };
        let mut evaluation = expression.evaluation(encoding);
        evaluation.set_max_iterations(MAX_EXPRESSION_STEPS);
        if let Some(initial) = initial {
            evaluation.set_initial_value(initial);
        }
        let mut state = evaluation.evaluate().map_err(invalid)?;
        loop {
            state = match state {
                EvaluationResult::Complete => break,
                EvaluationResult::RequiresMemory { address: read_address, size, space: None, .. } => {
                    let mut bytes = [0u8; 8];
                    let len = usize::from(size).min(8);
                    self.memory.read(read_address, &mut bytes[..len])?;
                    let value = gimli::Value::Generic(u64::from_le_bytes(bytes));
                    evaluation.resume_with_memory(value).map_err(invalid)?
                }
                EvaluationResult::RequiresRegister { register, .. } => {
                    let value = gimli::Value::Generic(self.register(register.0)?);
                    evaluation.resume_with_register(value).map_err(invalid)?
                }
                other => return Err(unsupported(format!("{other:?}"))),
            };
        }
        let pieces = evaluation.result();
        match pieces.as_slice() {
            [piece] => match piece.location {
                gimli::Location::Address { address } => Ok(address),
                gimli::Location::Value { value: gimli::Value::Generic(value) } => Ok(value),
                ref other => Err(unsupported(format!("result is {other:?}"))),
            },
            _ => Err(unsupported(format!("result has {} pieces", pieces.len()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    /// Returns the start of the FDE covering `address`, found by a linear
    /// search of `.eh_frame`.
    fn linear_fde_start(unwinder: &CfiUnwinder, address: u64) -> Option<u64> {
        let (eh_frame, bases) = unwinder.eh_frame.as_ref()?;
        let fde = eh_frame.fde_for_address(bases, address, EhFrame::cie_from_offset).ok()?;
        Some(fde.initial_address())
    }

    /// Returns the start of the FDE covering `address`, found through the
    /// `.eh_frame_hdr` table.
    fn indexed_fde_start(unwinder: &CfiUnwinder, address: u64) -> Option<u64> {
        let (eh_frame, bases) = unwinder.eh_frame.as_ref()?;
        let table = unwinder.eh_frame_hdr.as_ref()?.table()?;
        let fde = table.fde_for_address(eh_frame, bases, address, EhFrame::cie_from_offset).ok()?;
        Some(fde.initial_address())
    }

    #[test]
    fn eh_frame_hdr_finds_linear_fdes() {
        let path = test_fixtures::gcc("cfi_hdr", &["-O2", "-no-pie"], &["native_stack.c", "capture_stack.S"]);
        let image = Image::open(&path).unwrap();
        let unwinder = CfiUnwinder::new(&image);
        assert!(unwinder.eh_frame_hdr.is_some(), "gcc's program has no parsable .eh_frame_hdr");

        let mut covered = 0;
        for symbol in image.symbols() {
            let end = symbol.address + symbol.size.max(1);
            // One byte before and after each function too, where a lookup
            // may fall between FDEs.
            for address in symbol.address.saturating_sub(1)..=end {
                let linear = linear_fde_start(&unwinder, address);
                assert_eq!(indexed_fde_start(&unwinder, address), linear, "FDE for {address:#x}");
                covered += usize::from(linear.is_some());
            }
        }
        assert!(covered > 0, "no address of the program has an FDE");
    }
}
