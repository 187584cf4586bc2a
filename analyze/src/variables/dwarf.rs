//! An in-memory tree of the image's debugging information entries.
//!
//! gimli reads DIEs with a cursor that only moves forward. Printing a value
//! needs to walk to parents (a variable's scope), children (a struct's
//! members) and references in any direction (a member's type). [`DebugInfo`]
//! reads every unit once into an arena of [`Node`]s with parent and child
//! links, and indexes the names of globals, functions and types.
//!
//! NOTE: the whole `.debug_info` is read on first use. That is quick for a
//! unikernel (a few MiB of DWARF) but would be slow for a DWARF of hundreds
//! of MiB, where a lazy per-unit index would be the better design.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use gimli::{constants, AttributeValue, DwTag, Reader as _};

use crate::image::DwarfReader;

/// One DIE in the arena.
#[derive(Debug, Clone)]
pub struct Node {
    /// Offset of the DIE in its unit.
    pub offset: gimli::UnitOffset,
    /// The DIE's tag.
    pub tag: DwTag,
    /// Its attributes, in the order of the abbreviation.
    pub attrs: Vec<gimli::Attribute<DwarfReader>>,
    /// Index of the parent in the unit's arena; `None` for the unit's root.
    pub parent: Option<u32>,
    /// Indexes of the children, in DIE order.
    pub children: Vec<u32>,
}

/// A DIE: its unit's index and its index in the unit's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DieId {
    /// Index of the unit in [`DebugInfo::units`].
    pub unit: u32,
    /// Index of the node in that unit's arena.
    pub node: u32,
}

/// One compilation unit and its DIEs.
pub struct UnitInfo {
    /// The parsed unit header and its line program.
    pub unit: gimli::Unit<DwarfReader>,
    /// The DIEs in DIE order; index 0 is the unit's root.
    pub nodes: Vec<Node>,
    /// `DW_AT_name` of the unit: the primary source file.
    pub name: Option<String>,
    /// `DW_AT_language`.
    pub language: Option<gimli::DwLang>,
    /// Address ranges the unit covers.
    pub ranges: Vec<Range<u64>>,
}

impl UnitInfo {
    /// Whether the unit is C++ code, which changes how names and types print.
    pub fn is_cplusplus(&self) -> bool {
        matches!(
            self.language,
            Some(
                constants::DW_LANG_C_plus_plus
                    | constants::DW_LANG_C_plus_plus_03
                    | constants::DW_LANG_C_plus_plus_11
                    | constants::DW_LANG_C_plus_plus_14
            )
        )
    }
}

/// The whole DWARF of an image, read into memory, with name indexes.
pub struct DebugInfo {
    dwarf: Arc<gimli::Dwarf<DwarfReader>>,
    units: Vec<UnitInfo>,
    /// Global variables by (qualified) name.
    globals: HashMap<String, Vec<DieId>>,
    /// Functions by (qualified) name.
    functions: HashMap<String, Vec<DieId>>,
    /// Named types by the name a cast writes (`struct point`, `point`, `ns::Color`).
    types: HashMap<String, Vec<DieId>>,
    /// Enumerators by the names an expression may use (`RED`, `ns::Color::Red`).
    enumerators: HashMap<String, Vec<DieId>>,
}

impl std::fmt::Debug for DebugInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugInfo").field("units", &self.units.len()).finish_non_exhaustive()
    }
}

/// Maximum number of DIEs read from one image, so a corrupt unit cannot
/// make the arena grow without bound.
const MAX_DIES: usize = 50_000_000;

impl DebugInfo {
    /// Reads every unit of `dwarf`. A unit that fails to parse is skipped
    /// with a warning, and the DIEs read before the failure are kept.
    pub fn load(dwarf: Arc<gimli::Dwarf<DwarfReader>>) -> DebugInfo {
        let mut units = Vec::new();
        let mut total_dies = 0usize;
        let mut headers = dwarf.units();
        loop {
            let header = match headers.next() {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the next unit header of .debug_info");
                    break;
                }
            };
            let offset = header.offset();
            let unit = match dwarf.unit(header) {
                Ok(unit) => unit,
                Err(error) => {
                    tracing::warn!(%error, ?offset, "cannot parse a unit; its variables are not available");
                    continue;
                }
            };
            let nodes = match read_nodes(&unit, MAX_DIES.saturating_sub(total_dies)) {
                Ok(nodes) => nodes,
                Err((nodes, error)) => {
                    tracing::warn!(%error, ?offset, "cannot read all DIEs of a unit");
                    nodes
                }
            };
            total_dies += nodes.len();
            let name = unit.name.as_ref().and_then(|name| name.to_string_lossy().ok()).map(|name| name.into_owned());
            let language = nodes.first().and_then(|root| {
                match root.attrs.iter().find(|attr| attr.name() == constants::DW_AT_language)?.value() {
                    AttributeValue::Language(language) => Some(language),
                    _ => None,
                }
            });
            // The ranges are read below with checked arithmetic: gimli
            // 0.34's `unit_ranges` adds DW_AT_high_pc to DW_AT_low_pc
            // unchecked, which panics on overflow in debug builds.
            units.push(UnitInfo { unit, nodes, name, language, ranges: Vec::new() });
        }

