//! `stardump print EXPR` (alias `p`) and `stardump ptype EXPR`: gdb's
//! `print` and `ptype` in the scope of a frame.

use std::io::Write;

use serde::Serialize;

use super::inspect::{ContextArgs, Session};
use super::{Outcome, JSON_SCHEMA_VERSION};
use crate::variables::expr::{parse, Evaluator};
use crate::variables::format::Printer;
use crate::variables::types::{Type, TypeRef, TypeTable};

/// Arguments of `stardump print` and `stardump ptype`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[allow(missing_docs)] // The shared options document themselves.
    #[command(flatten)]
    pub context: ContextArgs,
    /// The C expression (`request->origin.x`, `*p`, `$rip`, `'worker.c'::counter`, `*p@4`).
    pub expression: String,
    /// Print every scalar in this format, like gdb's `print/x`: x (hex),
    /// z (zero-padded hex), o (octal), t (binary), d (signed), u (unsigned),
    /// c (character), a (address with its symbol). Also written `print/x`.
    #[arg(long, value_parser = ["x", "z", "o", "t", "d", "u", "c", "a"])]
    pub format: Option<String>,
}

#[derive(Debug, Serialize)]
struct PrintReport {
    schema_version: u32,
    command: &'static str,
    vcpu: u32,
    frame: usize,
    warnings: Vec<String>,
    expression: String,
    #[serde(rename = "type")]
    type_name: String,
    value: String,
    address: Option<String>,
    complete: bool,
}

/// Rejects FILE and EXPR given in the wrong order, `print argc core`,
/// which would otherwise fail to open a file named after the expression.
fn check_argument_order(args: &Args, command: &str) -> anyhow::Result<()> {
    let file = &args.context.file;
    let expression = std::path::Path::new(&args.expression);
    if !file.exists() && crate::live::parse_spec(file).is_none() && expression.is_file() {
        anyhow::bail!(
            "no file {}, but {} is one: the file comes first, `stardump {command} {} {}`",
            file.display(),
            expression.display(),
            expression.display(),
            file.display()
        );
    }
    Ok(())
}

/// Runs `stardump print`; warnings about the image go to `err` in text mode.
pub fn run_print(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    check_argument_order(args, "print")?;
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    session.check_frame(args.context.frame)?;
    let memory = session.memory();
    let (value, inspector) = session.evaluate_in_scopes(&memory, Some(args.context.frame), |inspector, frame| {
        let is_type = |name: &str| !inspector.info.types_named(name).is_empty();
        Evaluator { inspector, frame }.evaluate(&parse(&args.expression, &is_type)?)
    })?;
    let mut options = args.context.print_options();
    options.format = args.format.as_deref().and_then(|letter| letter.chars().next());
    let printer = Printer::new(inspector.types(), &memory, inspector.symbols, options);
    let text = printer.top_level(&value);
    let complete = !printer.incomplete();
    if args.context.json {
        let report = PrintReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "print",
            vcpu: session.vcpu.id,
            frame: args.context.frame,
            warnings: session.json_warnings(),
            expression: args.expression.clone(),
            type_name: inspector.types().name(&value.ty),
            value: text,
            address: value.address().map(super::hex),
            complete,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "$1 = {text}")?;
    }
    Ok(session.outcome(complete))
}

#[derive(Debug, Serialize)]
struct PtypeReport {
    schema_version: u32,
    command: &'static str,
    warnings: Vec<String>,
    expression: String,
    #[serde(rename = "type")]
    type_name: String,
    definition: String,
}

/// Runs `stardump ptype`; warnings about the image go to `err` in text mode.
pub fn run_ptype(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    check_argument_order(args, "ptype")?;
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    let memory = session.memory();
    let frame = (args.context.frame < session.report.frames.len()).then_some(args.context.frame);
    let (ty, inspector) = session
        .evaluate_in_scopes(&memory, frame, |inspector, frame| Evaluator { inspector, frame }.type_of(&args.expression))?;
    let types = inspector.types();
    let definition = ptype(&types, &ty);
    if args.context.json {
        let report = PtypeReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "ptype",
            warnings: session.json_warnings(),
            expression: args.expression.clone(),
            type_name: types.name(&ty),
            definition,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "type = {definition}")?;
    }
    Ok(session.outcome(true))
}

#[derive(Debug, Serialize)]
struct WhatisReport {
    schema_version: u32,
    command: &'static str,
    warnings: Vec<String>,
    expression: String,
    #[serde(rename = "type")]
    type_name: String,
}

/// Runs `stardump whatis`; warnings about the image go to `err` in text mode.
pub fn run_whatis(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<Outcome> {
    check_argument_order(args, "whatis")?;
    let session = Session::open(&args.context)?;
    if !args.context.json {
        session.write_warnings(err)?;
    }
    let memory = session.memory();
    let frame = (args.context.frame < session.report.frames.len()).then_some(args.context.frame);
    let (name, _) = session.evaluate_in_scopes(&memory, frame, |inspector, frame| {
        whatis(&inspector.types(), &Evaluator { inspector, frame }, &args.expression)
    })?;
    if args.context.json {
        let report = WhatisReport {
            schema_version: JSON_SCHEMA_VERSION,
            command: "whatis",
            warnings: session.json_warnings(),
            expression: args.expression.clone(),
            type_name: name,
        };
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "type = {name}")?;
    }
    Ok(session.outcome(true))
}

