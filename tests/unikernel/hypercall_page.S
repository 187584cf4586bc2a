/*
 * The page Xen fills with one 32-byte hypercall stub per hypercall number:
 * when it builds a Xen PV domain (the XEN_ELFNOTE_HYPERCALL_PAGE note in
 * xen/boot.S), or when the QEMU build runs as a PVH domain with the `hcall`
 * word and asks for it (xen_hvm.c). It is NOBITS: the file has no bytes
 * for it, so tools that compare the image's code with a guest's memory
 * skip it. Under QEMU it stays zero and unused.
 */
	.section .hypercall_page, "ax", @nobits
	.p2align 12
	.globl hypercall_page
	.type hypercall_page, @function
hypercall_page:
	.skip 4096
	.size hypercall_page, . - hypercall_page
