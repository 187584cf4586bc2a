/*
 * Interrupt descriptor table and the C side of exception handling. The
 * handler prints the exception and stops the vCPU in crash_halt(), so a
 * capture unwinds crash_halt -> trap_handler -> trap stub -> faulting
 * function -> ... -> thread_start.
 */
#include "kernel.h"

struct idt_entry {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attributes;
	uint16_t offset_middle;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#define GDT_CODE64 0x08
#define IDT_INTERRUPT_GATE 0x8e /* present, DPL 0, 64-bit interrupt gate */

void trap_divide_error(void), trap_debug(void), trap_nmi(void);
void trap_breakpoint(void), trap_overflow(void), trap_bound_range(void);
void trap_invalid_opcode(void), trap_device_not_available(void);
void trap_double_fault(void), trap_invalid_tss(void);
void trap_segment_not_present(void), trap_stack_fault(void);
void trap_general_protection(void), trap_page_fault(void);
void trap_x87_fpu(void), trap_alignment_check(void);
void trap_machine_check(void), trap_simd_fpu(void), trap_generic(void);

static struct idt_entry idt[256] __attribute__((aligned(16)));

/* Number of exceptions taken, for a debugger to read. */
volatile unsigned long trap_count;

static const char *const exception_names[32] = {
	[0] = "#DE", [1] = "#DB", [2] = "NMI", [3] = "#BP", [4] = "#OF",
	[5] = "#BR", [6] = "#UD", [7] = "#NM", [8] = "#DF", [10] = "#TS",
	[11] = "#NP", [12] = "#SS", [13] = "#GP", [14] = "#PF", [16] = "#MF",
	[17] = "#AC", [18] = "#MC", [19] = "#XM",
};

static void idt_set(int vector, void (*handler)(void))
{
	unsigned long address = (unsigned long)handler;

	idt[vector] = (struct idt_entry){
		.offset_low = (uint16_t)address,
		.selector = GDT_CODE64,
		.ist = 0,
		.type_attributes = IDT_INTERRUPT_GATE,
		.offset_middle = (uint16_t)(address >> 16),
		.offset_high = (uint32_t)(address >> 32),
	};
}

void idt_init(void)
{
	for (int vector = 0; vector < 256; vector++)
		idt_set(vector, trap_generic);
	idt_set(0, trap_divide_error);
	idt_set(1, trap_debug);
	idt_set(2, trap_nmi);
	idt_set(3, trap_breakpoint);
	idt_set(4, trap_overflow);
	idt_set(5, trap_bound_range);
	idt_set(6, trap_invalid_opcode);
	idt_set(7, trap_device_not_available);
	idt_set(8, trap_double_fault);
	idt_set(10, trap_invalid_tss);
	idt_set(11, trap_segment_not_present);
	idt_set(12, trap_stack_fault);
	idt_set(13, trap_general_protection);
	idt_set(14, trap_page_fault);
	idt_set(16, trap_x87_fpu);
	idt_set(17, trap_alignment_check);
	idt_set(18, trap_machine_check);
	idt_set(19, trap_simd_fpu);
}

/* Routes `vector` to an interrupt stub of another file (preempt.c's timer). */
void idt_set_interrupt(int vector, void (*handler)(void))
{
	idt_set(vector, handler);
}

void idt_load(void)
{
	struct idt_pointer pointer = {
		.limit = sizeof(idt) - 1,
		.base = (uint64_t)idt,
	};

	__asm__ volatile("lidt %0" : : "m"(pointer));
}

/*
 * Stops this vCPU for good; a capture finds its rip here. With `hcall` on
 * Xen, the domain first shuts down with reason crash through the hypercall
 * page, and the vCPU stops inside the sched_op stub.
 */
noinline void crash_halt(void)
{
	unsigned int reason = XEN_SHUTDOWN_CRASH;

	if (crash_through_hypercall_page)
		xen_hvm_hypercall2(XEN_HYPERCALL_SCHED_OP, XEN_SCHEDOP_SHUTDOWN,
				   (unsigned long)&reason);
	for (;;)
		__asm__ volatile("cli; hlt" ::: "memory");
}

noinline void trap_handler(struct trap_frame *frame)
{
	const char *name = "interrupt";

	trap_count++;
	if (frame->vector < 32 && exception_names[frame->vector])
		name = exception_names[frame->vector];

	printk("stardust-test: exception %lu (%s) at rip=0x%lx on cpu %d\n",
	       frame->vector, name, frame->rip, this_cpu()->cpu_id);
	printk("  error_code=0x%lx cr2=0x%lx rsp=0x%lx rbp=0x%lx cr3=0x%lx\n",
	       frame->error_code, read_cr2(), frame->rsp, frame->rbp,
	       read_cr3());
	printk("stardust-test: halted in crash_halt\n");
	crash_halt();
}
