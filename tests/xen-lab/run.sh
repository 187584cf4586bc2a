#!/bin/bash
# The Xen lab: boots Debian's Xen 4.17 and a Debian dom0 under QEMU (TCG),
# runs the Xen PV test unikernel in each end mode and the QEMU build as
# PVH guests. It captures each guest with stardump-capture (when given) and
# each PV guest with `xl dump-core`, and copies the results out. See
# README.md.
#
# Usage: run.sh [--out DIR] [--capture-bin PATH] [--timeout SECONDS]
set -euo pipefail

# The whole script is one block, so bash parses it before running it and an
# edit of this file during a run cannot change the running lab.
{

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$PWD/xen-lab-results
CAPTURE_BIN=
QEMU_TIMEOUT=900

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
	exit "$1"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--capture-bin) CAPTURE_BIN=$2; shift 2 ;;
	--timeout) QEMU_TIMEOUT=$2; shift 2 ;;
	-h|--help) usage 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; usage 2 >&2 ;;
	esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -n "$CAPTURE_BIN" ] && [ ! -x "$CAPTURE_BIN" ]; then
	echo "run.sh: capture binary $CAPTURE_BIN is not an executable file" >&2
	exit 2
fi

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
LAB_START=$(now)

# Host packages, installed only when missing.
need=()
for package in qemu-system-x86 debootstrap xen-hypervisor-4.17-amd64 e2fsprogs gcc make binutils gdb python3; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
		need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "lab: installing ${need[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
XEN_GZ=$(ls /boot/xen-4.17-amd64.gz 2>/dev/null || ls /boot/xen-4.17*.gz | head -n 1)

# The dom0 root file system, cached and keyed on the recipe's hash.
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/stardump/xen-lab
RECIPE_HASH=$(sha256sum "$HERE/rootfs-recipe.sh" | cut -c1-16)
CACHE=$CACHE_ROOT/$RECIPE_HASH
mkdir -p "$CACHE"
# Concurrent runs wait here instead of building the same cache twice.
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$CACHE/rootfs.ext4" ] || [ ! -f "$CACHE/vmlinuz" ] || [ ! -f "$CACHE/initrd.img" ]; then
	echo "lab: building the dom0 root file system in $CACHE (recipe $RECIPE_HASH)"
	build_start=$(now)
	# Built in a scratch folder and moved into place, so an interrupted build
	# never leaves files that look like a finished cache.
	rm -rf "$CACHE/scratch"
	mkdir -p "$CACHE/scratch"
	timeout 900 "$HERE/rootfs-recipe.sh" "$CACHE/scratch/rootfs" >"$CACHE/build.log" 2>&1 || {
		echo "lab: the root file system build failed; the end of $CACHE/build.log:" >&2
		tail -n 30 "$CACHE/build.log" >&2
		exit 1
	}
	mv "$CACHE/scratch/vmlinuz" "$CACHE/scratch/initrd.img" "$CACHE/"
	mv "$CACHE/scratch/rootfs.ext4" "$CACHE/rootfs.ext4"
	rm -rf "$CACHE/scratch"
	echo "lab: root file system built in $(elapsed "$build_start") s"
else
	echo "lab: using the cached root file system in $CACHE"
fi
if [ ! -f "$CACHE/xen" ] || [ "$XEN_GZ" -nt "$CACHE/xen" ]; then
	gunzip -c "$XEN_GZ" >"$CACHE/xen.tmp"
	mv "$CACHE/xen.tmp" "$CACHE/xen"
fi
flock -u 9

