/*
 * The parts of Xen's public interface (xen/include/public/xen.h,
 * arch-x86/xen-x86_64.h, io/console.h, sched.h, event_channel.h) that the
 * Xen PV build of the test unikernel uses, and the hypercall helpers.
 */
#ifndef XEN_XEN_H
#define XEN_XEN_H

#include "../kernel.h"

/* Hypercall numbers. */
#define HYPERVISOR_mmu_update 1
#define HYPERVISOR_set_trap_table 0
#define HYPERVISOR_update_va_mapping 14
#define HYPERVISOR_iret 23
#define HYPERVISOR_sched_op 29
#define HYPERVISOR_event_channel_op 32

#define SCHEDOP_yield 0
#define SCHEDOP_shutdown 2
#define SHUTDOWN_poweroff 0
#define SHUTDOWN_suspend 2
#define SHUTDOWN_crash 3

#define EVTCHNOP_send 4

#define MMU_NORMAL_PT_UPDATE 0
#define UVMF_INVLPG 2
#define DOMID_SELF 0x7ff0U

/* Selectors of a 64-bit PV guest kernel (ring 3). */
#define FLAT_KERNEL_CS 0xe033

/* Xen's read-only machine-to-physical table, mapped into every PV guest. */
#define XEN_M2P_BASE 0xffff800000000000UL

#define PTE_PRESENT 0x001UL
#define PTE_RW 0x002UL
#define PTE_USER 0x004UL
#define PTE_ACCESSED 0x020UL
#define PTE_DIRTY 0x040UL
/* A 64-bit PV kernel runs in ring 3, so its mappings are user mappings. */
#define PTE_KERNEL_RO (PTE_PRESENT | PTE_USER | PTE_ACCESSED)
#define PTE_KERNEL_RW (PTE_KERNEL_RO | PTE_RW | PTE_DIRTY)
#define PTE_TABLE (PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY)

#define XEN_START_MAGIC "xen-3.0-x86_64"

struct start_info {
	char magic[32];             /*   0 */
	unsigned long nr_pages;     /*  32 */
	unsigned long shared_info;  /*  40 machine address */
	uint32_t flags;             /*  48 */
	unsigned long store_mfn;    /*  56 */
	uint32_t store_evtchn;      /*  64 */
	unsigned long console_mfn;  /*  72 */
	uint32_t console_evtchn;    /*  80 */
	unsigned long pt_base;      /*  88 virtual address of the L4 table */
	unsigned long nr_pt_frames; /*  96 */
	unsigned long mfn_list;     /* 104 virtual address of the P2M list */
	unsigned long mod_start;    /* 112 */
	unsigned long mod_len;      /* 120 */
	char cmd_line[1024];        /* 128 */
	unsigned long first_p2m_pfn;
	unsigned long nr_p2m_frames;
};

_Static_assert(offsetof(struct start_info, console_mfn) == 72, "start_info.console");
_Static_assert(offsetof(struct start_info, cmd_line) == 128, "start_info.cmd_line");

struct vcpu_info {
	uint8_t evtchn_upcall_pending;
	uint8_t evtchn_upcall_mask;
	uint8_t pad[6];
	unsigned long evtchn_pending_sel;
	unsigned long cr2;          /* arch_vcpu_info.cr2 */
	unsigned long arch_pad;
	uint8_t time[32];           /* vcpu_time_info */
};

struct shared_info {
	struct vcpu_info vcpu_info[32];
	unsigned long evtchn_pending[64];
	unsigned long evtchn_mask[64];
	uint32_t wc_version, wc_sec, wc_nsec, wc_sec_hi;
	/* arch_shared_info */
	unsigned long max_pfn;                      /* 3088 */
	unsigned long pfn_to_mfn_frame_list_list;   /* 3096 */
	unsigned long nmi_reason;                   /* 3104 */
	unsigned long p2m_cr3;                      /* 3112 */
	unsigned long p2m_vaddr;                    /* 3120 */
	unsigned long p2m_generation;               /* 3128 */
};

_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info size");
_Static_assert(offsetof(struct shared_info, max_pfn) == 3088, "arch.max_pfn");
_Static_assert(offsetof(struct shared_info, p2m_cr3) == 3112, "arch.p2m_cr3");

/* io/console.h */
struct xencons_interface {
	char in[1024];
	char out[2048];
	uint32_t in_cons, in_prod;
	uint32_t out_cons, out_prod;
};

