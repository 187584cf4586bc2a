/*
 * Xen PV entry of the test unikernel: the ELF notes that Xen's domain
 * builder reads, the hypercall page, and boot_start64.
 *
 * Xen starts the vCPU in 64-bit mode at boot_start64 (XEN_ELFNOTE_ENTRY)
 * with %rsi = the virtual address of struct start_info, on page tables it
 * built (mapping the image at VIRT_BASE with 4 KiB pages), with events
 * masked and no trap table.
 */

#define KERNEL_VMA 0xffffffff80000000

#define XEN_ELFNOTE_ENTRY 1
#define XEN_ELFNOTE_HYPERCALL_PAGE 2
#define XEN_ELFNOTE_VIRT_BASE 3
#define XEN_ELFNOTE_PADDR_OFFSET 4
#define XEN_ELFNOTE_XEN_VERSION 5
#define XEN_ELFNOTE_GUEST_OS 6
#define XEN_ELFNOTE_LOADER 8

/* One note named "Xen"; `desc` is the directive that emits its contents. */
#define XEN_NOTE(type, desc)					\
	.p2align 2;						\
	.long 2f - 1f;						\
	.long 4f - 3f;						\
	.long type;						\
1:	.asciz "Xen";						\
2:	.p2align 2;						\
3:	desc;							\
4:	.p2align 2

	.section .note.Xen, "a"
	XEN_NOTE(XEN_ELFNOTE_GUEST_OS, .asciz "stardust-test")
	XEN_NOTE(XEN_ELFNOTE_XEN_VERSION, .asciz "xen-3.0")
	XEN_NOTE(XEN_ELFNOTE_LOADER, .asciz "generic")
	XEN_NOTE(XEN_ELFNOTE_VIRT_BASE, .quad KERNEL_VMA)
	XEN_NOTE(XEN_ELFNOTE_PADDR_OFFSET, .quad 0)
	XEN_NOTE(XEN_ELFNOTE_ENTRY, .quad boot_start64)
	XEN_NOTE(XEN_ELFNOTE_HYPERCALL_PAGE, .quad hypercall_page)

	/* hypercall_page itself is in hypercall_page.S, shared by both builds. */

	.text
/*
 * First code of the guest. The CFI marks the return address as undefined,
 * so unwinders stop here: this is the outermost frame of the boot stack.
 */
	.globl boot_start64
	.type boot_start64, @function
boot_start64:
	.cfi_startproc
	.cfi_undefined rip
	cld
	lea boot_stack_top(%rip), %rsp
	xor %ebp, %ebp
	mov %rsi, %rdi		/* kernel_main(start_info virtual address) */
	call kernel_main
	call xen_poweroff
	.cfi_endproc
	.size boot_start64, . - boot_start64

	.bss
	.p2align 12
	.globl boot_stack
boot_stack:
	.skip 16384
	.globl boot_stack_top
boot_stack_top:
