/*
 * Shared declarations of the stardump test unikernel: memory layout,
 * per-CPU data, threads, and the helpers every file uses.
 */
#ifndef KERNEL_H
#define KERNEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Virtual base of the kernel image mapping: virtual = KERNEL_VMA + physical. */
#define KERNEL_VMA 0xffffffff80000000UL
/* Direct map of physical 0..1 GiB (one 1 GiB page when the CPU has pdpe1gb). */
#define DIRECT_MAP_BASE 0xffff888000000000UL
/* Thread stacks mapped with 4 KiB pages, each below an unmapped guard page. */
#define STACK_AREA_BASE 0xffffc90000000000UL

#define PAGE_SIZE 4096UL
#define THREAD_STACK_SIZE (16 * 1024UL)
#define MAX_CPUS 2

/* Physical address where the AP start-up code is copied (SIPI vector 0x08). */
#define AP_TRAMPOLINE_PHYS 0x8000UL

#define noinline __attribute__((noinline))
#define barrier() __asm__ volatile("" ::: "memory")

/* struct thread.flags */
#define THREAD_RUNNABLE 0x1 /* may be picked by schedule() */
#define THREAD_RUNNING 0x2  /* currently on a vCPU */
#define THREAD_EXITED 0x4   /* entry function returned */
#define THREAD_PINNED 0x8   /* never scheduled (an AP's idle context) */

/*
 * One scheduler thread. A thread that is not running is blocked inside
 * switch_context(): `sp` points at the callee-saved registers it pushed
 * (r15, r14, r13, r12, rbx, rbp, then the return address into schedule())
 * and `ip` is the address switch_context() resumes at.
 */
struct thread {
	const char *name;
	unsigned long sp;  /* offset 8, used by switch.S */
	unsigned long ip;  /* offset 16, used by switch.S */
	void *stack;       /* lowest address of the stack */
	int id;
	int flags;
	struct thread *next; /* global list, head in thread_list */
	unsigned long stack_size;
	void (*entry)(void *arg);
	void *arg;
};

/*
 * Per-CPU data. The GS base MSR (0xC0000101) of each vCPU contains the
 * address of its own struct cpu.
 */
struct cpu {
	struct thread *current; /* offset 0: %gs:0 */
	struct cpu *self;       /* offset 8: %gs:8 */
	int cpu_id;
	unsigned int apic_id;
	struct thread *idle;
	unsigned long context_switches;
};

extern struct cpu cpus[MAX_CPUS];
extern struct thread *thread_list;
extern volatile int online_cpus;

/* hvm_start_info, as the PVH boot protocol defines it (Xen arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578U
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

/* Port I/O, MSRs and control registers. */
static inline void outb(uint16_t port, uint8_t value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t value)
{
	__asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t value)
{
	__asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t value;

	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

static inline void wrmsr(uint32_t msr, uint64_t value)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)value),
			 "d"((uint32_t)(value >> 32)));
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t low, high;

	__asm__ volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(msr));
	return ((uint64_t)high << 32) | low;
}

static inline unsigned long read_cr2(void)
{
	unsigned long value;

	__asm__ volatile("mov %%cr2, %0" : "=r"(value));
	return value;
}

static inline unsigned long read_cr3(void)
{
	unsigned long value;

	__asm__ volatile("mov %%cr3, %0" : "=r"(value));
	return value;
}

static inline void write_cr3(unsigned long value)
{
	__asm__ volatile("mov %0, %%cr3" : : "r"(value) : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t *eax, uint32_t *ebx,
			 uint32_t *ecx, uint32_t *edx)
{
	__asm__ volatile("cpuid"
			 : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx)
			 : "a"(leaf), "c"(0));
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

#define MSR_GS_BASE 0xC0000101U

static inline struct cpu *this_cpu(void)
{
	struct cpu *cpu;

	__asm__ volatile("mov %%gs:8, %0" : "=r"(cpu));
	return cpu;
}

/* Physical address of a symbol in the kernel image. */
static inline unsigned long image_phys(const void *address)
{
	return (unsigned long)address - KERNEL_VMA;
}

static inline void *phys_to_direct_map(unsigned long phys)
{
	return (void *)(DIRECT_MAP_BASE + phys);
}

/* lib.c */
void *memset(void *dest, int c, size_t n);
void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
int cmdline_has_word(const char *cmdline, const char *word);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

/* serial.c */
void serial_init(void);
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mm.c */
void paging_init(void);
void *map_thread_stack(int slot, void *backing);

/* trap.c, trap_entry.S */
void idt_init(void);
void idt_load(void);
void crash_halt(void);

/* sched.c, switch.S */
struct thread *thread_create(const char *name, void (*entry)(void *),
			     void *arg, void *stack, unsigned long stack_size);
void sched_init_cpu(int cpu_id, struct thread *idle);
void schedule(void);
void thread_block_current(void);
void switch_context(struct thread *prev, struct thread *next);
void thread_start(void);
void thread_main(struct thread *thread);

/* worker.c */
enum end_mode {
	MODE_SPIN,
	MODE_UD2,
	MODE_NULL,
	MODE_DIV0,
	MODE_EXIT,
};
extern enum end_mode end_mode;
extern struct worker_config worker_config;
const char *end_mode_name(enum end_mode mode);
void worker_main(void *arg);

/* smp.c */
int smp_start_aps(void);
void ap_main(void);

/*
 * Layout pushed by TRAP_STUB in trap_entry.S (both builds) and by
 * irq_timer in irq_entry.S, lowest address first.
 */
struct trap_frame {
	unsigned long r15, r14, r13, r12, r11, r10, r9, r8;
	unsigned long rbp, rdi, rsi, rdx, rcx, rbx, rax;
	unsigned long vector;
	unsigned long error_code;
	/* Pushed by the CPU (in the Xen PV build, by Xen as the CPU would). */
	unsigned long rip, cs, rflags, rsp, ss;
};

/* acpi.c */
extern unsigned long acpi_rsdp_phys;
int acpi_cpu_apic_ids(unsigned int *ids, int max);

/* trap.c */
void idt_set_interrupt(int vector, void (*handler)(void));

/* preempt.c */
void preempt_start(struct thread *held);

#ifndef STARDUST_XEN_PV
/* xen_hvm.c, hypercall_page.S (the Xen PV build has its own, in xen/) */
#define XEN_HYPERCALL_SCHED_OP 29
#define XEN_SCHEDOP_SHUTDOWN 2
#define XEN_SHUTDOWN_CRASH 3
extern char hypercall_page[];
extern int crash_through_hypercall_page;
void xen_hvm_hypercall_page_init(void);

/*
 * Calls entry `nr` of the hypercall page with two arguments. Xen's HVM stub
 * is `mov $nr, %eax; vmcall or vmmcall; ret`: only rax changes.
 */
static inline long xen_hvm_hypercall2(unsigned int nr, unsigned long a1,
				      unsigned long a2)
{
	void *entry = hypercall_page + nr * 32;
	long result;

	__asm__ volatile("call *%[entry]"
			 : "=a"(result), "+D"(a1), "+S"(a2)
			 : [entry] "r"(entry)
			 : "memory");
	return result;
}
#endif

#endif
