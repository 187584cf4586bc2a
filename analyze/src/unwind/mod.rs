//! Stack unwinding: from a vCPU's registers to the chain of caller frames.
//!
//! [`Unwinder::caller_frame`] tries the strategies in order of trust (the
//! fixed layout of Xen's hypercall stubs, CFI, then for code without CFI the
//! hardware frame of an interrupt entry stub, then the frame-pointer chain,
//! then a stack scan) and validates each
//! candidate: an instruction pointer in the null page is rejected, the stack
//! pointer must not move toward lower addresses except out of a trap frame,
//! and a frame identical to its callee is no progress. [`Unwinder::walk`]
//! adds loop detection and the frame limit, and records why a walk ended
//! early.

pub mod cfi;
pub mod frame_pointer;
pub mod hypercall;
pub mod interrupt;
pub mod memory;
pub mod registers;
pub mod scan;
pub mod unwritten;

use std::collections::HashSet;

use stardump_format::MemoryError;

use crate::image::Image;
use crate::modules::ModuleSet;
pub use cfi::{CfiError, CfiStep, CfiUnwinder};
pub use frame_pointer::FramePointerError;
pub use hypercall::HypercallError;
pub use memory::{ImageMemory, StackMemory, TargetMemory};
pub use registers::Registers;

/// Default maximum number of frames in one backtrace.
pub const DEFAULT_MAX_FRAMES: usize = 256;

/// Addresses below this are the null page; no code runs there.
const NULL_PAGE_END: u64 = 0x1000;

/// A frame's program counter, with what kind of address it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pc {
    /// The address of the next instruction to execute: the context frame,
    /// or a frame interrupted by a trap.
    Exact(u64),
    /// The address a call returns to. The call itself is the instruction
    /// before, and may be the last one of its function or inlined scope.
    ReturnAddress(u64),
}

impl Pc {
    /// Returns the address as the frame records it.
    pub fn value(self) -> u64 {
        match self {
            Pc::Exact(pc) | Pc::ReturnAddress(pc) => pc,
        }
    }

    /// The address to look up CFI, symbols and lines at: one byte before a
    /// return address, so the lookup lands in the call instruction (gdb's
    /// `get_frame_address_in_block` does the same).
    pub fn lookup_address(self) -> u64 {
        match self {
            Pc::Exact(pc) => pc,
            Pc::ReturnAddress(pc) => pc.saturating_sub(1),
        }
    }
}

/// Strategy that found a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    /// The vCPU's registers.
    Context,
    /// DWARF call frame information.
    Cfi,
    /// The frame-pointer chain.
    FramePointer,
    /// A stack scan for return addresses.
    Scan,
    /// The fixed layout of a stub in Xen's hypercall page.
    HypercallPage,
    /// The hardware frame an interrupt or exception pushed, found above
    /// an entry stub without CFI.
    InterruptFrame,
}

impl FoundBy {
    /// Returns the name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Context => "context",
            FoundBy::Cfi => "cfi",
            FoundBy::FramePointer => "frame-pointer",
            FoundBy::Scan => "scan",
            FoundBy::HypercallPage => "hypercall-page",
            FoundBy::InterruptFrame => "interrupt-frame",
        }
    }
}

/// One physical frame of a backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's program counter.
    pub pc: Pc,
    /// The frame's registers; callee-saved ones may be unknown.
    pub registers: Registers,
    /// Strategy that found the frame.
    pub found_by: FoundBy,
    /// The canonical frame address, which is the caller's stack pointer at
    /// the call. CFI computes it, and the frame-pointer and scan strategies
    /// take the caller's stack pointer they found. `None` for an outermost
    /// frame without CFI.
    pub cfa: Option<u64>,
    /// Whether the frame is a trap or signal frame: the CFI of its code has
    /// the `S` augmentation (`.cfi_signal_frame`).
    pub trap: bool,
}

