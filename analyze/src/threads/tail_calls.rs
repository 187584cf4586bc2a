//! Frames of functions that left the stack through a tail call.
//!
//! A function that ends in `jmp other` instead of `call other; ret` has no
//! frame of its own when `other` runs, so no unwinder finds it. DWARF 5
//! call-site entries (and gcc's GNU extension before it) record each call
//! and tail call with its return address and target. When the caller's call
//! at a return address targets a function other than the callee found on
//! the stack, the tail calls that lead from that target to the callee are
//! the missing frames. gdb 13 shows them the same way (its "tailcall"
//! frames), so the thread backtraces of the test unikernel at -O2 need them
//! to match gdb's.
//!
//! NOTE: nothing here is specific to threads; `bt` would show the same
//! frames if it used [`TailCalls::chain`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use gimli::constants;

use crate::image::Image;
use crate::variables::dwarf::{DebugInfo, DieId};

/// Maximum length of a tail-call chain searched between two stack frames.
const MAX_CHAIN_LEN: usize = 8;

/// Most chains collected before the search gives up as ambiguous.
const MAX_CHAINS: usize = 4;

/// Maximum number of tail calls one search follows, so corrupt DWARF with
/// many tail calls per function cannot make the search exponential.
const MAX_SEARCH_STEPS: usize = 4096;

/// A call or tail call recorded in DWARF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallSite {
    /// Entry address of the function that makes the call.
    caller_entry: u64,
    /// The called function's DIE. Its entry address is looked up only when
    /// a search reaches the call, because for a declaration that may read
    /// other units.
    target: DieId,
    /// Whether the call is a tail call (a jump).
    tail: bool,
}

/// One function of a tail-call chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailCallFrame {
    /// Address after the tail call instruction; symbols and lines are
    /// looked up one byte before it, in the jump.
    pub return_address: u64,
}

/// State of one chain search.
struct Search {
    /// Entry address of the function the chains must end in.
    callee: u64,
    /// The chain followed so far, outermost first.
    path: Vec<TailCallFrame>,
    /// Tail calls followed so far.
    steps: usize,
}

/// The call sites of one image, indexed by return address and by caller.
/// A unit's call sites are indexed the first time a search looks up an
/// address in it.
pub struct TailCalls {
    info: DebugInfo,
    index: RefCell<CallSiteIndex>,
}

/// The call sites of the units indexed so far.
#[derive(Debug, Default)]
struct CallSiteIndex {
    indexed_units: HashSet<u32>,
    by_return_address: HashMap<u64, CallSite>,
    /// Tail calls by the entry address of the function that makes them, as
    /// `(return address, target)`.
    tail_calls_by_caller: HashMap<u64, Vec<(u64, DieId)>>,
}

impl std::fmt::Debug for TailCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailCalls").field("index", &self.index).finish_non_exhaustive()
    }
}

/// Returns the entry address of the function `die` names: its own lowest
/// address, or that of the definition with the same name.
fn function_entry(info: &DebugInfo, die: DieId) -> Option<u64> {
    if let Some(start) = info.ranges(die).iter().map(|range| range.start).min() {
        return Some(start);
    }
    let name = info.name(die)?;
    info.functions_named(&name).into_iter().find_map(|definition| info.ranges(definition).iter().map(|range| range.start).min())
}

/// Returns the subprogram that contains `die`, skipping inlined subroutines
/// and lexical blocks.
fn enclosing_function(info: &DebugInfo, die: DieId) -> Option<DieId> {
    let mut current = info.parent(die)?;
    for _ in 0..64 {
        if info.tag(current) == constants::DW_TAG_subprogram {
            return Some(current);
        }
        current = info.parent(current)?;
    }
    None
}

