//! Evaluation of DWARF location descriptions with gimli's [`gimli::Evaluation`].
//!
//! The evaluation runs against one physical frame of a backtrace: its
//! recovered registers, its CFA (for `DW_OP_call_frame_cfa`, which gcc uses
//! as every function's `DW_AT_frame_base`) and the target's memory. A
//! location list is searched at the frame's lookup pc, one byte before a
//! return address, so a caller's variables are those live at the call.
//!
//! `DW_OP_entry_value(DW_OP_regN)`, the value a register had when the
//! function was entered, comes from the caller (see [`super::entry`]).

use gimli::{constants, AttributeValue, EvaluationResult, Location, Reader as _};

pub use super::entry::CallerScope;
use super::dwarf::{DebugInfo, DieId};
use super::tls::TlsTemplate;
use super::value::{le_unsigned, Contents, Hole, Value};
use super::types::{TypeRef, TypeTable};
use crate::image::{DwarfReader, Image};
use crate::unwind::registers::REGISTER_NAMES;
use crate::unwind::{Frame, StackMemory};

/// Maximum number of operations one evaluation may run, so a looping
/// expression in corrupt DWARF ends.
const MAX_OPERATIONS: u32 = 10_000;

/// The frames a location is evaluated in: a backtrace's physical frames and
/// the memory of their address space.
#[derive(Clone, Copy)]
pub struct FrameSet<'a> {
    /// The physical frames, innermost first.
    pub frames: &'a [Frame],
    /// The address space's memory.
    pub memory: &'a dyn StackMemory,
}

/// Returns the name of DWARF register `number` as gdb names it.
pub fn register_name(number: u16) -> String {
    REGISTER_NAMES.get(usize::from(number)).map_or_else(|| format!("DWARF register {number}"), |name| (*name).to_owned())
}

/// Evaluates locations of one image's DWARF.
pub struct Locator<'d> {
    pub(super) info: &'d DebugInfo,
    /// The executable's TLS segment and the thread pointer (`fs_base`), for
    /// `DW_OP_form_tls_address`.
    tls: Option<(TlsTemplate, u64)>,
    /// Run-time address minus file address, added to `DW_OP_addr`.
    pub(super) load_bias: u64,
    /// For each frame of the frame set, the DWARF of its module, when it
    /// has DWARF (see [`CallerScope`]).
    pub(super) callers: &'d [Option<CallerScope<'d>>],
    /// The ELF file `info` describes: its symbol names and code, which
    /// entry values check a call site against (see [`super::entry`]).
    pub(super) image: Option<&'d Image>,
}

/// What a DWARF expression computed, before it is turned into bytes.
pub(super) enum Computed {
    Pieces(Vec<gimli::Piece<DwarfReader>>),
}

impl<'d> Locator<'d> {
    /// Creates a locator over `info`.
    pub fn new(info: &'d DebugInfo) -> Locator<'d> {
        Locator { info, tls: None, load_bias: 0, callers: &[], image: None }
    }

    /// Lets the locator read the symbol names and code of `image`, the ELF
    /// file its DWARF describes, for entry values (see [`super::entry`]).
    pub fn with_image(mut self, image: Option<&'d Image>) -> Locator<'d> {
        self.image = image;
        self
    }

    /// Lets the locator read call sites in other modules: `callers[i]` is
    /// the DWARF of frame `i`'s module. Entries for `info`'s own module
    /// are ignored.
    pub fn with_callers(mut self, callers: &'d [Option<CallerScope<'d>>]) -> Locator<'d> {
        self.callers = callers;
        self
    }

