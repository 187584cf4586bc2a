#!/usr/bin/env python3
"""Convert an `xl dump-core` file of a 64-bit PV guest into an ELF core gdb reads.

The Xen core (xen docs/misc/dump-core-format.txt) stores guest frames with
a pfn -> gmfn table and each vCPU's vcpu_guest_context, while gdb needs
virtual-address PT_LOAD segments and NT_PRSTATUS notes. This walks every
vCPU's page tables (cr3 and the entries hold machine frames, translated
through the core's .xen_p2m) and writes one PT_LOAD per run of
consecutive virtual pages, and one NT_PRSTATUS per vCPU.

With --threads IMAGE it also adds one NT_PRSTATUS per sleeping thread of
the stardump test unikernel (rip = struct thread.ip, rsp = .sp), found
through the `thread_list` symbol of IMAGE, so `thread apply all bt` in gdb
unwinds the sleeping threads too.

It is a test oracle for the Xen lab, not part of stardump.
"""

import argparse
import struct
import subprocess
import sys

PAGE = 4096
PTE_PRESENT = 0x1
PTE_LARGE = 0x80
ADDRESS_MASK = 0x000FFFFFFFFFF000
# PML4 slots 256-271 belong to Xen (M2P table and its own mappings).
XEN_L4_SLOTS = range(256, 272)

# vcpu_guest_context (xen/include/public/arch-x86/xen-x86_64.h), 5168 bytes.
CONTEXT_SIZE = 5168
USER_REGS = 520
CTRLREG = 4984
FS_BASE = 5144  # then gs_base_kernel at 5152

# struct thread of the test unikernel (tests/unikernel/kernel.h).
THREAD_NAME, THREAD_SP, THREAD_IP, THREAD_FLAGS, THREAD_NEXT = 0, 8, 16, 36, 40
THREAD_RUNNING = 0x2
MAX_THREADS = 64


class CoreError(Exception):
    pass