# Per-run files: a copy of the root file system with the init script, and
# the results disk holding the guest images, the plan and the capture binary.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stardump-xen-lab.XXXXXX")
QEMU_PID=
cleanup() {
	if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill "$QEMU_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "lab: building the test unikernel"
make -s -C "$REPO/tests/unikernel" OUT="$WORK/unikernel" >"$WORK/make.log" 2>&1 || {
	cat "$WORK/make.log" >&2
	exit 1
}

cp --sparse=always "$CACHE/rootfs.ext4" "$WORK/rootfs.ext4"
debugfs -w -R "write $HERE/dom0-init.sh /stardump-lab-init" "$WORK/rootfs.ext4" >/dev/null 2>&1
debugfs -w -R "set_inode_field /stardump-lab-init mode 0100755" "$WORK/rootfs.ext4" >/dev/null 2>&1
if ! debugfs -R "stat /stardump-lab-init" "$WORK/rootfs.ext4" 2>/dev/null | grep -q 'Mode:  *0755'; then
	echo "lab: failed to write dom0-init.sh into $WORK/rootfs.ext4 as /stardump-lab-init" >&2
	exit 1
fi

mkdir -p "$WORK/disk/in" "$WORK/disk/out"
cp "$WORK/unikernel/unikernel-xen-pv-O2-nofp.elf" "$WORK/unikernel/unikernel-xen-pv-O0-fp.elf" \
	"$WORK/unikernel/unikernel-O2-fp.elf" "$WORK/disk/in/"
if [ -n "$CAPTURE_BIN" ]; then
	cp "$CAPTURE_BIN" "$WORK/disk/in/stardump-capture"
fi
# NAME IMAGE EXTRA: the guests dom0 runs, in order. o2-nop2m does not
# publish its P2M, so xl dump-core is expected to fail on it. o2-int3
# reaches its marker only after returning from a trap through HYPERVISOR_iret.
# o2-hcall crashes like o2-ud2 but shuts down through the hypercall page, as
# Stardust's BUG() does, so its vCPU stops in a stub without CFI. o2-paused is
# paused with `xl pause` before the capture and must stay paused after it.
# pvh-ud2 and pvh-spin are the QEMU build of the unikernel as a PVH domain.
# dom0-init.sh captures them with stardump-capture only, because xl
# dump-core of a PVH guest takes about 10 minutes under TCG. pvh-ud2 halts
# with cli; hlt in crash_halt, so Xen takes its only vCPU offline and powers
# the domain off, and on_poweroff = "preserve" keeps its memory.
# o2-suspend crashes like o2-ud2 but shuts down with reason suspend, as
# Stardust's BUG() does: on_crash does not apply and xl keeps the domain
# shut down with its memory.
# pvh-hcall crashes like pvh-ud2 but shuts down through the hypercall page
# that Xen filled for the PVH domain, so its vCPU stops in a stub that
# issues vmmcall (SVM) and has no CFI.
# pvh-preempt adds the cruncher thread, which the local APIC timer preempts
# through an interrupt stub without CFI. o2-sigterm gets SIGTERM while the
# capture keeps the domain paused: the capture must fail, write nothing and
# resume the domain.
cat >"$WORK/disk/in/plan" <<'PLAN'
o2-spin unikernel-xen-pv-O2-nofp.elf mode=spin
o2-ud2 unikernel-xen-pv-O2-nofp.elf mode=ud2
o2-null unikernel-xen-pv-O2-nofp.elf mode=null
o2-div0 unikernel-xen-pv-O2-nofp.elf mode=div0
o2-nop2m unikernel-xen-pv-O2-nofp.elf mode=spin nop2m
o2-int3 unikernel-xen-pv-O2-nofp.elf mode=spin int3
o2-hcall unikernel-xen-pv-O2-nofp.elf mode=ud2 hcall
o2-paused unikernel-xen-pv-O2-nofp.elf mode=spin xlpause
o2-suspend unikernel-xen-pv-O2-nofp.elf mode=ud2 suspend
o0-spin unikernel-xen-pv-O0-fp.elf mode=spin
o0-ud2 unikernel-xen-pv-O0-fp.elf mode=ud2
o0-null unikernel-xen-pv-O0-fp.elf mode=null
o0-div0 unikernel-xen-pv-O0-fp.elf mode=div0
o2-exit unikernel-xen-pv-O2-nofp.elf mode=exit
pvh-ud2 unikernel-O2-fp.elf mode=ud2
pvh-spin unikernel-O2-fp.elf mode=spin
pvh-preempt unikernel-O2-fp.elf mode=ud2 preempt
pvh-hcall unikernel-O2-fp.elf mode=ud2 hcall
o2-sigterm unikernel-xen-pv-O2-nofp.elf mode=spin sigterm
PLAN
mkfs.ext4 -q -F -L results -d "$WORK/disk" "$WORK/results.ext4" 1G >/dev/null

echo "lab: booting Xen and dom0 under QEMU (TCG), at most $QEMU_TIMEOUT s"
qemu_start=$(now)
timeout --kill-after=10 "$QEMU_TIMEOUT" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu qemu64,+svm,+npt -m 2048 -smp 2 -nic none \
	-display none -monitor none -serial "file:$WORK/serial.log" -no-reboot \
	-kernel "$CACHE/xen" \
	-append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2" \
	-initrd "$CACHE/vmlinuz console=hvc0 earlyprintk=xen root=/dev/vda rw init=/stardump-lab-init,$CACHE/initrd.img" \
	-drive "file=$WORK/rootfs.ext4,format=raw,if=virtio" \
	-drive "file=$WORK/results.ext4,format=raw,if=virtio" &
QEMU_PID=$!
qemu_status=0
wait "$QEMU_PID" || qemu_status=$?
QEMU_PID=
echo "lab: QEMU exited with status $qemu_status after $(elapsed "$qemu_start") s"
cp "$WORK/serial.log" "$OUT/serial.log"

debugfs -R "rdump /out $WORK" "$WORK/results.ext4" >/dev/null 2>&1 || true
if [ ! -f "$WORK/out/timings.tsv" ]; then
	echo "lab: no results came back; the end of the serial log:" >&2
	tail -n 40 "$OUT/serial.log" >&2
	exit 1
fi
cp -r "$WORK/out/." "$OUT/"
cp "$WORK/unikernel/"unikernel-xen-pv-*.elf "$WORK/unikernel/unikernel-O2-fp.elf" "$OUT/"

echo
echo "== summary (results in $OUT)"
"$HERE/summary.sh" "$OUT"

check_status=0
"$HERE/check-gdb.sh" "$OUT" >"$OUT/check-gdb.txt" 2>&1 || check_status=$?
echo
if [ "$check_status" -eq 0 ]; then
	echo "lab: gdb unwinds every vCPU and sleeping thread of every core (details in $OUT/check-gdb.txt)"
else
	echo "lab: the gdb check of the cores failed:"
	grep '^!!' "$OUT/check-gdb.txt" || tail -n 5 "$OUT/check-gdb.txt"
fi
echo "lab: whole run $(elapsed "$LAB_START") s"
[ "$qemu_status" -eq 0 ] && [ "$check_status" -eq 0 ]
exit
}