/// Reason a walk ended before the outermost frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopReason {
    /// CFI covered the frame but could not be applied.
    #[error(transparent)]
    Cfi(#[from] CfiError),
    /// The frame-pointer chain could not be followed.
    #[error(transparent)]
    FramePointer(#[from] FramePointerError),
    /// The pc is in Xen's hypercall page but the stub could not be stepped out of.
    #[error(transparent)]
    Hypercall(#[from] HypercallError),
    /// A stack scan could not read the stack.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The caller's instruction pointer is in the null page.
    #[error("instruction pointer {pc:#x} of the caller is in the null page")]
    NullPage {
        /// The rejected instruction pointer.
        pc: u64,
    },
    /// The caller's stack pointer is below the callee's.
    #[error("stack pointer {caller_sp:#x} of the caller is below {callee_sp:#x} of its callee (corrupt stack?)")]
    StackWentDown {
        /// The rejected stack pointer.
        caller_sp: u64,
        /// The callee's stack pointer.
        callee_sp: u64,
    },
    /// The caller is identical to its callee.
    #[error("previous frame identical to this frame (pc {pc:#x}, sp {sp:#x})")]
    NoProgress {
        /// The repeated program counter.
        pc: u64,
        /// The repeated stack pointer.
        sp: u64,
    },
    /// The caller repeats an earlier frame.
    #[error("frame with pc {pc:#x} and sp {sp:#x} repeats an earlier frame (loop in the stack)")]
    Loop {
        /// The repeated program counter.
        pc: u64,
        /// The repeated stack pointer.
        sp: u64,
    },
    /// A heuristic found a return address outside the image's code.
    #[error("return address {pc:#x} is not in the image's code")]
    UnknownCode {
        /// The rejected return address.
        pc: u64,
    },
    /// No strategy applies to the frame.
    #[error("no CFI, frame pointer or return address on the stack for pc {pc:#x}")]
    NoUnwindInfo {
        /// The frame's lookup address.
        pc: u64,
    },
    /// The frame's stack pointer is unknown.
    #[error("stack pointer unknown in the frame at pc {pc:#x}")]
    MissingStackPointer {
        /// The frame's program counter.
        pc: u64,
    },
    /// The walk reached the frame limit.
    #[error("frame limit of {limit} reached")]
    FrameLimit {
        /// The limit.
        limit: usize,
    },
}

/// The result of one unwind step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The caller was found.
    Caller {
        /// The caller frame, boxed because it is large and the other
        /// variants are small.
        frame: Box<Frame>,
        /// The callee's CFA.
        callee_cfa: Option<u64>,
        /// Whether the callee is a trap frame.
        callee_trap: bool,
    },
    /// The callee is the outermost frame: its CFI marks the return address
    /// undefined, or its return address or saved rbp is zero.
    Outermost {
        /// The callee's CFA, when CFI computed it.
        callee_cfa: Option<u64>,
        /// Whether the callee is a trap frame.
        callee_trap: bool,
    },
    /// No valid caller was found.
    Stopped(StopReason),
}

/// A walk's frames, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backtrace {
    /// The frames found.
    pub frames: Vec<Frame>,
    /// Reason the walk ended early, or `None` when it reached the outermost frame.
    pub stop: Option<StopReason>,
}

/// Limits of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnwindOptions {
    /// Maximum number of frames.
    pub max_frames: usize,
    /// Number of 8-byte words a stack scan reads above the stack pointer.
    pub scan_words: usize,
}

impl Default for UnwindOptions {
    fn default() -> Self {
        UnwindOptions { max_frames: DEFAULT_MAX_FRAMES, scan_words: scan::DEFAULT_SCAN_WORDS }
    }
}

/// One image the unwinder reads CFI and code from, placed at its load bias.
struct UnwindModule<'i> {
    image: &'i Image,
    /// Run-time address minus file address, modulo 2^64.
    bias: u64,
    /// Run-time addresses the module covers.
    start: u64,
    end: u64,
    /// Prepared on the first lookup, because a process maps many libraries
    /// and a backtrace touches few.
    cfi: Option<CfiUnwinder>,
}

/// Unwinds stacks of code from one image, or from the images of a process.
pub struct Unwinder<'i> {
    /// Sorted by `start`, without overlaps.
    modules: Vec<UnwindModule<'i>>,
    options: UnwindOptions,
    /// Address of Xen's hypercall page, when the image reserves one.
    hypercall_page: Option<u64>,
    /// Save-area structures of the image's DWARF, read when an unwind first
    /// meets code without CFI.
    save_areas: Option<Vec<interrupt::SaveAreaLayout>>,
}

/// A caller proposed by one strategy, before validation.
struct Candidate {
    registers: Registers,
    found_by: FoundBy,
    callee_cfa: Option<u64>,
    callee_trap: bool,
}

