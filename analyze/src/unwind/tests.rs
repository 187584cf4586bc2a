//! Walks over stacks built as arrays of words against the gcc-built
//! `trap_stack.S` image, and over a real stack recorded by a gcc-compiled
//! program.

use stardump_format::model::dwarf_reg;

use super::memory::WordStack;
use super::*;
use crate::image::Image;
use crate::test_fixtures;

const STACK: u64 = 0x7000_0000;
const INTERRUPTED_STACK: u64 = STACK + 0x100;

fn symbol(image: &Image, name: &str) -> u64 {
    image
        .symbols()
        .iter()
        .find(|symbol| symbol.name == name)
        .unwrap_or_else(|| panic!("symbol {name} missing"))
        .address
}

fn word_index(address: u64) -> usize {
    usize::try_from((address - STACK) / 8).unwrap()
}

/// The stack at the moment `handler` halts after `middle` executed ud2.
fn trap_stack(image: &Image) -> WordStack {
    let mut words = vec![0u64; 0x200 / 8];
    let hardware_frame = [
        0x1212,                                  // r12 pushed by handler
        symbol(image, "trap_stub_after_call"),   // return into trap_stub
        0,                                       // error code pushed by trap_stub
        symbol(image, "middle_ud2"),             // rip pushed by the CPU
        0x8,                                     // cs
        0x2,                                     // rflags
        INTERRUPTED_STACK,                       // rsp
        0x10,                                    // ss
    ];
    words[..hardware_frame.len()].copy_from_slice(&hardware_frame);
    let base = word_index(INTERRUPTED_STACK);
    words[base] = 0xb0b0; // rbx pushed by middle
    words[base + 1] = 0x5555; // rbp pushed by middle
    words[base + 2] = symbol(image, "entry_after_call");
    WordStack { base: STACK, words }
}

fn trap_context(image: &Image) -> Registers {
    let mut registers = Registers::default();
    registers.set(dwarf_reg::RA, Some(symbol(image, "handler_halt")));
    registers.set(dwarf_reg::RSP, Some(STACK));
    registers.set(dwarf_reg::RBP, Some(INTERRUPTED_STACK + 8));
    registers.set(dwarf_reg::RBX, Some(0x1111));
    registers.set(12, Some(0x2222));
    registers.set(dwarf_reg::RAX, Some(0xaaaa));
    registers
}

fn frame_summary(frames: &[Frame]) -> Vec<(Pc, FoundBy, Option<u64>, bool)> {
    frames.iter().map(|frame| (frame.pc, frame.found_by, frame.cfa, frame.trap)).collect()
}

#[test]
fn cfi_walks_through_trap_frame() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = trap_stack(&image);
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(trap_context(&image), &stack);

    assert_eq!(backtrace.stop, None);
    assert_eq!(
        frame_summary(&backtrace.frames),
        vec![
            (Pc::Exact(symbol(&image, "handler_halt")), FoundBy::Context, Some(STACK + 16), false),
            (Pc::ReturnAddress(symbol(&image, "trap_stub_after_call")), FoundBy::Cfi, Some(STACK + 64), true),
            (Pc::Exact(symbol(&image, "middle_ud2")), FoundBy::Cfi, Some(INTERRUPTED_STACK + 24), false),
            (Pc::ReturnAddress(symbol(&image, "entry_after_call")), FoundBy::Cfi, Some(INTERRUPTED_STACK + 32), false),
        ]
    );
}

