/*
 * Start of day on Xen PV: start_info, the shared_info page, the PV console
 * ring, the command line, the P2M published for `xl dump-core`, and the
 * way out (SCHEDOP_shutdown).
 */
#include "xen.h"

struct start_info *xen_start_info;
struct shared_info *xen_shared_info;

/* One vCPU on Xen PV; smp.c, which counts QEMU's vCPUs, is not built. */
volatile int online_cpus = 1;

/* Page whose virtual address is remapped onto Xen's shared_info frame. */
static uint8_t shared_info_page[PAGE_SIZE] __attribute__((aligned(4096)));

/*
 * The P2M as a frame-list tree (shared_info arch.pfn_to_mfn_frame_list_list):
 * one page of frame-list MFNs, pointing at one page of P2M page MFNs,
 * pointing at the P2M list Xen built (start_info.mfn_list).
 */
static unsigned long p2m_frame_list_list[512] __attribute__((aligned(4096)));
static unsigned long p2m_frame_list[512] __attribute__((aligned(4096)));

static struct xencons_interface *console_ring;
static uint32_t console_evtchn;

/* Set by xen_publish_p2m(), for a debugger to read. */
volatile int p2m_published;

void xen_console_putc(char c)
{
	struct xencons_interface *ring = console_ring;
	uint32_t prod;

	if (!ring)
		return;
	prod = ring->out_prod;
	/* Full: let xenconsoled drain it. */
	while (prod - __atomic_load_n(&ring->out_cons, __ATOMIC_ACQUIRE) >=
	       sizeof(ring->out)) {
		xen_evtchn_send(console_evtchn);
		xen_sched_yield();
	}
	ring->out[prod & (sizeof(ring->out) - 1)] = c;
	__atomic_store_n(&ring->out_prod, prod + 1, __ATOMIC_RELEASE);
}

void xen_console_flush(void)
{
	if (console_ring)
		xen_evtchn_send(console_evtchn);
}

noinline void xen_poweroff(void)
{
	for (;;)
		xen_shutdown_in_place(SHUTDOWN_poweroff);
}

static void early_crash(void)
{
	for (;;)
		xen_shutdown_in_place(SHUTDOWN_crash);
}

void xen_early_init(struct start_info *start_info)
{
	unsigned long console_pfn;
	long rc;

	/* Nothing can be printed before the console ring is found. */
	if (strncmp(start_info->magic, XEN_START_MAGIC,
		    sizeof(XEN_START_MAGIC) - 1) != 0)
		early_crash();
	xen_start_info = start_info;

	console_pfn = mfn_to_pfn(start_info->console_mfn);
	if (console_pfn >= start_info->nr_pages)
		early_crash();
	console_ring = (void *)(KERNEL_VMA + console_pfn * PAGE_SIZE);
	console_evtchn = start_info->console_evtchn;

	rc = xen_update_va_mapping(shared_info_page,
				   start_info->shared_info | PTE_KERNEL_RW,
				   UVMF_INVLPG);
	if (rc != 0) {
		printk("boot: mapping shared_info at machine address 0x%lx failed: %ld\n",
		       start_info->shared_info, rc);
		crash_halt();
	}
	xen_shared_info = (struct shared_info *)shared_info_page;
}

const char *xen_cmdline(void)
{
	/* Xen NUL-terminates it; do not depend on that. */
	xen_start_info->cmd_line[sizeof(xen_start_info->cmd_line) - 1] = '\0';
	return xen_start_info->cmd_line;
}

/*
 * Publish the P2M the way Linux PV guests without a virtually mapped P2M
 * do, so the toolstack (xl dump-core, xl save) can translate the guest's
 * frames: the frame-list tree first, max_pfn last.
 */
void xen_publish_p2m(void)
{
	unsigned long nr_pages = xen_start_info->nr_pages;
	const unsigned long *p2m = (const unsigned long *)xen_start_info->mfn_list;
	unsigned long p2m_pages = (nr_pages + 511) / 512;

	if (p2m_pages > 512) {
		printk("boot: %lu pages need more than one P2M frame list page, not published\n",
		       nr_pages);
		return;
	}
	for (unsigned long i = 0; i < p2m_pages; i++)
		p2m_frame_list[i] = virt_to_mfn(p2m + i * 512);
	p2m_frame_list_list[0] = virt_to_mfn(p2m_frame_list);

	xen_shared_info->p2m_cr3 = 0;
	xen_shared_info->pfn_to_mfn_frame_list_list =
		virt_to_mfn(p2m_frame_list_list);
	__atomic_store_n(&xen_shared_info->max_pfn, nr_pages, __ATOMIC_RELEASE);
	p2m_published = 1;
	printk("boot: P2M published: max_pfn %lu, frame list list at mfn 0x%lx\n",
	       nr_pages, xen_shared_info->pfn_to_mfn_frame_list_list);
}
