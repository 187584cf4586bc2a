/*
 * Cooperative context switch and the first frame of every thread.
 */

#define THREAD_SP 8
#define THREAD_IP 16

	.text
/*
 * void switch_context(struct thread *prev, struct thread *next)
 *
 * Pushes the callee-saved registers on prev's stack, stores prev's stack
 * pointer and resume address (label 1 below) in prev->sp and prev->ip, then
 * continues next at next->ip on next->sp. A blocked thread therefore has, at
 * prev->sp: r15, r14, r13, r12, rbx, rbp, and the return address into
 * schedule(). The CFI at label 1 describes exactly that layout, so an
 * unwinder that starts from (ip, sp) of a sleeping thread walks on into
 * schedule() and its callers.
 */
	.globl switch_context
	.type switch_context, @function
switch_context:
	.cfi_startproc
	push %rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbp, 0
	push %rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %rbx, 0
	push %r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r12, 0
	push %r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r13, 0
	push %r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r14, 0
	push %r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset %r15, 0

	mov %rsp, THREAD_SP(%rdi)
	lea 1f(%rip), %rax
	mov %rax, THREAD_IP(%rdi)
	mov THREAD_SP(%rsi), %rsp
	jmp *THREAD_IP(%rsi)

1:
	pop %r15
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r15
	pop %r14
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r14
	pop %r13
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r13
	pop %r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore %r12
	pop %rbx
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbx
	pop %rbp
	.cfi_adjust_cfa_offset -8
	.cfi_restore %rbp
	ret
	.cfi_endproc
	.size switch_context, . - switch_context

/*
 * First code of a new thread: switch_context() jumps here with
 * rsp = the 16-byte aligned top of the thread's stack. The return address
 * is marked undefined so unwinders end the thread's backtrace here.
 */
	.globl thread_start
	.type thread_start, @function
thread_start:
	.cfi_startproc
	.cfi_undefined rip
	xor %ebp, %ebp
	mov %gs:0, %rdi		/* struct cpu.current */
	call thread_main
	ud2
	.cfi_endproc
	.size thread_start, . - thread_start
