//! Entry values: what a parameter or register held when its function was
//! entered, for gdb's `param@entry` and for `DW_OP_entry_value`.
//!
//! The callee's frame may no longer hold the value, so it comes from the
//! caller. The `DW_TAG_call_site_parameter` of the call that made the frame
//! gives an expression for what the caller passed in a register, evaluated
//! in the caller's frame as gdb does. For a callee-saved register, the
//! caller's recovered register holds the same value at the call.
//!
//! gdb 13 trusts a call site only when it calls the frame's function and
//! that function cannot call itself through tail calls (its
//! `dwarf_expr_reg_to_entry_parameter`). Otherwise a function reached
//! through a tail call, whose caller frame called another function, would
//! show the values passed to that other function. The same checks are made
//! here.
//!
//! gcc writes a call-site value that is just what a register held at the
//! call as that register (`DW_OP_breg4 (rsi): 0`). gcc 12 writes it where
//! the callee leaves the register unchanged: a call of a function that
//! writes the register gets no such value (see
//! tests/fixtures/entry_values.c). Unwinding does not recover a caller-saved
//! register of a caller frame. gdb 13 then takes the callee's register,
//! which it assumes unchanged. Here the callee's register is taken only
//! when no instruction of the callee, or of a function it calls, writes it
//! (see [`crate::unwind::unwritten`]), so the value is the one at the
//! call. When the callee is an outer frame without that register, its own
//! callee gives it the same way ([`Locator::register_at_call`]).

use std::collections::HashSet;

use gimli::{constants, AttributeValue, Location, Operation};

use super::dwarf::{DebugInfo, DieId};
use super::location::{register_name, Computed, FrameSet, Locator};
use super::value::Hole;
use crate::image::{DwarfReader, Image};
use crate::unwind::registers::{CALLEE_SAVED, REGISTER_NAMES};
use crate::unwind::unwritten::{unwritten_registers, FunctionCode, ARGUMENT_REGISTERS, MAX_CODE_BYTES};
use crate::unwind::{Frame, Pc};

/// Maximum depth of entry values whose call-site value needs another entry
/// value, of the caller's own caller.
const MAX_ENTRY_VALUE_DEPTH: usize = 4;

/// Maximum number of frames a caller-saved register is followed through
/// to the innermost frame that has it (see [`Locator::register_at_call`]).
const MAX_REGISTER_CHAIN: usize = 16;

/// Maximum number of functions searched for a chain of tail calls back to
/// the frame's function; a longer search counts as one that found it.
const MAX_TAIL_CALL_FUNCTIONS: usize = 256;

/// The DWARF of the module that contains one caller frame. When that is
/// not the locator's own DWARF, the call site that passed an entry value
/// is described in the caller's module, as when a program calls into
/// glibc.
#[derive(Clone, Copy)]
pub struct CallerScope<'a> {
    /// The caller module's DWARF.
    pub info: &'a DebugInfo,
    /// Run-time address minus file address of the caller module.
    pub load_bias: u64,
    /// The frames of the same frame set, with the pcs of the caller
    /// module's frames turned into its file addresses.
    pub frames: &'a [Frame],
    /// The caller module's ELF file, for the entry values of the caller's
    /// own frame when a call-site value refers to them.
    pub image: Option<&'a Image>,
}

/// The function of a frame whose entry values are requested: a call site
/// gives them only when it calls this function.
#[derive(Clone, Copy)]
struct Callee<'c> {
    /// The DWARF that describes the function.
    info: &'c DebugInfo,
    /// The function's subprogram DIE.
    function: DieId,
    /// Run-time address of the function's entry.
    entry: u64,
    /// Run-time address minus file address of the function's module.
    load_bias: u64,
    /// The module's ELF file, for the function's symbol names and code.
    image: Option<&'c Image>,
}

