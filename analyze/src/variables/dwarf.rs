//! An in-memory tree of the image's debugging information entries.
//!
//! gimli reads DIEs with a cursor that only moves forward. Printing a value
//! needs to walk to parents (a variable's scope), children (a struct's
//! members) and references in any direction (a member's type). [`DebugInfo`]
//! reads each unit, the first time a lookup needs it, into an arena of
//! [`Node`]s with parent and child links. Loading reads only each unit's
//! root DIE, for its address ranges and language, so a backtrace through
//! glibc reads the few units its pcs fall in, not all of glibc's DWARF.
//! The names of globals, functions and types are indexed on the first
//! lookup by name, which reads every unit.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

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
    /// The DIEs in DIE order, with the unit's root at index 0. They are
    /// read on first use, through [`DebugInfo::unit_nodes`].
    nodes: OnceLock<Vec<Node>>,
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

/// The DWARF of an image, read into memory unit by unit, with name indexes.
/// Clones share the units read so far.
#[derive(Clone)]
pub struct DebugInfo {
    data: Arc<DebugInfoData>,
}

impl std::ops::Deref for DebugInfo {
    type Target = DebugInfoData;

    fn deref(&self) -> &DebugInfoData {
        &self.data
    }
}

/// The units and name index that the clones of a [`DebugInfo`] share.
pub struct DebugInfoData {
    dwarf: Arc<gimli::Dwarf<DwarfReader>>,
    units: Vec<UnitInfo>,
    /// DIEs read so far, over all units, against [`MAX_DIES`].
    total_dies: AtomicUsize,
    /// Built on the first lookup by name.
    names: OnceLock<NameIndex>,
}