#[test]
fn cfi_recovers_callee_saved_registers() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = trap_stack(&image);
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let frames = unwinder.walk(trap_context(&image), &stack).frames;

    // handler saved r12; rax is caller-saved and unknown past frame 0.
    assert_eq!(frames[1].registers.get(12), Some(0x1212));
    assert_eq!(frames[1].registers.get(dwarf_reg::RAX), None);
    assert_eq!(frames[1].registers.rsp(), Some(STACK + 16));
    // The trap frame's CFI restores rsp from the hardware frame.
    assert_eq!(frames[2].registers.rsp(), Some(INTERRUPTED_STACK));
    assert_eq!(frames[2].registers.get(dwarf_reg::RBX), Some(0x1111));
    assert_eq!(frames[2].registers.rbp(), Some(INTERRUPTED_STACK + 8));
    // middle saved rbx and rbp.
    assert_eq!(frames[3].registers.get(dwarf_reg::RBX), Some(0xb0b0));
    assert_eq!(frames[3].registers.rbp(), Some(0x5555));
    assert_eq!(frames[3].registers.rsp(), Some(INTERRUPTED_STACK + 24));
}

#[test]
fn uncaptured_return_address_stops_walk() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let mut stack = trap_stack(&image);
    stack.words.truncate(word_index(INTERRUPTED_STACK + 16));
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(trap_context(&image), &stack);

    assert_eq!(backtrace.frames.len(), 3);
    assert_eq!(
        backtrace.stop.unwrap().to_string(),
        format!("cannot read 8 bytes at {:#x}: page not captured", INTERRUPTED_STACK + 16)
    );
}

#[test]
fn trap_frame_loop_detected() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let mut stack = trap_stack(&image);
    // The trap frame claims the interrupted context is the handler itself.
    stack.words[3] = symbol(&image, "handler_halt");
    stack.words[6] = STACK;
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(trap_context(&image), &stack);

    assert_eq!(backtrace.frames.len(), 2);
    assert_eq!(backtrace.stop, Some(StopReason::Loop { pc: symbol(&image, "handler_halt"), sp: STACK }));
}

#[test]
fn frame_limit_stops_walk() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = trap_stack(&image);
    let options = UnwindOptions { max_frames: 2, ..UnwindOptions::default() };
    let mut unwinder = Unwinder::new(&image, options);
    let backtrace = unwinder.walk(trap_context(&image), &stack);

    assert_eq!(backtrace.frames.len(), 2);
    assert_eq!(backtrace.stop, Some(StopReason::FrameLimit { limit: 2 }));
}

fn context_outside_cfi(rsp: u64, rbp: Option<u64>) -> Registers {
    let mut registers = Registers::default();
    registers.set(dwarf_reg::RA, Some(0x9000_0000));
    registers.set(dwarf_reg::RSP, Some(rsp));
    registers.set(dwarf_reg::RBP, rbp);
    registers
}

#[test]
fn frame_pointer_used_without_cfi() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let entry_after_call = symbol(&image, "entry_after_call");
    let stack = WordStack { base: STACK, words: vec![0, 0x5555, entry_after_call, 0] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, Some(STACK + 8)), &stack);

    assert_eq!(backtrace.stop, None);
    assert_eq!(
        frame_summary(&backtrace.frames),
        vec![
            (Pc::Exact(0x9000_0000), FoundBy::Context, Some(STACK + 24), false),
            (Pc::ReturnAddress(entry_after_call), FoundBy::FramePointer, Some(STACK + 32), false),
        ]
    );
    assert_eq!(backtrace.frames[1].registers.rbp(), Some(0x5555));
    assert_eq!(backtrace.frames[1].registers.rsp(), Some(STACK + 24));
}

#[test]
fn null_page_return_address_rejected() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = WordStack { base: STACK, words: vec![0, 0, 0x10, 0] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, Some(STACK + 8)), &stack);

    assert_eq!(backtrace.frames.len(), 1);
    assert_eq!(backtrace.stop, Some(StopReason::NullPage { pc: 0x10 }));
    assert_eq!(
        backtrace.stop.unwrap().to_string(),
        "instruction pointer 0x10 of the caller is in the null page"
    );
}

#[test]
fn return_address_outside_image_rejected() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = WordStack { base: STACK, words: vec![0, 0, 0x1234_5678, 0] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, Some(STACK + 8)), &stack);

    assert_eq!(backtrace.stop, Some(StopReason::UnknownCode { pc: 0x1234_5678 }));
}