impl Callee<'_> {
    /// Returns whether a call of a declaration named `name` enters the
    /// function: its DWARF name or linkage name is `name`, or an ELF symbol
    /// of that name starts at its entry (a program's call of `sleep` enters
    /// glibc's `__sleep`, which also has the symbol `sleep`).
    fn is_named(&self, name: &str) -> bool {
        if self.info.name(self.function).as_deref() == Some(name)
            || self.info.linkage_name(self.function).as_deref() == Some(name)
        {
            return true;
        }
        let entry = self.entry.wrapping_sub(self.load_bias);
        self.image.is_some_and(|image| image.symbols_named(name).iter().any(|symbol| symbol.address == entry))
    }

    /// Returns the argument registers that no instruction writes, neither
    /// the function's nor those of the functions of its module that it
    /// calls. The code is decoded from the module's file, so the result is
    /// empty without it.
    fn unwritten_registers(&self) -> Vec<u16> {
        let Some(image) = self.image else { return Vec::new() };
        let Some(code) = function_code(self.info, image, self.function) else { return Vec::new() };
        let code_of = |entry: u64| {
            // A function with DWARF, or else one that a sized symbol
            // describes, such as a function written in assembly.
            let function = super::scope::scopes_at(self.info, entry).last().map(|scope| scope.physical_function);
            if let Some(function) = function.filter(|&function| self.info.ranges(function).first().map(|range| range.start) == Some(entry)) {
                return function_code(self.info, image, function);
            }
            let symbol = image.symbol_for(entry).filter(|symbol| symbol.address == entry && symbol.size != 0)?;
            let len = usize::try_from(symbol.size).ok().filter(|&len| len <= MAX_CODE_BYTES)?;
            Some(vec![(entry, image.bytes_at(entry, len)?)])
        };
        unwritten_registers(&code, &code_of)
    }
}

/// Returns the code of `function` in `image`: each of its address ranges
/// with its bytes.
fn function_code<'c>(info: &DebugInfo, image: &'c Image, function: DieId) -> Option<FunctionCode<'c>> {
    let mut code = Vec::new();
    for range in info.ranges(function) {
        let len = usize::try_from(range.end.saturating_sub(range.start)).ok().filter(|&len| len <= MAX_CODE_BYTES)?;
        code.push((range.start, image.bytes_at(range.start, len)?));
    }
    (!code.is_empty()).then_some(code)
}

/// The target of a tail call, as its call-site entry records it.
enum TailCallTarget {
    /// A function of the same module: its entry (a file address) and DIE.
    Function(u64, Option<DieId>),
    /// A function that the module only declares, defined in another module.
    OtherModule,
    /// A target that only run-time state gives, such as an indirect jump.
    Unknown,
}

/// Returns the expression of an attribute in `DW_FORM_exprloc` or, as
/// DWARF 2 and 3 encode it, a block.
fn expression(value: AttributeValue<DwarfReader>) -> Option<gimli::Expression<DwarfReader>> {
    match value {
        AttributeValue::Exprloc(expression) => Some(expression),
        AttributeValue::Block(block) => Some(gimli::Expression(block)),
        _ => None,
    }
}

impl<'d> Locator<'d> {
    /// Returns the file address where `function` is entered: its
    /// `DW_AT_entry_pc`, or the start of its first address range.
    fn entry_pc(&self, function: DieId) -> Option<u64> {
        let entry_pc = match self.info.own_attr(function, constants::DW_AT_entry_pc) {
            Some(value) => self.info.dwarf().attr_address(&self.info.unit(function).unit, value).ok().flatten(),
            None => None,
        };
        entry_pc.or_else(|| self.info.ranges(function).first().map(|range| range.start))
    }

