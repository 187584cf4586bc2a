//! Types: what a DWARF type DIE describes, and the C and C++ names gdb
//! gives them.
//!
//! A [`TypeRef`] is either a DIE or a type the expression evaluator made up
//! (`&x` is a pointer to `x`'s type, `1 + 2` is a `long`). [`TypeTable::resolve`]
//! turns one into a [`Type`], one level deep: a pointer's target stays a
//! [`TypeRef`], so cyclic types (a list node pointing to itself) are fine.

use gimli::constants;

use super::dwarf::{DebugInfo, DieId};

/// A type: a DIE, or one the expression evaluator built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeRef {
    /// The type a DIE describes.
    Die(DieId),
    /// `void`, also where a DIE has no `DW_AT_type`.
    Void,
    /// A base type of gdb's own, for registers and arithmetic results.
    Builtin(Builtin),
    /// A pointer to the type.
    PointerTo(Box<TypeRef>),
    /// The array DIE with its first `dims` dimensions removed: a
    /// multi-dimensional array's element is an array of the remaining ones.
    ArraySlice(DieId, usize),
    /// An array of this many elements of the type, as gdb's `x@n` makes.
    ArrayOf(Box<TypeRef>, u64),
    /// A function type written in a cast: `void (int)` in `(void (*)(int)) f`.
    Function {
        /// The return type.
        return_type: Box<TypeRef>,
        /// The parameter types.
        params: Vec<TypeRef>,
        /// Whether the parameter list was written; `()` is unprototyped.
        prototyped: bool,
    },
}

/// Base types of gdb's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `int`, 4 bytes, signed.
    Int,
    /// `unsigned int`.
    UnsignedInt,
    /// `long`, 8 bytes, signed; also gdb's `int64_t` of general registers.
    Long,
    /// `unsigned long`.
    UnsignedLong,
    /// `char`.
    Char,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// C++ `bool`, the type of comparisons in C++.
    Bool,
    /// gdb's `i386_eflags`, which prints the names of the set flags.
    Eflags,
    /// `void (*)()`, gdb's type of `$rip` and `$pc` in C.
    CodePointer,
    /// `void (*)(void)`, gdb's type of `$rip` and `$pc` in C++, where an
    /// empty parameter list prints as `(void)`.
    PrototypedCodePointer,
    /// `void *`, gdb's type of `$rsp` and `$rbp`.
    DataPointer,
}

impl Builtin {
    fn base(self) -> Type {
        let (name, encoding, size) = match self {
            Builtin::Int => ("int", constants::DW_ATE_signed, 4),
            Builtin::UnsignedInt => ("unsigned int", constants::DW_ATE_unsigned, 4),
            Builtin::Long => ("long", constants::DW_ATE_signed, 8),
            Builtin::UnsignedLong => ("unsigned long", constants::DW_ATE_unsigned, 8),
            Builtin::Char => ("char", constants::DW_ATE_signed_char, 1),
            Builtin::Float => ("float", constants::DW_ATE_float, 4),
            Builtin::Double => ("double", constants::DW_ATE_float, 8),
            Builtin::Bool => ("bool", constants::DW_ATE_boolean, 1),
            Builtin::Eflags => (EFLAGS_TYPE_NAME, constants::DW_ATE_unsigned, 4),
            Builtin::CodePointer | Builtin::PrototypedCodePointer => {
                return Type::Pointer { target: TypeRef::Builtin(self), size: 8 }
            }
            Builtin::DataPointer => return Type::Pointer { target: TypeRef::Void, size: 8 },
        };
        Type::Base { name: name.to_owned(), encoding, size }
    }
}

/// A character type's code unit width and literal prefix (`L`, `u`, `U`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharKind {
    /// Bytes per code unit.
    pub width: usize,
    /// What gdb writes before its character and string literals.
    pub prefix: &'static str,
}