#[test]
fn scan_finds_return_address() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let entry_after_call = symbol(&image, "entry_after_call");
    // A function start is not a return address: the byte before `middle`
    // is entry's hlt, not a call.
    let stack = WordStack { base: STACK, words: vec![0x1234, symbol(&image, "middle"), entry_after_call, 0] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, None), &stack);

    assert_eq!(backtrace.stop, None);
    assert_eq!(
        frame_summary(&backtrace.frames),
        vec![
            (Pc::Exact(0x9000_0000), FoundBy::Context, Some(STACK + 24), false),
            (Pc::ReturnAddress(entry_after_call), FoundBy::Scan, Some(STACK + 32), false),
        ]
    );
}

#[test]
fn nothing_found_names_pc() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = WordStack { base: STACK, words: vec![0x1234, 0x5678] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, None), &stack);

    assert_eq!(backtrace.stop, Some(StopReason::NoUnwindInfo { pc: 0x9000_0000 }));
}

#[test]
fn zero_rbp_ends_walk() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let stack = WordStack { base: STACK, words: vec![0x1234, 0x5678] };
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(context_outside_cfi(STACK, Some(0)), &stack);

    assert_eq!(backtrace.frames.len(), 1);
    assert_eq!(backtrace.stop, None);
}

fn candidate(pc: u64, sp: u64, callee_trap: bool) -> Candidate {
    let mut registers = Registers::default();
    registers.set(dwarf_reg::RA, Some(pc));
    registers.set(dwarf_reg::RSP, Some(sp));
    Candidate { registers, found_by: FoundBy::Cfi, callee_cfa: None, callee_trap }
}

fn callee_frame(pc: u64, sp: u64) -> Frame {
    let mut registers = Registers::default();
    registers.set(dwarf_reg::RA, Some(pc));
    registers.set(dwarf_reg::RSP, Some(sp));
    Frame { pc: Pc::ReturnAddress(pc), registers, found_by: FoundBy::Cfi, cfa: None, trap: false }
}

#[test]
fn caller_below_callee_rejected() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let unwinder = Unwinder::new(&image, UnwindOptions::default());
    let verdict = unwinder.validate(&callee_frame(0x401000, STACK), STACK, candidate(0x401001, STACK - 8, false));
    assert!(matches!(
        verdict,
        Verdict::Reject(StopReason::StackWentDown { caller_sp, callee_sp }) if caller_sp == STACK - 8 && callee_sp == STACK
    ));
}

#[test]
fn caller_below_trap_frame_accepted() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let unwinder = Unwinder::new(&image, UnwindOptions::default());
    let verdict = unwinder.validate(&callee_frame(0x401000, STACK), STACK, candidate(0x401001, STACK - 8, true));
    let Verdict::Take(Step::Caller { frame, callee_trap, .. }) = verdict else {
        panic!("caller of a trap frame rejected");
    };
    assert!(callee_trap);
    assert_eq!(frame.pc, Pc::Exact(0x401001));
}

#[test]
fn identical_caller_is_no_progress() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let unwinder = Unwinder::new(&image, UnwindOptions::default());
    let verdict = unwinder.validate(&callee_frame(0x401000, STACK), STACK, candidate(0x401000, STACK, false));
    assert!(matches!(verdict, Verdict::Reject(StopReason::NoProgress { pc: 0x401000, sp: STACK })));
}

/// Registers and stack recorded by `native_stack.c` built with `flags`.
fn native_stack(name: &str, flags: &[&str]) -> (Image, Registers, WordStack) {
    let mut args = vec!["-no-pie"];
    args.extend_from_slice(flags);
    let program = test_fixtures::gcc(name, &args, &["native_stack.c", "capture_stack.S"]);
    let output = std::process::Command::new(&program).output().expect("run the native_stack fixture");
    assert!(output.status.success(), "{} failed", program.display());
    let words: Vec<u64> = output
        .stdout
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    let (recorded, stack_words) = words.split_at(17);
    let mut registers = Registers::default();
    for number in [dwarf_reg::RBX, dwarf_reg::RBP, dwarf_reg::RSP, 12, 13, 14, 15, dwarf_reg::RA] {
        registers.set(number, Some(recorded[usize::from(number)]));
    }
    let stack = WordStack { base: recorded[usize::from(dwarf_reg::RSP)], words: stack_words.to_vec() };
    (Image::open(&program).unwrap(), registers, stack)
}