        let mut info = DebugInfo {
            dwarf,
            units,
            globals: HashMap::new(),
            functions: HashMap::new(),
            types: HashMap::new(),
            enumerators: HashMap::new(),
        };
        for index in 0..info.units.len() {
            let root = DieId { unit: index as u32, node: 0 };
            if info.units[index].nodes.is_empty() {
                continue;
            }
            info.units[index].ranges = info.ranges(root);
        }
        info.index_names();
        info
    }

    /// The DWARF sections.
    pub fn dwarf(&self) -> &gimli::Dwarf<DwarfReader> {
        &self.dwarf
    }

    /// Every unit, in section order.
    pub fn units(&self) -> &[UnitInfo] {
        &self.units
    }

    /// Returns the unit of `die`.
    pub fn unit(&self, die: DieId) -> &UnitInfo {
        &self.units[die.unit as usize]
    }

    /// Returns the node of `die`.
    pub fn node(&self, die: DieId) -> &Node {
        &self.units[die.unit as usize].nodes[die.node as usize]
    }

    /// Returns the parent of `die`.
    pub fn parent(&self, die: DieId) -> Option<DieId> {
        self.node(die).parent.map(|node| DieId { unit: die.unit, node })
    }

    /// Returns the children of `die`, in DIE order.
    pub fn children(&self, die: DieId) -> impl Iterator<Item = DieId> + '_ {
        self.node(die).children.iter().map(move |&node| DieId { unit: die.unit, node })
    }

    /// Returns the tag of `die`.
    pub fn tag(&self, die: DieId) -> DwTag {
        self.node(die).tag
    }

    /// Returns the attribute `name` of `die` itself.
    pub fn own_attr(&self, die: DieId, name: gimli::DwAt) -> Option<AttributeValue<DwarfReader>> {
        self.node(die).attrs.iter().find(|attr| attr.name() == name).map(|attr| attr.value())
    }

    /// Returns the attribute `name` of `die`, or of the DIE its
    /// `DW_AT_abstract_origin` or `DW_AT_specification` refers to: a concrete
    /// inlined or out-of-line instance takes its name and type from there.
    pub fn attr(&self, die: DieId, name: gimli::DwAt) -> Option<AttributeValue<DwarfReader>> {
        let mut current = die;
        // A chain of origins longer than this is a loop in corrupt DWARF.
        for _ in 0..8 {
            if let Some(value) = self.own_attr(current, name) {
                return Some(value);
            }
            let origin = self
                .own_attr(current, constants::DW_AT_abstract_origin)
                .or_else(|| self.own_attr(current, constants::DW_AT_specification))?;
            current = self.resolve_ref(current, origin)?;
        }
        None
    }

    /// Returns the DIE a reference attribute of `from` points to.
    pub fn resolve_ref(&self, from: DieId, value: AttributeValue<DwarfReader>) -> Option<DieId> {
        match value {
            AttributeValue::UnitRef(offset) => self.die_at(from.unit, offset),
            AttributeValue::DebugInfoRef(offset) => self.die_at_info_offset(offset),
            _ => None,
        }
    }

    /// Returns the DIE at `offset` in `.debug_info`.
    pub fn die_at_info_offset(&self, offset: gimli::DebugInfoOffset) -> Option<DieId> {
        let unit_index = self
            .units
            .partition_point(|unit| unit.unit.header.debug_info_offset().is_some_and(|start| start <= offset));
        let unit_index = unit_index.checked_sub(1)?;
        let unit = &self.units[unit_index];
        let unit_offset = offset.to_unit_offset(&unit.unit.header)?;
        self.die_at(u32::try_from(unit_index).ok()?, unit_offset)
    }

    fn die_at(&self, unit: u32, offset: gimli::UnitOffset) -> Option<DieId> {
        let nodes = &self.units.get(unit as usize)?.nodes;
        let index = nodes.binary_search_by_key(&offset, |node| node.offset).ok()?;
        Some(DieId { unit, node: u32::try_from(index).ok()? })
    }

    /// Returns the DIE that the reference attribute `name` of `die` points to.
    pub fn attr_ref(&self, die: DieId, name: gimli::DwAt) -> Option<DieId> {
        let value = self.attr(die, name)?;
        // The reference is relative to the DIE that holds it, which may be
        // an abstract origin in another unit.
        let holder = self.attr_holder(die, name)?;
        self.resolve_ref(holder, value)
    }

    fn attr_holder(&self, die: DieId, name: gimli::DwAt) -> Option<DieId> {
        let mut current = die;
        for _ in 0..8 {
            if self.own_attr(current, name).is_some() {
                return Some(current);
            }
            let origin = self
                .own_attr(current, constants::DW_AT_abstract_origin)
                .or_else(|| self.own_attr(current, constants::DW_AT_specification))?;
            current = self.resolve_ref(current, origin)?;
        }
        None
    }

    /// Returns the `DW_AT_name` of `die` (following its origin).
    pub fn name(&self, die: DieId) -> Option<String> {
        let value = self.attr(die, constants::DW_AT_name)?;
        let unit = &self.unit(die).unit;
        let string = self.dwarf.attr_string(unit, value).ok()?;
        Some(string.to_string_lossy().ok()?.into_owned())
    }

    /// Returns the `DW_AT_linkage_name` of `die` (following its origin),
    /// or the older `DW_AT_MIPS_linkage_name`.
    pub fn linkage_name(&self, die: DieId) -> Option<String> {
        let value =
            self.attr(die, constants::DW_AT_linkage_name).or_else(|| self.attr(die, constants::DW_AT_MIPS_linkage_name))?;
        let unit = &self.unit(die).unit;
        let string = self.dwarf.attr_string(unit, value).ok()?;
        Some(string.to_string_lossy().ok()?.into_owned())
    }

    /// Returns an unsigned constant attribute of `die`.
    pub fn udata(&self, die: DieId, name: gimli::DwAt) -> Option<u64> {
        match self.attr(die, name)? {
            AttributeValue::Data1(v) => Some(v.into()),
            AttributeValue::Data2(v) => Some(v.into()),
            AttributeValue::Data4(v) => Some(v.into()),
            AttributeValue::Data8(v) => Some(v),
            AttributeValue::Udata(v) => Some(v),
            AttributeValue::Sdata(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Returns a flag attribute of `die`.
    pub fn flag(&self, die: DieId, name: gimli::DwAt) -> bool {
        matches!(self.attr(die, name), Some(AttributeValue::Flag(true)))
    }

    /// Returns the address ranges `die` covers (`DW_AT_low_pc`/`DW_AT_high_pc`
    /// or `DW_AT_ranges`); empty when it has none.
    pub fn ranges(&self, die: DieId) -> Vec<Range<u64>> {
        let unit = &self.unit(die).unit;
        let mut ranges = Vec::new();
        if let Some(value) = self.own_attr(die, constants::DW_AT_ranges) {
            if let Ok(Some(offset)) = self.dwarf.attr_ranges_offset(unit, value) {
                if let Ok(mut iter) = self.dwarf.ranges(unit, offset) {
                    while let Ok(Some(range)) = iter.next() {
                        if range.begin < range.end {
                            ranges.push(range.begin..range.end);
                        }
                    }
                }
            }
            return ranges;
        }
        let low = self
            .own_attr(die, constants::DW_AT_low_pc)
            .and_then(|value| self.dwarf.attr_address(unit, value).ok().flatten());
        let Some(low) = low else { return ranges };
        let high = match self.own_attr(die, constants::DW_AT_high_pc) {
            Some(AttributeValue::Udata(len)) => low.checked_add(len),
            Some(AttributeValue::Data1(len)) => low.checked_add(len.into()),
            Some(AttributeValue::Data2(len)) => low.checked_add(len.into()),
            Some(AttributeValue::Data4(len)) => low.checked_add(len.into()),
            Some(AttributeValue::Data8(len)) => low.checked_add(len),
            Some(value) => self.dwarf.attr_address(unit, value).ok().flatten(),
            None => low.checked_add(1),
        };
        if let Some(high) = high.filter(|&high| high > low) {
            ranges.push(low..high);
        }
        ranges
    }

    /// Whether `die` covers `pc`.
    pub fn contains_pc(&self, die: DieId, pc: u64) -> bool {
        self.ranges(die).iter().any(|range| range.contains(&pc))
    }

    /// Returns the units whose ranges contain `pc`.
    pub fn units_at(&self, pc: u64) -> impl Iterator<Item = u32> + '_ {
        self.units
            .iter()
            .enumerate()
            .filter(move |(_, unit)| unit.ranges.iter().any(|range| range.contains(&pc)))
            .map(|(index, _)| index as u32)
    }

    /// Returns the qualified name of `die`: the names of its enclosing
    /// namespaces, classes and structs joined with `::`.
    pub fn qualified_name(&self, die: DieId) -> Option<String> {
        let name = self.name(die)?;
        let mut parts = vec![name];
        let mut current = self.declaration_parent(die);
        while let Some(parent) = current {
            match self.tag(parent) {
                constants::DW_TAG_namespace
                | constants::DW_TAG_class_type
                | constants::DW_TAG_structure_type
                | constants::DW_TAG_union_type => {
                    parts.push(self.name(parent).unwrap_or_else(|| "(anonymous namespace)".to_owned()))
                }
                _ => break,
            }
            current = self.parent(parent);
        }
        parts.reverse();
        Some(parts.join("::"))
    }

    /// Returns the scope a definition was declared in: the parent of the
    /// DIE its `DW_AT_specification` names, or its own parent.
    fn declaration_parent(&self, die: DieId) -> Option<DieId> {
        match self.own_attr(die, constants::DW_AT_specification) {
            Some(value) => self.resolve_ref(die, value).and_then(|decl| self.parent(decl)),
            None => self.parent(die),
        }
    }

    fn index_names(&mut self) {
        let mut globals: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut functions: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut types: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut enumerators: HashMap<String, Vec<DieId>> = HashMap::new();
        for (unit_index, unit) in self.units.iter().enumerate() {
            // Only DIEs at namespace scope: the root's children, and the
            // children of namespaces, recursively.
            let mut stack: Vec<u32> = unit.nodes.first().map(|root| root.children.clone()).unwrap_or_default();
            while let Some(node_index) = stack.pop() {
                let die = DieId { unit: unit_index as u32, node: node_index };
                let node = &unit.nodes[node_index as usize];
                match node.tag {
                    constants::DW_TAG_namespace => stack.extend(node.children.iter().copied()),
                    constants::DW_TAG_variable => {
                        if let Some(name) = self.qualified_name(die) {
                            globals.entry(name).or_default().push(die);
                        }
                    }
                    constants::DW_TAG_subprogram => {
                        if let Some(name) = self.qualified_name(die) {
                            functions.entry(name).or_default().push(die);
                        }
                    }
                    constants::DW_TAG_base_type
                    | constants::DW_TAG_typedef
                    | constants::DW_TAG_structure_type
                    | constants::DW_TAG_class_type
                    | constants::DW_TAG_union_type
                    | constants::DW_TAG_enumeration_type => {
                        let Some(name) = self.qualified_name(die) else { continue };
                        let keyword = match node.tag {
                            constants::DW_TAG_structure_type => Some("struct"),
                            constants::DW_TAG_class_type => Some("class"),
                            constants::DW_TAG_union_type => Some("union"),
                            constants::DW_TAG_enumeration_type => Some("enum"),
                            _ => None,
                        };
                        if node.tag == constants::DW_TAG_enumeration_type {
                            self.index_enumerators(die, &name, &mut enumerators);
                        }
                        if let Some(keyword) = keyword {
                            types.entry(format!("{keyword} {name}")).or_default().push(die);
                            // C++ names a class without its keyword; C only
                            // through a typedef, but gdb accepts both.
                        }
                        let canonical = super::types::canonical_base_name(&name);
                        if canonical != name {
                            types.entry(canonical.to_owned()).or_default().push(die);
                        }
                        types.entry(name).or_default().push(die);
                        // Nested types and static members of classes.
                        if keyword.is_some() && unit.is_cplusplus() {
                            stack.extend(node.children.iter().copied().filter(|&child| {
                                matches!(
                                    unit.nodes[child as usize].tag,
                                    constants::DW_TAG_structure_type
                                        | constants::DW_TAG_class_type
                                        | constants::DW_TAG_union_type
                                        | constants::DW_TAG_enumeration_type
                                        | constants::DW_TAG_typedef
                                )
                            }));
                        }
                    }
                    _ => {}
                }
            }
        }
        self.globals = globals;
        self.functions = functions;
        self.types = types;
        self.enumerators = enumerators;
    }

    /// Indexes the enumerators of enum `die`, qualified by the enum's name
    /// (`Color::Red`), and for an unscoped enum also by its enclosing scope
    /// alone (`RED`, `ns::RED`), as C and C++ let code name them.
    fn index_enumerators(&self, die: DieId, enum_name: &str, out: &mut HashMap<String, Vec<DieId>>) {
        let scoped = self.flag(die, constants::DW_AT_enum_class);
        let scope = enum_name.rsplit_once("::").map(|(scope, _)| format!("{scope}::")).unwrap_or_default();
        for child in self.children(die) {
            if self.tag(child) != constants::DW_TAG_enumerator {
                continue;
            }
            let Some(name) = self.name(child) else { continue };
            out.entry(format!("{enum_name}::{name}")).or_default().push(child);
            if !scoped {
                out.entry(format!("{scope}{name}")).or_default().push(child);
            }
        }
    }

    /// Returns the enumerators an expression can name `name`.
    pub fn enumerators_named(&self, name: &str) -> Vec<DieId> {
        self.enumerators.get(name).cloned().unwrap_or_default()
    }

    /// Returns the names of all global variables, in no order.
    pub fn global_names(&self) -> impl Iterator<Item = &str> {
        self.globals.keys().map(String::as_str)
    }

    /// Returns the global variables named `name`, definitions first.
    pub fn globals_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.globals.get(name).cloned().unwrap_or_default();
        // A declaration (`extern int x;`) has no location; prefer the
        // definition, which may be in another unit.
        found.sort_by_key(|&die| self.flag(die, constants::DW_AT_declaration));
        found
    }

    /// Returns the functions named `name`, definitions with code first.
    pub fn functions_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.functions.get(name).cloned().unwrap_or_default();
        found.sort_by_key(|&die| self.ranges(die).is_empty());
        found
    }

    /// Returns the types named `name` (`struct point`, `point`, `size_t`),
    /// complete definitions first.
    pub fn types_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.types.get(name).cloned().unwrap_or_default();
        found.sort_by_key(|&die| self.flag(die, constants::DW_AT_declaration));
        found
    }

    /// Returns the unit whose primary file is `file` (`worker.c`), matched
    /// on the whole name or its last components.
    pub fn units_for_file<'s>(&'s self, file: &'s str) -> impl Iterator<Item = u32> + 's {
        self.units.iter().enumerate().filter_map(move |(index, unit)| {
            let name = unit.name.as_deref()?;
            let matches = name == file || name.ends_with(&format!("/{file}"));
            matches.then_some(index as u32)
        })
    }

    /// Returns the root DIE of unit `unit`.
    pub fn unit_root(&self, unit: u32) -> DieId {
        DieId { unit, node: 0 }
    }
}

