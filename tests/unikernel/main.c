/*
 * Boot CPU start-up: serial, IDT, page tables, command line, three threads
 * ("logger", "waiter", "worker"), the other vCPUs, then the idle loop on
 * the boot stack. The Xen PV build (STARDUST_XEN_PV) uses the console ring,
 * a trap table and start_info's command line instead, on one vCPU.
 */
#include "kernel.h"
#ifdef STARDUST_XEN_PV
#include "xen/xen.h"
#endif

#define IMAGE_MAPPED_BYTES (64UL << 20) /* pd_kernel maps 32 x 2 MiB */
#define DIRECT_MAPPED_BYTES (1UL << 30)

extern char boot_stack[], boot_stack_top[];

static char thread_stacks[3][THREAD_STACK_SIZE] __attribute__((aligned(4096)));

/* Counters the logger and waiter threads increment, for a debugger to print. */
volatile unsigned long logger_lines;
volatile unsigned long waiter_wakeups;

#ifndef STARDUST_XEN_PV
static const char *find_cmdline(unsigned long start_info_phys)
{
	const struct hvm_start_info *info;

	if (start_info_phys == 0 || start_info_phys >= IMAGE_MAPPED_BYTES) {
		printk("boot: hvm_start_info address 0x%lx is outside the mapped 64 MiB\n",
		       start_info_phys);
		return NULL;
	}
	info = (const void *)(KERNEL_VMA + start_info_phys);
	if (info->magic != HVM_START_MAGIC) {
		printk("boot: invalid hvm_start_info magic 0x%x at 0x%lx, expected 0x%x\n",
		       info->magic, start_info_phys, HVM_START_MAGIC);
		return NULL;
	}
	/* rsdp_paddr exists from version 1 of the structure on. */
	if (info->version >= 1)
		acpi_rsdp_phys = info->rsdp_paddr;
	if (info->cmdline_paddr == 0)
		return NULL;
	if (info->cmdline_paddr >= DIRECT_MAPPED_BYTES) {
		printk("boot: command line address 0x%lx is outside the direct map\n",
		       (unsigned long)info->cmdline_paddr);
		return NULL;
	}
	return phys_to_direct_map(info->cmdline_paddr);
}
#endif

static enum end_mode parse_end_mode(const char *cmdline)
{
	static const struct {
		const char *name;
		enum end_mode mode;
	} modes[] = {
		{ "spin", MODE_SPIN }, { "ud2", MODE_UD2 }, { "null", MODE_NULL },
		{ "div0", MODE_DIV0 }, { "exit", MODE_EXIT },
	};
	const char *p = cmdline;

	while (p && *p) {
		const char *word = p;
		size_t length = 0;

		while (word[length] && word[length] != ' ')
			length++;
		p = word[length] ? word + length + 1 : word + length;
		if (length < 5 || strncmp(word, "mode=", 5) != 0)
			continue;

		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
			if (strlen(modes[i].name) == length - 5 &&
			    strncmp(word + 5, modes[i].name, length - 5) == 0)
				return modes[i].mode;
		}
		printk("boot: unknown end mode in \"%s\", using spin\n", cmdline);
		return MODE_SPIN;
	}
	return MODE_SPIN;
}

noinline void wait_for_log_request(void)
{
	logger_lines++;
	thread_block_current();
}

static void logger_main(void *arg)
{
	(void)arg;
	printk("logger: started on cpu %d\n", this_cpu()->cpu_id);
	for (;;)
		wait_for_log_request();
}

noinline int wait_for_event(int event)
{
	waiter_wakeups++;
	thread_block_current();
	return event + 1;
}

static void waiter_main(void *arg)
{
	int event = (int)(unsigned long)arg;

	printk("waiter: started, waiting for event %d\n", event);
	for (;;)
		event = wait_for_event(event);
}

noinline void idle_loop(void)
{
	for (;;) {
		schedule();
		cpu_relax();
	}
}

void kernel_main(unsigned long start_info_phys)
{
	struct thread *idle, *worker;
	const char *cmdline;

#ifdef STARDUST_XEN_PV
	/* On Xen PV the argument is start_info's virtual address. */
	xen_early_init((struct start_info *)start_info_phys);
	printk("stardust-test: booting on Xen PV, start_info at 0x%lx\n",
	       start_info_phys);
#else
	serial_init();
	printk("stardust-test: booting, hvm_start_info at 0x%lx\n",
	       start_info_phys);
#endif

	idle = thread_create("idle0", NULL, NULL, boot_stack,
			     (unsigned long)(boot_stack_top - boot_stack));
	sched_init_cpu(0, idle);
#ifdef STARDUST_XEN_PV
	trap_init();
	paging_init();
	cmdline = xen_cmdline();
	if (cmdline_has_word(cmdline, "int3")) {
		__asm__ volatile("int3");
		printk("boot: back from the int3 handler\n");
	}
	if (cmdline_has_word(cmdline, "suspend")) {
		crash_shutdown_reason = SHUTDOWN_suspend;
		printk("boot: suspend: a crash shuts down with reason suspend, as Stardust's BUG() does\n");
	}
	if (cmdline_has_word(cmdline, "hcall")) {
		crash_through_hypercall_page = 1;
		printk("boot: hcall: a crash shuts down through the hypercall page\n");
	}
	if (cmdline_has_word(cmdline, "nop2m"))
		printk("boot: nop2m: P2M not published\n");
	else
		xen_publish_p2m();
#else
	idt_init();
	idt_load();
	paging_init();

	cmdline = find_cmdline(start_info_phys);
#endif
	end_mode = parse_end_mode(cmdline);
	printk("boot: command line \"%s\", end mode %s\n",
	       cmdline ? cmdline : "", end_mode_name(end_mode));

	/* Three stacks, three mappings: direct map, image mapping, 4 KiB area. */
	thread_create("logger", logger_main, NULL,
		      phys_to_direct_map(image_phys(thread_stacks[0])),
		      THREAD_STACK_SIZE);
	thread_create("waiter", waiter_main, (void *)7UL, thread_stacks[1],
		      THREAD_STACK_SIZE);
	worker = thread_create("worker", worker_main, &worker_config,
			       map_thread_stack(0, thread_stacks[2]),
			       THREAD_STACK_SIZE);

#ifndef STARDUST_XEN_PV
	/* After the threads, so thread_pool indexes do not depend on -smp. */
	smp_start_aps();
	if (cmdline_has_word(cmdline, "preempt"))
		preempt_start(worker);
	if (cmdline_has_word(cmdline, "hcall"))
		xen_hvm_hypercall_page_init();
#else
	(void)worker; /* no timer preemption in the Xen PV build */
#endif

	printk("stardust-test: %d cpus online, starting threads\n", online_cpus);
	idle_loop();
}