/// Names the first `count` frames by ELF symbol and pairs them with how
/// they were found.
fn first_frames(image: &Image, backtrace: &Backtrace, count: usize) -> Vec<(String, FoundBy)> {
    backtrace
        .frames
        .iter()
        .take(count)
        .map(|frame| {
            let name = image.symbol_for(frame.pc.lookup_address()).map(|s| s.name.clone()).unwrap_or_default();
            (name, frame.found_by)
        })
        .collect()
}

#[test]
fn gcc_o2_stack_unwinds_by_cfi() {
    let (image, registers, stack) = native_stack("native_o2", &["-O2", "-g"]);
    let backtrace = Unwinder::new(&image, UnwindOptions::default()).walk(registers, &stack);
    assert_eq!(
        first_frames(&image, &backtrace, 3),
        vec![
            ("c_leaf".to_owned(), FoundBy::Context),
            ("c_caller".to_owned(), FoundBy::Cfi),
            ("main".to_owned(), FoundBy::Cfi),
        ]
    );
}

#[test]
fn gcc_o0_stack_unwinds_by_frame_pointer() {
    let flags = ["-O0", "-fno-omit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0"];
    let (image, registers, stack) = native_stack("native_o0_fp", &flags);
    let backtrace = Unwinder::new(&image, UnwindOptions::default()).walk(registers, &stack);
    assert_eq!(
        first_frames(&image, &backtrace, 3),
        vec![
            ("c_leaf".to_owned(), FoundBy::Context),
            ("c_caller".to_owned(), FoundBy::FramePointer),
            ("main".to_owned(), FoundBy::FramePointer),
        ]
    );
}

#[test]
fn gcc_o2_stack_without_cfi_unwinds_by_scan() {
    let flags = ["-O2", "-fomit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g0"];
    let (image, registers, stack) = native_stack("native_o2_scan", &flags);
    let backtrace = Unwinder::new(&image, UnwindOptions::default()).walk(registers, &stack);
    let frames = first_frames(&image, &backtrace, 3);
    assert_eq!(frames[0], ("c_leaf".to_owned(), FoundBy::Context));
    assert_eq!(frames[1], ("c_caller".to_owned(), FoundBy::Scan));
    assert_eq!(frames[2].0, "main");
}

/// A xorshift generator, so the random stacks are the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_stacks_end_within_limit() {
    let image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let code: Vec<u64> = image.symbols().iter().flat_map(|s| [s.address, s.address + 1, s.address + 5]).collect();
    let mut random = Xorshift(0x2545_f491_4f6c_dd1d);
    let options = UnwindOptions { max_frames: 64, scan_words: 32 };
    let mut unwinder = Unwinder::new(&image, options);

    for _ in 0..2000 {
        // Words that look like what a stack holds: code addresses, pointers
        // into the stack itself, small numbers and noise.
        let pick = |random: &mut Xorshift| match random.next() % 4 {
            0 => code[(random.next() % code.len() as u64) as usize],
            1 => STACK + (random.next() % 0x200) / 8 * 8,
            2 => random.next() % 0x2000,
            _ => random.next(),
        };
        let words = (0..0x200 / 8).map(|_| pick(&mut random)).collect();
        let stack = WordStack { base: STACK, words };
        let mut registers = Registers::default();
        for number in 0..registers::TRACKED_REGISTERS as u16 {
            registers.set(number, Some(pick(&mut random)));
        }
        registers.set(dwarf_reg::RSP, Some(STACK + (random.next() % 0x100) / 8 * 8));

        let backtrace = unwinder.walk(registers, &stack);
        assert!(backtrace.frames.len() <= options.max_frames);
        assert!(!backtrace.frames.is_empty());
    }
}