    /// Lets the locator relocate the addresses in expressions (`DW_OP_addr`,
    /// `DW_OP_addrx`) of a program loaded `load_bias` bytes above its file
    /// addresses. Frame pcs stay file addresses.
    pub fn with_load_bias(mut self, load_bias: u64) -> Locator<'d> {
        self.load_bias = load_bias;
        self
    }

    /// Lets the locator resolve thread-local variables of the executable
    /// described by `template`, for the thread whose `fs_base` is
    /// `thread_pointer`.
    pub fn with_tls(mut self, template: TlsTemplate, thread_pointer: u64) -> Locator<'d> {
        self.tls = Some((template, thread_pointer));
        self
    }

    /// Returns the value of variable or parameter `die` in physical frame
    /// `frame` of `set`; `function` is the subprogram that contains it (for
    /// `DW_AT_frame_base`). Globals pass no frame.
    pub fn variable(&self, die: DieId, set: Option<FrameSet<'_>>, frame: usize, function: Option<DieId>) -> Value {
        let types = TypeTable { info: self.info };
        let ty = types.type_of(die);
        let size = types.size_of(&ty).unwrap_or(0);

        let Some(location) = self.info.own_attr(die, constants::DW_AT_location) else {
            return match self.const_value(die, size) {
                Some(bytes) => Value::from_bytes(ty, bytes),
                None => {
                    // A declaration's definition may be elsewhere (C++
                    // static members, `extern` variables).
                    Value::missing(ty, Hole::OptimizedOut)
                }
            };
        };
        let pc = set.and_then(|set| set.frames.get(frame)).map(|frame| frame.pc.lookup_address());
        let expression = match self.select_expression(die, location, pc) {
            Ok(Some(expression)) => expression,
            Ok(None) => return Value::missing(ty, Hole::OptimizedOut),
            Err(hole) => return Value::missing(ty, hole),
        };
        let contents = match self.evaluate(die, expression, set, frame, function, 0) {
            Ok(Computed::Pieces(pieces)) => self.assemble(pieces, size, set, frame),
            Err(hole) => Contents::Missing(hole),
        };
        Value { ty, contents }
    }

    fn const_value(&self, die: DieId, size: u64) -> Option<Vec<u8>> {
        let value = self.info.own_attr(die, constants::DW_AT_const_value)?;
        let size = usize::try_from(size).ok()?.min(8);
        let bytes = match value {
            AttributeValue::Block(block) => return block.to_slice().ok().map(|slice| slice.into_owned()),
            AttributeValue::Sdata(v) => v.to_le_bytes()[..size].to_vec(),
            AttributeValue::Udata(v) | AttributeValue::Data8(v) => v.to_le_bytes()[..size].to_vec(),
            AttributeValue::Data1(v) => u64::from(v).to_le_bytes()[..size].to_vec(),
            AttributeValue::Data2(v) => u64::from(v).to_le_bytes()[..size].to_vec(),
            AttributeValue::Data4(v) => u64::from(v).to_le_bytes()[..size].to_vec(),
            _ => return None,
        };
        Some(bytes)
    }

    /// Picks the expression of a location attribute: the expression itself,
    /// or the location-list entry covering `pc`. `Ok(None)` means no entry
    /// covers `pc`: the variable is optimized out there.
    pub(super) fn select_expression(
        &self,
        die: DieId,
        location: AttributeValue<DwarfReader>,
        pc: Option<u64>,
    ) -> Result<Option<gimli::Expression<DwarfReader>>, Hole> {
        if let AttributeValue::Exprloc(expression) = location {
            return Ok(Some(expression));
        }
        let unit = &self.info.unit(die).unit;
        let dwarf = self.info.dwarf();
        let mut list = match dwarf.attr_locations(unit, location) {
            Ok(Some(list)) => list,
            Ok(None) => return Err(Hole::Error("invalid DW_AT_location form".into())),
            Err(error) => return Err(Hole::Error(format!("invalid location list: {error}"))),
        };
        let Some(pc) = pc else {
            return Err(Hole::Error("a location list needs a frame".into()));
        };
        loop {
            match list.next() {
                Ok(Some(entry)) => {
                    if entry.range.begin <= pc && pc < entry.range.end {
                        return Ok(Some(entry.data));
                    }
                }
                Ok(None) => return Ok(None),
                Err(error) => return Err(Hole::Error(format!("invalid location list: {error}"))),
            }
        }
    }

    /// Runs `expression` of a DIE in `die`'s unit.
    pub(super) fn evaluate(
        &self,
        die: DieId,
        expression: gimli::Expression<DwarfReader>,
        set: Option<FrameSet<'_>>,
        frame: usize,
        function: Option<DieId>,
        depth: usize,
    ) -> Result<Computed, Hole> {
        let encoding = self.info.unit(die).unit.encoding();
        self.evaluate_encoded(Some(die), encoding, expression, set, frame, function, depth)
    }

    /// Runs `expression`, encoded as `encoding` states. Without the DIE the
    /// expression belongs to, operations that refer to its unit
    /// (`DW_OP_addrx`, typed stack values) fail.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_encoded(
        &self,
        die: Option<DieId>,
        encoding: gimli::Encoding,
        expression: gimli::Expression<DwarfReader>,
        set: Option<FrameSet<'_>>,
        frame: usize,
        function: Option<DieId>,
        depth: usize,
    ) -> Result<Computed, Hole> {
        let no_unit = || Hole::Error("the expression needs its unit, which is not known".into());
        let mut evaluation = expression.evaluation(encoding);
        evaluation.set_max_iterations(MAX_OPERATIONS);
        let current = set.and_then(|set| set.frames.get(frame));
        let invalid = |error: gimli::Error| Hole::Error(format!("invalid location expression: {error}"));
        let mut result = evaluation.evaluate().map_err(invalid)?;
        loop {
            result = match result {
                EvaluationResult::Complete => break,
                EvaluationResult::RequiresMemory { address, size, .. } => {
                    let Some(set) = set else {
                        return Err(Hole::Error("the location reads memory, but there is no target".into()));
                    };
                    let mut buf = vec![0u8; usize::from(size)];
                    set.memory.read(address, &mut buf).map_err(|error| Hole::from_memory(&error))?;
                    evaluation.resume_with_memory(gimli::Value::Generic(le_unsigned(&buf))).map_err(invalid)?
                }
                EvaluationResult::RequiresRegister { register, .. } => {
                    let value = current
                        .and_then(|frame| frame.registers.get(register.0))
                        .ok_or_else(|| Hole::NotSaved { register: register_name(register.0) })?;
                    evaluation.resume_with_register(gimli::Value::Generic(value)).map_err(invalid)?
                }
                EvaluationResult::RequiresFrameBase => {
                    let base = self.frame_base(function, set, frame, depth)?;
                    evaluation.resume_with_frame_base(base).map_err(invalid)?
                }
                EvaluationResult::RequiresCallFrameCfa => {
                    let cfa = current
                        .and_then(|frame| frame.cfa)
                        .ok_or_else(|| Hole::Error("the frame's CFA is not known".into()))?;
                    evaluation.resume_with_call_frame_cfa(cfa).map_err(invalid)?
                }
                EvaluationResult::RequiresRelocatedAddress(address) => {
                    evaluation.resume_with_relocated_address(address.wrapping_add(self.load_bias)).map_err(invalid)?
                }
                EvaluationResult::RequiresIndexedAddress { index, relocate } => {
                    let unit = &self.info.unit(die.ok_or_else(no_unit)?).unit;
                    let address = self.info.dwarf().address(unit, index).map_err(invalid)?;
                    let address = if relocate { address.wrapping_add(self.load_bias) } else { address };
                    evaluation.resume_with_indexed_address(address).map_err(invalid)?
                }
                EvaluationResult::RequiresBaseType(offset) => {
                    let base = self.base_value_type(die.ok_or_else(no_unit)?, offset)?;
                    evaluation.resume_with_base_type(base).map_err(invalid)?
                }
                EvaluationResult::RequiresEntryValue(entry) => {
                    let value = self.entry_value(encoding, entry, set, frame, function, depth)?;
                    evaluation.resume_with_entry_value(gimli::Value::Generic(value)).map_err(invalid)?
                }
                EvaluationResult::RequiresTls(offset) => {
                    let (template, thread_pointer) = self.tls.ok_or_else(|| {
                        Hole::Error("thread-local storage needs the image's PT_TLS segment and a thread pointer".into())
                    })?;
                    let address = template.address(thread_pointer, offset)?;
                    evaluation.resume_with_tls(address).map_err(invalid)?
                }
                EvaluationResult::RequiresAtLocation(_) | EvaluationResult::RequiresParameterRef(_) => {
                    return Err(Hole::Error("DW_OP_call and DW_OP_GNU_parameter_ref are not supported".into()))
                }
                EvaluationResult::RequiresWasmLocal { .. }
                | EvaluationResult::RequiresWasmGlobal { .. }
                | EvaluationResult::RequiresWasmStack { .. } => {
                    return Err(Hole::Error("WebAssembly locations are not supported".into()))
                }
            };
        }
        Ok(Computed::Pieces(evaluation.result()))
    }

    fn base_value_type(&self, die: DieId, offset: gimli::UnitOffset) -> Result<gimli::ValueType, Hole> {
        let base = self
            .info
            .resolve_ref(die, AttributeValue::UnitRef(offset))
            .ok_or_else(|| Hole::Error(format!("no base type at unit offset {:#x}", offset.0)))?;
        let encoding = match self.info.attr(base, constants::DW_AT_encoding) {
            Some(AttributeValue::Encoding(encoding)) => encoding,
            _ => constants::DW_ATE_unsigned,
        };
        let size = self.info.udata(base, constants::DW_AT_byte_size).unwrap_or(8);
        gimli::ValueType::from_encoding(encoding, size)
            .ok_or_else(|| Hole::Error(format!("unsupported base type of {size} bytes")))
    }

    /// Computes `DW_AT_frame_base` of `function` in `frame`.
    fn frame_base(&self, function: Option<DieId>, set: Option<FrameSet<'_>>, frame: usize, depth: usize) -> Result<u64, Hole> {
        let function = function.ok_or_else(|| Hole::Error("DW_OP_fbreg outside a function".into()))?;
        let attr = self
            .info
            .attr(function, constants::DW_AT_frame_base)
            .ok_or_else(|| Hole::Error("the function has no DW_AT_frame_base".into()))?;
        let pc = set.and_then(|set| set.frames.get(frame)).map(|frame| frame.pc.lookup_address());
        let expression = self
            .select_expression(function, attr, pc)?
            .ok_or_else(|| Hole::Error("the frame base is not available at this pc".into()))?;
        let Computed::Pieces(pieces) = self.evaluate(function, expression, set, frame, None, depth)?;
        let current = set.and_then(|set| set.frames.get(frame));
        match pieces.as_slice() {
            [piece] => match piece.location {
                Location::Address { address } => Ok(address),
                // `DW_OP_breg6 0` computes an address; `DW_OP_reg6` names
                // the register that holds the frame base.
                Location::Register { register } => current
                    .and_then(|frame| frame.registers.get(register.0))
                    .ok_or_else(|| Hole::NotSaved { register: register_name(register.0) }),
                Location::Value { value } => Ok(value.to_u64(u64::MAX).unwrap_or(0)),
                _ => Err(Hole::Error("unsupported frame base".into())),
            },
            _ => Err(Hole::Error("unsupported frame base".into())),
        }
    }

    /// Turns evaluated pieces into the bytes of a value of `size` bytes.
    fn assemble(
        &self,
        pieces: Vec<gimli::Piece<DwarfReader>>,
        size: u64,
        set: Option<FrameSet<'_>>,
        frame: usize,
    ) -> Contents {
        if let [piece] = pieces.as_slice() {
            if piece.size_in_bits.is_none() {
                if let Location::Address { address } = piece.location {
                    return Contents::Memory(address);
                }
            }
        }
        let size_usize = match usize::try_from(size) {
            Ok(size) if size as u64 <= super::value::MAX_VALUE_BYTES => size,
            _ => return Contents::Missing(Hole::Error(format!("value of {size} bytes is too large"))),
        };
        let mut bytes = vec![0u8; size_usize];
        let mut holes = Vec::new();
        // Pieces are placed bit by bit: DW_OP_bit_piece describes pieces
        // that are not whole bytes, as gcc emits for bitfields of a struct
        // that lives in registers or constants.
        let size_bits = size_usize.saturating_mul(8);
        let mut bit_offset = 0usize;
        let current = set.and_then(|set| set.frames.get(frame));
        for piece in &pieces {
            let piece_bits = match piece.size_in_bits {
                Some(bits) => usize::try_from(bits).unwrap_or(usize::MAX),
                None => size_bits.saturating_sub(bit_offset),
            };
            let end_bits = bit_offset.saturating_add(piece_bits).min(size_bits);
            if bit_offset >= end_bits {
                break;
            }
            let bits = end_bits - bit_offset;
            let source_bit = piece.bit_offset.and_then(|offset| usize::try_from(offset).ok()).unwrap_or(0);
            let len = source_bit.saturating_add(bits).div_ceil(8);
            let range = bit_offset / 8..end_bits.div_ceil(8);
            let filled: Result<Vec<u8>, Hole> = match &piece.location {
                Location::Empty => Err(Hole::OptimizedOut),
                Location::Register { register } => current
                    .and_then(|frame| frame.registers.get(register.0))
                    .map(|value| value.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(len).collect())
                    .ok_or_else(|| {
                        // Registers past rip (vector, x87) are not tracked.
                        if register.0 as usize >= REGISTER_NAMES.len() {
                            Hole::Error(format!("{} is not available", register_name(register.0)))
                        } else {
                            Hole::NotSaved { register: register_name(register.0) }
                        }
                    }),
                Location::Address { address } => {
                    let mut buf = vec![0u8; len];
                    match set {
                        Some(set) => set.memory.read(*address, &mut buf).map(|_| buf).map_err(|error| Hole::from_memory(&error)),
                        None => Err(Hole::Error("no target memory".into())),
                    }
                }
                Location::Value { value } => {
                    let raw = value_bits(*value);
                    Ok(raw.to_le_bytes().iter().copied().chain(std::iter::repeat(0)).take(len).collect())
                }
                Location::Bytes { value } => match value.to_slice() {
                    Ok(slice) => Ok(slice.iter().copied().chain(std::iter::repeat(0)).take(len).collect()),
                    Err(error) => Err(Hole::Error(format!("invalid DW_OP_implicit_value: {error}"))),
                },
                Location::ImplicitPointer { value, byte_offset } => {
                    match self.info.die_at_info_offset(*value) {
                        Some(target) => Err(Hole::SyntheticPointer { target, byte_offset: *byte_offset }),
                        None => Err(Hole::Error(format!("DW_OP_implicit_pointer to a missing DIE at {:#x}", value.0))),
                    }
                }
            };
            match filled {
                Ok(data) => copy_bits(&mut bytes, bit_offset, &data, source_bit, bits),
                Err(hole) => holes.push((range, hole)),
            }
            bit_offset = end_bits;
        }
        if bit_offset < size_bits && pieces.len() > 1 {
            holes.push((bit_offset.div_ceil(8)..size_usize, Hole::OptimizedOut));
        }
        Contents::Bytes { bytes, holes }
    }
}

