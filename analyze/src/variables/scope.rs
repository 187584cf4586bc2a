//! Scopes at a frame's pc: which function, inlined function and lexical
//! blocks contain it, and the variables and parameters they declare.
//!
//! One physical frame becomes one source frame per function at its pc,
//! innermost inlined function first, as `bt` numbers them. Lexical blocks
//! without addresses are transparent, as in gdb: gcc emits them for blocks
//! whose code was optimized away, and gdb puts their variables in the
//! enclosing block.

use gimli::constants;

use super::dwarf::{DebugInfo, DieId};

/// The scopes of one function at one pc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionScope {
    /// The `DW_TAG_subprogram` or `DW_TAG_inlined_subroutine`.
    pub function: DieId,
    /// The physical function (`DW_TAG_subprogram`) whose frame contains the
    /// variables; the same as `function` unless it was inlined.
    pub physical_function: DieId,
    /// The blocks containing the pc, innermost first, ending with `function`.
    pub blocks: Vec<DieId>,
}

/// Returns the functions at `pc`, innermost inlined function first and the
/// physical function last; empty when no DWARF function covers `pc`.
pub fn scopes_at(info: &DebugInfo, pc: u64) -> Vec<FunctionScope> {
    let Some(subprogram) = subprogram_at(info, pc) else {
        return Vec::new();
    };
    let mut chain = vec![subprogram];
    let mut current = subprogram;
    // Each level descends into the child block that contains pc. Nesting
    // deeper than this is corrupt DWARF.
    for _ in 0..256 {
        let Some(next) = child_block_at(info, current, pc) else { break };
        chain.push(next);
        current = next;
    }

    let mut scopes: Vec<FunctionScope> = Vec::new();
    for die in chain {
        let starts_function = matches!(info.tag(die), constants::DW_TAG_subprogram | constants::DW_TAG_inlined_subroutine);
        if starts_function {
            scopes.push(FunctionScope { function: die, physical_function: subprogram, blocks: vec![die] });
        } else if let Some(scope) = scopes.last_mut() {
            scope.blocks.push(die);
        }
    }
    for scope in &mut scopes {
        scope.blocks.reverse();
    }
    scopes.reverse();
    scopes
}

/// Finds the subprogram that contains `pc`, in any unit that covers it.
/// gcc nests the definition of a member function of a local class, such
/// as a lambda's `operator()` at -O0, inside the class, inside the
/// function or block that declares it, so those are searched too.
fn subprogram_at(info: &DebugInfo, pc: u64) -> Option<DieId> {
    for unit in info.units_at(pc) {
        let mut stack: Vec<DieId> = info.children(info.unit_root(unit)).collect();
        while let Some(die) = stack.pop() {
            match info.tag(die) {
                constants::DW_TAG_subprogram if info.contains_pc(die, pc) => return Some(die),
                constants::DW_TAG_namespace
                | constants::DW_TAG_class_type
                | constants::DW_TAG_structure_type
                | constants::DW_TAG_union_type
                | constants::DW_TAG_subprogram
                | constants::DW_TAG_lexical_block => stack.extend(info.children(die)),
                _ => {}
            }
        }
    }
    None
}

/// Returns the child block or inlined call of `parent` that contains `pc`,
/// looking through blocks without addresses.
fn child_block_at(info: &DebugInfo, parent: DieId, pc: u64) -> Option<DieId> {
    child_block_at_depth(info, parent, pc, 0)
}

fn child_block_at_depth(info: &DebugInfo, parent: DieId, pc: u64, depth: usize) -> Option<DieId> {
    // Blocks without addresses nested deeper than this are corrupt DWARF.
    if depth > 64 {
        return None;
    }
    for child in info.children(parent) {
        match info.tag(child) {
            constants::DW_TAG_lexical_block | constants::DW_TAG_inlined_subroutine => {
                let ranges = info.ranges(child);
                if ranges.is_empty() && info.tag(child) == constants::DW_TAG_lexical_block {
                    if let Some(found) = child_block_at_depth(info, child, pc, depth + 1) {
                        return Some(found);
                    }
                } else if ranges.iter().any(|range| range.contains(&pc)) {
                    return Some(child);
                }
            }
            _ => {}
        }
    }
    None
}

/// Returns the variables a block declares, in DIE order, including those
/// of nested blocks without addresses, and its labels without addresses.
pub fn block_variables(info: &DebugInfo, block: DieId) -> Vec<DieId> {
    let mut variables = Vec::new();
    collect_variables(info, block, &mut variables, 0);
    variables
}

