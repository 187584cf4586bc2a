#!/bin/sh
# Boot every variant in every crash or spin mode under QEMU (TCG), wait for
# the end-mode marker on the serial console, and print gdb's backtrace of
# every vCPU. Usage: check-gdb.sh [BUILD_DIR] [SMP]
# Needs qemu-system-x86 and gdb (Debian packages of the same names).
set -u

BUILD=${1:-"$(dirname "$0")/build"}
SMP=${2:-1}
PORT=${GDB_PORT:-21234}
LOG=$(mktemp -d)
status=0

for variant in O0-fp O0-nofp O2-fp O2-nofp; do
	for mode in spin ud2 null div0; do
		elf="$BUILD/unikernel-$variant.elf"
		serial="$LOG/$variant-$mode.serial"
		case $mode in
		spin) marker="stardust-test: reached mode=spin" ;;
		*) marker="stardust-test: halted in crash_halt" ;;
		esac

		timeout 60 qemu-system-x86_64 -machine microvm -accel tcg -m 64M \
			-smp "$SMP" -nographic -no-reboot -kernel "$elf" \
			-append "mode=$mode" -gdb "tcp:127.0.0.1:$PORT" \
			>"$serial" 2>&1 </dev/null &
		qemu_pid=$!

		waited=0
		until grep -q "$marker" "$serial" 2>/dev/null; do
			sleep 0.1
			waited=$((waited + 1))
			if [ $waited -gt 100 ]; then
				echo "== $variant $mode: marker not seen in 10 s"
				cat "$serial"
				status=1
				break
			fi
		done

		echo "== $variant mode=$mode"
		timeout 30 gdb -batch -nx -ex 'set pagination off' \
			-ex "target remote 127.0.0.1:$PORT" \
			-ex 'thread apply all bt' \
			-ex 'info registers cr3 gs_base' \
			-ex 'disconnect' "$elf" 2>&1 |
			grep -v '^\[\|^Remote debugging\|^warning: No executable' |
			tee "$LOG/$variant-$mode.gdb"
		if grep -q 'corrupt stack\|Backtrace stopped' "$LOG/$variant-$mode.gdb"; then
			echo "!! $variant $mode: backtrace stopped early"
			status=1
		fi

		kill "$qemu_pid" 2>/dev/null
		wait "$qemu_pid" 2>/dev/null
		PORT=$((PORT + 1))
	done
done

rm -rf "$LOG"
exit $status
