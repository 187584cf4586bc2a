#!/bin/sh
# PID 1 of the Xen lab's dom0. run.sh copies it into the root file system
# at each run. It brings up the Xen toolstack, then runs each guest listed
# in /results/in/plan (lines: NAME IMAGE EXTRA...), capturing each with
# stardump-capture (when /results/in/stardump-capture exists) and, for the
# PV guests, with `xl dump-core`, and records every step in
# /results/out/timings.tsv. A guest whose name starts with `pvh-` runs as a
# PVH domain with two vCPUs; the others run as PV domains with one vCPU.
# Every step is bounded by `timeout`; at the end it powers dom0 off.

export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IN=/results/in
OUT=/results/out

log() {
	echo "lab: $*"
}

finish() {
	sync
	umount /results 2>/dev/null
	sync
	poweroff -f
}

# The initramfs has already moved /proc, /sys and /dev onto the root.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/log
mkdir -p /run/xen /run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console
mount -t xenfs xenfs /proc/xen
for module in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do
	modprobe "$module" || log "modprobe $module failed"
done
hostname dom0

mkdir -p /results
if ! mount /dev/vdb /results; then
	log "cannot mount the results disk /dev/vdb"
	poweroff -f
fi
mkdir -p "$OUT"
log "dom0 up at $(date +%s.%N), kernel $(uname -r)"

xenstored_bin=
for candidate in /usr/lib/xen-4.17/bin/xenstored /usr/sbin/xenstored \
		/usr/sbin/oxenstored /usr/lib/xen-4.17/bin/oxenstored; do
	if [ -x "$candidate" ]; then
		xenstored_bin=$candidate
		break
	fi
done
if [ -z "$xenstored_bin" ]; then
	log "no xenstored found"
	finish
fi
"$xenstored_bin" --pid-file /run/xenstored.pid
timeout 30 xen-init-dom0 || log "xen-init-dom0 failed"
xenconsoled --log=guest --log-dir=/var/log/xen/console --pid-file=/run/xenconsoled.pid
timeout 30 xl info >"$OUT/xl-info.txt" 2>&1 || log "xl info failed"

printf 'name\tstep\tstatus\tstart\tend\tseconds\tbytes\n' >"$OUT/timings.tsv"

# step NAME STEP COMMAND...: runs COMMAND and appends a line to timings.tsv.
step() {
	name=$1
	what=$2
	shift 2
	start=$(date +%s.%N)
	"$@"
	status=$?
	end=$(date +%s.%N)
	record "$name" "$what" "$status" "$start" "$end" ""
	return $status
}

