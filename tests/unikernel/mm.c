/*
 * Fills the page tables that boot.S leaves empty. The direct map uses a
 * 1 GiB page when the CPU supports it, else 2 MiB pages. The thread stack
 * area uses 4 KiB pages with an unmapped guard page below each stack.
 * Together with boot.S this gives a page-table walker all three page sizes.
 */
#include "kernel.h"

#define PTE_PRESENT 0x001UL
#define PTE_WRITE 0x002UL
#define PTE_LARGE 0x080UL
#define PTE_TABLE (PTE_PRESENT | PTE_WRITE)

#define CPUID_EXT_FEATURES 0x80000001U
#define CPUID_EDX_PDPE1GB (1U << 26)

#define STACK_SLOT_PAGES (THREAD_STACK_SIZE / PAGE_SIZE + 1)

extern uint64_t pdpt_direct[512], pd_direct[512];
extern uint64_t pd_stacks[512], pdpt_stacks[512], pt_stacks[512];

/* 1 when the direct map uses a 1 GiB page, 0 when it uses 2 MiB pages. */
volatile int direct_map_uses_1g_page;

static int cpu_has_1g_pages(void)
{
	uint32_t eax, ebx, ecx, edx;

	cpuid(0x80000000U, &eax, &ebx, &ecx, &edx);
	if (eax < CPUID_EXT_FEATURES)
		return 0;
	cpuid(CPUID_EXT_FEATURES, &eax, &ebx, &ecx, &edx);
	return (edx & CPUID_EDX_PDPE1GB) != 0;
}

void paging_init(void)
{
	if (cpu_has_1g_pages()) {
		pdpt_direct[0] = 0 | PTE_TABLE | PTE_LARGE;
		direct_map_uses_1g_page = 1;
	} else {
		for (unsigned long i = 0; i < 512; i++)
			pd_direct[i] = (i << 21) | PTE_TABLE | PTE_LARGE;
		pdpt_direct[0] = image_phys(pd_direct) | PTE_TABLE;
	}

	pdpt_stacks[0] = image_phys(pd_stacks) | PTE_TABLE;
	pd_stacks[0] = image_phys(pt_stacks) | PTE_TABLE;
	write_cr3(read_cr3());

	printk("paging: direct map at %p uses %s pages, stacks at %p use 4 KiB pages\n",
	       (void *)DIRECT_MAP_BASE,
	       direct_map_uses_1g_page ? "1 GiB" : "2 MiB",
	       (void *)STACK_AREA_BASE);
}

/*
 * Map the THREAD_STACK_SIZE bytes at `backing` (page aligned, in the kernel
 * image) into stack slot `slot` of the stack area, and return the lowest
 * address of the mapped stack. The page below it stays unmapped.
 */
void *map_thread_stack(int slot, void *backing)
{
	unsigned long first = (unsigned long)slot * STACK_SLOT_PAGES + 1;
	unsigned long phys = image_phys(backing);

	for (unsigned long i = 0; i < THREAD_STACK_SIZE / PAGE_SIZE; i++)
		pt_stacks[first + i] = (phys + i * PAGE_SIZE) | PTE_TABLE;
	write_cr3(read_cr3());
	return (void *)(STACK_AREA_BASE + first * PAGE_SIZE);
}
