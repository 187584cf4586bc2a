#!/bin/sh
# Checks the cores of a Xen lab run with gdb as the oracle: converts each
# NAME.core (xl dump-core) into an ELF core with xen-core-to-elf.py, adds
# the test unikernel's sleeping threads, and runs `thread apply all bt`.
# Fails when a frame has no file:line, a backtrace stops early, or the
# vCPU's backtrace lacks the frames of its end mode. Writes NAME.gdb-core
# and NAME.gdb-bt.txt next to each core.
#
# Usage: check-gdb.sh RESULTS_DIR
# Needs gdb, python3 and binutils (Debian packages).
set -u

DIR=${1:?usage: check-gdb.sh RESULTS_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
status=0

for tool in gdb:gdb python3:python3 nm:binutils; do
	if ! command -v "${tool%%:*}" >/dev/null; then
		echo "${tool%%:*} not found: install the Debian package ${tool#*:}" >&2
		exit 1
	fi
done

# The image of each guest, from the plan run.sh wrote.
image_of() {
	case "$1" in
	o0-*) echo "$DIR/unikernel-xen-pv-O0-fp.elf" ;;
	*) echo "$DIR/unikernel-xen-pv-O2-nofp.elf" ;;
	esac
}

fail() {
	echo "!! $1"
	status=1
}

checked=0
for core in "$DIR"/*.core; do
	[ -s "$core" ] || continue
	name=$(basename "$core" .core)
	image=$(image_of "$name")
	elf=$DIR/$name.gdb-core
	out=$DIR/$name.gdb-bt.txt
	if ! python3 "$HERE/xen-core-to-elf.py" --threads "$image" "$core" "$elf" >/dev/null; then
		fail "$name: cannot convert $core"
		continue
	fi
	timeout 60 gdb -batch -nx -ex 'set pagination off' -ex 'set osabi GNU/Linux' \
		-ex "core-file $elf" -ex 'thread apply all bt' "$image" >"$out" 2>&1
	checked=$((checked + 1))

	# gdb cannot unwind out of Xen's hypercall page, which has no CFI. For a
	# guest that stopped there, only the sleeping threads are checked. They
	# come before thread 1 in gdb's output, after the frame gdb prints when
	# it loads the core.
	checked_out=$(cat "$out")
	case "$name" in
	*-hcall) checked_out=$(sed -n '/^Thread /,$p' "$out" | sed '/^Thread 1 /,$d') ;;
	esac
	if echo "$checked_out" | grep -q 'corrupt stack\|Backtrace stopped'; then
		fail "$name: a backtrace stopped early"
	fi
	if echo "$checked_out" | grep '^#' | grep -v '<signal handler called>' | grep -qv ' at [^ ]*:[0-9]'; then
		fail "$name: a frame has no file:line"
	fi
	# The vCPU is thread 1: the worker, from the end mode down to thread_start.
	vcpu=$(sed -n '/^Thread 1 /,$p' "$out")
	case "$name" in
	*-spin|*-nop2m|*-int3|*-paused) expected="spin_here dispatch_end_mode process_request worker_main thread_start" ;;
	*-hcall) expected="hypercall_page" ;;
	*-ud2|*-null|*-div0|*-suspend)
		mode=${name##*-}
		# o2-suspend crashes in mode=ud2 and shuts down with reason suspend.
		[ "$mode" = suspend ] && mode=ud2
		expected="crash_halt trap_handler <signal.handler.called> trigger_$mode dispatch_end_mode transform_values compute_checksum process_request worker_main thread_main thread_start" ;;
	*) expected="" ;;
	esac
	for frame in $expected; do
		echo "$vcpu" | grep -q "$frame" || fail "$name: no frame $frame in the vCPU's backtrace"
	done
	for thread in idle_loop logger_main waiter_main; do
		grep -q "$thread" "$out" || fail "$name: no sleeping thread with $thread"
	done
	echo "== $name"
	cat "$out"
done

if [ "$checked" -eq 0 ]; then
	fail "no non-empty core in $DIR"
fi
exit $status