record() {
	seconds=$(awk -v s="$4" -v e="$5" 'BEGIN { printf "%.3f", e - s }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$seconds" "$6" >>"$OUT/timings.tsv"
}

# wait_for NAME PATTERN SECONDS: waits for PATTERN in the guest's console log.
wait_for() {
	deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if grep -q "$2" "/var/log/xen/console/guest-$1.log" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# wait_gone NAME SECONDS: waits until the domain no longer exists.
wait_gone() {
	deadline=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		xl domid "$1" >/dev/null 2>&1 || return 0
		sleep 0.2
	done
	return 1
}

# wait_crashed NAME SECONDS: waits until xl lists the domain as crashed.
# wait_shutdown NAME SECONDS: waits until xl lists the domain as shut down
# (the `s` state), which a shutdown with reason suspend leaves it in.
wait_shutdown() {
	deadline=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if xl list "$1" 2>/dev/null | awk 'NR == 2 { exit !($5 ~ /s/) }'; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

wait_crashed() {
	deadline=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if xl list "$1" 2>/dev/null | awk 'NR == 2 { exit !($5 ~ /c/) }'; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# A PVH guest writes its report to the COM1 port, which a PVH domain does
# not have, so there is no console marker to wait for. These two waits
# read the state of vCPU 0 from `xl vcpu-list` instead.

# wait_vcpu0_down NAME SECONDS: waits until vCPU 0 is offline (state
# `--p`). Xen takes an HVM vCPU offline when it executes hlt with
# interrupts disabled. The test unikernel does that in crash_halt, after
# its report, so the vCPU stays there and its registers no longer change.
# Its other `cli; hlt` loops follow kernel_main and ap_main, which never
# return. When every vCPU is offline, Xen powers the domain off, and
# on_poweroff = "preserve" keeps it for the capture.
wait_vcpu0_down() {
	deadline=$(($(date +%s) + $2))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if xl vcpu-list "$1" 2>/dev/null | awk '$3 == "0" && $5 ~ /p$/ { found = 1 } END { exit !found }'; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# wait_vcpu0_time NAME CPU_SECONDS SECONDS: waits until vCPU 0 is online
# and has run for CPU_SECONDS of its own time. A guest in mode=spin never
# stops, so this replaces the marker. The boot up to crash_halt took
# 0.1 s of vCPU time in this lab, so 1 s leaves the guest spinning in
# spin_here. Counting vCPU time and not wall time keeps the wait right on a
# loaded host.
wait_vcpu0_time() {
	deadline=$(($(date +%s) + $3))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if xl vcpu-list "$1" 2>/dev/null |
			awk -v need="$2" '$3 == "0" && $5 !~ /p$/ && $6 + 0 >= need + 0 { found = 1 } END { exit !found }'; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# is_paused NAME: whether xl lists the domain as paused.
is_paused() {
	xl list "$1" 2>/dev/null | awk 'NR == 2 { exit !($5 ~ /p/) }'
}

# is_running NAME: whether the domain exists and xl does not list it as paused.
is_running() {
	xl list "$1" >/dev/null 2>&1 && ! is_paused "$1"
}

# sigterm_capture NAME: starts a capture of NAME and, once it logs that the
# domain is paused, stops it, checks that the domain is paused, sends
# SIGTERM and lets it go on. The capture must then fail, log that it
# resumed the domain, and leave neither a snapshot nor a temporary file.
sigterm_capture() {
	"$IN/stardump-capture" -v "xen:$1" -o "$OUT/$1.sdump" >"$OUT/$1.capture.log" 2>&1 &
	pid=$!
	deadline=$(($(date +%s) + 120))
	until grep -q 'domain paused' "$OUT/$1.capture.log"; do
		if ! kill -0 "$pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
			log "guest $1: the capture ended or timed out before it paused the domain"
			kill -KILL "$pid" 2>/dev/null
			wait "$pid"
			return 1
		fi
		sleep 0.01
	done
	kill -STOP "$pid"
	if is_paused "$1"; then was_paused=yes; else was_paused=no; fi
	kill -TERM "$pid"
	kill -CONT "$pid"
	wait "$pid"
	status=$?
	log "guest $1: capture exited with $status after SIGTERM; paused when signalled: $was_paused"
	[ "$was_paused" = yes ] && [ "$status" -ne 0 ] &&
		grep -q 'domain resumed' "$OUT/$1.capture.log" &&
		[ ! -e "$OUT/$1.sdump" ] &&
		! ls "$OUT/$1.sdump".tmp.* >/dev/null 2>&1
}

size_of() {
	if [ -f "$1" ]; then stat -c %s "$1"; else echo missing; fi
}

while read -r name image extra; do
	case "$name" in ''|'#'*) continue ;; esac
	log "guest $name: image $image, command line \"$extra\""
	case "$name" in
	pvh-*)
		# The QEMU build of the test unikernel, booted through its PVH entry
		# note. on_poweroff = "preserve" because Xen powers the domain off
		# once every vCPU is offline, and a vCPU halted with interrupts
		# disabled counts as offline.
		cat >"/tmp/$name.cfg" <<CFG
name = "$name"
type = "pvh"
kernel = "$IN/$image"
cmdline = "$extra"
memory = 8
vcpus = 2
on_crash = "preserve"
on_poweroff = "preserve"
CFG
		;;
	*)
		# A larger guest keeps o2-sigterm's capture paused for longer.
		case " $extra " in
		*" sigterm "*) memory=64 ;;
		*) memory=16 ;;
		esac
		cat >"/tmp/$name.cfg" <<CFG
name = "$name"
type = "pv"
kernel = "$IN/$image"
memory = $memory
vcpus = 1
on_crash = "preserve"
on_poweroff = "destroy"
extra = "$extra"
CFG
		;;
	esac
	if ! step "$name" create timeout 60 xl -v create "/tmp/$name.cfg" >"$OUT/$name.create.log" 2>&1; then
		log "guest $name: xl create failed"
		continue
	fi