/// The name of gdb's type of `$eflags`.
pub const EFLAGS_TYPE_NAME: &str = "i386_eflags";

/// The kind of a struct-like type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    /// `struct`.
    Struct,
    /// `class`.
    Class,
    /// `union`.
    Union,
}

impl AggregateKind {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            AggregateKind::Struct => "struct",
            AggregateKind::Class => "class",
            AggregateKind::Union => "union",
        }
    }
}

/// A data member or base class of an aggregate.
#[derive(Debug, Clone)]
pub struct Member {
    /// Name; `None` for an anonymous struct or union member.
    pub name: Option<String>,
    /// Type.
    pub ty: TypeRef,
    /// Byte offset from the start of the aggregate.
    pub offset_bytes: u64,
    /// For a bitfield: offset of its least significant bit from the start
    /// of the aggregate, in bits, and its width.
    pub bitfield: Option<(u64, u64)>,
    /// Whether this is a base class (`DW_TAG_inheritance`).
    pub is_base: bool,
    /// Whether the member is `static`: declared in the class, stored elsewhere.
    pub is_static: bool,
    /// The member's DIE.
    pub die: DieId,
    /// Whether the compiler made it up (`_vptr.Base`); `ptype` omits it.
    pub artificial: bool,
}

/// One enumerator.
#[derive(Debug, Clone)]
pub struct Enumerator {
    /// Its name; qualified (`Color::Red`) for a C++ `enum class`, as gdb does.
    pub name: String,
    /// Its value.
    pub value: i128,
}

/// A function type's parameters.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Return type.
    pub return_type: TypeRef,
    /// Parameter types.
    pub params: Vec<TypeRef>,
    /// Whether it ends in `...`.
    pub variadic: bool,
    /// Whether it is prototyped; an unprototyped C function prints `()`.
    pub prototyped: bool,
}

/// A type, one level deep.
#[derive(Debug, Clone)]
pub enum Type {
    /// `void`.
    Void,
    /// A base type.
    Base {
        /// Its name.
        name: String,
        /// `DW_AT_encoding`.
        encoding: gimli::DwAte,
        /// Size in bytes.
        size: u64,
    },
    /// A pointer.
    Pointer {
        /// The pointed-to type.
        target: TypeRef,
        /// Size in bytes.
        size: u64,
    },
    /// A C++ reference.
    Reference {
        /// The referenced type.
        target: TypeRef,
        /// Whether it is an rvalue reference (`&&`).
        rvalue: bool,
    },
    /// An array.
    Array {
        /// Element type.
        element: TypeRef,
        /// Number of elements; `None` for a flexible array.
        count: Option<u64>,
    },
    /// A struct, class or union.
    Aggregate {
        /// Which one.
        kind: AggregateKind,
        /// Its name, qualified; `None` when anonymous.
        name: Option<String>,
        /// Size in bytes.
        size: u64,
        /// Base classes and data members, in DIE order.
        members: Vec<Member>,
        /// Whether only a declaration was found (`struct foo;`).
        incomplete: bool,
    },
    /// An enumeration.
    Enum {
        /// Its name, qualified; `None` when anonymous.
        name: Option<String>,
        /// Size in bytes.
        size: u64,
        /// Whether the underlying type is signed.
        signed: bool,
        /// Enumerators in DIE order.
        enumerators: Vec<Enumerator>,
        /// Whether it is a C++ `enum class`.
        enum_class: bool,
        /// The underlying type, when DWARF names it.
        underlying: TypeRef,
    },
    /// A typedef.
    Typedef {
        /// Its name, qualified.
        name: String,
        /// The aliased type.
        target: TypeRef,
    },
    /// `const` or `volatile`.
    Qualified {
        /// `"const"`, `"volatile"` or `"restrict"`.
        qualifier: &'static str,
        /// The qualified type.
        target: TypeRef,
    },
    /// A function type.
    Function(Signature),
    /// A type this engine cannot print (pointer to member, unknown tag).
    Unsupported {
        /// The DWARF tag.
        tag: String,
    },
}

