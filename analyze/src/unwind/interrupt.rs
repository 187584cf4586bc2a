//! Unwinding through interrupt and exception entry stubs that have no CFI.
//!
//! A unikernel enters its interrupt and exception handlers through stubs in
//! its own assembly. Mini-OS and Unikraft write them without CFI, so a
//! thread preempted by a timer interrupt sleeps with a stub on its stack
//! that neither CFI nor a frame-pointer chain can step out of. The stub
//! pushed the interrupted registers, not a frame. What every stub has in
//! common is the frame the CPU pushed on entry (or Xen, as the CPU would,
//! for a PV guest): rip, cs, rflags, rsp and ss, in that order from lower
//! addresses up.
//!
//! When a frame's pc has no CFI, [`unwind`] looks for that frame in the
//! [`MAX_SEARCH_WORDS`] words above the frame's stack pointer, nearest
//! first. Five words are taken as a hardware frame when all of these hold:
//! - rip is in the image's executable code;
//! - cs is a non-null GDT selector (below 0x10000, table bit clear);
//! - rflags has its always-one bit 1 set, the reserved bits 3, 5 and 15
//!   clear, and nothing above bit 21;
//! - ss is below 0x10000;
//! - the interrupted rsp, rounded down to 16, is the address just above ss.
//!   The CPU aligns rsp to 16 before it pushes ss, and Xen does the same
//!   when it builds the frame on a PV guest's stack, so this holds for
//!   every interrupt taken without a stack switch.
//!
//! The interrupted rip and rsp come from the hardware frame. The general
//! registers come from the save area when the image's DWARF describes it:
//! a structure with members named after the registers whose `rip`, `cs`,
//! `rflags` (or `eflags`), `rsp` and `ss` members are consecutive words
//! (Mini-OS's `struct pt_regs`, Unikraft's `struct __regs`, the test
//! unikernel's `struct trap_frame`). The structure is placed so that its
//! `rip` member lies on the frame's rip, and only where it then starts at
//! or above the stub's stack pointer. Without such a structure, the
//! callee-saved registers are taken as the stub frame's own, because an
//! entry stub saves them without changing them, and the other general
//! registers are unknown.

use std::collections::HashMap;

use stardump_format::model::dwarf_reg;

use super::memory::StackMemory;
use super::registers::{Registers, REGISTER_NAMES};
use crate::image::{DwarfReader, Image};

/// Number of 8-byte words above the stack pointer searched for the
/// hardware frame: room for a save area of all general registers, a vector,
/// an error code and a few words of padding, twice over.
pub const MAX_SEARCH_WORDS: u64 = 64;

/// Bytes of the hardware frame: rip, cs, rflags, rsp, ss.
const HARDWARE_FRAME_BYTES: u64 = 40;

/// RFLAGS bit 1, which always reads as one.
const RFLAGS_FIXED_ONE: u64 = 1 << 1;

/// RFLAGS bits 3, 5 and 15, which always read as zero.
const RFLAGS_RESERVED_ZERO: u64 = (1 << 3) | (1 << 5) | (1 << 15);

/// RFLAGS bits above the last defined flag (ID, bit 21).
const RFLAGS_UNDEFINED: u64 = !((1 << 22) - 1);

/// Upper bound on the DIEs read while looking for save-area structures, so a
/// huge image costs a bounded time.
const MAX_LAYOUT_DIES: usize = 4_000_000;

/// A saved-register structure described by DWARF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveAreaLayout {
    /// Offset of the `rip` member.
    rip_offset: u64,
    /// Offsets of the general registers the structure holds, by DWARF
    /// register number.
    registers: Vec<(u16, u64)>,
}

/// The result of a successful search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptCaller {
    /// The interrupted frame's registers.
    pub registers: Registers,
    /// Address just above the hardware frame: the stub frame's CFA.
    pub cfa: u64,
    /// Whether the general registers came from a DWARF save area.
    pub from_save_area: bool,
}