impl<'i> Unwinder<'i> {
    /// Prepares to unwind code of `image`, linked at its run-time addresses.
    pub fn new(image: &'i Image, options: UnwindOptions) -> Unwinder<'i> {
        let hypercall_page = image
            .symbols()
            .iter()
            .find(|symbol| symbol.name == hypercall::HYPERCALL_PAGE_SYMBOL)
            .map(|symbol| symbol.address);
        let module = UnwindModule { image, bias: 0, start: 0, end: u64::MAX, cfi: None };
        Unwinder { modules: vec![module], options, hypercall_page, save_areas: None }
    }

    /// Prepares to unwind code of every module of `modules`, each at its
    /// load bias. Xen's hypercall page is only looked for in a set of one
    /// image with bias 0, which is what a unikernel has.
    pub fn for_modules(modules: &'i ModuleSet, options: UnwindOptions) -> Unwinder<'i> {
        if let [only] = modules.modules() {
            if only.bias == 0 && only.start == 0 && only.end == u64::MAX {
                return Unwinder::new(&only.image, options);
            }
        }
        let modules = modules
            .modules()
            .iter()
            .map(|module| UnwindModule {
                image: &module.image,
                bias: module.bias,
                start: module.start,
                end: module.end,
                cfi: None,
            })
            .collect();
        Unwinder { modules, options, hypercall_page: None, save_areas: None }
    }

    /// Returns the index of the module that contains the run-time `address`.
    fn module_index(&self, address: u64) -> Option<usize> {
        let after = self.modules.partition_point(|module| module.start <= address);
        let index = after.checked_sub(1)?;
        let module = &self.modules[index];
        (address < module.end).then_some(index)
    }

    /// Returns whether the run-time `address` is in an executable segment of a module.
    fn is_code(&self, address: u64) -> bool {
        self.module_index(address).is_some_and(|index| {
            let module = &self.modules[index];
            module.image.executable_segment_for(address.wrapping_sub(module.bias)).is_some()
        })
    }

    /// Returns whether the run-time `address` follows a call instruction in a module's code.
    fn is_return_address(&self, address: u64) -> bool {
        self.module_index(address.wrapping_sub(1)).is_some_and(|index| {
            let module = &self.modules[index];
            scan::is_return_address(module.image, address.wrapping_sub(module.bias))
        })
    }

    /// Applies the CFI of the module containing `lookup` to `registers`.
    fn unwind_cfi(
        &mut self,
        lookup: u64,
        registers: &Registers,
        memory: &dyn StackMemory,
    ) -> Result<Option<CfiStep>, CfiError> {
        let Some(index) = self.module_index(lookup) else {
            return Ok(None);
        };
        let module = &mut self.modules[index];
        let image = module.image;
        let cfi = module.cfi.get_or_insert_with(|| CfiUnwinder::new(image));
        // CFI is stated in file addresses. Its rules compute the caller's
        // registers from this frame's registers and memory, which are all
        // run-time values, so only the lookup address needs the bias.
        cfi.unwind(lookup.wrapping_sub(module.bias), registers, memory)
    }

    /// Walks the stack from the context `registers` (a vCPU's, all known).
    pub fn walk(&mut self, registers: Registers, memory: &dyn StackMemory) -> Backtrace {
        let mut frames = Vec::new();
        let Some(rip) = registers.rip() else {
            return Backtrace { frames, stop: Some(StopReason::NoUnwindInfo { pc: 0 }) };
        };
        frames.push(Frame { pc: Pc::Exact(rip), registers, found_by: FoundBy::Context, cfa: None, trap: false });
        let mut seen = HashSet::new();
        seen.insert((rip, registers.rsp()));

        loop {
            let index = frames.len() - 1;
            let _span = tracing::debug_span!("frame", index).entered();
            let step = self.caller_frame(&frames[index], memory);
            match step {
                Step::Caller { frame, callee_cfa, callee_trap } => {
                    frames[index].cfa = callee_cfa;
                    frames[index].trap = callee_trap;
                    if frames.len() >= self.options.max_frames {
                        let stop = StopReason::FrameLimit { limit: self.options.max_frames };
                        return Backtrace { frames, stop: Some(stop) };
                    }
                    let key = (frame.pc.value(), frame.registers.rsp());
                    if !seen.insert(key) {
                        let stop = StopReason::Loop { pc: key.0, sp: key.1.unwrap_or(0) };
                        return Backtrace { frames, stop: Some(stop) };
                    }
                    frames.push(*frame);
                }
                Step::Outermost { callee_cfa, callee_trap } => {
                    frames[index].cfa = callee_cfa;
                    frames[index].trap = callee_trap;
                    return Backtrace { frames, stop: None };
                }
                Step::Stopped(reason) => {
                    tracing::debug!(%reason, "backtrace stopped");
                    return Backtrace { frames, stop: Some(reason) };
                }
            }
        }
    }

    /// Finds the caller of `callee`: CFI first, then the frame pointer,
    /// then a stack scan, each candidate validated before it is taken.
    pub fn caller_frame(&mut self, callee: &Frame, memory: &dyn StackMemory) -> Step {
        let lookup = callee.pc.lookup_address();
        let Some(callee_sp) = callee.registers.rsp() else {
            return Step::Stopped(StopReason::MissingStackPointer { pc: callee.pc.value() });
        };
        let mut rejected: Vec<StopReason> = Vec::new();

        if let Some(page) = self.hypercall_page {
            match hypercall::unwind(page, &callee.registers, memory) {
                Ok(Some(caller)) => {
                    let candidate = Candidate {
                        callee_cfa: caller.rsp(),
                        registers: caller,
                        found_by: FoundBy::HypercallPage,
                        callee_trap: false,
                    };
                    match self.validate(callee, callee_sp, candidate) {
                        Verdict::Take(step) => return step,
                        Verdict::Reject(reason) => rejected.push(reason),
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "hypercall stub rejected");
                    rejected.push(error.into());
                }
            }
        }

        match self.unwind_cfi(lookup, &callee.registers, memory) {
            Ok(Some(step)) => {
                if step.caller.rip().is_none() {
                    return Step::Outermost { callee_cfa: Some(step.cfa), callee_trap: step.signal_frame };
                }
                let candidate = Candidate {
                    registers: step.caller,
                    found_by: FoundBy::Cfi,
                    callee_cfa: Some(step.cfa),
                    callee_trap: step.signal_frame,
                };
                match self.validate(callee, callee_sp, candidate) {
                    Verdict::Take(step) => return step,
                    Verdict::Reject(reason) => rejected.push(reason),
                }
            }
            Ok(None) => {
                tracing::trace!(lookup = format_args!("{lookup:#x}"), "no CFI");
                if let Some(step) = self.interrupt_frame(callee, callee_sp, memory, &mut rejected) {
                    return step;
                }
            }
            Err(error) => {
                tracing::debug!(%error, "CFI failed");
                rejected.push(error.into());
            }
        }

        // A call through a bad pointer (a NULL function pointer) leaves the
        // pc outside any code, with the return address on top of the stack
        // and rbp still the calling function's. The frame-pointer chain
        // would skip that function, so the top word comes first. gdb 13
        // shows that function too (the corpus's nullcall cores).
        if matches!(callee.pc, Pc::Exact(_)) && !self.is_code(lookup) {
            let is_return_address = |address: u64| self.is_return_address(address);
            if let Ok(Some(mut caller)) = scan::unwind(&is_return_address, &callee.registers, memory, 1) {
                // No instruction ran at the bad pc, so every register but
                // rsp and the pc still holds the caller's value at the
                // call, caller-saved ones too (gdb shows them as well).
                use stardump_format::model::dwarf_reg;
                for number in 0..dwarf_reg::RA {
                    if number != dwarf_reg::RSP {
                        caller.set(number, callee.registers.get(number));
                    }
                }
                let candidate =
                    Candidate { callee_cfa: caller.rsp(), registers: caller, found_by: FoundBy::Scan, callee_trap: false };
                match self.validate(callee, callee_sp, candidate) {
                    Verdict::Take(step) => return step,
                    Verdict::Reject(reason) => rejected.push(reason),
                }
            }
        }

        let mut chain_ended = false;
        match frame_pointer::unwind(&callee.registers, memory) {
            Ok(Some(caller)) => {
                let candidate =
                    Candidate { callee_cfa: caller.rsp(), registers: caller, found_by: FoundBy::FramePointer, callee_trap: false };
                match self.validate(callee, callee_sp, candidate) {
                    Verdict::Take(step) => return step,
                    Verdict::Reject(reason) => rejected.push(reason),
                }
            }
            Ok(None) => chain_ended = callee.registers.rbp() == Some(0),
            Err(error) => {
                tracing::debug!(%error, "frame pointer rejected");
                rejected.push(error.into());
            }
        }

        let is_return_address = |address: u64| self.is_return_address(address);
        match scan::unwind(&is_return_address, &callee.registers, memory, self.options.scan_words) {
            Ok(Some(caller)) => {
                let candidate =
                    Candidate { callee_cfa: caller.rsp(), registers: caller, found_by: FoundBy::Scan, callee_trap: false };
                match self.validate(callee, callee_sp, candidate) {
                    Verdict::Take(step) => return step,
                    Verdict::Reject(reason) => rejected.push(reason),
                }
            }
            Ok(None) => {}
            Err(error) => rejected.push(error.into()),
        }

        // Startup code zeroes rbp to end the frame-pointer chain. In code
        // without frame pointers rbp may be zero anywhere, which is why the
        // scan ran first. When CFI covered the frame and failed, the zero
        // proves nothing either.
        if chain_ended && rejected.is_empty() {
            return Step::Outermost { callee_cfa: None, callee_trap: false };
        }

        // The most trusted strategy's reason is the one worth showing.
        let reason = rejected.into_iter().next().unwrap_or(StopReason::NoUnwindInfo { pc: lookup });
        Step::Stopped(reason)
    }

    /// Steps out of an interrupt entry stub without CFI through the hardware
    /// frame above it. Only a unikernel has such stubs: one image, no shared
    /// objects.
    fn interrupt_frame(
        &mut self,
        callee: &Frame,
        callee_sp: u64,
        memory: &dyn StackMemory,
        rejected: &mut Vec<StopReason>,
    ) -> Option<Step> {
        let [module] = self.modules.as_slice() else { return None };
        let image = module.image;
        let layouts = self.save_areas.get_or_insert_with(|| interrupt::save_area_layouts(image));
        let caller = interrupt::unwind(image, layouts, &callee.registers, memory)?;
        let candidate = Candidate {
            registers: caller.registers,
            found_by: FoundBy::InterruptFrame,
            callee_cfa: Some(caller.cfa),
            callee_trap: true,
        };
        match self.validate(callee, callee_sp, candidate) {
            Verdict::Take(step) => Some(step),
            Verdict::Reject(reason) => {
                rejected.push(reason);
                None
            }
        }
    }

    /// Applies the rules every candidate caller must pass.
    fn validate(&self, callee: &Frame, callee_sp: u64, candidate: Candidate) -> Verdict {
        let found_by = candidate.found_by.as_str();
        let (Some(pc), Some(sp)) = (candidate.registers.rip(), candidate.registers.rsp()) else {
            return Verdict::Reject(StopReason::MissingStackPointer { pc: callee.pc.value() });
        };
        // A trap or signal frame that interrupted a pc in the null page
        // records a call through a null function pointer: that frame is
        // real, and its own caller follows from the return address the call
        // pushed. Anywhere else, a zero return address is how startup code
        // marks the outermost frame.
        let null_call = candidate.callee_trap && pc < NULL_PAGE_END;
        if pc == 0 && !null_call {
            return Verdict::Take(Step::Outermost {
                callee_cfa: candidate.callee_cfa,
                callee_trap: candidate.callee_trap,
            });
        }
        if pc < NULL_PAGE_END && !null_call {
            tracing::debug!(found_by, pc = format_args!("{pc:#x}"), "rejected caller in the null page");
            return Verdict::Reject(StopReason::NullPage { pc });
        }
        // CFI is trusted to name the caller; the heuristics must at least
        // land in the code of a known image, because a unikernel has no
        // other code and a process's code comes from its mapped files.
        let code_address = pc.saturating_sub(1);
        if candidate.found_by != FoundBy::Cfi && !self.is_code(code_address) {
            tracing::debug!(found_by, pc = format_args!("{pc:#x}"), "rejected caller outside the image's code");
            return Verdict::Reject(StopReason::UnknownCode { pc });
        }
        // A trap frame switches to the interrupted context, which may be on
        // another stack. Everywhere else the stack grows down, so a caller's
        // frame lies above its callee's.
        if !candidate.callee_trap && sp < callee_sp {
            tracing::debug!(found_by, sp = format_args!("{sp:#x}"), "rejected caller below callee");
            return Verdict::Reject(StopReason::StackWentDown { caller_sp: sp, callee_sp });
        }
        if sp == callee_sp && pc == callee.pc.value() {
            return Verdict::Reject(StopReason::NoProgress { pc, sp });
        }
        let caller_pc = if candidate.callee_trap { Pc::Exact(pc) } else { Pc::ReturnAddress(pc) };
        tracing::debug!(found_by, pc = format_args!("{pc:#x}"), sp = format_args!("{sp:#x}"), "found caller");
        Verdict::Take(Step::Caller {
            frame: Box::new(Frame {
                pc: caller_pc,
                registers: candidate.registers,
                found_by: candidate.found_by,
                cfa: None,
                trap: false,
            }),
            callee_cfa: candidate.callee_cfa,
            callee_trap: candidate.callee_trap,
        })
    }
}

enum Verdict {
    Take(Step),
    Reject(StopReason),
}


#[cfg(test)]
mod tests;