    /// Returns `function` as the callee of a call site.
    fn describe_callee(&self, function: DieId) -> Option<Callee<'d>> {
        let entry = self.entry_pc(function)?.wrapping_add(self.load_bias);
        Some(Callee { info: self.info, function, entry, load_bias: self.load_bias, image: self.image })
    }

    /// Returns `function` as the callee whose entry values a call site
    /// gives, unless it may call itself through tail calls.
    fn callee(&self, function: DieId) -> Option<Callee<'d>> {
        let callee = self.describe_callee(function)?;
        if self.may_tail_call_itself(function, callee.entry.wrapping_sub(self.load_bias)) {
            tracing::debug!(function = ?self.info.name(function), "no entry values: the function may tail-call itself");
            return None;
        }
        Some(callee)
    }

    /// Returns the value parameter `parameter` of `function` had when the
    /// function was entered, as gdb's `param@entry` shows it. Its location
    /// at the function's entry must be one register, and the call site in
    /// the caller must give what the caller passed in it.
    pub fn parameter_entry_value(&self, parameter: DieId, function: DieId, set: FrameSet<'_>, frame: usize) -> Option<u64> {
        let callee_frame = set.frames.get(frame)?;
        let caller = set.frames.get(frame + 1)?;
        let Pc::ReturnAddress(return_address) = caller.pc else { return None };
        if callee_frame.trap {
            return None;
        }
        let entry_pc = self.entry_pc(function)?;
        let location = self.info.own_attr(parameter, constants::DW_AT_location)?;
        let expression = self.select_expression(parameter, location, Some(entry_pc)).ok()??;
        let encoding = self.info.unit(parameter).unit.encoding();
        let mut operations = expression.operations(encoding);
        let register = match (operations.next(), operations.next()) {
            (Ok(Some(Operation::Register { register })), Ok(None)) => register.0,
            _ => return None,
        };
        let callee = self.callee(function)?;
        self.call_site_value(register, return_address, set, frame + 1, &callee, 0).ok().flatten()
    }

    /// Computes `DW_OP_entry_value(entry)` of physical frame `frame`, whose
    /// function is `function`.
    pub(super) fn entry_value(
        &self,
        encoding: gimli::Encoding,
        entry: gimli::Expression<DwarfReader>,
        set: Option<FrameSet<'_>>,
        frame: usize,
        function: Option<DieId>,
        depth: usize,
    ) -> Result<u64, Hole> {
        let set = set.ok_or(Hole::OptimizedOut)?;
        if depth >= MAX_ENTRY_VALUE_DEPTH {
            return Err(Hole::OptimizedOut);
        }

        let mut operations = entry.clone().operations(encoding);
        let register = match (operations.next(), operations.next()) {
            (Ok(Some(Operation::Register { register })), Ok(None)) => register.0,
            // gdb also only resolves entry values of a single register.
            _ => return Err(Hole::OptimizedOut),
        };
        let (Some(callee_frame), Some(caller)) = (set.frames.get(frame), set.frames.get(frame + 1)) else {
            return Err(Hole::OptimizedOut);
        };
        // Only a call has a call site: not a frame interrupted by a trap.
        let Pc::ReturnAddress(return_address) = caller.pc else {
            return Err(Hole::OptimizedOut);
        };
        if callee_frame.trap {
            return Err(Hole::OptimizedOut);
        }

        if let Some(callee) = function.and_then(|function| self.callee(function)) {
            if let Some(value) = self.call_site_value(register, return_address, set, frame + 1, &callee, depth)? {
                return Ok(value);
            }
        }

        // Whatever function made the call, a callee-saved register holds
        // at the call what the callee found on entry, because a function
        // that tail-calls restores such registers before its jump.
        if CALLEE_SAVED.contains(&register) {
            if let Some(value) = caller.registers.get(register) {
                return Ok(value);
            }
        }
        Err(Hole::OptimizedOut)
    }

    /// Finds the call site with `return_address` in the function of physical
    /// frame `caller` and, when it calls `callee`, evaluates the value of
    /// its parameter passed in `register`.
    fn call_site_value(
        &self,
        register: u16,
        return_address: u64,
        set: FrameSet<'_>,
        caller: usize,
        callee: &Callee<'_>,
        depth: usize,
    ) -> Result<Option<u64>, Hole> {
        let other_module = self.callers.get(caller).copied().flatten().filter(|scope| !scope.info.same_as(self.info));
        if let Some(scope) = other_module {
            // The caller is in another module: its DWARF, bias and file
            // addresses describe the call site.
            let locator =
                Locator::new(scope.info).with_load_bias(scope.load_bias).with_callers(self.callers).with_image(scope.image);
            let Some(Pc::ReturnAddress(return_address)) = scope.frames.get(caller).map(|frame| frame.pc) else {
                return Ok(None);
            };
            let set = FrameSet { frames: scope.frames, memory: set.memory };
            return locator.call_site_value(register, return_address, set, caller, callee, depth);
        }
        let lookup = return_address.saturating_sub(1);
        let Some((function, call_site)) = self.find_call_site(lookup, return_address) else {
            return Ok(None);
        };
        if !self.calls(call_site, function, set, caller, callee, depth) {
            tracing::debug!(
                return_address = format_args!("{return_address:#x}"),
                callee = ?callee.info.name(callee.function),
                "the call site calls another function"
            );
            return Ok(None);
        }
        for parameter in self.info.children(call_site) {
            if !matches!(
                self.info.tag(parameter),
                constants::DW_TAG_call_site_parameter | constants::DW_TAG_GNU_call_site_parameter
            ) {
                continue;
            }
            let Some(AttributeValue::Exprloc(location)) = self.info.own_attr(parameter, constants::DW_AT_location)
            else {
                continue;
            };
            let unit = &self.info.unit(parameter).unit;
            let mut operations = location.operations(unit.encoding());
            let matches = matches!(
                (operations.next(), operations.next()),
                (Ok(Some(Operation::Register { register: r })), Ok(None)) if r.0 == register
            );
            if !matches {
                continue;
            }
            let value = self
                .info
                .own_attr(parameter, constants::DW_AT_call_value)
                .or_else(|| self.info.own_attr(parameter, constants::DW_AT_GNU_call_site_value));
            let Some(value) = value.and_then(expression) else { continue };
            return self.value_at_call(parameter, value, set, caller, function, depth);
        }
        Ok(None)
    }

    /// Returns whether the call at `call_site`, made by `function` in
    /// physical frame `caller`, enters `callee`'s function, as gdb 13
    /// checks it: the call site's `DW_AT_call_target` computes the callee's
    /// entry, or its `DW_AT_call_origin` is the callee's function. An origin
    /// that is a declaration, a call into another unit or module, is
    /// matched by name. A call site with neither, such as an indirect call
    /// whose pointer gcc could not describe, calls an unknown function.
    fn calls(
        &self,
        call_site: DieId,
        function: DieId,
        set: FrameSet<'_>,
        caller: usize,
        callee: &Callee<'_>,
        depth: usize,
    ) -> bool {
        let target = self
            .info
            .own_attr(call_site, constants::DW_AT_call_target)
            .or_else(|| self.info.own_attr(call_site, constants::DW_AT_GNU_call_site_target));
        if let Some(target) = target {
            let Some(target) = expression(target) else { return false };
            // gdb 13 takes the address of a memory location and the value
            // of anything else, which is what value_at_call returns.
            return matches!(
                self.value_at_call(call_site, target, set, caller, function, depth),
                Ok(Some(address)) if address == callee.entry
            );
        }
        let origin = self
            .info
            .attr_ref(call_site, constants::DW_AT_call_origin)
            .or_else(|| self.info.attr_ref(call_site, constants::DW_AT_abstract_origin));
        let Some(origin) = origin else { return false };
        if let Some(entry) = self.entry_pc(origin) {
            return entry.wrapping_add(self.load_bias) == callee.entry;
        }
        [self.info.linkage_name(origin), self.info.name(origin)].into_iter().flatten().any(|name| callee.is_named(&name))
    }

    /// Evaluates `expression` of `die` in physical frame `caller`, at its
    /// call, to one number: an address, a value, or the value of a
    /// register. A caller-saved register that unwinding did not recover is
    /// taken from the callee where [`Locator::register_at_call`] proves it
    /// unchanged.
    fn value_at_call(
        &self,
        die: DieId,
        expression: gimli::Expression<DwarfReader>,
        set: FrameSet<'_>,
        caller: usize,
        function: DieId,
        depth: usize,
    ) -> Result<Option<u64>, Hole> {
        let mut completed: Option<Vec<Frame>> = None;
        loop {
            let frames = completed.as_deref().unwrap_or(set.frames);
            let current = FrameSet { frames, memory: set.memory };
            let register = match self.single_value(die, expression.clone(), current, caller, function, depth) {
                Err(Hole::NotSaved { register }) => register,
                result => return result,
            };
            let not_saved = || Hole::NotSaved { register: register.clone() };
            let number = REGISTER_NAMES.iter().position(|name| *name == register).ok_or_else(not_saved)? as u16;
            let already_added = frames.get(caller).is_some_and(|frame| frame.registers.get(number).is_some());
            if already_added {
                return Err(not_saved());
            }
            let value = self.register_at_call(set, caller, number, depth).ok_or_else(not_saved)?;
            let frames = completed.get_or_insert_with(|| set.frames.to_vec());
            frames[caller].registers.set(number, Some(value));
        }
    }

    /// Returns the locator and frames of the module that contains physical
    /// frame `frame`: this locator's own, or those `callers` gives. `None`
    /// when that module has no DWARF.
    fn frame_locator<'s>(&'s self, set: FrameSet<'s>, frame: usize) -> Option<(Locator<'s>, FrameSet<'s>)> {
        let scope = match self.callers.get(frame) {
            None if self.callers.is_empty() => None,
            None => return None,
            Some(scope) => Some((*scope)?).filter(|scope| !scope.info.same_as(self.info)),
        };
        let Some(scope) = scope else {
            let own = Locator::new(self.info).with_load_bias(self.load_bias).with_callers(self.callers).with_image(self.image);
            return Some((own, set));
        };
        let locator = Locator::new(scope.info).with_load_bias(scope.load_bias).with_callers(self.callers).with_image(scope.image);
        Some((locator, FrameSet { frames: scope.frames, memory: set.memory }))
    }

    /// Returns register `number` of physical frame `caller` at its call of
    /// the frame before it, its callee, when unwinding did not recover it.
    /// The call does not change it, so it is what the callee found on
    /// entry. That is the callee's current value when the call entered the
    /// callee's function and neither that function nor one it calls
    /// writes the register. An outer callee's own value comes from its
    /// callee the same way.
    fn register_at_call(&self, set: FrameSet<'_>, caller: usize, number: u16, depth: usize) -> Option<u64> {
        if depth >= MAX_REGISTER_CHAIN || !ARGUMENT_REGISTERS.contains(&number) {
            return None;
        }
        let callee_index = caller.checked_sub(1)?;
        let (callee_locator, callee_set) = self.frame_locator(set, callee_index)?;
        let callee_frame = callee_set.frames.get(callee_index)?;
        if callee_frame.trap {
            return None;
        }
        let function = super::scope::scopes_at(callee_locator.info, callee_frame.pc.lookup_address()).last()?.physical_function;
        let callee = callee_locator.describe_callee(function)?;
        if !callee.unwritten_registers().contains(&number) {
            return None;
        }

        let (caller_locator, caller_set) = self.frame_locator(set, caller)?;
        let Pc::ReturnAddress(return_address) = caller_set.frames.get(caller)?.pc else { return None };
        let (caller_function, call_site) = caller_locator.find_call_site(return_address.saturating_sub(1), return_address)?;
        if !caller_locator.calls(call_site, caller_function, caller_set, caller, &callee, depth + 1) {
            return None;
        }
        match callee_frame.registers.get(number) {
            Some(value) => Some(value),
            None => callee_locator.register_at_call(callee_set, callee_index, number, depth + 1),
        }
    }

    /// Evaluates `expression` of `die` in physical frame `frame` of
    /// `function` to one number; see [`Locator::value_at_call`].
    fn single_value(
        &self,
        die: DieId,
        expression: gimli::Expression<DwarfReader>,
        set: FrameSet<'_>,
        frame: usize,
        function: DieId,
        depth: usize,
    ) -> Result<Option<u64>, Hole> {
        let Computed::Pieces(pieces) = self.evaluate(die, expression, Some(set), frame, Some(function), depth + 1)?;
        let [piece] = pieces.as_slice() else { return Ok(None) };
        match &piece.location {
            Location::Address { address } => Ok(Some(*address)),
            Location::Value { value } => Ok(Some(value.to_u64(u64::MAX).unwrap_or(0))),
            Location::Register { register } => match set.frames.get(frame).and_then(|frame| frame.registers.get(register.0)) {
                Some(value) => Ok(Some(value)),
                None => Err(Hole::NotSaved { register: register_name(register.0) }),
            },
            _ => Ok(None),
        }
    }

    /// Returns the function and the call-site DIE whose return pc is
    /// `return_address`.
    fn find_call_site(&self, lookup: u64, return_address: u64) -> Option<(DieId, DieId)> {
        for unit in self.info.units_at(lookup) {
            let root = self.info.unit_root(unit);
            let mut stack: Vec<DieId> = self.info.children(root).collect();
            while let Some(die) = stack.pop() {
                match self.info.tag(die) {
                    constants::DW_TAG_subprogram if self.info.contains_pc(die, lookup) => {
                        let mut inner: Vec<DieId> = self.info.children(die).collect();
                        while let Some(child) = inner.pop() {
                            match self.info.tag(child) {
                                constants::DW_TAG_call_site | constants::DW_TAG_GNU_call_site => {
                                    let pc = self
                                        .info
                                        .own_attr(child, constants::DW_AT_call_return_pc)
                                        .or_else(|| self.info.own_attr(child, constants::DW_AT_low_pc))
                                        .and_then(|value| {
                                            self.info.dwarf().attr_address(&self.info.unit(child).unit, value).ok().flatten()
                                        });
                                    if pc == Some(return_address) {
                                        return Some((die, child));
                                    }
                                }
                                constants::DW_TAG_lexical_block | constants::DW_TAG_inlined_subroutine => {
                                    inner.extend(self.info.children(child))
                                }
                                _ => {}
                            }
                        }
                    }
                    constants::DW_TAG_namespace | constants::DW_TAG_class_type | constants::DW_TAG_structure_type => {
                        stack.extend(self.info.children(die))
                    }
                    _ => {}
                }
            }
        }
        None
    }

    /// Returns whether `function`, entered at file address `entry`, may
    /// call itself through a chain of tail calls (`DW_AT_call_tail_call`
    /// sites) of this module. Its frame may then belong to a later call
    /// than the one its caller's call site made, so gdb 13 gives it no entry
    /// values (`func_verify_no_selftailcall`). A tail call whose target only
    /// run-time state gives may reach any function. NOTE: a tail call into
    /// another module is not followed, where gdb follows it.
    fn may_tail_call_itself(&self, function: DieId, entry: u64) -> bool {
        let mut visited = HashSet::from([function]);
        let mut pending = vec![function];
        while let Some(current) = pending.pop() {
            for site in self.tail_call_sites(current) {
                let (target_entry, target) = match self.tail_call_target(site) {
                    TailCallTarget::Function(target_entry, target) => (target_entry, target),
                    TailCallTarget::OtherModule => continue,
                    TailCallTarget::Unknown => return true,
                };
                if target_entry == entry {
                    return true;
                }
                let Some(target) = target else { continue };
                if visited.insert(target) {
                    if visited.len() > MAX_TAIL_CALL_FUNCTIONS {
                        return true;
                    }
                    pending.push(target);
                }
            }
        }
        false
    }

    /// Returns the tail-call sites of `function`, in its own code and in
    /// the code inlined into it.
    fn tail_call_sites(&self, function: DieId) -> Vec<DieId> {
        let mut sites = Vec::new();
        let mut pending: Vec<DieId> = self.info.children(function).collect();
        while let Some(die) = pending.pop() {
            match self.info.tag(die) {
                constants::DW_TAG_call_site | constants::DW_TAG_GNU_call_site => {
                    let tail = self.info.flag(die, constants::DW_AT_call_tail_call)
                        || self.info.flag(die, constants::DW_AT_GNU_tail_call);
                    if tail {
                        sites.push(die);
                    }
                }
                constants::DW_TAG_lexical_block | constants::DW_TAG_inlined_subroutine => {
                    pending.extend(self.info.children(die))
                }
                _ => {}
            }
        }
        sites
    }

    /// Returns where the tail call at `site` jumps. A target that is a
    /// declaration is found by its symbol in this module's ELF file.
    fn tail_call_target(&self, site: DieId) -> TailCallTarget {
        let has_target_expression = self.info.own_attr(site, constants::DW_AT_call_target).is_some()
            || self.info.own_attr(site, constants::DW_AT_GNU_call_site_target).is_some();
        let origin = self
            .info
            .attr_ref(site, constants::DW_AT_call_origin)
            .or_else(|| self.info.attr_ref(site, constants::DW_AT_abstract_origin));
        let Some(origin) = origin.filter(|_| !has_target_expression) else {
            return TailCallTarget::Unknown;
        };
        if let Some(entry) = self.entry_pc(origin) {
            let target = super::scope::scopes_at(self.info, entry).last().map(|scope| scope.physical_function);
            return TailCallTarget::Function(entry, target.or(Some(origin)));
        }
        let Some(image) = self.image else { return TailCallTarget::OtherModule };
        for name in [self.info.linkage_name(origin), self.info.name(origin)].into_iter().flatten() {
            let symbol = image.symbols_named(&name).iter().find(|symbol| symbol.size != 0);
            if let Some(symbol) = symbol {
                let target = super::scope::scopes_at(self.info, symbol.address).last().map(|scope| scope.physical_function);
                return TailCallTarget::Function(symbol.address, target);
            }
        }
        TailCallTarget::OtherModule
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};

    use super::*;
    use crate::unwind::memory::WordStack;
    use crate::unwind::{FoundBy, Registers};

    const RDI: u16 = 5;
    const RSP: u16 = 7;

    /// Builds tests/fixtures/entry_values.c at -O2 once, and opens it.
    fn fixture() -> Image {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        let path = PATH.get_or_init(|| {
            crate::test_fixtures::gcc(
                "entry_values.elf",
                &["-nostdlib", "-static", "-no-pie", "-g", "-O2", "-Wl,-e,entry"],
                &["entry_values.c"],
            )
        });
        Image::open(path).unwrap()
    }

    fn entry_of(image: &Image, name: &str) -> u64 {
        image.symbols_named(name).first().unwrap_or_else(|| panic!("no function {name}")).address
    }

    /// Returns the return address of `caller`'s call of `callee`, from its
    /// call-site entry.
    fn call_of(info: &DebugInfo, caller: &str, callee: &str) -> u64 {
        let function = info.functions_named(caller)[0];
        info.children(function)
            .filter(|&die| info.tag(die) == constants::DW_TAG_call_site)
            .filter(|&die| {
                let origin = info.attr_ref(die, constants::DW_AT_call_origin);
                origin.and_then(|origin| info.name(origin)).as_deref() == Some(callee)
            })
            .find_map(|die| {
                let value = info.own_attr(die, constants::DW_AT_call_return_pc)?;
                info.dwarf().attr_address(&info.unit(die).unit, value).ok().flatten()
            })
            .unwrap_or_else(|| panic!("no call of {callee} in {caller}"))
    }

    /// The frames of `callee` stopped one byte into its code, with rdi =
    /// `rdi` when given, called from the call that returns to
    /// `return_address`.
    fn frames(image: &Image, callee: &str, rdi: Option<u64>, return_address: u64) -> Vec<Frame> {
        let mut registers = Registers::default();
        registers.set(RDI, rdi);
        registers.set(RSP, Some(0x7000));
        let mut caller_registers = Registers::default();
        caller_registers.set(RSP, Some(0x7008));
        vec![
            Frame {
                pc: Pc::Exact(entry_of(image, callee) + 1),
                registers,
                found_by: FoundBy::Context,
                cfa: Some(0x7008),
                trap: false,
            },
            Frame {
                pc: Pc::ReturnAddress(return_address),
                registers: caller_registers,
                found_by: FoundBy::Cfi,
                cfa: None,
                trap: false,
            },
        ]
    }

    /// Returns the entry value of the first parameter of `callee` in frame 0
    /// of `frames`.
    fn parameter_at_entry(image: &Image, info: &DebugInfo, callee: &str, frames: &[Frame]) -> Option<u64> {
        let function = info.functions_named(callee)[0];
        let parameter = super::super::scope::parameters(info, function)[0];
        let memory = WordStack { base: 0x7000, words: vec![0; 4] };
        let set = FrameSet { frames, memory: &memory };
        Locator::new(info).with_image(Some(image)).parameter_entry_value(parameter, function, set, 0)
    }

    fn load(image: &Image) -> DebugInfo {
        DebugInfo::load(Arc::clone(image.dwarf_sections()))
    }

    #[test]
    fn constant_from_call_site() {
        let image = fixture();
        let info = load(&image);
        // twice() doubled its rdi, but entry() passed the constant 7.
        let frames = frames(&image, "twice", Some(14), call_of(&info, "entry", "twice"));
        assert_eq!(parameter_at_entry(&image, &info, "twice", &frames), Some(7));
    }

    #[test]
    fn register_value_from_callee() {
        let image = fixture();
        let info = load(&image);
        // pass_loaded() passed "rdi", which keep() never writes.
        let frames = frames(&image, "keep", Some(42), call_of(&info, "pass_loaded", "keep"));
        assert_eq!(parameter_at_entry(&image, &info, "keep", &frames), Some(42));
    }

    #[test]
    fn register_value_without_callee_register() {
        let image = fixture();
        let info = load(&image);
        let frames = frames(&image, "keep", None, call_of(&info, "pass_loaded", "keep"));
        assert_eq!(parameter_at_entry(&image, &info, "keep", &frames), None);
    }

    #[test]
    fn register_value_without_callee_code() {
        let image = fixture();
        let info = load(&image);
        let frames = frames(&image, "keep", Some(42), call_of(&info, "pass_loaded", "keep"));
        let function = info.functions_named("keep")[0];
        let parameter = super::super::scope::parameters(&info, function)[0];
        let memory = WordStack { base: 0x7000, words: vec![0; 4] };
        let set = FrameSet { frames: &frames, memory: &memory };
        assert_eq!(Locator::new(&info).parameter_entry_value(parameter, function, set, 0), None);
    }

    #[test]
    fn call_site_of_another_function() {
        let image = fixture();
        let info = load(&image);
        // keep() on the stack above entry()'s call of twice(): a tail call
        // that DWARF does not show, so twice()'s 7 is not keep()'s.
        let frames = frames(&image, "keep", Some(7), call_of(&info, "entry", "twice"));
        assert_eq!(parameter_at_entry(&image, &info, "keep", &frames), None);
    }

    #[test]
    fn function_that_tail_calls_itself() {
        let image = fixture();
        let info = load(&image);
        // entry() passed 4 to even(), but the frame may be a later call of
        // even() that odd() jumped to.
        let frames = frames(&image, "even", Some(2), call_of(&info, "entry", "even"));
        assert_eq!(parameter_at_entry(&image, &info, "even", &frames), None);
    }

    #[test]
    fn tail_call_cycles_found() {
        let image = fixture();
        let info = load(&image);
        let locator = Locator::new(&info).with_image(Some(&image));
        for (name, expected) in [("even", true), ("odd", true), ("keep", false), ("twice", false), ("entry", false)] {
            let function = info.functions_named(name)[0];
            let entry = locator.entry_pc(function).unwrap();
            assert_eq!(locator.may_tail_call_itself(function, entry), expected, "{name}");
        }
    }
}
