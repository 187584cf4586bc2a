/*
 * The local APIC ids of the vCPUs, from the ACPI MADT. A PVH domain on Xen
 * has no QEMU fw_cfg to count its CPUs, and Xen numbers a vCPU's APIC twice
 * its index, so the APIC ids must come from the firmware tables. The PVH
 * start info gives the RSDP's physical address. The tables must lie in the
 * direct map (physical 0..1 GiB), as QEMU places them, or in the 2 MiB at
 * 0xfc000000 that boot.S maps one to one, where Xen places a PVH domain's.
 */
#include "kernel.h"

#define DIRECT_MAPPED_BYTES (1UL << 30)
#define XEN_ACPI_WINDOW 0xfc000000UL
#define XEN_ACPI_WINDOW_BYTES (2UL << 20)
#define MADT_ENTRIES_OFFSET 44
#define MADT_LOCAL_APIC 0
#define MADT_APIC_ENABLED 0x1
/* Bound on the entries of an RSDT or XSDT read. */
#define MAX_ROOT_ENTRIES 64

/* Physical address of the RSDP, from the PVH start info; 0 when absent. */
unsigned long acpi_rsdp_phys;

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	uint32_t creator_id;
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

/* Returns the virtual address of `len` bytes at `phys`, or NULL. */
static const void *acpi_map(uint64_t phys, uint64_t len)
{
	if (phys == 0)
		return NULL;
	if (phys < DIRECT_MAPPED_BYTES && len <= DIRECT_MAPPED_BYTES - phys)
		return phys_to_direct_map(phys);
	if (phys >= XEN_ACPI_WINDOW &&
	    phys - XEN_ACPI_WINDOW < XEN_ACPI_WINDOW_BYTES &&
	    len <= XEN_ACPI_WINDOW_BYTES - (phys - XEN_ACPI_WINDOW))
		return (const void *)phys;
	return NULL;
}

static const struct acpi_header *acpi_table(uint64_t phys)
{
	const struct acpi_header *header = acpi_map(phys, sizeof(*header));

	if (!header || !acpi_map(phys, header->length))
		return NULL;
	return header;
}

/* Returns the MADT through the XSDT (or the RSDT of ACPI 1.0), or NULL. */
static const struct acpi_header *find_madt(void)
{
	const struct acpi_rsdp *rsdp = acpi_map(acpi_rsdp_phys, sizeof(*rsdp));
	const struct acpi_header *root;
	unsigned int entry_size;

	if (!rsdp || memcmp(rsdp->signature, "RSD PTR ", 8) != 0)
		return NULL;
	if (rsdp->revision >= 2 && rsdp->xsdt_address) {
		root = acpi_table(rsdp->xsdt_address);
		entry_size = 8;
	} else {
		root = acpi_table(rsdp->rsdt_address);
		entry_size = 4;
	}
	if (!root || root->length < sizeof(*root))
		return NULL;

	unsigned int count = (root->length - sizeof(*root)) / entry_size;
	const uint8_t *entries = (const uint8_t *)(root + 1);

	if (count > MAX_ROOT_ENTRIES)
		count = MAX_ROOT_ENTRIES;
	for (unsigned int i = 0; i < count; i++) {
		uint64_t phys = 0;

		memcpy(&phys, entries + i * entry_size, entry_size);
		const struct acpi_header *table = acpi_table(phys);
		if (table && memcmp(table->signature, "APIC", 4) == 0)
			return table;
	}
	return NULL;
}

/*
 * Stores the APIC ids of the enabled processors in `ids`, in MADT order, at
 * most `max` of them. Returns their number, or -1 when there is no RSDP or
 * no MADT.
 */
int acpi_cpu_apic_ids(unsigned int *ids, int max)
{
	const struct acpi_header *madt = find_madt();
	const uint8_t *entry, *end;
	int count = 0;

	if (!madt) {
		if (acpi_rsdp_phys)
			printk("acpi: no MADT through the RSDP at 0x%lx\n", acpi_rsdp_phys);
		return -1;
	}
	entry = (const uint8_t *)madt + MADT_ENTRIES_OFFSET;
	end = (const uint8_t *)madt + madt->length;
	while (entry + 2 <= end && entry[1] >= 2 && entry + entry[1] <= end) {
		if (entry[0] == MADT_LOCAL_APIC && entry[1] >= 8) {
			uint32_t flags;

			memcpy(&flags, entry + 4, sizeof(flags));
			if ((flags & MADT_APIC_ENABLED) && count < max)
				ids[count++] = entry[3];
		}
		entry += entry[1];
	}
	return count;
}
