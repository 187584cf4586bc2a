/*
 * The page Xen fills with one 32-byte hypercall stub per hypercall number
 * when this build runs as a Xen PVH domain with the `hcall` word
 * (xen_hvm.c). It is NOBITS at the end of the text segment: the file has no
 * bytes for it, and under QEMU it stays zero and unused.
 */
	.section .hypercall_page, "ax", @nobits
	.p2align 12
	.globl hypercall_page
	.type hypercall_page, @function
hypercall_page:
	.skip 4096
	.size hypercall_page, . - hypercall_page