	case "$name:$extra" in
	pvh-*:*mode=spin*)
		marker=
		step "$name" vcpu0-time wait_vcpu0_time "$name" 1 60
		xl vcpu-list "$name" >"$OUT/$name.vcpu-list.txt" 2>&1
		;;
	pvh-*)
		marker=
		step "$name" vcpu0-down wait_vcpu0_down "$name" 60
		xl vcpu-list "$name" >"$OUT/$name.vcpu-list.txt" 2>&1
		;;
	*mode=exit*)
		# The guest powers itself off and on_poweroff destroys it: nothing to capture.
		step "$name" marker wait_for "$name" 'stardust-test: exiting through' 60
		step "$name" gone wait_gone "$name" 30
		cp "/var/log/xen/console/guest-$name.log" "$OUT/$name.console.log" 2>/dev/null
		continue
		;;
	*mode=spin*|*:) marker='stardust-test: reached mode=' ;;
	*) marker='stardust-test: halted in crash_halt' ;;
	esac
	if [ -n "$marker" ]; then
		step "$name" marker wait_for "$name" "$marker" 60
	fi
	case "$marker: $extra " in
	*crash_halt:*" suspend "*) step "$name" shut-down wait_shutdown "$name" 30 ;;
	*crash_halt:*) step "$name" crashed wait_crashed "$name" 30 ;;
	esac
	# `xlpause` (a word the guest ignores) pauses the domain before the
	# capture, as an operator does to hold a misbehaving guest. The capture
	# must leave it paused: Xen counts pauses, and the capture only undoes
	# its own.
	case " $extra " in
	*" xlpause "*) step "$name" xl-pause timeout 30 xl pause "$name" ;;
	esac
	xl list "$name" >"$OUT/$name.state.txt" 2>&1

	if [ -x "$IN/stardump-capture" ] && case " $extra " in *" sigterm "*) true ;; *) false ;; esac; then
		step "$name" sigterm-while-paused sigterm_capture "$name"
		step "$name" running-after-sigterm is_running "$name"
	elif [ -x "$IN/stardump-capture" ]; then
		start=$(date +%s.%N)
		timeout 180 "$IN/stardump-capture" "xen:$name" -o "$OUT/$name.sdump" \
			>"$OUT/$name.capture.log" 2>&1
		status=$?
		end=$(date +%s.%N)
		record "$name" capture "$status" "$start" "$end" "$(size_of "$OUT/$name.sdump")"
	fi
	case " $extra " in
	*" xlpause "*) step "$name" still-paused is_paused "$name" ;;
	esac

	# No xl dump-core of a PVH guest: on this lab's TCG it took 590 s for
	# an 8 MiB PVH guest (2 to 9 s for a 16 MiB PV guest), longer than the
	# whole rest of the run.
	# No xl dump-core either of o2-sigterm, which is there for the signal.
	case "$name" in
	pvh-*|*-sigterm) ;;
	*)
		start=$(date +%s.%N)
		timeout 180 xl dump-core "$name" "$OUT/$name.core" >"$OUT/$name.dump-core.log" 2>&1
		status=$?
		end=$(date +%s.%N)
		record "$name" dump-core "$status" "$start" "$end" "$(size_of "$OUT/$name.core")"
		;;
	esac

	step "$name" destroy timeout 60 xl destroy "$name"
	cp "/var/log/xen/console/guest-$name.log" "$OUT/$name.console.log" 2>/dev/null
done <"$IN/plan"

cp -r /var/log/xen "$OUT/xen-logs" 2>/dev/null
# Xen's own log, for messages about the guests and the captures.
xl dmesg >"$OUT/xl-dmesg.txt" 2>&1
log "done at $(date +%s.%N)"
finish
