/*
 * Start the other vCPUs with INIT-SIPI-SIPI through the local APIC. Each AP
 * gets its own struct cpu (GS base), stack and idle thread, and loops in
 * ap_idle() -> cpu_relax_loop() so a capture shows a second backtrace.
 */
#include "kernel.h"

#define LAPIC_BASE 0xfee00000UL /* identity-mapped, uncached, by boot.S */
#define LAPIC_ID 0x020
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_DELIVERY_PENDING (1U << 12)
#define ICR_INIT 0x00004500U /* INIT, level assert */
#define ICR_STARTUP 0x00004600U

/* QEMU fw_cfg I/O interface (docs/specs/fw_cfg.txt in the QEMU sources). */
#define FW_CFG_PORT_SELECTOR 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_NB_CPUS 0x0005

/* Bound on the wait for an AP, in cpu_relax() iterations (an estimate of a second under TCG). */
#define AP_WAIT_ITERATIONS 50000000UL

extern char ap_trampoline_start[], ap_trampoline_end[];
extern uint64_t ap_cr3, ap_stack_top, ap_entry;
void ap_start64(void);

volatile int online_cpus = 1;
/* Incremented forever by each AP in cpu_relax_loop(). */
volatile unsigned long ap_idle_iterations[MAX_CPUS];

static char ap_stacks[MAX_CPUS][THREAD_STACK_SIZE] __attribute__((aligned(4096)));
static struct thread *ap_threads[MAX_CPUS];

_Static_assert(MAX_CPUS == 2, "name the idle thread of every AP below");
static const char *const ap_idle_names[MAX_CPUS] = { [1] = "idle1" };

static uint32_t lapic_read(unsigned int reg)
{
	return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static void lapic_write(unsigned int reg, uint32_t value)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = value;
}

static void lapic_send_ipi(unsigned int apic_id, uint32_t command)
{
	lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
	lapic_write(LAPIC_ICR_LOW, command);
	while (lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING)
		cpu_relax();
}

static void delay(unsigned long iterations)
{
	while (iterations--)
		cpu_relax();
}

/* Number of vCPUs QEMU was started with, or 1 without fw_cfg. */
static int fw_cfg_cpu_count(void)
{
	char signature[4];
	int count;

	outw(FW_CFG_PORT_SELECTOR, FW_CFG_SIGNATURE);
	for (int i = 0; i < 4; i++)
		signature[i] = (char)inb(FW_CFG_PORT_DATA);
	if (memcmp(signature, "QEMU", 4) != 0) {
		printk("smp: no QEMU fw_cfg at port 0x%x, using one cpu\n",
		       FW_CFG_PORT_SELECTOR);
		return 1;
	}
	outw(FW_CFG_PORT_SELECTOR, FW_CFG_NB_CPUS);
	count = inb(FW_CFG_PORT_DATA);
	count |= inb(FW_CFG_PORT_DATA) << 8;
	return count;
}

noinline void cpu_relax_loop(int cpu_id)
{
	for (;;) {
		ap_idle_iterations[cpu_id]++;
		cpu_relax();
	}
}

noinline void ap_idle(struct cpu *cpu)
{
	printk("smp: cpu %d (apic id %u) online\n", cpu->cpu_id, cpu->apic_id);
	__atomic_add_fetch(&online_cpus, 1, __ATOMIC_RELEASE);
	cpu_relax_loop(cpu->cpu_id);
}

void ap_main(void)
{
	int cpu_id = online_cpus;
	struct cpu *cpu = &cpus[cpu_id];

	sched_init_cpu(cpu_id, ap_threads[cpu_id]);
	cpu->apic_id = lapic_read(LAPIC_ID) >> 24;
	idt_load();
	ap_idle(cpu);
}

/*
 * The APIC ids of the vCPUs, from the ACPI MADT, or from QEMU's fw_cfg CPU
 * count without ACPI tables. Returns how many ids were stored.
 */
static int cpu_apic_ids(unsigned int *ids, int max)
{
	int count = acpi_cpu_apic_ids(ids, max);

	if (count >= 0) {
		printk("smp: %d cpus in the ACPI MADT\n", count);
		return count;
	}
	/*
	 * NOTE: without ACPI, assumes APIC id == cpu index, true for QEMU's
	 * default -smp 2 topology; topologies with unused APIC id bits break it.
	 */
	count = fw_cfg_cpu_count();
	if (count > MAX_CPUS) {
		printk("smp: %d cpus present, starting only %d\n", count, MAX_CPUS);
		count = MAX_CPUS;
	}
	for (int i = 0; i < count; i++)
		ids[i] = (unsigned int)i;
	return count;
}

/* Start the APs one at a time and return the number of vCPUs online. */
int smp_start_aps(void)
{
	unsigned int apic_ids[MAX_CPUS + 1];
	int count = cpu_apic_ids(apic_ids, MAX_CPUS + 1);

	cpus[0].apic_id = lapic_read(LAPIC_ID) >> 24;
	for (int index = 0; index < count; index++) {
		int cpu_id = online_cpus;
		unsigned int apic_id = apic_ids[index];
		unsigned long top;
		struct thread *idle;

		if (apic_id == cpus[0].apic_id)
			continue;
		if (cpu_id >= MAX_CPUS) {
			printk("smp: apic id %u not started: only %d cpus supported\n",
			       apic_id, MAX_CPUS);
			continue;
		}
		top = (unsigned long)ap_stacks[cpu_id] + THREAD_STACK_SIZE;
		idle = thread_create(ap_idle_names[cpu_id], NULL, NULL,
				     ap_stacks[cpu_id], THREAD_STACK_SIZE);
		if (!idle)
			break;
		/*
		 * The AP runs this context forever and never switches away, so
		 * no sp or ip is ever saved: its registers are the vCPU's.
		 */
		idle->flags |= THREAD_PINNED;
		idle->sp = 0;
		idle->ip = 0;
		ap_threads[cpu_id] = idle;
		cpus[cpu_id].apic_id = apic_id;

		ap_cr3 = read_cr3();
		ap_stack_top = top;
		ap_entry = (uint64_t)ap_start64;
		memcpy((void *)AP_TRAMPOLINE_PHYS, ap_trampoline_start,
		       (size_t)(ap_trampoline_end - ap_trampoline_start));

		lapic_send_ipi(apic_id, ICR_INIT);
		delay(100000);
		for (int attempt = 0; attempt < 2 && online_cpus == cpu_id; attempt++) {
			lapic_send_ipi(apic_id, ICR_STARTUP | (AP_TRAMPOLINE_PHYS >> 12));
			delay(10000);
		}
		for (unsigned long i = 0; i < AP_WAIT_ITERATIONS && online_cpus == cpu_id; i++)
			cpu_relax();
		if (online_cpus == cpu_id) {
			printk("smp: cpu %d (apic id %u) did not start\n", cpu_id, apic_id);
			break;
		}
	}
	return online_cpus;
}