/// Resolves [`TypeRef`]s against one image's DWARF.
#[derive(Debug, Clone, Copy)]
pub struct TypeTable<'d> {
    /// The DWARF.
    pub info: &'d DebugInfo,
}

/// Maximum length of a typedef or qualifier chain that [`TypeTable::strip`]
/// follows, so a reference loop in corrupt DWARF ends.
const MAX_CHAIN: usize = 64;

impl<'d> TypeTable<'d> {
    /// Returns the type of the `DW_AT_type` attribute of `die`.
    pub fn type_of(&self, die: DieId) -> TypeRef {
        match self.info.attr_ref(die, constants::DW_AT_type) {
            Some(target) => TypeRef::Die(target),
            None => TypeRef::Void,
        }
    }

    /// Resolves `ty` one level.
    pub fn resolve(&self, ty: &TypeRef) -> Type {
        match ty {
            TypeRef::Void => Type::Void,
            TypeRef::Builtin(builtin) => builtin.base(),
            TypeRef::PointerTo(target) => Type::Pointer { target: (**target).clone(), size: 8 },
            TypeRef::Die(die) => self.resolve_die(*die, 0),
            TypeRef::ArraySlice(die, dims) => self.resolve_die(*die, *dims),
            TypeRef::ArrayOf(element, count) => Type::Array { element: (**element).clone(), count: Some(*count) },
            TypeRef::Function { return_type, params, prototyped } => Type::Function(Signature {
                return_type: (**return_type).clone(),
                params: params.clone(),
                variadic: false,
                prototyped: *prototyped,
            }),
        }
    }

