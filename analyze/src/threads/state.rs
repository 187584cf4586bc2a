//! The state of each listed thread: running on a vCPU, sleeping with saved
//! registers, or without a context to unwind. For a sleeping thread, also
//! the registers the unwinder starts from.

use stardump_format::{MemoryError, VcpuState};

use super::description::{register_number, Description, SwitchFrame};
use super::list::ThreadEntry;
use crate::image::Image;
use crate::unwind::{Registers, StackMemory, TargetMemory};

/// State of one thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadState {
    /// The thread runs on this vCPU; its registers are the vCPU's.
    Running {
        /// The vCPU's id.
        vcpu: u32,
    },
    /// The flags mark the thread as running, but no vCPU matches it.
    RunningOnUnknownVcpu,
    /// The thread sleeps; its saved sp and ip are its context.
    Sleeping {
        /// Saved stack pointer.
        sp: u64,
        /// Saved resume address.
        ip: u64,
    },
    /// The flags match the description's skip mask: no saved context.
    Skipped {
        /// The thread's flags.
        flags: u64,
    },
    /// A member needed to decide could not be read.
    Unreadable {
        /// The member: `flags`, `sp` or `ip`.
        member: &'static str,
        /// The failed read.
        error: MemoryError,
    },
}

/// Returns the thread each vCPU runs according to `description`'s rules,
/// as `(vcpu id, thread address)`; vCPUs the rules do not resolve are left
/// out. `memory_for` gives a vCPU's address space.
pub fn current_threads<'t>(
    description: &Description,
    vcpus: &[&VcpuState],
    memory_for: &dyn Fn(&VcpuState) -> TargetMemory<'t>,
) -> Vec<(u32, u64)> {
    let mut current = Vec::new();
    for vcpu in vcpus {
        let memory = memory_for(vcpu);
        let mut found = None;
        if let Some(offset) = description.running.current_at_gs_base_offset {
            if vcpu.present.segment_bases && vcpu.gs_base != 0 {
                found = vcpu.gs_base.checked_add(offset).and_then(|address| memory.read_u64(address).ok());
            }
        }
        if found.is_none() {
            if let Some(size) = description.running.current_at_stack_base_size_bytes {
                // Description::parse rejects other sizes, but the fields are public.
                if vcpu.present.general && size.is_power_of_two() {
                    found = memory.read_u64(vcpu.rsp & !(size - 1)).ok();
                }
            }
        }
        match found {
            Some(thread) if thread != 0 => current.push((vcpu.id, thread)),
            _ => tracing::debug!(vcpu = vcpu.id, "no current thread found for the vCPU"),
        }
    }
    current
}

/// Decides the state of `entry`. `current` is the result of
/// [`current_threads`]; `single_vcpu` is the id of the snapshot's only
/// vCPU, when it has one, which a running thread must be on.
pub fn thread_state(
    description: &Description,
    entry: &ThreadEntry,
    current: &[(u32, u64)],
    single_vcpu: Option<u32>,
) -> ThreadState {
    let flags = match &entry.flags {
        Some(Ok(flags)) => Some(*flags),
        Some(Err(error)) => return ThreadState::Unreadable { member: "flags", error: error.clone() },
        None => None,
    };
    let on_vcpu = current.iter().find(|(_, thread)| *thread == entry.address).map(|(vcpu, _)| *vcpu);
    let running = match (description.flags.running, flags) {
        (Some(mask), Some(flags)) => flags & mask != 0,
        _ => on_vcpu.is_some(),
    };
    if running {
        return match on_vcpu.or(single_vcpu) {
            Some(vcpu) => ThreadState::Running { vcpu },
            None => ThreadState::RunningOnUnknownVcpu,
        };
    }
    if let (Some(mask), Some(flags)) = (description.flags.skip, flags) {
        if flags & mask != 0 {
            return ThreadState::Skipped { flags };
        }
    }
    match (&entry.sp, &entry.ip) {
        (Ok(sp), Ok(ip)) => ThreadState::Sleeping { sp: *sp, ip: *ip },
        (Err(error), _) => ThreadState::Unreadable { member: "sp", error: error.clone() },
        (_, Err(error)) => ThreadState::Unreadable { member: "ip", error: error.clone() },
    }
}

