/*
 * Start-up code of an application processor. smp.c copies the bytes
 * between ap_trampoline_start and ap_trampoline_end to AP_TRAMPOLINE_PHYS
 * (0x8000) and fills in ap_cr3, ap_stack_top and ap_entry; the SIPI then
 * starts the AP in real mode at 0x0800:0000.
 */

#define KERNEL_VMA 0xffffffff80000000
#define PHYS(x) ((x) - KERNEL_VMA)
#define AP_TRAMPOLINE_PHYS 0x8000
#define AT_PHYS(x) (AP_TRAMPOLINE_PHYS + (x) - ap_trampoline_start)

#define GDT_CODE64 0x08
#define GDT_DATA 0x10
#define GDT_CODE32 0x18

	.data
	.p2align 4
	.globl ap_trampoline_start
ap_trampoline_start:
	.code16
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl ap_gdt_desc - ap_trampoline_start
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $GDT_CODE32, $AT_PHYS(ap_protected_mode)

	.code32
ap_protected_mode:
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss

	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov AT_PHYS(ap_cr3), %eax
	mov %eax, %cr3
	mov $0xC0000080, %ecx		/* EFER */
	rdmsr
	or $0x100, %eax			/* LME */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax		/* PG | PE */
	mov %eax, %cr0
	ljmp $GDT_CODE64, $AT_PHYS(ap_long_mode)

	.code64
ap_long_mode:
	mov AT_PHYS(ap_stack_top), %rsp
	mov AT_PHYS(ap_entry), %rax
	jmp *%rax

	.p2align 3
	.globl ap_cr3, ap_stack_top, ap_entry
ap_cr3:
	.quad 0
ap_stack_top:
	.quad 0
ap_entry:
	.quad 0
ap_gdt_desc:
	.word 4 * 8 - 1
	.long PHYS(boot_gdt)
	.globl ap_trampoline_end
ap_trampoline_end:

	.text
/*
 * First higher-half code of an AP, on its own stack. The undefined return
 * address ends the AP's backtrace here.
 */
	.globl ap_start64
	.type ap_start64, @function
ap_start64:
	.cfi_startproc
	.cfi_undefined rip
	lgdt boot_gdt_desc64(%rip)
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	xor %ebp, %ebp
	call ap_main
1:	cli
	hlt
	jmp 1b
	.cfi_endproc
	.size ap_start64, . - ap_start64
