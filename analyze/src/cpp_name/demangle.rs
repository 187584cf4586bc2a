//! Demangling of C++ linkage names in the spelling of libiberty, which
//! gdb uses.

use super::INTEGER_LITERAL_TYPES;

/// The standard substitutions of the Itanium ABI that libiberty prints
/// abbreviated (`std::string`): the abbreviation, the full name, and the
/// name of the class's constructors. The full name stays in front of a
/// constructor or destructor.
const ABBREVIATIONS: [(&str, &str, &str); 4] = [
    ("std::string", "std::basic_string<char, std::char_traits<char>, std::allocator<char> >", "basic_string"),
    ("std::istream", "std::basic_istream<char, std::char_traits<char> >", "basic_istream"),
    ("std::ostream", "std::basic_ostream<char, std::char_traits<char> >", "basic_ostream"),
    ("std::iostream", "std::basic_iostream<char, std::char_traits<char> >", "basic_iostream"),
];

/// Demangles an Itanium C++ linkage name as gdb does for a function's
/// symbol: with parameters and without the return type of a template
/// function (libiberty's `DMGL_PARAMS | DMGL_ANSI | DMGL_RET_DROP`).
/// `None` when the name does not demangle.
///
/// cpp_demangle does the work, and the result is respelled as libiberty
/// spells it. NOTE: cpp_demangle 0.5 also drops a parameter of some
/// template constructors and misplaces a `&` before a nested name in a few
/// libstdc++ names. gdb shows such names whole only when its parser
/// rejects them, so the difference rarely reaches a frame line.
pub fn demangle(linkage_name: &str) -> Option<String> {
    let symbol = cpp_demangle::Symbol::new(linkage_name.as_bytes()).ok()?;
    let options = cpp_demangle::DemangleOptions::new().no_return_type();
    let demangled = symbol.demangle_with_options(&options).ok()?;
    Some(libiberty_spelling(&demangled))
}

/// Respells cpp_demangle's output the way libiberty prints the same name.
/// Integer literals get a suffix (`(unsigned long)0` is `0ul`), and
/// `std::nullptr_t` is `decltype(nullptr)`. The standard abbreviations such
/// as `std::string` replace the full names, except in front of the class's
/// own constructor or destructor, where libiberty keeps the full name.
fn libiberty_spelling(demangled: &str) -> String {
    let mut text = respell_literals(demangled);
    text = replace_name(&text, "std::nullptr_t", "decltype(nullptr)");
    for (short, full, constructor) in ABBREVIATIONS {
        let class = &short["std::".len()..];
        text = replace_name(&text, &format!("{short}::{class}"), &format!("{full}::{constructor}"));
        text = replace_name(&text, &format!("{short}::~{class}"), &format!("{full}::~{constructor}"));
        let mut respelled = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(index) = find_name(rest, full) {
            let after = &rest[index + full.len()..];
            let keeps_full = [format!("::{constructor}"), format!("::~{constructor}")]
                .iter()
                .any(|tail| after.strip_prefix(tail.as_str()).is_some_and(|more| !starts_identifier(more)));
            respelled.push_str(&rest[..index]);
            respelled.push_str(if keeps_full { full } else { short });
            rest = after;
        }
        respelled.push_str(rest);
        text = respelled;
    }
    text
}

/// Rewrites `(type)digits` casts of integer types to literal suffixes.
fn respell_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(index) = rest.find('(') {
        out.push_str(&rest[..index]);
        let after = &rest[index + 1..];
        for (name, suffix) in INTEGER_LITERAL_TYPES.iter().chain(&[("bool", "")]) {
            let Some(value) = after.strip_prefix(name).and_then(|more| more.strip_prefix(')')) else { continue };
            let sign_len = usize::from(value.starts_with('-'));
            let digits_len = value[sign_len..].find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len() - sign_len);
            if digits_len == 0 {
                continue;
            }
            let (number, remainder) = value.split_at(sign_len + digits_len);
            match (*name, number) {
                ("bool", "0") => out.push_str("false"),
                ("bool", "1") => out.push_str("true"),
                ("bool", _) => continue,
                _ => {
                    out.push_str(number);
                    out.push_str(suffix);
                }
            }
            rest = remainder;
            continue 'scan;
        }
        out.push('(');
        rest = after;
    }
    out.push_str(rest);
    out
}

fn starts_identifier(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
}

/// Finds `name` in `text` where it is a whole name: not the tail of a
/// longer identifier or of another scope (`my::std::string`).
fn find_name(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(offset) = text[from..].find(name) {
        let index = from + offset;
        let before = text[..index].chars().next_back();
        let after = &text[index + name.len()..];
        let whole_start = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if whole_start && !starts_identifier(after) {
            return Some(index);
        }
        from = index + 1;
    }
    None
}

fn replace_name(text: &str, name: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = find_name(rest, name) {
        out.push_str(&rest[..index]);
        out.push_str(replacement);
        rest = &rest[index + name.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangled_without_return_type() {
        assert_eq!(demangle("_ZN3app5twiceIiEET_S1_").as_deref(), Some("app::twice<int>(int)"));
        assert_eq!(demangle("_ZN3app10make_labelB5cxx11Ei").as_deref(), Some("app::make_label[abi:cxx11](int)"));
        assert_eq!(demangle("_ZNKSt8functionIFviEEclEi").as_deref(), Some("std::function<void (int)>::operator()(int) const"));
        assert_eq!(demangle("_ZZ4mainENKUlvE_clEv").as_deref(), Some("main::{lambda()#1}::operator()() const"));
        assert_eq!(demangle("main"), None);
    }

    #[test]
    fn demangled_in_libiberty_spelling() {
        assert_eq!(demangle("_Z1fILj3EEvv").as_deref(), Some("f<3u>()"));
        assert_eq!(demangle("_Z1fILl3EEvv").as_deref(), Some("f<3l>()"));
        assert_eq!(demangle("_Z1fILs3EEvv").as_deref(), Some("f<(short)3>()"));
        assert_eq!(demangle("_Z1fDn").as_deref(), Some("f(decltype(nullptr))"));
        assert_eq!(demangle("_ZNKSi6gcountEv").as_deref(), Some("std::istream::gcount() const"));
        assert_eq!(demangle("_ZNSolsEi").as_deref(), Some("std::ostream::operator<<(int)"));
        assert_eq!(
            demangle("_ZNSsC1EPKc").as_deref(),
            Some("std::basic_string<char, std::char_traits<char>, std::allocator<char> >::basic_string(char const*)")
        );
    }

    #[test]
    fn literal_casts_respelled() {
        assert_eq!(respell_literals("A<(unsigned long)0, (long)-2, (bool)0, (short)3>"), "A<0ul, -2l, false, (short)3>");
        assert_eq!(respell_literals("f(int (*)(int))"), "f(int (*)(int))");
    }

    #[test]
    fn whole_names_replaced() {
        assert_eq!(replace_name("my::std::nullptr_t, std::nullptr_t", "std::nullptr_t", "X"), "my::std::nullptr_t, X");
        assert_eq!(replace_name("std::nullptr_tt", "std::nullptr_t", "X"), "std::nullptr_tt");
    }
}
