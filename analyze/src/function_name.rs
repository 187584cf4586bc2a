//! The name gdb 13 shows in a frame line for a C++ function, from its DIE.
//!
//! gdb names a frame by the symbol of its function's DIE, the out-of-line
//! `DW_TAG_subprogram` or the `DW_TAG_inlined_subroutine`. When the DIE has
//! a linkage name, on itself or on the DIE its `DW_AT_abstract_origin` or
//! `DW_AT_specification` refers to, the symbol's name is that name
//! demangled without the return type. Otherwise gdb builds the name from
//! the DIE tree (`dwarf2_physname` in gdb/dwarf2/read.c): the enclosing
//! namespaces and classes of the declaration, the `DW_AT_name` and, for a
//! `DW_TAG_subprogram` only, the parameter types. gcc 12 gives no linkage
//! name to the members of local classes, such as a lambda's `operator()`,
//! nor to functions in an anonymous namespace. A frame line then shows the
//! name without parameters when gdb's C++ parser accepts it, and whole
//! otherwise (see [`crate::cpp_name`]).

use gimli::constants;

use crate::cpp_name;
use crate::variables::dwarf::{DebugInfo, DieId};
use crate::variables::types::{Type, TypeRef, TypeTable};

/// Maximum number of `DW_AT_abstract_origin` references and of enclosing
/// scopes followed, so that a reference loop in damaged DWARF ends.
const MAX_CHAIN: usize = 32;

/// Returns the name gdb shows in a frame line for the C++ function whose
/// subprogram or inlined-subroutine DIE is `die`, or `None` when the DIE
/// has neither a name nor a linkage name.
pub fn frame_function_name(info: &DebugInfo, die: DieId) -> Option<String> {
    let symbol_name = match info.linkage_name(die) {
        Some(linkage_name) => cpp_name::demangle(&linkage_name).unwrap_or(linkage_name),
        None => computed_name(info, die)?,
    };
    Some(cpp_name::without_parameters(&symbol_name).unwrap_or(symbol_name))
}

/// Builds the name of a function without a linkage name as gdb does:
/// `scope::name`, with the parameter list for an out-of-line function, in
/// canonical spelling when gdb's parser accepts it.
/// NOTE: gdb also appends the `DW_TAG_template_type_param` children of a
/// DIE whose `DW_AT_name` has no template arguments (clang's
/// `-gsimple-template-names`), and spells the class names in the parameter
/// types canonically. Neither is done here. The second shows only in a
/// name that gdb's parser rejects, which keeps its parameters.
fn computed_name(info: &DebugInfo, die: DieId) -> Option<String> {
    let name = canonical(info.name(die)?);
    let prefix = scope_prefix(info, die, 0);
    let mut full = if prefix.is_empty() { name } else { format!("{prefix}::{name}") };
    if info.tag(die) == constants::DW_TAG_subprogram {
        full.push_str(&parameter_list(info, die));
    }
    Some(canonical(full))
}

fn canonical(name: String) -> String {
    cpp_name::canonicalize(&name).unwrap_or(name)
}

/// Returns the scope that `die` is declared in, as a prefix of its name
/// (gdb's `determine_prefix`). A definition is named where its declaration
/// is: the parent of the DIE that its `DW_AT_specification` refers to (also
/// through `DW_AT_abstract_origin`), or else the parent of its abstract
/// origin, or else its own parent.
fn scope_prefix(info: &DebugInfo, die: DieId, depth: usize) -> String {
    if depth > MAX_CHAIN {
        return String::new();
    }
    let declaration = specification(info, die).or_else(|| reference(info, die, constants::DW_AT_abstract_origin));
    let Some(scope) = info.parent(declaration.unwrap_or(die)) else { return String::new() };
    match info.tag(scope) {
        constants::DW_TAG_namespace => {
            let name = info.name(scope).unwrap_or_else(|| "(anonymous namespace)".to_owned());
            join(scope_prefix(info, scope, depth + 1), name)
        }
        constants::DW_TAG_class_type
        | constants::DW_TAG_structure_type
        | constants::DW_TAG_union_type
        | constants::DW_TAG_interface_type => match info.name(scope) {
            Some(name) => canonical(join(scope_prefix(info, scope, depth + 1), canonical(name))),
            // A lambda's closure type has no name, and gdb gives the
            // members of an unnamed class no prefix.
            None => String::new(),
        },
        constants::DW_TAG_enumeration_type if info.flag(scope, constants::DW_AT_enum_class) => {
            info.name(scope).map(|name| join(scope_prefix(info, scope, depth + 1), name)).unwrap_or_default()
        }
        // A class local to a function has no prefix.
        constants::DW_TAG_compile_unit | constants::DW_TAG_partial_unit | constants::DW_TAG_subprogram => String::new(),
        // Lexical blocks and the like are transparent.
        _ => scope_prefix(info, scope, depth + 1),
    }
}

fn join(prefix: String, name: String) -> String {
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}::{name}")
    }
}

/// Returns the DIE that the `DW_AT_specification` of `die` refers to,
/// looking through `DW_AT_abstract_origin` as gdb's `dwarf2_attr` does.
fn specification(info: &DebugInfo, die: DieId) -> Option<DieId> {
    let mut current = die;
    for _ in 0..MAX_CHAIN {
        if let Some(target) = reference(info, current, constants::DW_AT_specification) {
            return Some(target);
        }
        current = reference(info, current, constants::DW_AT_abstract_origin)?;
    }
    None
}

