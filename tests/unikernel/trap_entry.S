/*
 * Exception entry stubs.
 *
 * The CPU pushes ss, rsp, rflags, cs, rip and, for some vectors, an error
 * code. Each stub pushes a zero error code where the CPU pushed none, the
 * vector number and all general registers, so trap_handler() receives a
 * struct trap_frame (trap.c) with one layout for every vector.
 *
 * The hand-written CFI describes the hardware frame: CFA = the address just
 * above ss, rip at CFA-40, cs at CFA-32, rflags at CFA-24, the interrupted
 * rsp at CFA-16, ss at CFA-8. `.cfi_signal_frame` tells unwinders that rip
 * is the faulting instruction itself, not a return address, so they look
 * it up without subtracting one; gdb prints such a frame as
 * `<signal handler called>`.
 */

#define DWARF_RFLAGS 49
#define DWARF_CS 51
#define DWARF_SS 52

.macro PUSH_REG reg
	push \reg
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset \reg, 0
.endm

.macro POP_REG reg
	pop \reg
	.cfi_adjust_cfa_offset -8
	.cfi_restore \reg
.endm

.macro TRAP_STUB name, vector, has_error_code
	.globl \name
	.type \name, @function
	.p2align 4
\name:
	.cfi_startproc simple
	.cfi_signal_frame
.if \has_error_code
	.cfi_def_cfa %rsp, 6 * 8
.else
	.cfi_def_cfa %rsp, 5 * 8
.endif
	.cfi_offset %rip, -5 * 8
	.cfi_offset DWARF_CS, -4 * 8
	.cfi_offset DWARF_RFLAGS, -3 * 8
	.cfi_offset %rsp, -2 * 8
	.cfi_offset DWARF_SS, -1 * 8
.if !\has_error_code
	pushq $0
	.cfi_adjust_cfa_offset 8
.endif
	pushq $\vector
	.cfi_adjust_cfa_offset 8
	PUSH_REG %rax
	PUSH_REG %rbx
	PUSH_REG %rcx
	PUSH_REG %rdx
	PUSH_REG %rsi
	PUSH_REG %rdi
	PUSH_REG %rbp
	PUSH_REG %r8
	PUSH_REG %r9
	PUSH_REG %r10
	PUSH_REG %r11
	PUSH_REG %r12
	PUSH_REG %r13
	PUSH_REG %r14
	PUSH_REG %r15

	/* The CPU aligned rsp to 16 before pushing ss; 22 words keep it aligned. */
	mov %rsp, %rdi
	call trap_handler

	POP_REG %r15
	POP_REG %r14
	POP_REG %r13
	POP_REG %r12
	POP_REG %r11
	POP_REG %r10
	POP_REG %r9
	POP_REG %r8
	POP_REG %rbp
	POP_REG %rdi
	POP_REG %rsi
	POP_REG %rdx
	POP_REG %rcx
	POP_REG %rbx
	POP_REG %rax
	add $16, %rsp		/* vector and error code */
	.cfi_adjust_cfa_offset -16
	iretq
	.cfi_endproc
	.size \name, . - \name
.endm

	.text
	TRAP_STUB trap_divide_error, 0, 0
	TRAP_STUB trap_debug, 1, 0
	TRAP_STUB trap_nmi, 2, 0
	TRAP_STUB trap_breakpoint, 3, 0
	TRAP_STUB trap_overflow, 4, 0
	TRAP_STUB trap_bound_range, 5, 0
	TRAP_STUB trap_invalid_opcode, 6, 0
	TRAP_STUB trap_device_not_available, 7, 0
	TRAP_STUB trap_double_fault, 8, 1
	TRAP_STUB trap_invalid_tss, 10, 1
	TRAP_STUB trap_segment_not_present, 11, 1
	TRAP_STUB trap_stack_fault, 12, 1
	TRAP_STUB trap_general_protection, 13, 1
	TRAP_STUB trap_page_fault, 14, 1
	TRAP_STUB trap_x87_fpu, 16, 0
	TRAP_STUB trap_alignment_check, 17, 1
	TRAP_STUB trap_machine_check, 18, 0
	TRAP_STUB trap_simd_fpu, 19, 0
	/* Every other vector, exceptions and interrupts alike, reports as 255. */
	TRAP_STUB trap_generic, 255, 0
