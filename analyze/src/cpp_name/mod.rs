//! C++ names as gdb 13 prints them in a frame line.
//!
//! gdb names a C++ function by its demangled linkage name, or by a name it
//! builds from the DWARF (see [`crate::function_name`]). It reads that name
//! with its own parser of C++ names (gdb/cp-name-parser.y): a name that
//! parses is reprinted in libiberty's spelling (`char const*`,
//! `unsigned long`, `0ul`), and a frame line shows it without its parameter
//! list. A name that does not parse is shown as it is, parameters included.
//! That parser accepts no lambda (`{lambda()#1}`, `<lambda()>`), no ABI tag
//! (`[abi:cxx11]`), no function type as a template argument
//! (`std::function<void (int)>`) and no empty template argument list, so
//! gdb prints `std::thread::_State_impl<…<lambda()> > >::_M_run(void)`.
//!
//! [`canonicalize`] and [`without_parameters`] parse the subset of that
//! grammar that demangled names and gcc's DWARF names use, and reject what
//! gdb rejects. NOTE: member pointers (`int Foo::*`), character and float
//! literals and binary operators in template arguments are rejected here
//! but parsed by gdb, so a name with one of them keeps its parameters.
//!
//! [`demangle`] replaces the libiberty demangler that gdb calls.

mod demangle;
mod parse;
mod print;

pub use demangle::demangle;

use parse::{parse, Start};

/// The integer types a literal suffix selects, with libiberty's suffix.
const INTEGER_LITERAL_TYPES: [(&str, &str); 6] = [
    ("int", ""),
    ("unsigned int", "u"),
    ("long", "l"),
    ("unsigned long", "ul"),
    ("long long", "ll"),
    ("unsigned long long", "ull"),
];

/// Returns `name` in gdb's canonical spelling (gdb's `cp_canonicalize_string`),
/// or `None` when gdb's parser rejects it and gdb keeps it as written.
pub fn canonicalize(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    print::start(&parse(name)?, &mut out);
    Some(out)
}

/// Returns the name of the function `name` denotes without its parameter
/// list and qualifiers (gdb's `cp_remove_params`): `ns::Class::method`
/// for `ns::Class::method(int) const`. `None` when gdb's parser rejects
/// the name, when it has no parameter list, and for a name declared
/// inside a function (`f()::Local::method()`), which gdb shows whole.
pub fn without_parameters(name: &str) -> Option<String> {
    let Start::Function { name, local: None, .. } = parse(name)? else { return None };
    let mut out = String::new();
    print::name(&name, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_removed() {
        assert_eq!(without_parameters("thrower(int)").as_deref(), Some("thrower"));
        assert_eq!(without_parameters("ns::Shape::area() const").as_deref(), Some("ns::Shape::area"));
        assert_eq!(without_parameters("apply(void (*)(int))").as_deref(), Some("apply"));
        assert_eq!(without_parameters("app::Vec::operator+=(int)").as_deref(), Some("app::Vec::operator+="));
        assert_eq!(without_parameters("app::Vec::operator=(app::Vec const&)").as_deref(), Some("app::Vec::operator="));
        assert_eq!(without_parameters("app::operator==(app::Vec, app::Vec)").as_deref(), Some("app::operator=="));
        assert_eq!(without_parameters("app::Vec::operator->() const").as_deref(), Some("app::Vec::operator->"));
        assert_eq!(without_parameters("app::Vec::operator[](unsigned long)").as_deref(), Some("app::Vec::operator[]"));
        assert_eq!(without_parameters("operator()(void) const").as_deref(), Some("operator()"));
        assert_eq!(without_parameters("Foo::operator bool() const").as_deref(), Some("Foo::operator bool"));
        assert_eq!(without_parameters("Foo::operator char const*()").as_deref(), Some("Foo::operator char const*"));
        assert_eq!(without_parameters("Foo::~Foo()").as_deref(), Some("Foo::~Foo"));
        assert_eq!(without_parameters("operator new[](unsigned long)").as_deref(), Some("operator new[]"));
        assert_eq!(without_parameters("std::operator<< <std::char_traits<char> >(std::ostream&, char const*)").as_deref(),
            Some("std::operator<< <std::char_traits<char> >"));
        assert_eq!(without_parameters("(anonymous namespace)::hidden(int)").as_deref(), Some("(anonymous namespace)::hidden"));
        assert_eq!(without_parameters("f(int (&) [3], char**, ...)").as_deref(), Some("f"));
    }

    #[test]
    fn names_gdb_cannot_parse_kept() {
        // Lambdas, as libiberty and as gcc's DWARF name them.
        assert_eq!(without_parameters("main::{lambda()#1}::operator()() const"), None);
        assert_eq!(
            without_parameters("std::thread::_State_impl<std::thread::_Invoker<std::tuple<main()::<lambda()> > > >::_M_run(void)"),
            None
        );
        // An ABI tag, a function type and an empty template argument list.
        assert_eq!(without_parameters("app::make_label[abi:cxx11](int)"), None);
        assert_eq!(without_parameters("std::function<void (int)>::operator()(int) const"), None);
        assert_eq!(without_parameters("g(std::tuple<>)"), None);
        // `>>` is a shift to gdb's lexer.
        assert_eq!(without_parameters("f(std::vector<std::vector<int>>)"), None);
        // A ref-qualifier after the parameters.
        assert_eq!(without_parameters("Functor::operator()(int) &&"), None);
        assert_eq!(without_parameters("std::unique_ptr<int>::operator=(decltype(nullptr))"), None);
    }

    #[test]
    fn names_without_parameters_kept() {
        // An inlined function's name from the DWARF has no parameter list.
        assert_eq!(without_parameters("std::vector<int>::size"), None);
        assert_eq!(without_parameters("plain"), None);
        // A name declared inside a function.
        assert_eq!(without_parameters("f(int)::Local::method(int)"), None);
    }

    #[test]
    fn canonical_spelling() {
        assert_eq!(canonicalize("Cache<long unsigned int, const char*>::get").as_deref(),
            Some("Cache<unsigned long, char const*>::get"));
        assert_eq!(canonicalize("A<B<int> >").as_deref(), Some("A<B<int> >"));
        assert_eq!(canonicalize("f(char* const, const volatile int&)").as_deref(), Some("f(char* const, int volatile const&)"));
        assert_eq!(canonicalize("_Head_base<0, std::thread::_State*, false>").as_deref(),
            Some("_Head_base<0, std::thread::_State*, false>"));
        assert_eq!(canonicalize("N<(char)97, -1, 3ul, (bool)1, &global>").as_deref(), Some("N<(char)97, -1, 3ul, true, &global>"));
        assert_eq!(canonicalize("f(void)").as_deref(), Some("f()"));
        assert_eq!(canonicalize("g(int (*)[3], int [2][5], void (**)(int))").as_deref(),
            Some("g(int (*) [3], int [2][5], void (**)(int))"));
        assert_eq!(canonicalize("std::__invoke_impl<void, main()::<lambda()> >"), None);
        assert_eq!(canonicalize("long unsigned int").as_deref(), Some("unsigned long"));
    }

    #[test]
    fn untrusted_names_do_not_panic() {
        for name in ["", "(", ")", "<", "operator", "operator<", "~", "f(", "f<", "A<(>", "-", "[3]", "::", "f()::",
            "(anonymous namespace)", "int (*", "x[", "0x", "1e5", "f(int (&)", "a::b::", "\u{e9}t\u{e9}(int)"] {
            let _ = canonicalize(name);
            let _ = without_parameters(name);
        }
    }
}