/// Reads the DIEs of `unit` into an arena, at most `max_dies` of them. On an
/// error the DIEs read so far are returned with it.
fn read_nodes(
    unit: &gimli::Unit<DwarfReader>,
    max_dies: usize,
) -> Result<Vec<Node>, (Vec<Node>, gimli::Error)> {
    let mut nodes: Vec<Node> = Vec::new();
    // The open ancestors of the next DIE, by depth.
    let mut ancestors: Vec<u32> = Vec::new();
    let mut cursor = unit.entries();
    loop {
        let entry = match cursor.next_dfs() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(error) => return Err((nodes, error)),
        };
        if nodes.len() >= max_dies {
            tracing::warn!(max_dies, "too many DIEs; the rest of the unit is ignored");
            break;
        }
        let depth = usize::try_from(entry.depth()).unwrap_or(0);
        ancestors.truncate(depth);
        let parent = ancestors.last().copied();
        let index = nodes.len() as u32;
        nodes.push(Node {
            offset: entry.offset(),
            tag: entry.tag(),
            attrs: entry.attrs().to_vec(),
            parent,
            children: Vec::new(),
        });
        if let Some(parent) = parent {
            nodes[parent as usize].children.push(index);
        }
        if entry.has_children() {
            ancestors.push(index);
        }
    }
    Ok(nodes)
}
