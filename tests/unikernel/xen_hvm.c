/*
 * The `hcall` word when this build runs as a Xen PVH domain: find Xen
 * through its CPUID leaves, have it write its hypercall stubs into
 * hypercall_page through the MSR those leaves name, and let crash_halt()
 * shut the domain down with reason crash through the sched_op stub, as
 * Stardust's BUG() does. The vCPU then stops inside a stub that has no CFI
 * and issues vmcall (Intel) or vmmcall (AMD). Under QEMU there is no Xen,
 * and the word only prints a line.
 */
#include "kernel.h"

#define XEN_CPUID_FIRST 0x40000000U
#define XEN_CPUID_LAST 0x40010000U
#define XEN_CPUID_STEP 0x100U
/* "XenVMMXenVMM" in ebx, ecx, edx. */
#define XEN_SIGNATURE_EBX 0x566e6558U
#define XEN_SIGNATURE_ECX 0x65584d4dU
#define XEN_SIGNATURE_EDX 0x4d4d566eU

int crash_through_hypercall_page;

/* Returns the first CPUID leaf of Xen's range, or 0 when not on Xen. */
static uint32_t xen_cpuid_base(void)
{
	for (uint32_t base = XEN_CPUID_FIRST; base < XEN_CPUID_LAST;
	     base += XEN_CPUID_STEP) {
		uint32_t eax, ebx, ecx, edx;

		cpuid(base, &eax, &ebx, &ecx, &edx);
		if (ebx == XEN_SIGNATURE_EBX && ecx == XEN_SIGNATURE_ECX &&
		    edx == XEN_SIGNATURE_EDX && eax >= base + 2)
			return base;
	}
	return 0;
}

void xen_hvm_hypercall_page_init(void)
{
	uint32_t base = xen_cpuid_base();
	uint32_t pages, msr, ecx, edx;

	if (!base) {
		printk("hcall: not running on Xen, crashes halt as usual\n");
		return;
	}
	/* Leaf base + 2: number of hypercall pages in eax, their MSR in ebx. */
	cpuid(base + 2, &pages, &msr, &ecx, &edx);
	wrmsr(msr, image_phys(hypercall_page));
	crash_through_hypercall_page = 1;
	printk("hcall: Xen hypercall page at 0x%lx through MSR 0x%x; "
	       "a crash shuts down through it\n",
	       (unsigned long)hypercall_page, msr);
}
