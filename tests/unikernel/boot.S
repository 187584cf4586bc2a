/*
 * PVH entry and the switch to 64-bit long mode in the higher half.
 *
 * QEMU starts us at pvh_start32 (the physical address in the Xen
 * PHYS32_ENTRY note) in 32-bit protected mode, paging off, flat segments,
 * %ebx = physical address of struct hvm_start_info. Everything is linked at
 * KERNEL_VMA + physical, so until paging is on, code here uses PHYS(symbol).
 */

#define KERNEL_VMA 0xffffffff80000000
#define PHYS(x) ((x) - KERNEL_VMA)

#define PTE_PRESENT 0x001
#define PTE_WRITE 0x002
#define PTE_PWT 0x008
#define PTE_PCD 0x010
#define PTE_LARGE 0x080
#define PTE_TABLE (PTE_PRESENT | PTE_WRITE)
#define PTE_LARGE_RW (PTE_PRESENT | PTE_WRITE | PTE_LARGE)

#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define MSR_EFER 0xC0000080
#define EFER_LME 0x00000100

#define GDT_CODE64 0x08
#define GDT_DATA 0x10
#define GDT_CODE32 0x18

/* Xen ELF note type 18, XEN_ELFNOTE_PHYS32_ENTRY; QEMU 7.2 reads 8 bytes in ELF64. */
	.section .note.Xen, "a"
	.p2align 2
	.long 4			/* namesz: "Xen\0" */
	.long 8			/* descsz */
	.long 18		/* type */
	.asciz "Xen"
	.p2align 2
	.quad PHYS(pvh_start32)
	.p2align 2

	.section .text.boot, "ax"
	.code32
	.globl pvh_start32
	.type pvh_start32, @function
pvh_start32:
	cli
	cld
	mov %ebx, %esi		/* keep the hvm_start_info address */

	lgdt PHYS(boot_gdt_desc32)
	ljmp $GDT_CODE32, $PHYS(1f)
1:
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs

	/* QEMU zero-fills memsz beyond filesz, but do not depend on the loader. */
	mov $PHYS(__bss_start), %edi
	mov $PHYS(__bss_end), %ecx
	sub %edi, %ecx
	xor %eax, %eax
	rep stosb

	mov $PHYS(boot_stack_top), %esp

	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4

	mov $PHYS(boot_pml4), %eax
	mov %eax, %cr3

	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr

	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0

	ljmp $GDT_CODE64, $PHYS(long_mode_low)

	.code64
long_mode_low:
	/* Still running at the identity-mapped physical address. */
	movabs $boot_start64, %rax
	jmp *%rax
	.size pvh_start32, . - pvh_start32

	.text
/*
 * First code at a higher-half address. The CFI marks the return address as
 * undefined, so unwinders stop here: this is the outermost frame of the
 * boot stack.
 */
	.globl boot_start64
	.type boot_start64, @function
boot_start64:
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

	lea boot_stack_top(%rip), %rsp
	xor %ebp, %ebp
	mov %rsi, %rdi		/* kernel_main(hvm_start_info physical address) */
	call kernel_main
1:	cli
	hlt
	jmp 1b
	.cfi_endproc
	.size boot_start64, . - boot_start64

/*
 * Boot page tables. Each PML4 slot covers 512 GiB, each PDPT slot 1 GiB,
 * each PD slot 2 MiB.
 *   PML4[0]   identity map of 0..64 MiB: 0..2 MiB with 4 KiB pages and
 *             page 0 left unmapped (so NULL faults), 2..64 MiB with 2 MiB
 *             pages; plus the local APIC page at 0xfee00000 (uncached)
 *             and the 2 MiB at 0xfc000000 where Xen puts a PVH domain's
 *             ACPI tables (acpi.c).
 *   PML4[273] direct map at DIRECT_MAP_BASE, filled by paging_init().
 *   PML4[402] thread stack area at STACK_AREA_BASE, filled by paging_init().
 *   PML4[511] kernel image: 0xffffffff80000000 -> physical 0..64 MiB with
 *             2 MiB pages.
 */
	.section .data.pagetables, "aw"
	.p2align 12
	.globl boot_pml4
boot_pml4:
	.quad PHYS(pdpt_identity) + PTE_TABLE
	.org boot_pml4 + 273 * 8
	.quad PHYS(pdpt_direct) + PTE_TABLE
	.org boot_pml4 + 402 * 8
	.quad PHYS(pdpt_stacks) + PTE_TABLE
	.org boot_pml4 + 511 * 8
	.quad PHYS(pdpt_kernel) + PTE_TABLE

	.org boot_pml4 + 4096
pdpt_identity:
	.quad PHYS(pd_identity) + PTE_TABLE
	.org pdpt_identity + 3 * 8
	.quad PHYS(pd_apic) + PTE_TABLE

	.org pdpt_identity + 4096
pd_identity:
	.quad PHYS(pt_identity_low) + PTE_TABLE
	.set page, 1
	.rept 31
	.quad (page << 21) + PTE_LARGE_RW
	.set page, page + 1
	.endr

	.org pd_identity + 4096
pt_identity_low:
	.quad 0
	.set page, 1
	.rept 511
	.quad (page << 12) + PTE_TABLE
	.set page, page + 1
	.endr

	.org pt_identity_low + 4096
pd_apic:
	/* 0xfc000000 is PD slot 480 of the 3..4 GiB PDPT slot. */
	.org pd_apic + 480 * 8
	.quad 0xfc000000 + PTE_LARGE_RW
	/* 0xfee00000 is PD slot 503. */
	.org pd_apic + 503 * 8
	.quad 0xfee00000 + PTE_LARGE_RW + PTE_PCD + PTE_PWT

	.org pd_apic + 4096
pdpt_kernel:
	/* 0xffffffff80000000 is PDPT slot 510 of PML4 slot 511. */
	.org pdpt_kernel + 510 * 8
	.quad PHYS(pd_kernel) + PTE_TABLE

	.org pdpt_kernel + 4096
pd_kernel:
	.set page, 0
	.rept 32
	.quad (page << 21) + PTE_LARGE_RW
	.set page, page + 1
	.endr

	.org pd_kernel + 4096
	.globl pdpt_direct
pdpt_direct:
	.fill 512, 8, 0
	.globl pd_direct
pd_direct:
	.fill 512, 8, 0
	.globl pdpt_stacks
pdpt_stacks:
	.fill 512, 8, 0
	.globl pd_stacks
pd_stacks:
	.fill 512, 8, 0
	.globl pt_stacks
pt_stacks:
	.fill 512, 8, 0

/* GDT shared by every CPU and by the AP start-up code. */
	.data
	.p2align 4
	.globl boot_gdt
boot_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
	.quad 0x00cf9a000000ffff	/* 0x18: 32-bit code */
boot_gdt_end:

	.p2align 3
	.globl boot_gdt_desc32
boot_gdt_desc32:
	.word boot_gdt_end - boot_gdt - 1
	.long PHYS(boot_gdt)

	.p2align 3
	.globl boot_gdt_desc64
boot_gdt_desc64:
	.word boot_gdt_end - boot_gdt - 1
	.quad boot_gdt

	.bss
	.p2align 12
	.globl boot_stack
boot_stack:
	.skip 16384
	.globl boot_stack_top
boot_stack_top:
