//! Variables: locals, arguments and globals read from DWARF and printed as
//! gdb prints them.
//!
//! The path of a value: [`dwarf`] reads the DIE tree, [`scope`] finds the
//! function, inlined calls and blocks at a frame's pc, [`location`]
//! evaluates where a variable is (registers, memory, pieces, [`tls`]
//! blocks, and [`entry`] values from the caller's call site), [`value`]
//! contains its bytes, [`types`] describes what they mean, [`format`](mod@format) prints them (with [`float`] for floats
//! wider than `double`) and [`expr`] evaluates C expressions over them. An
//! [`Inspector`] ties one backtrace, its memory and the image together.

pub mod bignum;
pub mod dwarf;
pub mod entry;
pub mod expr;
pub mod float;
pub mod format;
pub mod location;
pub mod scope;
pub mod softfloat;
pub mod symbols;
pub mod tls;
pub mod types;
pub mod value;

use gimli::constants;
use stardump_format::VcpuState;

use self::dwarf::{DebugInfo, DieId};
use self::location::{CallerScope, FrameSet, Locator};
use self::scope::FunctionScope;
use self::symbols::SymbolTable;
use self::types::{Builtin, TypeRef, TypeTable};
use self::value::{Hole, Value};
use crate::image::Image;
use crate::unwind::{Frame, StackMemory};

/// One source frame, as `bt` numbers them: a function at a physical
/// frame's pc, which may be inlined into the next source frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrameScope {
    /// Index of the physical frame.
    pub physical: usize,
    /// The function's scopes at the pc; `None` without DWARF for it and for
    /// trap frames.
    pub scope: Option<FunctionScope>,
}

/// A named value of a frame.
#[derive(Debug, Clone)]
pub struct NamedValue {
    /// The variable's name.
    pub name: String,
    /// The variable's DIE.
    pub die: DieId,
    /// Its value.
    pub value: Value,
}

/// Reads variables of one backtrace.
pub struct Inspector<'a> {
    /// The image's DWARF.
    pub info: &'a DebugInfo,
    /// The image's symbols.
    pub symbols: &'a SymbolTable,
    /// The memory of the backtrace's address space.
    pub memory: &'a dyn StackMemory,
    /// The physical frames, innermost first.
    pub frames: &'a [Frame],
    /// The vCPU, for registers that are not unwound (control registers).
    pub vcpu: Option<&'a VcpuState>,
    /// The source frames, innermost first.
    pub source_frames: Vec<SourceFrameScope>,
    /// For each physical frame in another module with DWARF, that module's
    /// DWARF, for entry values passed by a caller there.
    callers: Vec<Option<CallerScope<'a>>>,
    /// The ELF file `info` describes, whose symbols and code entry values
    /// check a call site against (see [`entry`]).
    image: Option<&'a Image>,
}

impl<'a> Inspector<'a> {
    /// Creates an inspector; `lines_per_frame[i]` is how many source frames
    /// `bt` shows for physical frame `i`, so frame numbers agree with `bt`.
    pub fn new(
        info: &'a DebugInfo,
        symbols: &'a SymbolTable,
        memory: &'a dyn StackMemory,
        frames: &'a [Frame],
        vcpu: Option<&'a VcpuState>,
        lines_per_frame: &[usize],
    ) -> Inspector<'a> {
        let mut source_frames = Vec::new();
        for (physical, frame) in frames.iter().enumerate() {
            let lines = lines_per_frame.get(physical).copied().unwrap_or(1).max(1);
            if frame.trap {
                source_frames.extend((0..lines).map(|_| SourceFrameScope { physical, scope: None }));
                continue;
            }
            let scopes = scope::scopes_at(info, frame.pc.lookup_address());
            if scopes.len() != lines {
                tracing::debug!(physical, lines, scopes = scopes.len(), "DWARF scopes and line-table frames differ");
            }
            for line in 0..lines {
                let scope = if scopes.len() == lines {
                    scopes.get(line).cloned()
                } else if line + 1 == lines {
                    scopes.last().cloned()
                } else {
                    None
                };
                source_frames.push(SourceFrameScope { physical, scope });
            }
        }
        Inspector { info, symbols, memory, frames, vcpu, source_frames, callers: Vec::new(), image: None }
    }

    /// Returns the inspector with `image`, the ELF file its DWARF
    /// describes. Without it, a call into another unit is matched to the
    /// frame's function by DWARF names only, and a caller-saved register of
    /// a caller frame is never taken from its callee (see [`entry`]).
    pub fn with_image(mut self, image: &'a Image) -> Inspector<'a> {
        self.image = Some(image);
        self
    }

    /// Returns the inspector with the DWARF of each physical frame's module:
    /// `callers[i]` describes frame `i`'s module when it has DWARF, for
    /// entry values that a caller in another module passed (see
    /// [`CallerScope`]).
    pub fn with_callers(mut self, callers: Vec<Option<CallerScope<'a>>>) -> Inspector<'a> {
        self.callers = callers;
        self
    }

    /// Returns the inspector with the source frame of each physical frame in
    /// `tail_calls` scoped to the innermost function at its pc. Those
    /// frames stand for a function that left the stack through a tail call,
    /// and gdb 13 shows such a frame as the function that made the jump,
    /// without the functions it was inlined into.
    pub fn with_tail_calls(mut self, tail_calls: &[usize]) -> Inspector<'a> {
        for source in &mut self.source_frames {
            if !tail_calls.contains(&source.physical) {
                continue;
            }
            if let Some(frame) = self.frames.get(source.physical) {
                source.scope = scope::scopes_at(self.info, frame.pc.lookup_address()).into_iter().next();
            }
        }
        self
    }

    /// The image's types.
    pub fn types(&self) -> TypeTable<'a> {
        TypeTable { info: self.info }
    }

    /// Returns a locator that relocates addresses by the symbols' load bias
    /// and resolves the executable's thread-local variables, with the
    /// vCPU's `fs_base` as the thread pointer.
    fn locator(&self) -> Locator<'_> {
        let locator = Locator::new(self.info)
            .with_load_bias(self.symbols.load_bias())
            .with_callers(&self.callers)
            .with_image(self.image);
        match (self.symbols.tls_template(), self.vcpu) {
            (Some(template), Some(vcpu)) => locator.with_tls(*template, vcpu.fs_base),
            _ => locator,
        }
    }

    fn frame_set(&self) -> FrameSet<'_> {
        FrameSet { frames: self.frames, memory: self.memory }
    }

    /// Returns the value of a local or parameter `die` in source frame `frame`.
    pub fn frame_value(&self, frame: usize, die: DieId) -> Value {
        let Some(source) = self.source_frames.get(frame) else {
            return Value::missing(TypeRef::Void, Hole::Error(format!("no frame {frame}")));
        };
        let function = source.scope.as_ref().map(|scope| scope.physical_function);
        self.locator().variable(die, Some(self.frame_set()), source.physical, function)
    }

    /// Returns the value of global or static variable `die`, following a
    /// declaration to its definition.
    pub fn global_value(&self, die: DieId) -> Value {
        let die = self.definition_of(die);
        self.locator().variable(die, Some(self.frame_set()), 0, None)
    }

    fn definition_of(&self, die: DieId) -> DieId {
        // Only a declaration (`extern int x;`, a C++ static member) points
        // elsewhere. A definition without a location is optimized out,
        // even when another file has a variable of the same name.
        if !self.info.flag(die, constants::DW_AT_declaration) {
            return die;
        }
        let Some(name) = self.info.qualified_name(die) else { return die };
        self.info
            .globals_named(&name)
            .into_iter()
            .find(|&other| self.info.own_attr(other, constants::DW_AT_location).is_some())
            .unwrap_or(die)
    }

    /// Returns the named parameters of source frame `frame`, in declaration
    /// order. gdb 13 makes no symbol for an unnamed parameter, so its frame
    /// lines, `info args` and `bt full` leave it out.
    pub fn arguments(&self, frame: usize) -> Vec<NamedValue> {
        let Some(scope) = self.source_frames.get(frame).and_then(|source| source.scope.as_ref()) else {
            return Vec::new();
        };
        scope::parameters(self.info, scope.function)
            .into_iter()
            .filter_map(|die| {
                let name = self.info.name(die)?;
                Some(NamedValue { name, die, value: self.frame_value(frame, die) })
            })
            .collect()
    }

    /// Returns the value parameter `die` of source frame `frame` had when
    /// its function was entered, when the caller's call site records it.
    /// Inlined calls have none, as in gdb.
    pub fn entry_value(&self, frame: usize, die: DieId) -> Option<Value> {
        let source = self.source_frames.get(frame)?;
        let scope = source.scope.as_ref()?;
        if scope.function != scope.physical_function {
            return None;
        }
        let raw = self.locator().parameter_entry_value(die, scope.function, self.frame_set(), source.physical)?;
        let ty = self.types().type_of(die);
        let size = usize::try_from(self.types().size_of(&ty)?).ok()?.min(8);
        Some(Value::from_bytes(ty, raw.to_le_bytes()[..size].to_vec()))
    }

    /// Returns the locals of source frame `frame`, innermost block first.
    pub fn locals(&self, frame: usize) -> Vec<NamedValue> {
        let Some(scope) = self.source_frames.get(frame).and_then(|source| source.scope.as_ref()) else {
            return Vec::new();
        };
        scope::locals(self.info, scope)
            .into_iter()
            .filter_map(|die| {
                let name = self.info.name(die)?;
                Some(NamedValue { name, die, value: self.frame_value(frame, die) })
            })
            .collect()
    }

    /// Looks `name` up among the locals and parameters of `frame`.
    pub fn lookup_local(&self, frame: Option<usize>, name: &str) -> Option<Value> {
        let frame = frame?;
        let scope = self.source_frames.get(frame)?.scope.as_ref()?;
        let local = scope::locals(self.info, scope)
            .into_iter()
            .chain(scope::parameters(self.info, scope.function))
            .find(|&die| self.info.name(die).as_deref() == Some(name))?;
        Some(self.frame_value(frame, local))
    }

    /// Returns the parameter named `name` of the function of source frame
    /// `frame`.
    pub fn parameter_named(&self, frame: usize, name: &str) -> Option<DieId> {
        let scope = self.source_frames.get(frame)?.scope.as_ref()?;
        scope::parameters(self.info, scope.function).into_iter().find(|&die| self.info.name(die).as_deref() == Some(name))
    }

    /// Looks `name` up among the file's statics (of `frame`'s unit), the
    /// globals and the functions.
    pub fn lookup_global(&self, frame: Option<usize>, name: &str) -> Option<Value> {
        let unit = frame
            .and_then(|frame| self.source_frames.get(frame))
            .and_then(|source| source.scope.as_ref())
            .map(|scope| scope.function.unit);
        if let Some(unit) = unit {
            if let Some(die) = scope::file_static(self.info, unit, name) {
                return Some(self.global_value(die));
            }
        }
        if let Some(&die) = self.info.globals_named(name).first() {
            return Some(self.global_value(die));
        }
        if let Some(&enumerator) = self.info.enumerators_named(name).first() {
            return self.enumerator_value(enumerator);
        }
        let function = *self.info.functions_named(name).first()?;
        let bias = self.symbols.load_bias();
        let address = self.info.ranges(function).first().map(|range| range.start.wrapping_add(bias));
        let ty = TypeRef::Die(function);
        Some(match address {
            Some(address) => Value::in_memory(ty, address),
            None => Value::missing(ty, Hole::OptimizedOut),
        })
    }

    /// Whether expressions in `frame` follow C++ rules: the frame's unit is
    /// C++, or without a frame, the unit that defines `main` is (gdb's
    /// automatic language).
    pub fn is_cplusplus(&self, frame: Option<usize>) -> bool {
        let unit = frame
            .and_then(|frame| self.source_frames.get(frame))
            .and_then(|source| source.scope.as_ref())
            .map(|scope| scope.function.unit)
            .or_else(|| self.info.functions_named("main").first().map(|main| main.unit));
        unit.is_some_and(|unit| self.info.units()[unit as usize].is_cplusplus())
    }

    /// Returns the value of enumerator `die`, typed as its enum.
    fn enumerator_value(&self, die: DieId) -> Option<Value> {
        let enumeration = self.info.parent(die)?;
        let size = self.types().size_of(&TypeRef::Die(enumeration)).unwrap_or(4).min(8) as usize;
        let raw: i64 = match self.info.attr(die, constants::DW_AT_const_value)? {
            gimli::AttributeValue::Sdata(v) => v,
            gimli::AttributeValue::Udata(v) | gimli::AttributeValue::Data8(v) => v as i64,
            gimli::AttributeValue::Data1(v) => v.into(),
            gimli::AttributeValue::Data2(v) => v.into(),
            gimli::AttributeValue::Data4(v) => v.into(),
            _ => return None,
        };
        Some(Value::from_bytes(TypeRef::Die(enumeration), raw.to_le_bytes()[..size].to_vec()))
    }

    /// Returns the value of register `name` (gdb's name, without `$`) in
    /// source frame `frame`, with the type gdb gives it; `None` for an
    /// unknown name, `Some((None, _))` when the frame did not recover it.
    pub fn register(&self, frame: Option<usize>, name: &str) -> Option<(Option<u64>, Builtin)> {
        let physical = frame.and_then(|frame| self.source_frames.get(frame)).map_or(0, |source| source.physical);
        let registers = self.frames.get(physical).map(|frame| frame.registers);
        let (number, ty) = match name {
            "pc" | "rip" if self.is_cplusplus(frame) => (16, Builtin::PrototypedCodePointer),
            "pc" | "rip" => (16, Builtin::CodePointer),
            "sp" | "rsp" => (7, Builtin::DataPointer),
            "fp" | "rbp" => (6, Builtin::DataPointer),
            _ => match crate::unwind::registers::REGISTER_NAMES.iter().position(|&known| known == name) {
                Some(number) => (number as u16, Builtin::Long),
                None => {
                    // Registers that unwinding does not track come from the
                    // vCPU; they are the same in every frame.
                    let value = self.vcpu?.named_register(name)?;
                    let ty = if name == "eflags" { Builtin::Eflags } else { Builtin::Long };
                    return Some((Some(value), ty));
                }
            },
        };
        Some((registers.and_then(|registers| registers.get(number)), ty))
    }
}
