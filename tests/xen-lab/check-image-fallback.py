#!/usr/bin/env python3
"""Check that stardump reads read-only data a dump lacks from the image.

`xl dump-core` marks guest frames it could not map with all-ones padding
entries in `.xen_p2m`. This check copies a real dump-core of the lab's
crashed O2 guest and turns the entries of the image's read-only data pages
into padding. Then `stardump bt --full` on the copy must still print the
worker's request label (a string in .rodata), and must warn that it read
those pages from the image.

Usage: check-image-fallback.py RESULTS_DIR STARDUMP_BINARY
"""

import os
import struct
import subprocess
import sys
import tempfile

PAGE = 4096
LABEL = '"stardump test request"'


def read_only_pfns(image):
    """Returns the guest frames of the image's read-only, non-executable
    PT_LOAD segments. PV images are loaded at physical address p_paddr."""
    with open(image, "rb") as elf:
        data = elf.read()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pfns = set()
    for index in range(phnum):
        p_type, p_flags, _, _, p_paddr, p_filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + index * phentsize)
        if p_type == 1 and p_flags == 4 and p_filesz > 0:  # PT_LOAD, PF_R only
            pfns.update(range(p_paddr // PAGE, (p_paddr + p_filesz + PAGE - 1) // PAGE))
    return pfns


def pad_frames(core, pfns, output):
    """Writes a copy of `core` whose .xen_p2m entries for `pfns` are padding."""
    with open(core, "rb") as dump:
        data = bytearray(dump.read())
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)

    def section(index):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + index * shentsize)

    names = section(shstrndx)[4]
    padded = 0
    for index in range(shnum):
        sh_name, _, _, _, sh_offset, sh_size, _, _, _, _ = section(index)
        end = data.index(b"\0", names + sh_name)
        if data[names + sh_name:end] != b".xen_p2m":
            continue
        for entry in range(sh_size // 16):
            pfn, _ = struct.unpack_from("<QQ", data, sh_offset + 16 * entry)
            if pfn in pfns:
                struct.pack_into("<QQ", data, sh_offset + 16 * entry, 2**64 - 1, 2**64 - 1)
                padded += 1
    with open(output, "wb") as copy:
        copy.write(data)
    return padded


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    results, stardump = sys.argv[1], sys.argv[2]
    core = os.path.join(results, "o2-ud2.core")
    image = os.path.join(results, "unikernel-xen-pv-O2-nofp.elf")
    pfns = read_only_pfns(image)
    with tempfile.TemporaryDirectory() as work:
        holes = os.path.join(work, "o2-ud2-holes.core")
        padded = pad_frames(core, pfns, holes)
        if padded == 0:
            sys.exit(f"check-image-fallback: no .xen_p2m entry of {core} maps the read-only frames {sorted(pfns)}")
        result = subprocess.run([stardump, "bt", holes, "--image", image, "--full"],
                                capture_output=True, text=True, timeout=120)
    failures = []
    if LABEL not in result.stdout:
        failures.append(f"the request label {LABEL} is missing from bt --full")
    if "read from the image" not in result.stderr:
        failures.append("no warning that pages were read from the image")
    if "thread_start" not in result.stdout:
        failures.append("the backtrace does not reach thread_start")
    for failure in failures:
        print(f"!! {failure}")
    if failures:
        print(result.stdout)
        print(result.stderr)
        sys.exit(1)
    print(f"check-image-fallback: {padded} frames left out of the dump-core were read from the image")


if __name__ == "__main__":
    main()