/// Returns the entry address of the function definition named `name`, when
/// all of `image`'s sized symbols of that name have one address and a
/// subprogram at namespace scope with that qualified name starts there.
/// That is the definition [`DebugInfo::functions_named`] would find, found
/// without the name index, which reads every unit.
fn definition_by_symbol(info: &DebugInfo, image: &Image, name: &str) -> Option<u64> {
    let mut addresses = image.symbols_named(name).iter().filter(|symbol| symbol.size != 0).map(|symbol| symbol.address);
    let address = addresses.next()?;
    if addresses.any(|other| other != address) {
        return None;
    }
    for unit in info.units_at(address) {
        for (node_index, node) in info.unit_nodes(unit).iter().enumerate() {
            if node.tag != constants::DW_TAG_subprogram {
                continue;
            }
            let die = DieId { unit, node: node_index as u32 };
            let starts_at_symbol = info.ranges(die).iter().map(|range| range.start).min() == Some(address);
            if starts_at_symbol && at_namespace_scope(info, die) && info.qualified_name(die).as_deref() == Some(name) {
                return Some(address);
            }
        }
    }
    None
}

/// Returns whether `die` is a child of its unit's root or of namespaces
/// only, where the name index looks for functions.
fn at_namespace_scope(info: &DebugInfo, die: DieId) -> bool {
    let mut current = die;
    loop {
        let Some(parent) = info.parent(current) else { return false };
        match info.tag(parent) {
            constants::DW_TAG_compile_unit | constants::DW_TAG_partial_unit => return info.parent(parent).is_none(),
            constants::DW_TAG_namespace => current = parent,
            _ => return false,
        }
    }
}

impl TailCalls {
    /// Returns an index of the call-site entries of `info`, which reads
    /// each unit's entries when a search first needs them.
    pub fn new(info: &DebugInfo) -> TailCalls {
        TailCalls { info: info.clone(), index: RefCell::new(CallSiteIndex::default()) }
    }

    /// Indexes the call sites of the units whose code contains `address`,
    /// or of every unit when no unit's ranges contain it.
    fn index_units_at(&self, address: u64) {
        let mut units: Vec<u32> = self.info.units_at(address).collect();
        if units.is_empty() {
            units = (0..self.info.units().len() as u32).collect();
        }
        for unit in units {
            self.index_unit(unit);
        }
    }

    fn index_unit(&self, unit: u32) {
        if !self.index.borrow_mut().indexed_units.insert(unit) {
            return;
        }
        let info = &self.info;
        let mut sites = Vec::new();
        for (node_index, node) in info.unit_nodes(unit).iter().enumerate() {
            if node.tag != constants::DW_TAG_call_site && node.tag != constants::DW_TAG_GNU_call_site {
                continue;
            }
            let die = DieId { unit, node: node_index as u32 };
            sites.extend(Self::call_site(info, die));
        }
        let mut index = self.index.borrow_mut();
        for &(return_address, site) in &sites {
            if site.tail {
                index.tail_calls_by_caller.entry(site.caller_entry).or_default().push((return_address, site.target));
            }
            index.by_return_address.insert(return_address, site);
        }
        tracing::debug!(unit, call_sites = sites.len(), "call sites indexed");
    }

    /// Returns the entry address of a call's target, when DWARF gives one.
    /// A target that is a declaration (a call into another unit) is looked
    /// up by name. The first try is the symbol of that name in `image`,
    /// confirmed by a DWARF definition at its address, which reads one
    /// unit. The fallback is the name index, which reads every unit.
    fn target_entry(&self, image: &Image, target: DieId) -> Option<u64> {
        let info = &self.info;
        if let Some(start) = info.ranges(target).iter().map(|range| range.start).min() {
            return Some(start);
        }
        if let Some(entry) = info.name(target).and_then(|name| definition_by_symbol(info, image, &name)) {
            return Some(entry);
        }
        function_entry(info, target)
    }

