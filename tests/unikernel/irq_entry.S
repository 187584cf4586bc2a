/*
 * Entry stub of the local APIC timer interrupt (preempt.c).
 *
 * Unlike the exception stubs of trap_entry.S, this stub has no CFI, as the
 * interrupt entry code of Mini-OS and Unikraft has none. It saves the same
 * struct trap_frame (kernel.h) and passes it to timer_interrupt(), which
 * may switch to another thread. A thread preempted here sleeps with its
 * stack holding, from the top: its interrupted frames, the hardware
 * interrupt frame, the saved registers, the return address into this stub,
 * then timer_interrupt(), schedule() and switch_context(). An unwinder
 * must recognize the interrupt frame to get from the stub to the
 * interrupted function.
 */

	.text
	.globl irq_timer
	.type irq_timer, @function
	.p2align 4
irq_timer:
	pushq $0		/* error code */
	pushq $32		/* vector */
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15

	mov %rsp, %rdi
	call timer_interrupt

	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp		/* vector and error code */
	iretq
	.size irq_timer, . - irq_timer