    fn resolve_die(&self, die: DieId, skip_dims: usize) -> Type {
        let info = self.info;
        let size = || info.udata(die, constants::DW_AT_byte_size).unwrap_or(0);
        match info.tag(die) {
            constants::DW_TAG_base_type | constants::DW_TAG_unspecified_type => {
                let encoding = match info.attr(die, constants::DW_AT_encoding) {
                    Some(gimli::AttributeValue::Encoding(encoding)) => encoding,
                    _ => constants::DW_ATE_signed,
                };
                if info.tag(die) == constants::DW_TAG_unspecified_type {
                    // C++ `decltype(nullptr)`.
                    return Type::Base {
                        name: info.name(die).unwrap_or_else(|| "decltype(nullptr)".into()),
                        encoding: constants::DW_ATE_unsigned,
                        size: 8,
                    };
                }
                let name = info.name(die).unwrap_or_else(|| "?".into());
                Type::Base { name: canonical_base_name(&name).to_owned(), encoding, size: size() }
            }
            constants::DW_TAG_pointer_type => Type::Pointer {
                target: self.type_of(die),
                size: info.udata(die, constants::DW_AT_byte_size).unwrap_or(8),
            },
            constants::DW_TAG_reference_type => Type::Reference { target: self.type_of(die), rvalue: false },
            constants::DW_TAG_rvalue_reference_type => Type::Reference { target: self.type_of(die), rvalue: true },
            constants::DW_TAG_const_type => Type::Qualified { qualifier: "const", target: self.type_of(die) },
            constants::DW_TAG_volatile_type => Type::Qualified { qualifier: "volatile", target: self.type_of(die) },
            constants::DW_TAG_restrict_type => Type::Qualified { qualifier: "restrict", target: self.type_of(die) },
            constants::DW_TAG_atomic_type => Type::Qualified { qualifier: "_Atomic", target: self.type_of(die) },
            constants::DW_TAG_typedef => Type::Typedef {
                name: info.qualified_name(die).unwrap_or_else(|| "?".into()),
                target: self.type_of(die),
            },
            constants::DW_TAG_array_type => {
                let dims: Vec<Option<u64>> = info
                    .children(die)
                    .filter(|&child| {
                        matches!(info.tag(child), constants::DW_TAG_subrange_type | constants::DW_TAG_enumeration_type)
                    })
                    .map(|child| self.subrange_count(child))
                    .collect();
                let element_type = self.type_of(die);
                match dims.get(skip_dims) {
                    Some(&count) => {
                        let element = if skip_dims + 1 < dims.len() {
                            TypeRef::ArraySlice(die, skip_dims + 1)
                        } else {
                            element_type
                        };
                        Type::Array { element, count }
                    }
                    // An array DIE without subranges is an array of unknown size.
                    None => Type::Array { element: element_type, count: None },
                }
            }
            tag @ (constants::DW_TAG_structure_type | constants::DW_TAG_class_type | constants::DW_TAG_union_type) => {
                let kind = match tag {
                    constants::DW_TAG_structure_type => AggregateKind::Struct,
                    constants::DW_TAG_class_type => AggregateKind::Class,
                    _ => AggregateKind::Union,
                };
                let incomplete = info.flag(die, constants::DW_AT_declaration);
                if incomplete {
                    // A declaration: look for the definition by name.
                    if let Some(name) = info.qualified_name(die) {
                        let key = format!("{} {name}", kind.keyword());
                        if let Some(definition) = info
                            .types_named(&key)
                            .into_iter()
                            .find(|&other| !info.flag(other, constants::DW_AT_declaration))
                        {
                            return self.resolve_die(definition, 0);
                        }
                    }
                }
                let members = info.children(die).filter_map(|child| self.member(child)).collect();
                Type::Aggregate { kind, name: info.qualified_name(die), size: size(), members, incomplete }
            }
            constants::DW_TAG_enumeration_type => {
                let enum_class = info.flag(die, constants::DW_AT_enum_class);
                let name = info.qualified_name(die);
                let underlying = self.type_of(die);
                let signed = match self.resolve(&self.strip(&underlying)) {
                    Type::Base { encoding, .. } => {
                        matches!(encoding, constants::DW_ATE_signed | constants::DW_ATE_signed_char)
                    }
                    _ => false,
                };
                let mut enumerators = Vec::new();
                for child in info.children(die) {
                    if info.tag(child) != constants::DW_TAG_enumerator {
                        continue;
                    }
                    let Some(enumerator_name) = info.name(child) else { continue };
                    let value = match info.attr(child, constants::DW_AT_const_value) {
                        Some(gimli::AttributeValue::Sdata(v)) => i128::from(v),
                        Some(gimli::AttributeValue::Udata(v)) => i128::from(v),
                        Some(gimli::AttributeValue::Data1(v)) => i128::from(v),
                        Some(gimli::AttributeValue::Data2(v)) => i128::from(v),
                        Some(gimli::AttributeValue::Data4(v)) => i128::from(v),
                        Some(gimli::AttributeValue::Data8(v)) => i128::from(v),
                        _ => continue,
                    };
                    let enumerator_name = match (&name, enum_class) {
                        (Some(enum_name), true) => format!("{enum_name}::{enumerator_name}"),
                        _ => enumerator_name,
                    };
                    enumerators.push(Enumerator { name: enumerator_name, value });
                }
                Type::Enum { name, size: size(), signed, enumerators, enum_class, underlying }
            }
            constants::DW_TAG_subroutine_type | constants::DW_TAG_subprogram => {
                Type::Function(self.signature(die))
            }
            tag => Type::Unsupported { tag: tag.static_string().unwrap_or("unknown tag").to_owned() },
        }
    }