fn reference(info: &DebugInfo, die: DieId, attribute: gimli::DwAt) -> Option<DieId> {
    let value = info.own_attr(die, attribute)?;
    info.resolve_ref(die, value)
}

/// Returns the parameter list gdb appends to an out-of-line function's
/// name (gdb's `c_type_print_args` for a linkage name): the types of the
/// parameters that are not artificial, without their top-level `const`,
/// `(void)` when there are none, and ` const` after it for a method whose
/// `this` points to const.
fn parameter_list(info: &DebugInfo, die: DieId) -> String {
    let types = TypeTable { info };
    let mut names = Vec::new();
    let mut variadic = false;
    let mut const_method = false;
    let mut first = true;
    for child in info.children(die) {
        match info.tag(child) {
            constants::DW_TAG_formal_parameter => {
                let ty = types.type_of(child);
                if info.flag(child, constants::DW_AT_artificial) {
                    if first {
                        const_method = points_to_const(&types, &ty);
                    }
                } else {
                    names.push(types.name(&without_qualifiers(&types, ty)));
                }
                first = false;
            }
            constants::DW_TAG_unspecified_parameters => variadic = true,
            _ => {}
        }
    }
    let mut list = if names.is_empty() { "void".to_owned() } else { names.join(", ") };
    if variadic && !names.is_empty() {
        list.push_str(", ...");
    }
    let suffix = if const_method { " const" } else { "" };
    format!("({list}){suffix}")
}

/// Removes the `const` and `volatile` that apply to `ty` itself.
fn without_qualifiers(types: &TypeTable<'_>, ty: TypeRef) -> TypeRef {
    let mut current = ty;
    for _ in 0..MAX_CHAIN {
        match types.resolve(&current) {
            Type::Qualified { target, .. } => current = target,
            _ => break,
        }
    }
    current
}

/// Returns whether `ty`, the type of a `this` parameter, points to a const type.
fn points_to_const(types: &TypeTable<'_>, ty: &TypeRef) -> bool {
    let Type::Pointer { target, .. } = types.resolve(&without_qualifiers(types, ty.clone())) else { return false };
    matches!(types.resolve(&target), Type::Qualified { qualifier: "const", .. })
}

#[cfg(test)]
mod tests {
    use crate::image::Image;
    use crate::symbolize::{symbolize, SourceFrame};
    use crate::test_fixtures;

    /// Builds tests/fixtures/cpp_names.cpp at `optimization` (`-O0`).
    fn fixture(optimization: &str) -> Image {
        let output = format!("cpp-names{optimization}");
        let path = test_fixtures::gcc(&output, &["-x", "c++", "-g", optimization, "-fno-exceptions"], &["cpp_names.cpp"]);
        Image::open(&path).unwrap()
    }

    /// Returns the functions at the address of the symbol whose name starts
    /// with `prefix`, innermost first.
    fn frames_at(image: &Image, prefix: &str) -> Vec<SourceFrame> {
        let symbol = image
            .symbols()
            .iter()
            .find(|symbol| symbol.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no symbol starts with {prefix}"));
        symbolize(image, symbol.address)
    }

    fn name_at(image: &Image, prefix: &str) -> String {
        frames_at(image, prefix).pop().and_then(|frame| frame.function).unwrap_or_default()
    }

    // The expected names are gdb 13's frame lines for these functions.
    const OUT_OF_LINE: [(&str, &str); 10] = [
        ("_ZN3app3VecpLEi", "app::Vec::operator+="),
        ("_ZNK3app5Outer5Inner6methodEi", "app::Outer::Inner::method"),
        ("_ZN3app5twiceIiEET_S1_", "app::twice<int>"),
        ("_ZN3app6taggedB2v2Ei", "app::tagged[abi:v2](int)"),
        ("_ZN12_GLOBAL__N_16hiddenEi", "(anonymous namespace)::hidden"),
        ("_ZZ11local_classiEN5Local3getEi", "Local::get"),
        ("_Z11local_classi", "local_class"),
        ("_ZZ4mainENKUliE_clEi", "operator()"),
        ("_Z5applyIZ4mainEUliE0_EiT_", "apply<main()::<lambda(int)> >(struct {...})"),
        ("main", "main"),
    ];

    #[test]
    fn out_of_line_names_at_o0() {
        let image = fixture("-O0");
        for (symbol, expected) in OUT_OF_LINE {
            assert_eq!(name_at(&image, symbol), expected, "function {symbol}");
        }
    }

    #[test]
    fn out_of_line_names_at_o2() {
        // gcc renames some clones (`.isra.0`), and their DIEs name the
        // original function through DW_AT_abstract_origin.
        let image = fixture("-O2");
        for (symbol, expected) in OUT_OF_LINE {
            assert_eq!(name_at(&image, symbol), expected, "function {symbol}");
        }
    }

    #[test]
    fn inlined_template_method_qualified() {
        let image = fixture("-O2");
        let frames = frames_at(&image, "_ZN3app5twiceIiEET_S1_");
        let names: Vec<&str> = frames.iter().map(|frame| frame.function.as_deref().unwrap_or("??")).collect();
        assert_eq!(names, ["app::Box<int>::get", "app::twice<int>"]);
        assert!(frames[0].inlined);
    }
}