    fn call_site(info: &DebugInfo, die: DieId) -> Option<(u64, CallSite)> {
        let unit = &info.unit(die).unit;
        let return_address = info
            .own_attr(die, constants::DW_AT_call_return_pc)
            .or_else(|| info.own_attr(die, constants::DW_AT_low_pc))
            .and_then(|value| info.dwarf().attr_address(unit, value).ok().flatten())?;
        let target = info
            .attr_ref(die, constants::DW_AT_call_origin)
            .or_else(|| info.attr_ref(die, constants::DW_AT_abstract_origin))?;
        let tail = info.flag(die, constants::DW_AT_call_tail_call) || info.flag(die, constants::DW_AT_GNU_tail_call);
        let caller_entry = function_entry(info, enclosing_function(info, die)?)?;
        Some((return_address, CallSite { caller_entry, target, tail }))
    }

    /// Returns the functions that tail-called their way from the call at
    /// `caller_return_address` to the function containing `callee_pc`,
    /// innermost first. The result is empty when the call targets that
    /// function directly or DWARF does not record the call. It is also empty
    /// when more than one chain fits, where gdb shows the part all chains
    /// share.
    pub fn chain(&self, image: &Image, caller_return_address: u64, callee_pc: u64) -> Vec<TailCallFrame> {
        let Some(site) = self.call_site_at(caller_return_address) else {
            return Vec::new();
        };
        let Some(target_entry) = self.target_entry(image, site.target) else {
            return Vec::new();
        };
        self.chain_from(image, target_entry, callee_pc)
    }

    /// Returns the call site whose return address is `return_address`.
    fn call_site_at(&self, return_address: u64) -> Option<CallSite> {
        // The call instruction ends at the return address, so its last
        // byte lies in the caller's unit even when the call ends the caller.
        self.index_units_at(return_address.wrapping_sub(1));
        self.index.borrow().by_return_address.get(&return_address).copied()
    }

    /// Returns the names of the function that the call at
    /// `caller_return_address` calls, when DWARF gives it as a declaration
    /// without an address: a function of another unit or module. The
    /// linkage name comes first.
    pub fn declared_target(&self, caller_return_address: u64) -> Vec<String> {
        let Some(site) = self.call_site_at(caller_return_address) else {
            return Vec::new();
        };
        if !self.info.ranges(site.target).is_empty() {
            return Vec::new();
        }
        [self.info.linkage_name(site.target), self.info.name(site.target)].into_iter().flatten().collect()
    }

    /// Returns the functions that tail-called their way from the function
    /// entered at `target_entry` to the function containing `callee_pc`,
    /// innermost first, as [`TailCalls::chain`] does for the target of a
    /// call. Both addresses are in `image`, whose DWARF this index reads.
    pub fn chain_from(&self, image: &Image, target_entry: u64, callee_pc: u64) -> Vec<TailCallFrame> {
        let Some(callee_entry) = image.symbol_for(callee_pc).map(|symbol| symbol.address) else {
            return Vec::new();
        };
        if target_entry == callee_entry {
            return Vec::new();
        }
        let mut chains = Vec::new();
        let mut search = Search { callee: callee_entry, path: Vec::new(), steps: 0 };
        self.search(image, target_entry, &mut search, &mut chains);
        if search.steps >= MAX_SEARCH_STEPS {
            tracing::warn!(
                target_entry = format_args!("{target_entry:#x}"),
                "tail-call search stopped after {MAX_SEARCH_STEPS} steps"
            );
            return Vec::new();
        }
        match chains.len() {
            1 => {
                let mut chain = chains.remove(0);
                chain.reverse();
                chain
            }
            count => {
                tracing::debug!(count, target_entry = format_args!("{target_entry:#x}"), "no single tail-call chain");
                Vec::new()
            }
        }
    }