fn collect_variables(info: &DebugInfo, block: DieId, out: &mut Vec<DieId>, depth: usize) {
    if depth > 64 {
        return;
    }
    for child in info.children(block).chain(inherited_children(info, block)) {
        match info.tag(child) {
            constants::DW_TAG_variable => out.push(child),
            // gdb 13 gives a label without an address (`out:` in glibc's
            // start_thread) an optimized-out symbol, which `info locals`
            // lists as `out = <optimized out>`. A label with an address is
            // not listed.
            constants::DW_TAG_label if info.attr(child, constants::DW_AT_low_pc).is_none() => out.push(child),
            constants::DW_TAG_lexical_block if info.ranges(child).is_empty() => {
                collect_variables(info, child, out, depth + 1)
            }
            _ => {}
        }
    }
}

/// Returns the children of `die`'s abstract origin that no direct child of
/// `die` refers to. gdb 13 adds them to the concrete scope (its
/// `inherit_abstract_dies`), so a variable gcc moved into a nested block of
/// an inlined call appears a second time, as `<optimized out>`; listing
/// them keeps `info locals` equal to gdb's.
fn inherited_children(info: &DebugInfo, die: DieId) -> Vec<DieId> {
    if !matches!(info.tag(die), constants::DW_TAG_inlined_subroutine | constants::DW_TAG_lexical_block | constants::DW_TAG_subprogram) {
        return Vec::new();
    }
    let Some(origin) = info.own_attr(die, constants::DW_AT_abstract_origin).and_then(|value| info.resolve_ref(die, value))
    else {
        return Vec::new();
    };
    let referenced: Vec<DieId> = info
        .children(die)
        .filter_map(|child| info.own_attr(child, constants::DW_AT_abstract_origin).and_then(|value| info.resolve_ref(child, value)))
        .collect();
    info.children(origin)
        .filter(|child| !referenced.contains(child))
        .filter(|&child| {
            matches!(info.tag(child), constants::DW_TAG_variable | constants::DW_TAG_lexical_block | constants::DW_TAG_formal_parameter)
        })
        .collect()
}

/// Returns the parameters of a function or inlined call, in DIE order.
pub fn parameters(info: &DebugInfo, function: DieId) -> Vec<DieId> {
    info.children(function)
        .chain(inherited_children(info, function))
        .filter(|&child| info.tag(child) == constants::DW_TAG_formal_parameter)
        .collect()
}

/// Returns the locals visible in `scope`, innermost block first, as gdb's
/// `info locals` lists them.
pub fn locals(info: &DebugInfo, scope: &FunctionScope) -> Vec<DieId> {
    scope.blocks.iter().flat_map(|&block| block_variables(info, block)).collect()
}

/// Returns the unit-level variable of the unit containing `scope` named `name`
/// (a `static` global of that file).
pub fn file_static(info: &DebugInfo, unit: u32, name: &str) -> Option<DieId> {
    let root = info.unit_root(unit);
    let found = info
        .children(root)
        .filter(|&die| info.tag(die) == constants::DW_TAG_variable && info.name(die).as_deref() == Some(name))
        .collect::<Vec<_>>();
    found
        .iter()
        .copied()
        .find(|&die| info.own_attr(die, constants::DW_AT_location).is_some())
        .or_else(|| found.first().copied())
}

/// Returns the `static` local named `name` declared anywhere in `function`
/// (gdb's `function::name`).
pub fn find_static_local(info: &DebugInfo, function: DieId, name: &str) -> Option<DieId> {
    let mut stack: Vec<DieId> = info.children(function).collect();
    let mut visited = 0usize;
    while let Some(die) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 {
            return None;
        }
        match info.tag(die) {
            constants::DW_TAG_variable if info.name(die).as_deref() == Some(name) => return Some(die),
            constants::DW_TAG_lexical_block => stack.extend(info.children(die)),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::test_fixtures;

    #[test]
    fn lambda_scope_found_at_o0() {
        let path = test_fixtures::gcc("cpp-names-scope", &["-x", "c++", "-g", "-O0", "-fno-exceptions"], &["cpp_names.cpp"]);
        let image = Image::open(&path).unwrap();
        // The lambda's operator() is defined inside its closure class,
        // inside main.
        let lambda = image.symbols_named("_ZZ4mainENKUliE_clEi")[0].address;
        let scopes = scopes_at(image.debug_info(), lambda);
        assert_eq!(scopes.len(), 1);
        let info = image.debug_info();
        assert_eq!(info.name(scopes[0].function).as_deref(), Some("operator()"));
        let parameters: Vec<Option<String>> =
            parameters(info, scopes[0].function).into_iter().map(|die| info.name(die)).collect();
        assert_eq!(parameters, [Some("__closure".to_owned()), Some("n".to_owned())]);
    }
}