/// The names of an image's globals, functions, types and enumerators.
#[derive(Default)]
struct NameIndex {
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
    /// Reads the header and root DIE of every unit of `dwarf`. The other
    /// DIEs are read when a lookup first needs them. A unit that fails to
    /// parse is skipped with a warning. When a unit's DIEs fail to read,
    /// the DIEs read before the failure are kept.
    pub fn load(dwarf: Arc<gimli::Dwarf<DwarfReader>>) -> DebugInfo {
        let mut units = Vec::new();
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
            let name = unit.name.as_ref().and_then(|name| name.to_string_lossy().ok()).map(|name| name.into_owned());
            let root_attrs = match unit.entries().next_dfs() {
                Ok(Some(root)) => root.attrs().to_vec(),
                Ok(None) => Vec::new(),
                Err(error) => {
                    tracing::warn!(%error, ?offset, "cannot read the root DIE of a unit");
                    Vec::new()
                }
            };
            let language = match root_attrs.iter().find(|attr| attr.name() == constants::DW_AT_language) {
                Some(attr) => match attr.value() {
                    AttributeValue::Language(language) => Some(language),
                    _ => None,
                },
                None => None,
            };
            // The ranges are read with checked arithmetic: gimli 0.34's
            // `unit_ranges` adds DW_AT_high_pc to DW_AT_low_pc unchecked,
            // which panics on overflow in debug builds.
            let ranges = attr_ranges(&dwarf, &unit, &root_attrs);
            units.push(UnitInfo { unit, nodes: OnceLock::new(), name, language, ranges });
        }
        let data = DebugInfoData { dwarf, units, total_dies: AtomicUsize::new(0), names: OnceLock::new() };
        DebugInfo { data: Arc::new(data) }
    }

    /// Returns whether `self` and `other` are clones of one [`DebugInfo`],
    /// which share the units read so far.
    pub fn same_as(&self, other: &DebugInfo) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// Returns the DIEs of unit `unit`, reading them on first use.
    pub fn unit_nodes(&self, unit: u32) -> &[Node] {
        let Some(info) = self.units.get(unit as usize) else { return &[] };
        info.nodes.get_or_init(|| {
            let offset = info.unit.header.offset();
            let budget = MAX_DIES.saturating_sub(self.total_dies.load(Ordering::Relaxed));
            let nodes = match read_nodes(&info.unit, budget) {
                Ok(nodes) => nodes,
                Err((nodes, error)) => {
                    tracing::warn!(%error, ?offset, "cannot read all DIEs of a unit");
                    nodes
                }
            };
            self.total_dies.fetch_add(nodes.len(), Ordering::Relaxed);
            tracing::trace!(?offset, dies = nodes.len(), "read the DIEs of a unit");
            nodes
        })
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
        &self.unit_nodes(die.unit)[die.node as usize]
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
        let nodes = self.unit_nodes(unit);
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
        attr_ranges(&self.dwarf, &self.unit(die).unit, &self.node(die).attrs)
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

    /// Returns the name index, building it on first use.
    fn names(&self) -> &NameIndex {
        self.names.get_or_init(|| self.index_names())
    }

    fn index_names(&self) -> NameIndex {
        let mut globals: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut functions: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut types: HashMap<String, Vec<DieId>> = HashMap::new();
        let mut enumerators: HashMap<String, Vec<DieId>> = HashMap::new();
        for (unit_index, unit) in self.units.iter().enumerate() {
            let nodes = self.unit_nodes(unit_index as u32);
            // Only DIEs at namespace scope: the root's children, and the
            // children of namespaces, recursively.
            let mut stack: Vec<u32> = nodes.first().map(|root| root.children.clone()).unwrap_or_default();
            while let Some(node_index) = stack.pop() {
                let die = DieId { unit: unit_index as u32, node: node_index };
                let node = &nodes[node_index as usize];
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
                                    nodes[child as usize].tag,
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
        NameIndex { globals, functions, types, enumerators }
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
        self.names().enumerators.get(name).cloned().unwrap_or_default()
    }

    /// Returns the names of all global variables, in no order.
    pub fn global_names(&self) -> impl Iterator<Item = &str> {
        self.names().globals.keys().map(String::as_str)
    }

    /// Returns the global variables named `name`, definitions first.
    pub fn globals_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.names().globals.get(name).cloned().unwrap_or_default();
        // A declaration (`extern int x;`) has no location; prefer the
        // definition, which may be in another unit.
        found.sort_by_key(|&die| self.flag(die, constants::DW_AT_declaration));
        found
    }

    /// Returns the functions named `name`, definitions with code first.
    pub fn functions_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.names().functions.get(name).cloned().unwrap_or_default();
        found.sort_by_key(|&die| self.ranges(die).is_empty());
        found
    }

    /// Returns the types named `name` (`struct point`, `point`, `size_t`),
    /// complete definitions first.
    pub fn types_named(&self, name: &str) -> Vec<DieId> {
        let mut found = self.names().types.get(name).cloned().unwrap_or_default();
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

/// Returns the address ranges that the attributes `attrs` of a DIE of
/// `unit` give (`DW_AT_low_pc`/`DW_AT_high_pc` or `DW_AT_ranges`), or an
/// empty list when they give none.
fn attr_ranges(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    attrs: &[gimli::Attribute<DwarfReader>],
) -> Vec<Range<u64>> {
    let own_attr = |name: gimli::DwAt| attrs.iter().find(|attr| attr.name() == name).map(|attr| attr.value());
    let mut ranges = Vec::new();
    if let Some(value) = own_attr(constants::DW_AT_ranges) {
        if let Ok(Some(offset)) = dwarf.attr_ranges_offset(unit, value) {
            if let Ok(mut iter) = dwarf.ranges(unit, offset) {
                while let Ok(Some(range)) = iter.next() {
                    if range.begin < range.end {
                        ranges.push(range.begin..range.end);
                    }
                }
            }
        }
        return ranges;
    }
    let low = own_attr(constants::DW_AT_low_pc).and_then(|value| dwarf.attr_address(unit, value).ok().flatten());
    let Some(low) = low else { return ranges };
    let high = match own_attr(constants::DW_AT_high_pc) {
        Some(AttributeValue::Udata(len)) => low.checked_add(len),
        Some(AttributeValue::Data1(len)) => low.checked_add(len.into()),
        Some(AttributeValue::Data2(len)) => low.checked_add(len.into()),
        Some(AttributeValue::Data4(len)) => low.checked_add(len.into()),
        Some(AttributeValue::Data8(len)) => low.checked_add(len),
        Some(value) => dwarf.attr_address(unit, value).ok().flatten(),
        None => low.checked_add(1),
    };
    if let Some(high) = high.filter(|&high| high > low) {
        ranges.push(low..high);
    }
    ranges
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