/// Finds the hardware interrupt frame above `callee`'s stack pointer and
/// returns the interrupted registers, or `None` when there is none.
pub fn unwind(
    image: &Image,
    layouts: &[SaveAreaLayout],
    callee: &Registers,
    memory: &dyn StackMemory,
) -> Option<InterruptCaller> {
    let sp = callee.rsp()?;
    let frame = (0..MAX_SEARCH_WORDS).find_map(|word| {
        let address = sp.checked_add(word * 8)?;
        HardwareFrame::read(address, memory).filter(|frame| frame.plausible(image))
    })?;
    tracing::debug!(
        at = format_args!("{:#x}", frame.address),
        rip = format_args!("{:#x}", frame.rip),
        rsp = format_args!("{:#x}", frame.rsp),
        "found an interrupt frame"
    );

    let mut registers = callee.callee_saved_only();
    let mut from_save_area = false;
    let fitting = layouts
        .iter()
        .filter_map(|layout| Some((layout, frame.address.checked_sub(layout.rip_offset)?)))
        .filter(|&(_, base)| base >= sp);
    // A stub usually passes the save area at its own stack pointer.
    let chosen = fitting
        .clone()
        .find(|&(_, base)| base == sp)
        .or_else(|| fitting.clone().next());
    if let Some((layout, base)) = chosen {
        let mut saved = Registers::default();
        let complete = layout.registers.iter().all(|&(number, offset)| {
            let value = base
                .checked_add(offset)
                .and_then(|address| memory.read_u64(address).ok());
            saved.set(number, value);
            value.is_some()
        });
        if complete {
            registers = saved;
            from_save_area = true;
        }
    }
    registers.set(dwarf_reg::RA, Some(frame.rip));
    registers.set(dwarf_reg::RSP, Some(frame.rsp));
    Some(InterruptCaller {
        registers,
        cfa: frame.address + HARDWARE_FRAME_BYTES,
        from_save_area,
    })
}

/// The five words the CPU pushes on an interrupt or exception.
struct HardwareFrame {
    address: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

impl HardwareFrame {
    fn read(address: u64, memory: &dyn StackMemory) -> Option<HardwareFrame> {
        let word = |index: u64| memory.read_u64(address.checked_add(index * 8)?).ok();
        Some(HardwareFrame {
            address,
            rip: word(0)?,
            cs: word(1)?,
            rflags: word(2)?,
            rsp: word(3)?,
            ss: word(4)?,
        })
    }

    fn plausible(&self, image: &Image) -> bool {
        let selector = |value: u64| value < 0x1_0000;
        selector(self.cs)
            && self.cs & !0b11 != 0
            && self.cs & 0b100 == 0
            && selector(self.ss)
            && self.rflags & RFLAGS_FIXED_ONE != 0
            && self.rflags & (RFLAGS_RESERVED_ZERO | RFLAGS_UNDEFINED) == 0
            && self.address.checked_add(HARDWARE_FRAME_BYTES) == Some(self.rsp & !0xf)
            && image.executable_segment_for(self.rip).is_some()
    }
}

/// Finds the structures in `image`'s DWARF that describe a save area, each
/// distinct layout once. Units that fail to parse are skipped.
pub fn save_area_layouts(image: &Image) -> Vec<SaveAreaLayout> {
    let dwarf = image.dwarf_sections();
    let mut layouts: Vec<SaveAreaLayout> = Vec::new();
    let mut dies = 0usize;
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut cursor = unit.entries();
        // The depth and members of the structure being read.
        let mut open: Option<(isize, HashMap<String, u64>)> = None;
        loop {
            let entry = match cursor.next_dfs() {
                Ok(Some(entry)) => entry,
                Ok(None) | Err(_) => break,
            };
            dies += 1;
            if dies > MAX_LAYOUT_DIES {
                tracing::debug!(MAX_LAYOUT_DIES, "stopped looking for save-area structures");
                return layouts;
            }
            let depth = entry.depth();
            match &mut open {
                Some((struct_depth, members)) if depth == *struct_depth + 1 => {
                    if entry.tag() == gimli::DW_TAG_member {
                        if let Some((name, offset)) = member(dwarf, &unit, entry) {
                            members.insert(name, offset);
                        }
                    }
                    continue;
                }
                Some((struct_depth, _)) if depth > *struct_depth => continue,
                Some(_) => {
                    if let Some((_, members)) = open.take() {
                        add_layout(&mut layouts, &members);
                    }
                }
                None => {}
            }
            if entry.tag() == gimli::DW_TAG_structure_type && entry.has_children() {
                open = Some((depth, HashMap::new()));
            }
        }
        if let Some((_, members)) = open.take() {
            add_layout(&mut layouts, &members);
        }
    }
    layouts
}