    /// Searches depth first for tail-call chains from `function` to the
    /// callee, appending each one found to `chains`.
    fn search(&self, image: &Image, function: u64, search: &mut Search, chains: &mut Vec<Vec<TailCallFrame>>) {
        if search.path.len() >= MAX_CHAIN_LEN || chains.len() > MAX_CHAINS {
            return;
        }
        self.index_units_at(function);
        let Some(calls) = self.index.borrow().tail_calls_by_caller.get(&function).cloned() else { return };
        for (return_address, target) in calls {
            // A target without ranges or a definition by its name has no
            // entry address, so no chain goes through it. It counts as no
            // search step.
            let Some(target) = self.target_entry(image, target) else { continue };
            if search.steps >= MAX_SEARCH_STEPS {
                return;
            }
            search.steps += 1;
            // A function that tail-calls itself would only repeat frames.
            if target == function || search.path.iter().any(|frame| frame.return_address == return_address) {
                continue;
            }
            search.path.push(TailCallFrame { return_address });
            if target == search.callee {
                chains.push(search.path.clone());
            } else {
                self.search(image, target, search, chains);
            }
            search.path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds tests/fixtures/tail_calls.c at -O2 once, and opens it.
    fn tail_call_image() -> Image {
        static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        let path = PATH.get_or_init(|| {
            crate::test_fixtures::gcc(
                "tail_calls.elf",
                &["-nostdlib", "-static", "-no-pie", "-g", "-O2", "-Wl,-e,entry"],
                &["tail_calls.c"],
            )
        });
        Image::open(path).unwrap()
    }

    fn entry_of(image: &Image, name: &str) -> u64 {
        image.symbols().iter().find(|symbol| symbol.name == name).unwrap_or_else(|| panic!("no function {name}")).address
    }

    fn names(image: &Image, chain: &[TailCallFrame]) -> Vec<String> {
        chain.iter().map(|frame| image.symbol_for(frame.return_address - 1).unwrap().name.clone()).collect()
    }

    /// Returns the return address of entry()'s call to top().
    fn call_to_top(image: &Image, tail_calls: &TailCalls) -> u64 {
        let top = entry_of(image, "top");
        for unit in 0..tail_calls.info.units().len() as u32 {
            tail_calls.index_unit(unit);
        }
        let index = tail_calls.index.borrow();
        let (return_address, _) = index
            .by_return_address
            .iter()
            .find(|(_, site)| !site.tail && tail_calls.target_entry(image, site.target) == Some(top))
            .expect("DWARF records entry()'s call to top()");
        *return_address
    }

    #[test]
    fn chain_fills_tail_called_functions() {
        let image = tail_call_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let tail_calls = TailCalls::new(&info);
        let return_address = call_to_top(&image, &tail_calls);

        let chain = tail_calls.chain(&image, return_address, entry_of(&image, "leaf"));
        assert_eq!(names(&image, &chain), ["middle", "top"]);
        // One tail call: top() jumped to middle(), which runs.
        let chain = tail_calls.chain(&image, return_address, entry_of(&image, "middle") + 1);
        assert_eq!(names(&image, &chain), ["top"]);
    }

    #[test]
    fn declared_target_of_defined_function() {
        let image = tail_call_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let tail_calls = TailCalls::new(&info);
        let return_address = call_to_top(&image, &tail_calls);

        // top() is defined in the unit, so its address is known and no
        // other module needs to find it by name.
        assert!(tail_calls.declared_target(return_address).is_empty());
        let chain = tail_calls.chain_from(&image, entry_of(&image, "top"), entry_of(&image, "leaf"));
        assert_eq!(names(&image, &chain), ["middle", "top"]);
    }

    #[test]
    fn chain_empty_for_direct_call() {
        let image = tail_call_image();
        let info = DebugInfo::load(std::sync::Arc::clone(image.dwarf_sections()));
        let tail_calls = TailCalls::new(&info);
        let return_address = call_to_top(&image, &tail_calls);

        assert!(tail_calls.chain(&image, return_address, entry_of(&image, "top")).is_empty());
        // A return address DWARF has no call site for.
        assert!(tail_calls.chain(&image, return_address + 1, entry_of(&image, "leaf")).is_empty());
        // A callee no tail call reaches from top().
        assert!(tail_calls.chain(&image, return_address, entry_of(&image, "entry")).is_empty());
    }
}