struct mmu_update {
	uint64_t ptr; /* machine address of the entry, low bits = command */
	uint64_t val;
};

/* set_trap_table entry; a zero address ends the table. */
struct trap_info {
	uint8_t vector;
	uint8_t flags; /* bits 0-1: DPL for software interrupts */
	uint16_t cs;
	unsigned long address;
};

struct sched_shutdown {
	unsigned int reason;
};

struct evtchn_send {
	uint32_t port;
};

extern char hypercall_page[];
/* Set by the `hcall` command-line word: crash_halt then shuts down through
 * the hypercall page, as Stardust's and Mini-OS's BUG() do. */
extern int crash_through_hypercall_page;
/* SHUTDOWN_crash, or SHUTDOWN_suspend with the `suspend` word: the reason
 * crash_halt shuts down with, as Stardust's BUG() uses suspend. */
extern unsigned int crash_shutdown_reason;
extern struct start_info *xen_start_info;
extern struct shared_info *xen_shared_info;

/*
 * Calls entry `nr` of the hypercall page. Xen's stub in each 32-byte entry
 * saves rcx and r11 around `syscall`, so only rax and the arguments change.
 */
static inline long xen_hypercall(unsigned int nr, unsigned long a1,
				 unsigned long a2, unsigned long a3,
				 unsigned long a4)
{
	register unsigned long r10 __asm__("r10") = a4;
	void *entry = hypercall_page + nr * 32;
	long result;

	__asm__ volatile("call *%[entry]"
			 : "=&a"(result), "+D"(a1), "+S"(a2), "+d"(a3),
			   "+r"(r10)
			 : [entry] "r"(entry)
			 : "memory");
	return result;
}

/*
 * Issues SCHEDOP_shutdown with `syscall` here instead of through the
 * hypercall page. The stopped vCPU's rip then stays in the caller, which
 * has CFI, and not in the hypercall page, which has none. From guest
 * kernel mode, `syscall` enters Xen as a hypercall.
 */
static inline __attribute__((always_inline)) void
xen_shutdown_in_place(unsigned int reason)
{
	struct sched_shutdown shutdown = { .reason = reason };
	long result;

	__asm__ volatile("syscall"
			 : "=a"(result)
			 : "a"(HYPERVISOR_sched_op), "D"(SCHEDOP_shutdown),
			   "S"(&shutdown)
			 : "rcx", "r11", "memory");
	(void)result;
}

static inline long xen_update_va_mapping(const void *va, uint64_t pte,
					 unsigned long flags)
{
	return xen_hypercall(HYPERVISOR_update_va_mapping, (unsigned long)va,
			     pte, flags, 0);
}

static inline long xen_mmu_update(struct mmu_update *requests,
				  unsigned int count)
{
	return xen_hypercall(HYPERVISOR_mmu_update, (unsigned long)requests,
			     count, 0, DOMID_SELF);
}

static inline long xen_sched_yield(void)
{
	return xen_hypercall(HYPERVISOR_sched_op, SCHEDOP_yield, 0, 0, 0);
}

static inline long xen_evtchn_send(uint32_t port)
{
	struct evtchn_send send = { .port = port };

	return xen_hypercall(HYPERVISOR_event_channel_op, EVTCHNOP_send,
			     (unsigned long)&send, 0, 0);
}

/* Pseudo-physical frame of an address in the image mapping. */
static inline unsigned long virt_to_pfn(const void *va)
{
	return ((unsigned long)va - KERNEL_VMA) / PAGE_SIZE;
}

static inline unsigned long pfn_to_mfn(unsigned long pfn)
{
	return ((const unsigned long *)xen_start_info->mfn_list)[pfn];
}

static inline unsigned long virt_to_mfn(const void *va)
{
	return pfn_to_mfn(virt_to_pfn(va));
}

static inline unsigned long mfn_to_pfn(unsigned long mfn)
{
	return ((const unsigned long *)XEN_M2P_BASE)[mfn];
}

/* arch.c */
void xen_early_init(struct start_info *start_info);
const char *xen_cmdline(void);
void xen_publish_p2m(void);
void xen_console_putc(char c);
void xen_console_flush(void);
void xen_poweroff(void) __attribute__((noreturn));

/* trap.c */
void trap_init(void);

#endif