impl Locator<'_> {
    /// Evaluates raw expression bytes for a value of `size` bytes in frame
    /// `frame` of `set`, for tests of the evaluator without a DIE.
    #[cfg(test)]
    fn evaluate_bytes(&self, bytes: &[u8], size: u64, set: FrameSet<'_>, frame: usize) -> Contents {
        let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 5, address_size: 8 };
        let reader = gimli::EndianArcSlice::new(std::sync::Arc::from(bytes), gimli::RunTimeEndian::Little);
        match self.evaluate_encoded(None, encoding, gimli::Expression(reader), Some(set), frame, None, 0) {
            Ok(Computed::Pieces(pieces)) => self.assemble(pieces, size, Some(set), frame),
            Err(hole) => Contents::Missing(hole),
        }
    }
}

/// Copies `bits` bits from `source` at bit `source_bit` into `dest` at bit
/// `dest_bit`, least significant bit first, as DWARF numbers piece bits on
/// a little-endian target.
fn copy_bits(dest: &mut [u8], dest_bit: usize, source: &[u8], source_bit: usize, bits: usize) {
    for index in 0..bits {
        let (from, to) = (source_bit + index, dest_bit + index);
        let (Some(&byte), Some(target)) = (source.get(from / 8), dest.get_mut(to / 8)) else {
            return;
        };
        let bit = (byte >> (from % 8)) & 1;
        *target = (*target & !(1 << (to % 8))) | (bit << (to % 8));
    }
}

