//! Resolves a [`Description`]'s member paths to offsets and sizes through
//! the image's DWARF.
//!
//! The thread struct's type is not named in the description: it is the
//! type the head's first-thread pointer points to, so the head's DWARF
//! type decides it. A pointer to a declaration-only struct (`struct
//! thread;` in a unit that never defines it) is completed with the
//! definition of the same name from another unit.

use super::description::Description;
use crate::image::Image;
use crate::variables::dwarf::DebugInfo;
use crate::variables::location::Locator;
use crate::variables::types::{Type, TypeRef, TypeTable};

/// Longest `char` array read as a thread name, in bytes.
pub const MAX_NAME_BYTES: u64 = 64;

/// Reason a description does not fit an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The image has no DWARF, which the member offsets come from.
    #[error("the image has no DWARF debug information, which thread descriptions need for member offsets")]
    MissingDebugInfo,
    /// The list head's DWARF variable has no static address.
    #[error("the thread list head {symbol} has no static address in DWARF")]
    MissingHeadAddress {
        /// The symbol.
        symbol: String,
    },
    /// The list head has no DWARF variable, so its type is unknown.
    #[error("no global variable {symbol} (the thread list head) in the image's DWARF")]
    MissingHeadVariable {
        /// The symbol.
        symbol: String,
    },
    /// A member path names a member the type does not have.
    #[error("{type_name} has no member {member} (in member path {path:?})")]
    MissingMember {
        /// The struct or union searched.
        type_name: String,
        /// The missing member.
        member: String,
        /// The whole path.
        path: String,
    },
    /// A member path continues through something that is not a struct or union.
    #[error("{type_name} is not a struct or union, so member path {path:?} cannot continue into it")]
    NotAnAggregate {
        /// The type reached.
        type_name: String,
        /// The whole path.
        path: String,
    },
    /// The first-thread pointer or the link is not a pointer to a struct.
    #[error("{what} has type {type_name}, expected a pointer to a struct")]
    NotAStructPointer {
        /// The pointer: `list head thread_list.tqh_first` or `link next`.
        what: String,
        /// The type found.
        type_name: String,
    },
    /// An integer member has a size that is not 1, 2, 4 or 8 bytes.
    #[error("member {path:?} has type {type_name} of {size:?} bytes, expected an integer or pointer of 1, 2, 4 or 8 bytes")]
    UnsupportedMemberSize {
        /// The member path.
        path: String,
        /// Its type.
        type_name: String,
        /// Its size, when DWARF gives one.
        size: Option<u64>,
    },
    /// The name member is neither a `char *` nor a `char` array.
    #[error("name member {path:?} has type {type_name}, expected char * or a char array")]
    UnsupportedNameType {
        /// The member path.
        path: String,
        /// Its type.
        type_name: String,
    },
    /// Member offsets add up past 2^64.
    #[error("member path {path:?} has an offset that overflows")]
    OffsetOverflow {
        /// The member path.
        path: String,
    },
}

/// An integer member: where it is and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegerField {
    /// Byte offset from the start of the thread struct (or the head).
    pub offset: u64,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u64,
    /// Whether the value is sign-extended.
    pub signed: bool,
}

/// Storage of a thread's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    /// A pointer to a NUL-terminated string, at this offset.
    Pointer {
        /// Byte offset of the pointer.
        offset: u64,
    },
    /// A `char` array inside the struct.
    Array {
        /// Byte offset of the array.
        offset: u64,
        /// Bytes read, at most [`MAX_NAME_BYTES`].
        len_bytes: u64,
    },
}

/// A description resolved against one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadLayout {
    /// Address of the list head.
    pub head_address: u64,
    /// Offset of the first-thread pointer inside the head.
    pub first_offset: u64,
    /// Name of the thread struct (`struct thread`).
    pub type_name: String,
    /// The link to the next thread.
    pub next: IntegerField,
    /// The saved stack pointer.
    pub sp: IntegerField,
    /// The saved resume address.
    pub ip: IntegerField,
    /// The name, when described.
    pub name: Option<NameField>,
    /// The id, when described.
    pub id: Option<IntegerField>,
    /// The flags, when described.
    pub flags: Option<IntegerField>,
}

/// Follows member paths through one image's types.
struct Resolver<'d> {
    types: TypeTable<'d>,
}

