/*
 * Exception entry stubs of the Xen PV build.
 *
 * Xen delivers an exception to a 64-bit PV kernel on its current stack
 * with, from the lowest address: the interrupted rcx and r11 (Xen used
 * them for its own return), the error code for vectors that have one,
 * then rip, cs, rflags, rsp and ss as the CPU would push them. Each stub
 * takes rcx and r11 back, and from there builds the same struct
 * trap_frame (trap.c) as the QEMU build's stubs.
 *
 * The hand-written CFI describes that frame: CFA = the address just above
 * ss, rip at CFA-40, cs at CFA-32, rflags at CFA-24, the interrupted rsp
 * at CFA-16, ss at CFA-8, and rcx and r11 below the error code.
 * `.cfi_signal_frame` says rip is the faulting instruction itself, not a
 * return address; gdb prints such a frame as `<signal handler called>`.
 *
 * Returning goes through HYPERVISOR_iret: its hypercall page entry pushes
 * rcx, r11 and rax and expects flags, rip, cs, rflags, rsp, ss above them.
 */

#define DWARF_RFLAGS 49
#define DWARF_CS 51
#define DWARF_SS 52
#define HYPERVISOR_iret 23

.macro PUSH_REG reg
	push \reg
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset \reg, 0
.endm

.macro POP_REG reg
	pop \reg
	.cfi_adjust_cfa_offset -8
	.cfi_same_value \reg
.endm

.macro TRAP_STUB name, vector, has_error_code
	.globl \name
	.type \name, @function
	.p2align 4
\name:
	.cfi_startproc simple
	.cfi_signal_frame
.if \has_error_code
	.cfi_def_cfa %rsp, 8 * 8
	.cfi_offset %rcx, -8 * 8
	.cfi_offset %r11, -7 * 8
.else
	.cfi_def_cfa %rsp, 7 * 8
	.cfi_offset %rcx, -7 * 8
	.cfi_offset %r11, -6 * 8
.endif
	.cfi_offset %rip, -5 * 8
	.cfi_offset DWARF_CS, -4 * 8
	.cfi_offset DWARF_RFLAGS, -3 * 8
	.cfi_offset %rsp, -2 * 8
	.cfi_offset DWARF_SS, -1 * 8
	POP_REG %rcx
	POP_REG %r11
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

	mov %rsp, %rdi
	/* Xen aligns the frame as the CPU does; 22 words keep rsp aligned. */
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
	pushq $0		/* iret flags: not returning from a syscall */
	.cfi_adjust_cfa_offset 8
	jmp hypercall_page + HYPERVISOR_iret * 32
	.cfi_endproc
	.size \name, . - \name
.endm

	.text
	TRAP_STUB trap_divide_error, 0, 0
	TRAP_STUB trap_debug, 1, 0
	TRAP_STUB trap_breakpoint, 3, 0
	TRAP_STUB trap_overflow, 4, 0
	TRAP_STUB trap_bound_range, 5, 0
	TRAP_STUB trap_invalid_opcode, 6, 0
	TRAP_STUB trap_device_not_available, 7, 0
	TRAP_STUB trap_invalid_tss, 10, 1
	TRAP_STUB trap_segment_not_present, 11, 1
	TRAP_STUB trap_stack_fault, 12, 1
	TRAP_STUB trap_general_protection, 13, 1
	TRAP_STUB trap_page_fault, 14, 1
	TRAP_STUB trap_x87_fpu, 16, 0
	TRAP_STUB trap_alignment_check, 17, 1
	TRAP_STUB trap_simd_fpu, 19, 0
