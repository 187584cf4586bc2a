/*
 * Page tables of the Xen PV build. A PV guest's page tables contain machine
 * frames and are read-only to the guest once in use. So a new table is
 * filled while it is still ordinary memory, remapped read-only
 * (HYPERVISOR_update_va_mapping), and then linked into a live table with
 * HYPERVISOR_mmu_update, which validates it.
 *
 * Xen's boot tables map the image at KERNEL_VMA with 4 KiB pages. This
 * adds the direct map of every guest frame at DIRECT_MAP_BASE and the
 * thread stack area at STACK_AREA_BASE, both with 4 KiB pages (PV guests
 * get no superpages from a release Xen).
 */
#include "xen.h"

#define L4_DIRECT_MAP 273 /* DIRECT_MAP_BASE >> 39 & 511 */
#define L4_STACK_AREA 402 /* STACK_AREA_BASE >> 39 & 511 */

/* The direct map covers at most 64 MiB: 32 L1 tables. */
#define DIRECT_MAP_MAX_PAGES (64UL << 20 >> 12)
#define POOL_PAGES (DIRECT_MAP_MAX_PAGES / 512 + 2 + 3)

#define STACK_SLOT_PAGES (THREAD_STACK_SIZE / PAGE_SIZE + 1)

/* 0: no 1 GiB page on Xen PV; the direct map uses 4 KiB pages. */
volatile int direct_map_uses_1g_page;
/* Number of guest frames the direct map covers. */
volatile unsigned long direct_map_pages;

static uint64_t pt_pool[POOL_PAGES][512] __attribute__((aligned(4096)));
static unsigned int pt_pool_used;
static uint64_t *pt_stacks;

static uint64_t *pt_alloc(void)
{
	if (pt_pool_used == POOL_PAGES) {
		printk("paging: all %lu page-table pages in use\n", POOL_PAGES);
		crash_halt();
	}
	return pt_pool[pt_pool_used++];
}

/*
 * Frames that are or may become page tables: Xen's boot tables and the
 * pool. Any writable mapping of one would make Xen refuse it as a table.
 */
static int is_page_table_frame(unsigned long pfn)
{
	unsigned long boot_first = virt_to_pfn((void *)xen_start_info->pt_base);
	unsigned long pool_first = virt_to_pfn(pt_pool);

	return (pfn >= boot_first &&
		pfn < boot_first + xen_start_info->nr_pt_frames) ||
	       (pfn >= pool_first && pfn < pool_first + POOL_PAGES);
}

static uint64_t table_entry(const uint64_t *table)
{
	return (virt_to_mfn(table) << 12) | PTE_TABLE;
}

/* Make `table` read-only in the image mapping, so Xen accepts it as a table. */
static void pt_seal(uint64_t *table)
{
	long rc = xen_update_va_mapping(table,
					(virt_to_mfn(table) << 12) | PTE_KERNEL_RO,
					UVMF_INVLPG);

	if (rc != 0) {
		printk("paging: cannot make table %p read-only: %ld\n",
		       (void *)table, rc);
		crash_halt();
	}
}

/* Write entry `index` of a live table through the hypervisor. */
static void pt_set(const uint64_t *table, unsigned int index, uint64_t value)
{
	struct mmu_update request = {
		.ptr = ((virt_to_mfn(table) << 12) + index * 8) |
		       MMU_NORMAL_PT_UPDATE,
		.val = value,
	};
	long rc = xen_mmu_update(&request, 1);

	if (rc != 0) {
		printk("paging: mmu_update of entry %u of table %p to 0x%lx failed: %ld\n",
		       index, (const void *)table, (unsigned long)value, rc);
		crash_halt();
	}
}

static void direct_map_init(uint64_t *l4)
{
	unsigned long pages = xen_start_info->nr_pages;
	uint64_t *l3 = pt_alloc(), *l2 = pt_alloc();
	unsigned long l1_count;

	if (pages > DIRECT_MAP_MAX_PAGES)
		pages = DIRECT_MAP_MAX_PAGES;
	l1_count = (pages + 511) / 512;

	for (unsigned long i = 0; i < l1_count; i++) {
		uint64_t *l1 = pt_alloc();

		for (unsigned long j = 0; j < 512 && i * 512 + j < pages; j++) {
			unsigned long pfn = i * 512 + j;

			l1[j] = (pfn_to_mfn(pfn) << 12) |
				(is_page_table_frame(pfn) ? PTE_KERNEL_RO
							  : PTE_KERNEL_RW);
		}
		pt_seal(l1);
		l2[i] = table_entry(l1);
	}
	pt_seal(l2);
	l3[0] = table_entry(l2);
	pt_seal(l3);
	pt_set(l4, L4_DIRECT_MAP, table_entry(l3));
	direct_map_pages = pages;
}

static void stack_area_init(uint64_t *l4)
{
	uint64_t *l3 = pt_alloc(), *l2 = pt_alloc(), *l1 = pt_alloc();

	pt_seal(l1);
	l2[0] = table_entry(l1);
	pt_seal(l2);
	l3[0] = table_entry(l2);
	pt_seal(l3);
	pt_set(l4, L4_STACK_AREA, table_entry(l3));
	pt_stacks = l1;
}

void paging_init(void)
{
	uint64_t *l4 = (uint64_t *)xen_start_info->pt_base;

	direct_map_init(l4);
	stack_area_init(l4);

	printk("paging: direct map at %p uses 4 KiB pages (%lu frames), stacks at %p use 4 KiB pages\n",
	       (void *)DIRECT_MAP_BASE, direct_map_pages,
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

	for (unsigned long i = 0; i < THREAD_STACK_SIZE / PAGE_SIZE; i++)
		pt_set(pt_stacks, (unsigned int)(first + i),
		       (virt_to_mfn((char *)backing + i * PAGE_SIZE) << 12) |
			       PTE_KERNEL_RW);
	return (void *)(STACK_AREA_BASE + first * PAGE_SIZE);
}