impl Resolver<'_> {
    /// Returns the members of `ty` after typedefs and qualifiers, completing
    /// a declaration-only struct with a definition of the same name.
    fn members(&self, ty: &TypeRef, path: &str) -> Result<Vec<crate::variables::types::Member>, LayoutError> {
        match self.types.resolve_stripped(ty) {
            Type::Aggregate { members, incomplete: false, .. } => Ok(members),
            Type::Aggregate { kind, name: Some(name), incomplete: true, .. } => {
                let full_name = format!("{} {name}", kind.keyword());
                for die in self.types.info.types_named(&full_name) {
                    if let Type::Aggregate { members, incomplete: false, .. } = self.types.resolve(&TypeRef::Die(die)) {
                        return Ok(members);
                    }
                }
                Err(LayoutError::NotAnAggregate { type_name: format!("{full_name} (declared only)"), path: path.to_owned() })
            }
            _ => Err(LayoutError::NotAnAggregate { type_name: self.types.name(ty), path: path.to_owned() }),
        }
    }

    /// Resolves `path` inside `ty` to a byte offset and the member's type.
    fn member(&self, ty: &TypeRef, path: &str) -> Result<(u64, TypeRef), LayoutError> {
        let mut offset = 0u64;
        let mut current = ty.clone();
        for component in path.split('.').filter(|component| !component.is_empty()) {
            let members = self.members(&current, path)?;
            let member = members
                .into_iter()
                .find(|member| member.name.as_deref() == Some(component) && !member.is_static)
                .ok_or_else(|| LayoutError::MissingMember {
                    type_name: self.types.name(&current),
                    member: component.to_owned(),
                    path: path.to_owned(),
                })?;
            offset = offset
                .checked_add(member.offset_bytes)
                .ok_or_else(|| LayoutError::OffsetOverflow { path: path.to_owned() })?;
            current = member.ty;
        }
        Ok((offset, current))
    }

    fn integer(&self, ty: &TypeRef, path: &str) -> Result<IntegerField, LayoutError> {
        let (offset, member_type) = self.member(ty, path)?;
        self.integer_at(offset, &member_type, path)
    }

    fn integer_at(&self, offset: u64, ty: &TypeRef, path: &str) -> Result<IntegerField, LayoutError> {
        let unsupported = || LayoutError::UnsupportedMemberSize {
            path: path.to_owned(),
            type_name: self.types.name(ty),
            size: self.types.size_of(ty),
        };
        let signed = match self.types.resolve_stripped(ty) {
            Type::Base { encoding, .. } => {
                encoding == gimli::constants::DW_ATE_signed || encoding == gimli::constants::DW_ATE_signed_char
            }
            Type::Enum { signed, .. } => signed,
            Type::Pointer { .. } => false,
            _ => return Err(unsupported()),
        };
        match self.types.size_of(ty) {
            Some(size @ (1 | 2 | 4 | 8)) => Ok(IntegerField { offset, size, signed }),
            _ => Err(unsupported()),
        }
    }

    /// Returns the struct a pointer-typed `ty` points to.
    fn pointee_struct(&self, ty: &TypeRef, what: String) -> Result<TypeRef, LayoutError> {
        let type_name = self.types.name(ty);
        let not_pointer = || LayoutError::NotAStructPointer { what: what.clone(), type_name: type_name.clone() };
        let Type::Pointer { target, .. } = self.types.resolve_stripped(ty) else {
            return Err(not_pointer());
        };
        match self.types.resolve_stripped(&target) {
            Type::Aggregate { .. } => Ok(self.types.strip(&target)),
            _ => Err(not_pointer()),
        }
    }

    fn name(&self, ty: &TypeRef, path: &str) -> Result<NameField, LayoutError> {
        let (offset, member_type) = self.member(ty, path)?;
        let unsupported = || LayoutError::UnsupportedNameType { path: path.to_owned(), type_name: self.types.name(&member_type) };
        match self.types.resolve_stripped(&member_type) {
            Type::Pointer { target, .. } if self.types.is_char(&target) => Ok(NameField::Pointer { offset }),
            Type::Array { element, count } if self.types.is_char(&element) => {
                let len_bytes = count.unwrap_or(MAX_NAME_BYTES).min(MAX_NAME_BYTES);
                Ok(NameField::Array { offset, len_bytes })
            }
            _ => Err(unsupported()),
        }
    }
}

impl ThreadLayout {
    /// Resolves `description` against `image`, whose DWARF is `info`.
    pub fn resolve(description: &Description, image: &Image, info: &DebugInfo) -> Result<ThreadLayout, LayoutError> {
        if !image.has_debug_info() {
            return Err(LayoutError::MissingDebugInfo);
        }
        // The head is found through DWARF rather than the ELF symbol table,
        // because DWARF also gives its type. A file-scope `static` head (as
        // in Mini-OS) is a DWARF variable like any global.
        let head = &description.list.head;
        let candidates = info.globals_named(head);
        if candidates.is_empty() {
            return Err(LayoutError::MissingHeadVariable { symbol: head.clone() });
        }
        let (variable, head_address) = candidates
            .iter()
            .find_map(|&die| Some((die, Locator::new(info).variable(die, None, 0, None).address()?)))
            .ok_or_else(|| LayoutError::MissingHeadAddress { symbol: head.clone() })?;

        let resolver = Resolver { types: TypeTable { info } };
        let head_type = resolver.types.type_of(variable);
        let (first_offset, first_type) = resolver.member(&head_type, &description.list.first)?;
        let head_path = match description.list.first.as_str() {
            "" => head.clone(),
            first => format!("{head}.{first}"),
        };
        let thread_type = resolver.pointee_struct(&first_type, format!("list head {head_path}"))?;

        let (next_offset, next_type) = resolver.member(&thread_type, &description.list.next)?;
        resolver.pointee_struct(&next_type, format!("link {}", description.list.next))?;
        let next = resolver.integer_at(next_offset, &next_type, &description.list.next)?;

        let members = &description.members;
        let sp = resolver.integer(&thread_type, &members.sp)?;
        let ip = resolver.integer(&thread_type, &members.ip)?;
        let name = members.name.as_deref().map(|path| resolver.name(&thread_type, path)).transpose()?;
        let id = members.id.as_deref().map(|path| resolver.integer(&thread_type, path)).transpose()?;
        let flags = members.flags.as_deref().map(|path| resolver.integer(&thread_type, path)).transpose()?;
        Ok(ThreadLayout {
            head_address,
            first_offset,
            type_name: resolver.types.name(&thread_type),
            next,
            sp,
            ip,
            name,
            id,
            flags,
        })
    }
}