/// Returns the bits of a typed DWARF stack value.
fn value_bits(value: gimli::Value) -> u64 {
    match value {
        gimli::Value::Generic(v) | gimli::Value::U64(v) => v,
        gimli::Value::I8(v) => v as u64,
        gimli::Value::U8(v) => v.into(),
        gimli::Value::I16(v) => v as u64,
        gimli::Value::U16(v) => v.into(),
        gimli::Value::I32(v) => v as u64,
        gimli::Value::U32(v) => v.into(),
        gimli::Value::I64(v) => v as u64,
        gimli::Value::F32(v) => v.to_bits().into(),
        gimli::Value::F64(v) => v.to_bits(),
    }
}

/// Returns whether `ty` names no storage, so a value of it is not read.
pub fn is_void(types: &TypeTable<'_>, ty: &TypeRef) -> bool {
    matches!(types.resolve_stripped(ty), super::types::Type::Void)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gimli::constants::*;

    use super::*;
    use crate::unwind::memory::WordStack;
    use crate::unwind::{FoundBy, Pc, Registers};

    const STACK: u64 = 0x7000;
    const CFA: u64 = 0x7020;

    fn empty_info() -> DebugInfo {
        let empty = gimli::EndianArcSlice::new(Arc::from(&[][..]), gimli::RunTimeEndian::Little);
        let dwarf = gimli::Dwarf::load(|_| -> Result<_, gimli::Error> { Ok(empty.clone()) }).unwrap();
        DebugInfo::load(Arc::new(dwarf))
    }

    /// Two frames: the callee stopped at 0x1000 with rbx and r12 known and
    /// rdi not recovered, and its caller, which called it and returns to
    /// 0x2005 with rbx = 0xb0b.
    fn frames() -> Vec<Frame> {
        let mut callee = Registers::default();
        callee.set(3, Some(0x1111_2222_3333_4444)); // rbx
        callee.set(12, Some(0x5555_6666)); // r12
        callee.set(7, Some(STACK)); // rsp
        let mut caller = Registers::default();
        caller.set(3, Some(0xb0b));
        caller.set(7, Some(CFA));
        vec![
            Frame { pc: Pc::Exact(0x1000), registers: callee, found_by: FoundBy::Context, cfa: Some(CFA), trap: false },
            Frame { pc: Pc::ReturnAddress(0x2005), registers: caller, found_by: FoundBy::Cfi, cfa: None, trap: false },
        ]
    }

    fn stack() -> WordStack {
        WordStack { base: STACK, words: vec![0x11, 0x22, 0x33, 0x44] }
    }

    fn evaluate(bytes: &[u8], size: u64) -> Contents {
        let info = empty_info();
        let frames = frames();
        let memory = stack();
        let set = FrameSet { frames: &frames, memory: &memory };
        Locator::new(&info).evaluate_bytes(bytes, size, set, 0)
    }

    fn known(bytes: Vec<u8>) -> Contents {
        Contents::Bytes { bytes, holes: Vec::new() }
    }

    #[test]
    fn register_location() {
        let contents = evaluate(&[DW_OP_reg3.0], 8);
        assert_eq!(contents, known(0x1111_2222_3333_4444u64.to_le_bytes().to_vec()));
    }

    #[test]
    fn register_not_recovered() {
        let contents = evaluate(&[DW_OP_reg5.0], 8);
        let Contents::Bytes { holes, .. } = contents else { panic!("{contents:?}") };
        assert_eq!(holes, vec![(0..8, Hole::NotSaved { register: "rdi".into() })]);
    }

    #[test]
    fn cfa_relative_memory() {
        // DW_OP_call_frame_cfa; DW_OP_consts -16; DW_OP_plus: an address.
        let contents = evaluate(&[DW_OP_call_frame_cfa.0, DW_OP_consts.0, 0x70, DW_OP_plus.0], 8);
        assert_eq!(contents, Contents::Memory(CFA - 16));
    }

    #[test]
    fn breg_reads_memory() {
        // DW_OP_breg7 (rsp) 8; DW_OP_deref; DW_OP_stack_value.
        let contents = evaluate(&[DW_OP_breg7.0, 8, DW_OP_deref.0, DW_OP_stack_value.0], 8);
        assert_eq!(contents, known(0x22u64.to_le_bytes().to_vec()));
    }

    #[test]
    fn unreadable_memory_names_address() {
        // DW_OP_const2u 0x9000; DW_OP_deref.
        let contents = evaluate(&[DW_OP_const2u.0, 0x00, 0x90, DW_OP_deref.0], 8);
        assert_eq!(contents, Contents::Missing(Hole::Unreadable { address: 0x9000, reason: "page not captured".into() }));
    }

    #[test]
    fn stack_value() {
        // DW_OP_lit5; DW_OP_lit7; DW_OP_mul; DW_OP_stack_value.
        let contents = evaluate(&[DW_OP_lit5.0, DW_OP_lit7.0, DW_OP_mul.0, DW_OP_stack_value.0], 4);
        assert_eq!(contents, known(vec![35, 0, 0, 0]));
    }

    #[test]
    fn implicit_value() {
        let contents = evaluate(&[DW_OP_implicit_value.0, 4, 0xde, 0xad, 0xbe, 0xef], 4);
        assert_eq!(contents, known(vec![0xde, 0xad, 0xbe, 0xef]));
    }

    #[test]
    fn pieces_from_registers() {
        // DW_OP_reg3; DW_OP_piece 4; DW_OP_reg12; DW_OP_piece 4.
        let contents = evaluate(&[DW_OP_reg3.0, DW_OP_piece.0, 4, DW_OP_reg12.0, DW_OP_piece.0, 4], 8);
        assert_eq!(contents, known(vec![0x44, 0x44, 0x33, 0x33, 0x66, 0x66, 0x55, 0x55]));
    }

    #[test]
    fn piece_optimized_out() {
        // DW_OP_piece 4 (empty); DW_OP_lit9; DW_OP_stack_value; DW_OP_piece 4.
        let contents = evaluate(&[DW_OP_piece.0, 4, DW_OP_lit9.0, DW_OP_stack_value.0, DW_OP_piece.0, 4], 8);
        let Contents::Bytes { bytes, holes } = contents else { panic!("{contents:?}") };
        assert_eq!(holes, vec![(0..4, Hole::OptimizedOut)]);
        assert_eq!(&bytes[4..], &[9, 0, 0, 0]);
    }

    #[test]
    fn bit_pieces_of_bitfields() {
        // The struct {ready:1, mode:3, delta:5, rest:23} = {1, 1, -2, 3} that
        // gcc -O2 describes with constants: DW_OP_lit1; DW_OP_stack_value;
        // DW_OP_bit_piece 1 0; DW_OP_lit1; ...; DW_OP_bit_piece 3 0;
        // DW_OP_const1s -2; ...; DW_OP_bit_piece 5 0; DW_OP_lit3; ...;
        // DW_OP_bit_piece 23 0.
        let contents = evaluate(
            &[
                DW_OP_lit1.0, DW_OP_stack_value.0, DW_OP_bit_piece.0, 1, 0,
                DW_OP_lit1.0, DW_OP_stack_value.0, DW_OP_bit_piece.0, 3, 0,
                DW_OP_const1s.0, 0xfe, DW_OP_stack_value.0, DW_OP_bit_piece.0, 5, 0,
                DW_OP_lit3.0, DW_OP_stack_value.0, DW_OP_bit_piece.0, 23, 0,
            ],
            4,
        );
        let expected: u32 = 1 | (1 << 1) | (0b11110 << 4) | (3 << 9);
        assert_eq!(contents, known(expected.to_le_bytes().to_vec()));
    }

    #[test]
    fn piece_from_memory() {
        // DW_OP_breg7 0; DW_OP_piece 8; DW_OP_lit1; DW_OP_stack_value; DW_OP_piece 8.
        let contents = evaluate(&[DW_OP_breg7.0, 0, DW_OP_piece.0, 8, DW_OP_lit1.0, DW_OP_stack_value.0, DW_OP_piece.0, 8], 16);
        let mut expected = 0x11u64.to_le_bytes().to_vec();
        expected.extend(1u64.to_le_bytes());
        assert_eq!(contents, known(expected));
    }

    #[test]
    fn entry_value_of_callee_saved_register() {
        // DW_OP_entry_value(DW_OP_reg3); DW_OP_stack_value: rbx at entry is
        // the caller's rbx at the call.
        let contents = evaluate(&[DW_OP_entry_value.0, 1, DW_OP_reg3.0, DW_OP_stack_value.0], 8);
        assert_eq!(contents, known(0xb0bu64.to_le_bytes().to_vec()));
    }

    #[test]
    fn entry_value_without_call_site() {
        // rdi at entry needs the caller's call-site parameter, which this
        // DWARF does not have.
        let contents = evaluate(&[DW_OP_entry_value.0, 1, DW_OP_reg5.0, DW_OP_stack_value.0], 8);
        assert_eq!(contents, Contents::Missing(Hole::OptimizedOut));
    }

    #[test]
    fn entry_value_needs_a_caller() {
        let info = empty_info();
        let frames = frames();
        let memory = stack();
        let set = FrameSet { frames: &frames[1..], memory: &memory };
        let contents = Locator::new(&info).evaluate_bytes(&[DW_OP_entry_value.0, 1, DW_OP_reg3.0, DW_OP_stack_value.0], 8, set, 0);
        assert_eq!(contents, Contents::Missing(Hole::OptimizedOut));
    }

    #[test]
    fn invalid_expression_is_an_error() {
        let contents = evaluate(&[0xff], 8);
        assert!(matches!(contents, Contents::Missing(Hole::Error(_))), "{contents:?}");
    }
}