class XenCore:
    """Sections, frames and vCPU contexts of an xl dump-core file."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if len(d) < 64 or d[:4] != b"\x7fELF" or d[4] != 2:
            raise CoreError(f"{path}: not an ELF64 file")
        shoff, = struct.unpack_from("<Q", d, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        if shnum == 0:
            raise CoreError(f"{path}: no section headers, so not an xl dump-core file")
        if shoff + shnum * shentsize > len(d) or shstrndx >= shnum:
            raise CoreError(f"{path}: section headers at 0x{shoff:x} run past the file")
        headers = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize)
                   for i in range(shnum)]
        strtab_offset = headers[shstrndx][4]
        self.sections = {}
        for h in headers:
            start = strtab_offset + h[0]
            name = d[start:d.index(b"\0", start)].decode()
            if h[4] + h[5] > len(d):
                raise CoreError(f"{path}: section {name} at 0x{h[4]:x} runs past the file")
            self.sections[name] = (h[4], h[5])
        for needed in (".xen_prstatus", ".xen_pages", ".xen_p2m"):
            if needed not in self.sections:
                raise CoreError(f"{path}: missing section {needed} (only PV cores are supported)")

        pages_offset, pages_size = self.sections[".xen_pages"]
        p2m_offset, p2m_size = self.sections[".xen_p2m"]
        self.pages_offset = pages_offset
        self.frame_of_mfn = {}
        for i in range(p2m_size // 16):
            pfn, gmfn = struct.unpack_from("<QQ", d, p2m_offset + 16 * i)
            if pfn == 0xFFFFFFFFFFFFFFFF:
                continue
            if (i + 1) * PAGE > pages_size:
                raise CoreError(f"{path}: .xen_p2m entry {i} has no page in .xen_pages")
            self.frame_of_mfn[gmfn] = i

        offset, size = self.sections[".xen_prstatus"]
        self.contexts = [d[offset + i * CONTEXT_SIZE: offset + (i + 1) * CONTEXT_SIZE]
                         for i in range(size // CONTEXT_SIZE)]

    def machine_page(self, mfn):
        index = self.frame_of_mfn.get(mfn)
        if index is None:
            return None
        start = self.pages_offset + index * PAGE
        return self.data[start:start + PAGE]

    def walk(self, cr3):
        """Return {virtual page address: .xen_pages index} for the tables at cr3."""
        mapping = {}

        def entries(mfn):
            page = self.machine_page(mfn)
            if page is None:
                return []
            return [(i, e) for i, e in enumerate(struct.unpack("<512Q", page))
                    if e & PTE_PRESENT]

        for i4, e4 in entries(cr3 >> 12):
            if i4 in XEN_L4_SLOTS:
                continue
            base4 = i4 << 39
            if base4 & (1 << 47):
                base4 |= 0xFFFF000000000000
            for i3, e3 in entries((e4 & ADDRESS_MASK) >> 12):
                base3 = base4 | (i3 << 30)
                if e3 & PTE_LARGE:
                    self._add_large(mapping, base3, e3, 1 << 30)
                    continue
                for i2, e2 in entries((e3 & ADDRESS_MASK) >> 12):
                    base2 = base3 | (i2 << 21)
                    if e2 & PTE_LARGE:
                        self._add_large(mapping, base2, e2, 1 << 21)
                        continue
                    for i1, e1 in entries((e2 & ADDRESS_MASK) >> 12):
                        index = self.frame_of_mfn.get((e1 & ADDRESS_MASK) >> 12)
                        if index is not None:
                            mapping[base2 | (i1 << 12)] = index
        return mapping

    def _add_large(self, mapping, base, entry, size):
        first = (entry & ADDRESS_MASK & ~(size - 1)) >> 12
        for n in range(size // PAGE):
            index = self.frame_of_mfn.get(first + n)
            if index is not None:
                mapping[base + n * PAGE] = index


def context_registers(context):
    """Return (user_regs_struct values, cr3) of one vcpu_guest_context."""
    (r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi,
     _error_and_vector, rip, cs, rflags, rsp, ss, es, ds, fs, gs) = struct.unpack_from(
        "<25Q", context, USER_REGS)
    cr3, = struct.unpack_from("<Q", context, CTRLREG + 3 * 8)
    fs_base, gs_base = struct.unpack_from("<QQ", context, FS_BASE)
    regs = [r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi,
            0xFFFFFFFFFFFFFFFF, rip, cs & 0xFFFF, rflags, rsp, ss & 0xFFFF,
            fs_base, gs_base, ds & 0xFFFF, es & 0xFFFF, fs & 0xFFFF, gs & 0xFFFF]
    return regs, cr3


def prstatus(pid, regs):
    # struct elf_prstatus on x86_64: 112 bytes before pr_reg, 27 registers, pr_fpvalid.
    head = bytearray(112)
    struct.pack_into("<I", head, 32, pid)
    return bytes(head) + struct.pack("<27Q", *regs) + struct.pack("<II", 0, 0)


def note(name, note_type, desc):
    name_bytes = name + b"\0"
    out = struct.pack("<III", len(name_bytes), len(desc), note_type)
    out += name_bytes + b"\0" * (-len(name_bytes) % 4)
    return out + desc + b"\0" * (-len(desc) % 4)


def symbol_address(image, symbol):
    output = subprocess.run(["nm", image], check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] == symbol:
            return int(fields[0], 16)
    raise CoreError(f"{image}: no symbol {symbol}")


def sleeping_threads(core, mapping, image, template):
    """Yield (name, registers) of each thread that is not on a vCPU."""

    def read(address, size):
        out = b""
        while size:
            page = address & ~(PAGE - 1)
            index = mapping.get(page)
            if index is None:
                raise CoreError(f"cannot read {size} bytes at 0x{address:x}: not mapped")
            start = core.pages_offset + index * PAGE + (address - page)
            chunk = min(size, PAGE - (address - page))
            out += core.data[start:start + chunk]
            address += chunk
            size -= chunk
        return out

    def read_u64(address):
        return struct.unpack("<Q", read(address, 8))[0]

    def read_string(address):
        out = b""
        while len(out) < 64:
            c = read(address + len(out), 1)
            if c == b"\0":
                break
            out += c
        return out.decode(errors="replace")

    thread = read_u64(symbol_address(image, "thread_list"))
    for _ in range(MAX_THREADS):
        if thread == 0:
            return
        flags, = struct.unpack("<i", read(thread + THREAD_FLAGS, 4))
        sp, ip = read_u64(thread + THREAD_SP), read_u64(thread + THREAD_IP)
        name = read_string(read_u64(thread + THREAD_NAME))
        if not flags & THREAD_RUNNING and sp and ip:
            regs = [0] * 27
            regs[15] = 0xFFFFFFFFFFFFFFFF
            regs[16], regs[19] = ip, sp
            regs[17], regs[20] = template[17], template[20]
            regs[21], regs[22] = template[21], template[22]
            yield name, regs
        thread = read_u64(thread + THREAD_NEXT)


def convert(core_path, output_path, image):
    core = XenCore(core_path)
    notes = b""
    mapping = {}
    pid = 1
    template = None
    for context in core.contexts:
        regs, cr3 = context_registers(context)
        template = template or regs
        mapping.update(core.walk(cr3))
        notes += note(b"CORE", 1, prstatus(pid, regs))
        pid += 1
    if not core.contexts:
        raise CoreError(f"{core_path}: no vCPU context in .xen_prstatus")
    if image:
        for name, regs in sleeping_threads(core, mapping, image, template):
            print(f"thread {pid}: {name} ip=0x{regs[16]:x} sp=0x{regs[19]:x}")
            notes += note(b"CORE", 1, prstatus(pid, regs))
            pid += 1

    runs = []
    for page in sorted(mapping):
        if runs and runs[-1][0] + len(runs[-1][1]) * PAGE == page:
            runs[-1][1].append(mapping[page])
        else:
            runs.append((page, [mapping[page]]))

    phnum = 1 + len(runs)
    offset = 64 + 56 * phnum
    headers = [struct.pack("<IIQQQQQQ", 4, 4, offset, 0, 0, len(notes), 0, 4)]
    data_offset = offset + len(notes)
    data_offset += -data_offset % PAGE
    body = []
    for address, indices in runs:
        size = len(indices) * PAGE
        headers.append(struct.pack("<IIQQQQQQ", 1, 7, data_offset, address, 0, size, size, PAGE))
        body.append((data_offset, indices))
        data_offset += size

    elf_header = bytearray(64)
    elf_header[:16] = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    struct.pack_into("<HHIQQQIHHHHHH", elf_header, 16, 4, 62, 1, 0, 64, 0, 0, 64, 56,
                     phnum, 64, 0, 0)
    with open(output_path, "wb") as out:
        out.write(elf_header)
        for h in headers:
            out.write(h)
        out.write(notes)
        for file_offset, indices in body:
            out.seek(file_offset)
            for index in indices:
                start = core.pages_offset + index * PAGE
                out.write(core.data[start:start + PAGE])
    print(f"{output_path}: {len(core.contexts)} vCPUs, {len(mapping)} mapped pages in {len(runs)} segments")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("core", help="xl dump-core file of a 64-bit PV guest")
    parser.add_argument("output", help="ELF core to write")
    parser.add_argument("--threads", metavar="IMAGE",
                        help="add the test unikernel's sleeping threads, found through IMAGE's symbols")
    args = parser.parse_args()
    try:
        convert(args.core, args.output, args.threads)
    except (CoreError, OSError, struct.error, subprocess.CalledProcessError) as error:
        print(f"xen-core-to-elf: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
