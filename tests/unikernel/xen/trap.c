/*
 * Exception handling of the Xen PV build. A PV guest has no IDT: it hands
 * Xen a trap table (HYPERVISOR_set_trap_table) and Xen bounces each
 * exception to the stub listed for its vector. The handler prints the
 * exception and crashes the domain through SCHEDOP_shutdown, so with
 * on_crash="preserve" a capture unwinds crash_halt -> trap_handler -> trap
 * stub -> faulting function -> ... -> thread_start.
 */
#include "xen.h"

void trap_divide_error(void), trap_debug(void), trap_breakpoint(void);
void trap_overflow(void), trap_bound_range(void), trap_invalid_opcode(void);
void trap_device_not_available(void), trap_invalid_tss(void);
void trap_segment_not_present(void), trap_stack_fault(void);
void trap_general_protection(void), trap_page_fault(void);
void trap_x87_fpu(void), trap_alignment_check(void), trap_simd_fpu(void);

/* DPL 3 lets int3, into and bound raise their vector from the kernel (ring 3). */
static const struct trap_info trap_table[] = {
	{ 0, 0, FLAT_KERNEL_CS, (unsigned long)trap_divide_error },
	{ 1, 0, FLAT_KERNEL_CS, (unsigned long)trap_debug },
	{ 3, 3, FLAT_KERNEL_CS, (unsigned long)trap_breakpoint },
	{ 4, 3, FLAT_KERNEL_CS, (unsigned long)trap_overflow },
	{ 5, 3, FLAT_KERNEL_CS, (unsigned long)trap_bound_range },
	{ 6, 0, FLAT_KERNEL_CS, (unsigned long)trap_invalid_opcode },
	{ 7, 0, FLAT_KERNEL_CS, (unsigned long)trap_device_not_available },
	{ 10, 0, FLAT_KERNEL_CS, (unsigned long)trap_invalid_tss },
	{ 11, 0, FLAT_KERNEL_CS, (unsigned long)trap_segment_not_present },
	{ 12, 0, FLAT_KERNEL_CS, (unsigned long)trap_stack_fault },
	{ 13, 0, FLAT_KERNEL_CS, (unsigned long)trap_general_protection },
	{ 14, 0, FLAT_KERNEL_CS, (unsigned long)trap_page_fault },
	{ 16, 0, FLAT_KERNEL_CS, (unsigned long)trap_x87_fpu },
	{ 17, 0, FLAT_KERNEL_CS, (unsigned long)trap_alignment_check },
	{ 19, 0, FLAT_KERNEL_CS, (unsigned long)trap_simd_fpu },
	{ 0, 0, 0, 0 },
};

/* Number of exceptions taken, for a debugger to read. */
volatile unsigned long trap_count;

static const char *const exception_names[32] = {
	[0] = "#DE", [1] = "#DB", [2] = "NMI", [3] = "#BP", [4] = "#OF",
	[5] = "#BR", [6] = "#UD", [7] = "#NM", [8] = "#DF", [10] = "#TS",
	[11] = "#NP", [12] = "#SS", [13] = "#GP", [14] = "#PF", [16] = "#MF",
	[17] = "#AC", [18] = "#MC", [19] = "#XM",
};

void trap_init(void)
{
	long rc = xen_hypercall(HYPERVISOR_set_trap_table,
				(unsigned long)trap_table, 0, 0, 0);

	if (rc != 0) {
		printk("trap: HYPERVISOR_set_trap_table failed: %ld\n", rc);
		crash_halt();
	}
}

int crash_through_hypercall_page;
unsigned int crash_shutdown_reason = SHUTDOWN_crash;

/*
 * Stops the domain for good: SCHEDOP_shutdown with reason crash, so
 * on_crash="preserve" keeps it for a capture. With the `suspend` word the
 * reason is suspend, as in Stardust's BUG(): on_crash does not apply, and
 * xl leaves the domain shut down with its memory. The vCPU's rip is here, or
 * with `hcall` inside the hypercall page's sched_op stub, which has no CFI:
 * that is where a real unikernel's vCPU stops.
 */
noinline void crash_halt(void)
{
	struct sched_shutdown shutdown = { .reason = crash_shutdown_reason };

	for (;;) {
		if (crash_through_hypercall_page)
			xen_hypercall(HYPERVISOR_sched_op, SCHEDOP_shutdown,
				      (unsigned long)&shutdown, 0, 0);
		else
			xen_shutdown_in_place(crash_shutdown_reason);
	}
}

noinline void trap_handler(struct trap_frame *frame)
{
	const char *name = "interrupt";

	trap_count++;
	if (frame->vector < 32 && exception_names[frame->vector])
		name = exception_names[frame->vector];

	/* Xen copies a #PF's address to vcpu_info.cr2; reading %cr2 would trap to Xen. */
	/* int3 (the `int3` command-line word) checks the return through HYPERVISOR_iret. */
	if (frame->vector == 3) {
		printk("trap: breakpoint at rip=0x%lx, returning through HYPERVISOR_iret\n",
		       frame->rip);
		return;
	}

	printk("stardust-test: exception %lu (%s) at rip=0x%lx on cpu %d\n",
	       frame->vector, name, frame->rip, this_cpu()->cpu_id);
	printk("  error_code=0x%lx cr2=0x%lx rsp=0x%lx rbp=0x%lx cr3=0x%lx\n",
	       frame->error_code, xen_shared_info->vcpu_info[0].cr2, frame->rsp,
	       frame->rbp, read_cr3());
	printk("stardust-test: halted in crash_halt\n");
	crash_halt();
}