    fn subrange_count(&self, subrange: DieId) -> Option<u64> {
        let info = self.info;
        if let Some(count) = info.udata(subrange, constants::DW_AT_count) {
            return Some(count);
        }
        let upper = match info.attr(subrange, constants::DW_AT_upper_bound)? {
            gimli::AttributeValue::Sdata(v) => v,
            gimli::AttributeValue::Udata(v) => i64::try_from(v).ok()?,
            gimli::AttributeValue::Data1(v) => v.into(),
            gimli::AttributeValue::Data2(v) => v.into(),
            gimli::AttributeValue::Data4(v) => i64::from(v as i32),
            gimli::AttributeValue::Data8(v) => v as i64,
            // A variable-length array's bound is an expression or variable.
            _ => return None,
        };
        let lower = info.udata(subrange, constants::DW_AT_lower_bound).unwrap_or(0) as i64;
        u64::try_from(upper.checked_sub(lower)?.checked_add(1)?).ok()
    }

    fn member(&self, die: DieId) -> Option<Member> {
        let info = self.info;
        let tag = info.tag(die);
        let is_base = tag == constants::DW_TAG_inheritance;
        let is_variable = tag == constants::DW_TAG_variable;
        if tag != constants::DW_TAG_member && !is_base && !is_variable {
            return None;
        }
        let is_static = is_variable || info.flag(die, constants::DW_AT_external) && info.flag(die, constants::DW_AT_declaration);
        let offset_bytes = match info.attr(die, constants::DW_AT_data_member_location) {
            Some(gimli::AttributeValue::Udata(v)) => v,
            Some(gimli::AttributeValue::Data1(v)) => v.into(),
            Some(gimli::AttributeValue::Data2(v)) => v.into(),
            Some(gimli::AttributeValue::Data4(v)) => v.into(),
            Some(gimli::AttributeValue::Data8(v)) => v,
            Some(gimli::AttributeValue::Sdata(v)) => u64::try_from(v).unwrap_or(0),
            Some(gimli::AttributeValue::Exprloc(expression)) => constant_offset(expression).unwrap_or(0),
            _ => 0,
        };
        let ty = self.type_of(die);
        let bitfield = info.udata(die, constants::DW_AT_bit_size).map(|bit_size| {
            if let Some(bit_offset) = info.udata(die, constants::DW_AT_data_bit_offset) {
                (bit_offset, bit_size)
            } else {
                // DWARF 2 and 3: DW_AT_bit_offset counts from the most
                // significant bit of the storage unit of DW_AT_byte_size.
                let storage_bytes =
                    info.udata(die, constants::DW_AT_byte_size).unwrap_or_else(|| self.size_of(&ty).unwrap_or(4));
                let msb_offset = info.udata(die, constants::DW_AT_bit_offset).unwrap_or(0);
                let lsb = (storage_bytes * 8).saturating_sub(msb_offset + bit_size);
                (offset_bytes * 8 + lsb, bit_size)
            }
        });
        let artificial = info.flag(die, constants::DW_AT_artificial);
        Some(Member { name: info.name(die), ty, offset_bytes, bitfield, is_base, is_static, die, artificial })
    }

    /// Returns the signature of a function or subroutine type DIE.
    pub fn signature(&self, die: DieId) -> Signature {
        let info = self.info;
        let mut params = Vec::new();
        let mut variadic = false;
        for child in info.children(die) {
            match info.tag(child) {
                constants::DW_TAG_formal_parameter => params.push(self.type_of(child)),
                constants::DW_TAG_unspecified_parameters => variadic = true,
                _ => {}
            }
        }
        let prototyped = info.flag(die, constants::DW_AT_prototyped) || info.unit(die).is_cplusplus();
        Signature { return_type: self.type_of(die), params, variadic, prototyped }
    }

    /// Follows typedefs and qualifiers to the type they name.
    pub fn strip(&self, ty: &TypeRef) -> TypeRef {
        let mut current = ty.clone();
        for _ in 0..MAX_CHAIN {
            match self.resolve(&current) {
                Type::Typedef { target, .. } | Type::Qualified { target, .. } => current = target,
                _ => return current,
            }
        }
        current
    }

