//! Prints parsed C++ names in the spelling of libiberty's printer
//! (`cplus_demangle_print`), which gdb's `cp_comp_to_string` calls.

use std::fmt::Write as _;

use super::parse::{Component, Expression, Name, Parameters, Qualifiers, Start, TemplateArgument, Type};
use super::INTEGER_LITERAL_TYPES;

/// Prints a whole name.
pub(super) fn start(start: &Start, out: &mut String) {
    match start {
        Start::Function { name: function_name, parameters: list, local } => {
            name(function_name, out);
            parameters(list, out);
            if let Some(local) = local {
                out.push_str("::");
                self::start(local, out);
            }
        }
        Start::Type(ty) => type_name(ty, out),
    }
}

pub(super) fn name(name: &Name, out: &mut String) {
    for (index, part) in name.0.iter().enumerate() {
        if index > 0 {
            out.push_str("::");
        }
        component(part, out);
    }
}

fn component(part: &Component, out: &mut String) {
    match part {
        Component::Identifier(identifier) => out.push_str(identifier),
        Component::Operator(operator) => {
            out.push_str("operator");
            if operator.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push(' ');
            }
            out.push_str(operator);
        }
        Component::Conversion(ty) => {
            out.push_str("operator ");
            type_name(ty, out);
        }
        Component::Destructor(class) => {
            out.push('~');
            out.push_str(class);
        }
        Component::Template(base, arguments) => {
            component(base, out);
            // libiberty never prints `<<` or `>>` around a template's arguments.
            if out.ends_with('<') {
                out.push(' ');
            }
            out.push('<');
            for (index, argument) in arguments.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                match argument {
                    TemplateArgument::Type(ty) => type_name(ty, out),
                    TemplateArgument::Expression(value) => expression(value, out),
                }
            }
            if out.ends_with('>') {
                out.push(' ');
            }
            out.push('>');
        }
    }
}

fn qualifiers(qualifiers: Qualifiers, out: &mut String) {
    if qualifiers.is_restrict {
        out.push_str(" restrict");
    }
    if qualifiers.is_volatile {
        out.push_str(" volatile");
    }
    if qualifiers.is_const {
        out.push_str(" const");
    }
}

fn parameters(list: &Parameters, out: &mut String) {
    out.push('(');
    for (index, ty) in list.types.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        type_name(ty, out);
    }
    if list.variadic {
        out.push_str(", ...");
    }
    out.push(')');
    qualifiers(list.qualifiers, out);
}

pub(super) fn type_name(ty: &Type, out: &mut String) {
    declarator(ty, String::new(), out);
}

/// Prints `ty` around `inner`, the declarator text built so far from
/// the outside in: `char const*` is `char` around ` const*`.
fn declarator(ty: &Type, inner: String, out: &mut String) {
    match ty {
        Type::Builtin(builtin) => {
            out.push_str(builtin);
            out.push_str(&inner);
        }
        Type::Named(type_name) => {
            name(type_name, out);
            out.push_str(&inner);
        }
        Type::Qualified(target, list) => {
            let mut text = String::new();
            qualifiers(*list, &mut text);
            declarator(target, text + &inner, out);
        }
        Type::Pointer(target) => declarator(target, format!("*{inner}"), out),
        Type::Reference(target) => declarator(target, format!("&{inner}"), out),
        Type::RvalueReference(target) => declarator(target, format!("&&{inner}"), out),
        Type::Array(element, length) => {
            let bound = format!("[{}]", length.as_deref().unwrap_or(""));
            let inner = if inner.is_empty() {
                format!(" {bound}")
            } else if inner.starts_with(" [") {
                inner + &bound
            } else {
                format!(" ({}) {bound}", inner.trim_start())
            };
            declarator(element, inner, out);
        }
        Type::Function(return_type, list) => {
            type_name(return_type, out);
            if inner.is_empty() {
                out.push(' ');
            } else {
                let _ = write!(out, " ({})", inner.trim_start());
            }
            parameters(list, out);
        }
    }
}

fn expression(value: &Expression, out: &mut String) {
    match value {
        Expression::Literal { ty, negative, digits } => literal(ty, *negative, digits, out),
        Expression::Unary(operator, operand) => {
            out.push_str(operator);
            out.push('(');
            expression(operand, out);
            out.push(')');
        }
        Expression::AddressOf(target) => {
            out.push('&');
            name(target, out);
        }
    }
}

/// Prints a literal as libiberty does: an integer type by its suffix
/// (`3ul`), a bool as `true` or `false`, any other type as a cast.
fn literal(ty: &Type, negative: bool, digits: &str, out: &mut String) {
    let sign = if negative { "-" } else { "" };
    if let Type::Builtin(builtin) = ty {
        if let Some((_, suffix)) = INTEGER_LITERAL_TYPES.iter().find(|(name, _)| name == builtin) {
            let _ = write!(out, "{sign}{digits}{suffix}");
            return;
        }
        if *builtin == "bool" && !negative && (digits == "0" || digits == "1") {
            out.push_str(if digits == "1" { "true" } else { "false" });
            return;
        }
    }
    out.push('(');
    type_name(ty, out);
    let _ = write!(out, "){sign}{digits}");
}
