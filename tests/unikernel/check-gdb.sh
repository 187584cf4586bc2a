#!/bin/sh
# Boot every variant in every end mode except exit under QEMU (TCG), wait
# for the end-mode marker on the serial console, and print gdb's backtrace
# of every vCPU. In mode ud2 it also unwinds each sleeping thread from the
# sp and ip saved in its struct thread. Fails when a frame has no file:line
# or a backtrace stops early.
#
# Usage: check-gdb.sh [BUILD_DIR] [VCPUS] [CPU_MODEL]
# CPU_MODEL defaults to qemu64,+pdpe1gb, so the direct map uses a 1 GiB page.
# Pass qemu64 to check the 2 MiB fallback.
# Needs qemu-system-x86 and gdb (Debian packages of the same names).
# The gdbstub listens on a Unix socket in a private directory, so runs
# cannot collide with other QEMU instances on TCP ports.
set -u

BUILD=${1:-"$(dirname "$0")/build"}
VCPUS=${2:-1}
CPU_MODEL=${3:-qemu64,+pdpe1gb}
WORK=$(mktemp -d)
status=0

for tool in qemu-system-x86_64 gdb; do
	if ! command -v "$tool" >/dev/null; then
		echo "$tool not found: install the Debian package qemu-system-x86 or gdb" >&2
		exit 1
	fi
done

# Fail when a backtrace frame lacks " at FILE:LINE" or gdb gave up early.
check_backtrace() {
	if grep -q 'corrupt stack\|Backtrace stopped' "$1"; then
		echo "!! $2: backtrace stopped early"
		status=1
	fi
	if grep '^#' "$1" | grep -v '<signal handler called>' | grep -qv ' at [^ ]*:[0-9]'; then
		echo "!! $2: frame without file:line"
		status=1
	fi
}

for variant in O0-fp O0-nofp O2-fp O2-nofp; do
	for mode in spin ud2 null div0; do
		elf="$BUILD/unikernel-$variant.elf"
		serial="$WORK/$variant-$mode.serial"
		socket="$WORK/$variant-$mode.gdb.sock"
		case $mode in
		spin) marker="stardust-test: reached mode=spin" ;;
		*) marker="stardust-test: halted in crash_halt" ;;
		esac

		timeout 60 qemu-system-x86_64 -machine microvm -accel tcg -m 64M \
			-cpu "$CPU_MODEL" -smp "$VCPUS" -nographic -no-reboot -kernel "$elf" \
			-append "mode=$mode" \
			-chardev "socket,id=gdb0,path=$socket,server=on,wait=off" \
			-gdb chardev:gdb0 >"$serial" 2>&1 </dev/null &
		qemu_pid=$!

		waited=0
		until grep -q "$marker" "$serial" 2>/dev/null; do
			sleep 0.1
			waited=$((waited + 1))
			if [ $waited -gt 100 ]; then
				echo "!! $variant $mode: marker not seen in 10 s"
				cat "$serial"
				status=1
				break
			fi
		done

		echo "== $variant mode=$mode"
		timeout 30 gdb -batch -nx -ex 'set pagination off' \
			-ex "target remote $socket" \
			-ex 'thread apply all bt' \
			-ex 'thread apply all info registers cr3 gs_base' \
			-ex 'disconnect' "$elf" 2>&1 |
			grep -v '^\[\|^Remote debugging' >"$WORK/bt"
		cat "$WORK/bt"
		check_backtrace "$WORK/bt" "$variant $mode"

		if [ "$mode" = ud2 ]; then
			for thread in 0 1 2; do
				timeout 30 gdb -batch -nx -ex 'set pagination off' \
					-ex "target remote $socket" \
					-ex "set \$rsp = thread_pool[$thread].sp" \
					-ex "set \$pc = thread_pool[$thread].ip" \
					-ex "printf \"-- sleeping thread %s\\n\", thread_pool[$thread].name" \
					-ex 'bt' -ex 'disconnect' "$elf" 2>&1 |
					sed -n '/^-- sleeping/,$p' >"$WORK/bt"
				cat "$WORK/bt"
				check_backtrace "$WORK/bt" "$variant thread $thread"
			done
		fi

		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
	done
done

rm -rf "$WORK"
exit $status