/// Adds the layout of a structure with `members`, unless it is not a save
/// area or an equal layout is already known.
fn add_layout(layouts: &mut Vec<SaveAreaLayout>, members: &HashMap<String, u64>) {
    if let Some(layout) = layout_of(members) {
        if !layouts.contains(&layout) {
            layouts.push(layout);
        }
    }
}

/// Returns a member's name and constant offset.
fn member(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> Option<(String, u64)> {
    let name = entry.attr_value(gimli::DW_AT_name)?;
    let name = dwarf.attr_string(unit, name).ok()?;
    let name = gimli::Reader::to_string_lossy(&name).ok()?.into_owned();
    let offset = entry
        .attr(gimli::DW_AT_data_member_location)?
        .udata_value()?;
    Some((name, offset))
}

/// Returns the layout of a structure whose members hold a hardware frame
/// and the callee-saved registers, or `None` for any other structure.
fn layout_of(members: &HashMap<String, u64>) -> Option<SaveAreaLayout> {
    let rip = *members.get("rip")?;
    let flags = members.get("rflags").or_else(|| members.get("eflags"))?;
    let consecutive = members.get("cs") == rip.checked_add(8).as_ref()
        && Some(*flags) == rip.checked_add(16)
        && members.get("rsp") == rip.checked_add(24).as_ref()
        && members.get("ss") == rip.checked_add(32).as_ref();
    if !consecutive {
        return None;
    }
    let registers: Vec<(u16, u64)> = REGISTER_NAMES
        .iter()
        .enumerate()
        .filter(|&(number, _)| {
            number != usize::from(dwarf_reg::RSP) && number != usize::from(dwarf_reg::RA)
        })
        .filter_map(|(number, name)| Some((number as u16, *members.get(*name)?)))
        .collect();
    let has_callee_saved = super::registers::CALLEE_SAVED
        .iter()
        .all(|number| registers.iter().any(|&(saved, _)| saved == *number));
    has_callee_saved.then_some(SaveAreaLayout {
        rip_offset: rip,
        registers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs
            .iter()
            .map(|&(name, offset)| (name.to_owned(), offset))
            .collect()
    }

    const TRAP_FRAME: [(&str, u64); 22] = [
        ("r15", 0),
        ("r14", 8),
        ("r13", 16),
        ("r12", 24),
        ("r11", 32),
        ("r10", 40),
        ("r9", 48),
        ("r8", 56),
        ("rbp", 64),
        ("rdi", 72),
        ("rsi", 80),
        ("rdx", 88),
        ("rcx", 96),
        ("rbx", 104),
        ("rax", 112),
        ("vector", 120),
        ("error_code", 128),
        ("rip", 136),
        ("cs", 144),
        ("rflags", 152),
        ("rsp", 160),
        ("ss", 168),
    ];

    #[test]
    fn layout_of_trap_frame() {
        let layout = layout_of(&members(&TRAP_FRAME)).expect("layout");
        assert_eq!(layout.rip_offset, 136);
        assert_eq!(layout.registers.len(), 15);
        assert!(layout.registers.contains(&(dwarf_reg::RBX, 104)));
    }

    #[test]
    fn layout_needs_consecutive_hardware_frame() {
        let mut pairs = members(&TRAP_FRAME);
        pairs.insert("cs".to_owned(), 200);
        assert_eq!(layout_of(&pairs), None);
    }

    #[test]
    fn layout_needs_callee_saved_registers() {
        let pairs = members(&[
            ("rip", 0),
            ("cs", 8),
            ("eflags", 16),
            ("rsp", 24),
            ("ss", 32),
        ]);
        assert_eq!(layout_of(&pairs), None);
    }
}