/// The start of a sleeping thread's backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SleepingStart {
    /// Registers of frame 0: rip = ip and rsp = sp, the rest unknown.
    pub context: Registers,
    /// With a pushed switch frame: the caller's registers read from the
    /// stack, from which the walk continues.
    pub caller: Option<Registers>,
}

/// Returns where the unwinder starts for a thread sleeping at `ip` with
/// stack pointer `sp`.
pub fn sleeping_start(
    description: &Description,
    image: &Image,
    sp: u64,
    ip: u64,
    memory: &dyn StackMemory,
) -> Result<SleepingStart, MemoryError> {
    let mut context = Registers::default();
    context.set(stardump_format::model::dwarf_reg::RA, Some(ip));
    context.set(stardump_format::model::dwarf_reg::RSP, Some(sp));
    let SwitchFrame::Pushed { function, registers } = &description.switch_frame else {
        return Ok(SleepingStart { context, caller: None });
    };
    let in_switch = image.symbol_for(ip).is_some_and(|symbol| symbol.name == *function);
    if !in_switch {
        return Ok(SleepingStart { context, caller: None });
    }
    let mut caller = Registers::default();
    let mut address = sp;
    let overflow = || MemoryError::NotCaptured { address: sp, len: (registers.len() + 1) * 8 };
    for name in registers {
        if let Some(number) = register_number(name) {
            caller.set(number, Some(memory.read_u64(address)?));
        }
        address = address.checked_add(8).ok_or_else(overflow)?;
    }
    let return_address = memory.read_u64(address)?;
    caller.set(stardump_format::model::dwarf_reg::RA, Some(return_address));
    caller.set(stardump_format::model::dwarf_reg::RSP, Some(address.checked_add(8).ok_or_else(overflow)?));
    Ok(SleepingStart { context, caller: Some(caller) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(extra: &str) -> Description {
        let text = format!(
            "name = \"t\"\n[list]\nhead = \"h\"\nnext = \"next\"\n[members]\nsp = \"sp\"\nip = \"ip\"\nflags = \"flags\"\n{extra}"
        );
        Description::parse(&text, "test").unwrap()
    }

    fn entry(address: u64, flags: u64) -> ThreadEntry {
        ThreadEntry { address, name: None, id: None, flags: Some(Ok(flags)), sp: Ok(0x7000), ip: Ok(0x8000) }
    }

    #[test]
    fn running_flag_with_matched_vcpu() {
        let description = description("[flags]\nrunning = 2\nskip = 8\n");
        let state = thread_state(&description, &entry(0x100, 3), &[(1, 0x100)], None);
        assert_eq!(state, ThreadState::Running { vcpu: 1 });
    }

    #[test]
    fn running_flag_without_match() {
        let description = description("[flags]\nrunning = 2\n");
        assert_eq!(thread_state(&description, &entry(0x100, 2), &[], None), ThreadState::RunningOnUnknownVcpu);
        // With one vCPU the running thread can only be on it.
        assert_eq!(thread_state(&description, &entry(0x100, 2), &[], Some(0)), ThreadState::Running { vcpu: 0 });
    }

    #[test]
    fn running_without_flag_mask_uses_current() {
        let description = description("");
        assert_eq!(thread_state(&description, &entry(0x100, 0), &[(0, 0x100)], Some(0)), ThreadState::Running { vcpu: 0 });
        assert_eq!(
            thread_state(&description, &entry(0x200, 0), &[(0, 0x100)], Some(0)),
            ThreadState::Sleeping { sp: 0x7000, ip: 0x8000 }
        );
    }

    #[test]
    fn skip_mask_applies_only_when_not_running() {
        let description = description("[flags]\nrunning = 2\nskip = 8\n");
        assert_eq!(thread_state(&description, &entry(0x100, 8), &[], None), ThreadState::Skipped { flags: 8 });
        assert_eq!(thread_state(&description, &entry(0x100, 0xa), &[(1, 0x100)], None), ThreadState::Running { vcpu: 1 });
    }

    #[test]
    fn unreadable_sp_reported() {
        let description = description("");
        let mut damaged = entry(0x100, 0);
        damaged.sp = Err(MemoryError::NotCaptured { address: 0x108, len: 8 });
        let state = thread_state(&description, &damaged, &[], Some(0));
        assert!(matches!(state, ThreadState::Unreadable { member: "sp", .. }), "{state:?}");
    }
}
