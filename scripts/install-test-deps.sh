#!/usr/bin/env bash
# Installs the Debian packages the tests run: QEMU (the guests), gdb (the
# oracle the backtraces are compared with) and gdbserver (a live process
# target), the C and C++ toolchain that builds the test unikernel and the
# fixtures, libc6-dbg (glibc's DWARF, which the tests of variables in
# glibc's frames compare with gdb's), and libxen-dev, which the Xen build
# of stardump-capture links against. The Xen lab installs its own packages (tests/xen-lab/run.sh).
# Packages already present are left alone.
set -euo pipefail

packages=(qemu-system-x86 gdb gdbserver gcc g++ make binutils coreutils python3 libc6-dbg libxen-dev)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