/// Returns what gdb's `whatis` prints after `type = `: the name of the
/// expression's type, or for a typedef name the type it stands for, one
/// level down.
pub fn whatis(
    types: &TypeTable<'_>,
    evaluator: &Evaluator<'_, '_>,
    expression: &str,
) -> Result<String, crate::variables::expr::ExprError> {
    let ty = evaluator.type_of(expression)?;
    let names_type = expression.trim() == types.name(&ty);
    if names_type {
        if let Type::Typedef { target, .. } = types.resolve(&ty) {
            return Ok(types.name(&target));
        }
    }
    Ok(types.name(&ty))
}

/// Returns the type as gdb's `ptype` prints it: the outermost typedef
/// resolved, and the struct, union or enum at the core expanded.
pub fn ptype(types: &TypeTable<'_>, ty: &TypeRef) -> String {
    ptype_indented(types, ty, 0)
}

/// Formats `ty` for `ptype` with members indented by `indent + 4` spaces,
/// so an anonymous struct or union member nests inside its parent.
fn ptype_indented(types: &TypeTable<'_>, ty: &TypeRef, indent: usize) -> String {
    let mut ty = ty.clone();
    if let Type::Typedef { target, .. } = types.resolve(&ty) {
        ty = target;
    }
    let (base, prefix, suffix) = types.declarator(&ty, 0);
    let core = core_type(types, &ty);
    let qualifiers: String = core.iter().flat_map(|(_, qualifiers)| qualifiers.iter()).map(|q| format!("{q} ")).collect();
    let body = match core.as_ref().map(|(core, _)| (core, types.resolve(core))) {
        Some((core, Type::Aggregate { kind, name, members, .. })) => {
            let mut text = match &name {
                Some(name) => format!("{qualifiers}{} {name}", kind.keyword()),
                None => format!("{qualifiers}{}", kind.keyword()),
            };
            let bases: Vec<String> = members
                .iter()
                .filter(|member| member.is_base)
                .map(|member| format!("{} {}", access(types, member.die, kind), types.name(&member.ty)))
                .collect();
            if !bases.is_empty() {
                text.push_str(&format!(" : {}", bases.join(", ")));
            }
            text.push_str(" {\n");
            let pad = " ".repeat(indent);
            let methods = match core {
                TypeRef::Die(die) => method_declarations(types, *die, kind),
                _ => Vec::new(),
            };
            // gdb's rule for access labels: a class needs them when
            // anything is not private, a struct when anything is not public
            // (gdb counts compiler-made members like `_vptr.Base` as private).
            let fields: Vec<_> = members.iter().filter(|member| !member.is_base).collect();
            let is_class = kind == crate::variables::types::AggregateKind::Class;
            let field_access = |member: &crate::variables::types::Member| {
                if member.artificial { "private" } else { access(types, member.die, kind) }
            };
            let need_labels = if is_class {
                fields.iter().any(|member| field_access(member) != "private")
                    || methods.iter().any(|(method_access, _)| *method_access != "private")
            } else {
                fields.iter().any(|member| field_access(member) != "public")
                    || methods.iter().any(|(method_access, _)| *method_access != "public")
            };
            let mut section = "";
            for member in fields.into_iter().filter(|member| !member.artificial) {
                let member_access = field_access(member);
                if need_labels && member_access != section {
                    text.push_str(&format!("{pad}  {member_access}:\n"));
                    section = member_access;
                }
                let name = member.name.clone().unwrap_or_default();
                // gdb expands an anonymous struct, union or enum in place,
                // whether or not the member that has it is named.
                let anonymous = matches!(
                    types.resolve(&member.ty),
                    Type::Aggregate { name: None, .. } | Type::Enum { name: None, .. }
                );
                let mut line = types.declaration(&member.ty, &name);
                if member.name.is_none() {
                    line = ptype_indented(types, &member.ty, indent + 4);
                } else if anonymous {
                    line = format!("{} {name}", ptype_indented(types, &member.ty, indent + 4));
                }
                if member.is_static {
                    line = format!("static {line}");
                }
                if let Some((_, bits)) = member.bitfield {
                    line.push_str(&format!(" : {bits}"));
                }
                text.push_str(&format!("{pad}    {line};\n"));
            }
            // gdb separates methods from fields with a blank line when the
            // fields had a label, and labels the methods' access whenever it
            // changes, labels needed or not.
            if !methods.is_empty() && !section.is_empty() {
                text.push('\n');
            }
            for (method_access, method) in methods {
                if method_access != section {
                    text.push_str(&format!("{pad}  {method_access}:\n"));
                    section = method_access;
                }
                text.push_str(&format!("{pad}    {method};\n"));
            }
            text.push_str(&pad);
            text.push('}');
            text
        }
        Some((core, Type::Enum { name, enumerators, enum_class, underlying, .. })) => {
            let mut next = 0i128;
            let items: Vec<String> = enumerators
                .iter()
                .map(|enumerator| {
                    let item = if enumerator.value == next {
                        enumerator.name.clone()
                    } else {
                        format!("{} = {}", enumerator.name, enumerator.value)
                    };
                    next = enumerator.value + 1;
                    item
                })
                .collect();
            let mut heading = format!("{qualifiers}{}", if enum_class { "enum class" } else { "enum" });
            if let Some(name) = name {
                heading.push(' ');
                heading.push_str(&name);
            }
            // gdb shows the underlying type of C++ enums only.
            let cplusplus = matches!(core, TypeRef::Die(die) if types.info.unit(*die).is_cplusplus());
            if cplusplus && !matches!(underlying, TypeRef::Void) {
                heading.push_str(&format!(" : {}", types.name(&underlying)));
            }
            format!("{heading} {{{}}}", items.join(", "))
        }
        _ => base,
    };
    if prefix.is_empty() && suffix.is_empty() {
        body
    } else {
        format!("{body} {prefix}{suffix}")
    }
}