    /// Returns the resolved type after typedefs and qualifiers.
    pub fn resolve_stripped(&self, ty: &TypeRef) -> Type {
        self.resolve(&self.strip(ty))
    }

    /// Returns the size of `ty` in bytes, when it has one.
    pub fn size_of(&self, ty: &TypeRef) -> Option<u64> {
        self.size_at_depth(ty, 0)
    }

    /// Computes [`TypeTable::size_of`]; `depth` counts nested array types,
    /// so an array DIE whose element type is itself ends.
    fn size_at_depth(&self, ty: &TypeRef, depth: usize) -> Option<u64> {
        if depth > MAX_CHAIN {
            return None;
        }
        match self.resolve_stripped(ty) {
            Type::Void => Some(1),
            Type::Base { size, .. } | Type::Pointer { size, .. } | Type::Enum { size, .. } => Some(size),
            Type::Aggregate { size, .. } => Some(size),
            Type::Reference { .. } => Some(8),
            Type::Array { element, count } => self.size_at_depth(&element, depth + 1)?.checked_mul(count?),
            Type::Function(_) => Some(1),
            Type::Typedef { .. } | Type::Qualified { .. } | Type::Unsupported { .. } => None,
        }
    }

    /// Whether `ty` is a one-byte character type (`char`, `signed char`,
    /// `unsigned char`).
    pub fn is_char(&self, ty: &TypeRef) -> bool {
        self.char_kind(ty).is_some_and(|kind| kind.width == 1 && kind.prefix.is_empty())
    }

    /// Returns the character kind of `ty`, when it is a character type:
    /// `char` and its signed and unsigned forms, `wchar_t`, `char8_t`,
    /// `char16_t` and `char32_t`.
    pub fn char_kind(&self, ty: &TypeRef) -> Option<CharKind> {
        let Type::Base { name, encoding, size } = self.resolve_stripped(ty) else { return None };
        let (width, prefix) = match (encoding, size) {
            (constants::DW_ATE_signed_char | constants::DW_ATE_unsigned_char, 1) => (1, ""),
            (constants::DW_ATE_UTF, 1) => (1, "u8"),
            (constants::DW_ATE_UTF, 2) => (2, "u"),
            (constants::DW_ATE_UTF, 4) => (4, "U"),
            (_, 2 | 4) if name == "wchar_t" => (size as usize, "L"),
            _ => return None,
        };
        Some(CharKind { width, prefix })
    }

    /// Returns the name gdb gives `ty` (`struct point *`, `int [4]`,
    /// `void (*)(int)`).
    pub fn name(&self, ty: &TypeRef) -> String {
        let (base, prefix, suffix) = self.declarator(ty, 0);
        if prefix.is_empty() && suffix.is_empty() {
            return base;
        }
        format!("{base} {prefix}{suffix}").trim_end().to_owned()
    }

    /// Returns the declaration of `name` with type `ty` (`int values[4]`,
    /// `void (*handler)(int)`), as `ptype` prints members.
    pub fn declaration(&self, ty: &TypeRef, name: &str) -> String {
        let (base, prefix, suffix) = self.declarator(ty, 0);
        let separator = if prefix.ends_with(|c: char| c.is_ascii_alphanumeric()) { " " } else { "" };
        format!("{base} {prefix}{separator}{name}{suffix}")
    }