#[test]
fn gcc_debug_frame_unwinds_by_cfi() {
    // Without unwind tables but with -g, gcc describes the frames in
    // .debug_frame instead of .eh_frame.
    let flags = ["-O2", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-g"];
    let (image, registers, stack) = native_stack("native_o2_debug_frame", &flags);
    assert!(image.debug_frame().is_some(), "gcc emitted no .debug_frame");
    let backtrace = Unwinder::new(&image, UnwindOptions::default()).walk(registers, &stack);
    assert_eq!(
        first_frames(&image, &backtrace, 3),
        vec![
            ("c_leaf".to_owned(), FoundBy::Context),
            ("c_caller".to_owned(), FoundBy::Cfi),
            ("main".to_owned(), FoundBy::Cfi),
        ]
    );
}

#[test]
fn damaged_eh_frame_never_panics() {
    use object::{Object, ObjectSection};

    let original = std::fs::read(test_fixtures::trap_image_path()).unwrap();
    let elf = object::File::parse(&*original).unwrap();
    let (start, len) = elf.section_by_name(".eh_frame").unwrap().file_range().unwrap();
    let eh_frame = usize::try_from(start).unwrap()..usize::try_from(start + len).unwrap();
    let clean_image = Image::open(test_fixtures::trap_image_path()).unwrap();
    let context = trap_context(&clean_image);
    let stack = trap_stack(&clean_image);
    let dir = tempfile::tempdir().unwrap();
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);

    for round in 0..300 {
        let mut damaged = original.clone();
        for _ in 0..1 + random.next() % 4 {
            let at = eh_frame.start + (random.next() % (eh_frame.len() as u64)) as usize;
            damaged[at] = random.next() as u8;
        }
        let path = dir.path().join(format!("damaged-{round}.elf"));
        std::fs::write(&path, &damaged).unwrap();
        let Ok(image) = Image::open(&path) else { continue };
        let backtrace = Unwinder::new(&image, UnwindOptions::default()).walk(context, &stack);
        assert!(backtrace.frames.len() <= DEFAULT_MAX_FRAMES);
    }
}

#[test]
fn hypercall_page_steps_to_caller() {
    // The vCPU stopped right after `syscall` in the sched_op stub: r11 and
    // rcx are pushed, then the return address into blocker, which saved rbx.
    let image = Image::open(test_fixtures::hypercall_image_path()).unwrap();
    let page = symbol(&image, "hypercall_page");
    let stack = WordStack {
        base: STACK,
        words: vec![0x1111, 0x2222, symbol(&image, "blocker_after_call"), 0xb0b0, symbol(&image, "entry_after_call")],
    };
    let mut registers = Registers::default();
    registers.set(dwarf_reg::RA, Some(page + 29 * 32 + 10));
    registers.set(dwarf_reg::RSP, Some(STACK));
    registers.set(dwarf_reg::RBP, Some(0x5555));
    let mut unwinder = Unwinder::new(&image, UnwindOptions::default());
    let backtrace = unwinder.walk(registers, &stack);

    assert_eq!(backtrace.stop, None);
    assert_eq!(
        frame_summary(&backtrace.frames),
        vec![
            (Pc::Exact(page + 29 * 32 + 10), FoundBy::Context, Some(STACK + 24), false),
            (Pc::ReturnAddress(symbol(&image, "blocker_after_call")), FoundBy::HypercallPage, Some(STACK + 40), false),
            (Pc::ReturnAddress(symbol(&image, "entry_after_call")), FoundBy::Cfi, Some(STACK + 48), false),
        ]
    );
    assert_eq!(backtrace.frames[1].registers.get(dwarf_reg::RCX), Some(0x2222));
}