/// Returns `public`, `protected` or `private` for a member, method or
/// base class DIE `die` of an aggregate of `kind`: `DW_AT_accessibility`,
/// or C++'s default (private in a class, public in a struct or union).
fn access(types: &TypeTable<'_>, die: crate::variables::dwarf::DieId, kind: crate::variables::types::AggregateKind) -> &'static str {
    match types.info.attr(die, gimli::constants::DW_AT_accessibility) {
        Some(gimli::AttributeValue::Accessibility(gimli::constants::DW_ACCESS_private)) => "private",
        Some(gimli::AttributeValue::Accessibility(gimli::constants::DW_ACCESS_protected)) => "protected",
        Some(gimli::AttributeValue::Accessibility(_)) => "public",
        _ if kind == crate::variables::types::AggregateKind::Class => "private",
        _ => "public",
    }
}

/// Returns the declarations of the methods a C++ aggregate declares, as
/// `ptype` lists them (`virtual int get(void) const`), compiler-generated
/// ones left out.
fn method_declarations(
    types: &TypeTable<'_>,
    aggregate: crate::variables::dwarf::DieId,
    kind: crate::variables::types::AggregateKind,
) -> Vec<(&'static str, String)> {
    use gimli::constants;
    let info = types.info;
    let class_name = info.name(aggregate).unwrap_or_default();
    let mut methods = Vec::new();
    for child in info.children(aggregate) {
        if info.tag(child) != constants::DW_TAG_subprogram || info.flag(child, constants::DW_AT_artificial) {
            continue;
        }
        let Some(name) = info.name(child) else { continue };
        let mut is_const = false;
        let mut is_static = true;
        let mut params = Vec::new();
        for param in info.children(child) {
            if info.tag(param) != constants::DW_TAG_formal_parameter {
                continue;
            }
            if info.flag(param, constants::DW_AT_artificial) {
                // `this`: its pointee's qualifier makes the method const.
                is_static = false;
                let this_type = types.type_of(param);
                if let Type::Pointer { target, .. } = types.resolve(&types.strip(&this_type)) {
                    is_const = matches!(types.resolve(&target), Type::Qualified { qualifier: "const", .. });
                }
                continue;
            }
            params.push(types.name(&types.type_of(param)));
        }
        let list = if params.is_empty() { "void".to_owned() } else { params.join(", ") };
        let is_special = name == class_name || name.starts_with('~');
        let mut line = String::new();
        if is_static {
            line.push_str("static ");
        }
        if info.attr(child, constants::DW_AT_virtuality).is_some() {
            line.push_str("virtual ");
        }
        if is_special {
            // gdb prints a constructor's or destructor's empty list as `()`
            // only when it has no parameters at all.
            let list = if params.is_empty() { String::new() } else { list };
            line.push_str(&format!("{name}({list})"));
        } else {
            line.push_str(&format!("{} {name}({list})", types.name(&types.type_of(child))));
        }
        if is_const {
            line.push_str(" const");
        }
        methods.push((access(types, child, kind), line));
    }
    methods
}

/// Follows pointers, arrays, qualifiers and functions' return types to the
/// type at the core of a declarator.
/// Also returns the qualifiers (`const`) written directly on the core type.
fn core_type(types: &TypeTable<'_>, ty: &TypeRef) -> Option<(TypeRef, Vec<&'static str>)> {
    let mut current = ty.clone();
    let mut qualifiers = Vec::new();
    for _ in 0..64 {
        current = match types.resolve(&current) {
            Type::Qualified { qualifier, target } => {
                qualifiers.push(qualifier);
                target
            }
            Type::Pointer { target, .. } | Type::Reference { target, .. } => {
                qualifiers.clear();
                target
            }
            Type::Array { element, .. } => {
                qualifiers.clear();
                element
            }
            Type::Function(signature) => {
                qualifiers.clear();
                signature.return_type
            }
            Type::Aggregate { .. } | Type::Enum { .. } => return Some((current, qualifiers)),
            _ => return None,
        };
    }
    None
}
