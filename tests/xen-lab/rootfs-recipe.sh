#!/bin/sh
# Builds the Xen lab's dom0 root file system into the directory $1 and
# writes $1.ext4, vmlinuz and initrd.img next to it. run.sh keys its cache
# on a hash of this file: any change here rebuilds the root file system.
# Needs root, debootstrap and e2fsprogs (mkfs.ext4 -d).
set -eu

ROOT=$1
CACHE=$(dirname "$ROOT")
MIRROR=${STARDUMP_XEN_LAB_MIRROR:-http://deb.debian.org/debian}
PACKAGES=xen-utils-4.17,linux-image-amd64,kmod,e2fsprogs,util-linux,procps

rm -rf "$ROOT"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR"

# The lab boots with init= pointing at its own script; nothing else runs.
rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/var/lib/apt/lists/"*
cp "$ROOT"/boot/vmlinuz-* "$CACHE/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$CACHE/initrd.img"
# Room for the guests' logs; the results go to the second disk.
mkfs.ext4 -q -F -L dom0 -d "$ROOT" "$ROOT.ext4" 2G
rm -rf "$ROOT"