    /// Splits a type into the C declarator parts: the base specifier, what
    /// goes before the declared name (`*`, `(*`) and after it (`[4]`, `)(int)`).
    pub fn declarator(&self, ty: &TypeRef, depth: usize) -> (String, String, String) {
        if depth > MAX_CHAIN {
            return ("<type too deep>".into(), String::new(), String::new());
        }
        match self.resolve(ty) {
            Type::Void => ("void".into(), String::new(), String::new()),
            Type::Base { name, .. } => (name, String::new(), String::new()),
            Type::Typedef { name, .. } => (name, String::new(), String::new()),
            Type::Aggregate { kind, name, .. } => {
                let cplusplus = matches!(ty, TypeRef::Die(die) if self.info.unit(*die).is_cplusplus());
                let base = match name {
                    Some(name) if cplusplus => name,
                    Some(name) => format!("{} {name}", kind.keyword()),
                    None => format!("{} {{...}}", kind.keyword()),
                };
                (base, String::new(), String::new())
            }
            Type::Enum { name, .. } => {
                let cplusplus = matches!(ty, TypeRef::Die(die) if self.info.unit(*die).is_cplusplus());
                let base = match name {
                    Some(name) if cplusplus => name,
                    Some(name) => format!("enum {name}"),
                    None => "enum {...}".into(),
                };
                (base, String::new(), String::new())
            }
            Type::Qualified { qualifier, target } => {
                let (base, prefix, suffix) = self.declarator(&target, depth + 1);
                if prefix.is_empty() && suffix.is_empty() {
                    (format!("{qualifier} {base}"), prefix, suffix)
                } else {
                    // `char *const p`: the qualifier follows the pointer.
                    (base, format!("{prefix} {qualifier}"), suffix)
                }
            }
            Type::Pointer { target, .. } | Type::Reference { target, .. } => {
                let sigil = match self.resolve(ty) {
                    Type::Reference { rvalue: true, .. } => "&&",
                    Type::Reference { .. } => "&",
                    _ => "*",
                };
                if matches!(target, TypeRef::Builtin(Builtin::CodePointer)) {
                    return ("void".into(), "(*".into(), ")()".into());
                }
                if matches!(target, TypeRef::Builtin(Builtin::PrototypedCodePointer)) {
                    return ("void".into(), "(*".into(), ")(void)".into());
                }
                let (base, prefix, suffix) = self.declarator(&target, depth + 1);
                if suffix.is_empty() {
                    (base, format!("{prefix}{sigil}"), suffix)
                } else {
                    (base, format!("({prefix}{sigil}"), format!("){suffix}"))
                }
            }
            Type::Array { element, count } => {
                let (base, prefix, suffix) = self.declarator(&element, depth + 1);
                let dim = match count {
                    Some(count) => format!("[{count}]"),
                    None => "[]".into(),
                };
                (base, prefix, format!("{dim}{suffix}"))
            }
            Type::Function(signature) => {
                let (base, prefix, suffix) = self.declarator(&signature.return_type, depth + 1);
                let mut params: Vec<String> = signature.params.iter().map(|param| self.name(param)).collect();
                if signature.variadic {
                    params.push("...".into());
                }
                let list = if params.is_empty() && signature.prototyped && !signature.variadic {
                    "void".to_owned()
                } else {
                    params.join(", ")
                };
                (base, prefix, format!("({list}){suffix}"))
            }
            Type::Unsupported { tag } => (format!("<unsupported type {tag}>"), String::new(), String::new()),
        }
    }
}

/// Returns the name gdb 13 shows for a base type: gcc writes
/// `long unsigned int`, gdb prints `unsigned long`.
pub fn canonical_base_name(name: &str) -> &str {
    match name {
        "long int" => "long",
        "long unsigned int" => "unsigned long",
        "short int" => "short",
        "short unsigned int" => "unsigned short",
        "long long int" => "long long",
        "long long unsigned int" => "unsigned long long",
        other => other,
    }
}

/// Returns the constant of a `DW_AT_data_member_location` written as an
/// expression (`DW_OP_plus_uconst N`), as DWARF 2 producers do.
fn constant_offset(expression: gimli::Expression<crate::image::DwarfReader>) -> Option<u64> {
    let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 2, address_size: 8 };
    let mut operations = expression.operations(encoding);
    match operations.next().ok()?? {
        gimli::Operation::PlusConstant { value } => Some(value),
        _ => None,
    }
}
