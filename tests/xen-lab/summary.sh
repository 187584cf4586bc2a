#!/bin/sh
# Prints, per guest of a Xen lab run, the xl dump-core and stardump-capture
# status, size and time, then each guest's console log (for a PVH guest,
# which writes no console, its `xl vcpu-list` before the capture).
# Usage: summary.sh RESULTS_DIR
set -eu
DIR=$1

awk -F '\t' '
NR == 1 { next }
{
	if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
	key = $1 SUBSEP $2
	status[key] = $3; seconds[key] = $6; bytes[key] = $7
}
function show(name, step) {
	key = name SUBSEP step
	if (!(key in status)) return "-"
	size = ""
	if (bytes[key] == "missing")
		size = ", no file"
	else if (bytes[key] != "")
		size = ", " bytes[key] " bytes"
	return sprintf("status %s, %s s%s", status[key], seconds[key], size)
}
END {
	for (i = 1; i <= n; i++) {
		name = order[i]
		printf "%s\n  create:     %s\n  marker:     %s\n", name,
			show(name, "create"), show(name, "marker")
		if ((name SUBSEP "crashed") in status)
			printf "  crashed:    %s\n", show(name, "crashed")
		if ((name SUBSEP "gone") in status)
			printf "  gone:       %s\n", show(name, "gone")
		if ((name SUBSEP "vcpu0-down") in status)
			printf "  vcpu0-down: %s\n", show(name, "vcpu0-down")
		if ((name SUBSEP "vcpu0-time") in status)
			printf "  vcpu0-time: %s\n", show(name, "vcpu0-time")
		dump_core = show(name, "dump-core")
		if (name ~ /^pvh-/ && dump_core == "-")
			dump_core = "not run on a PVH guest"
		printf "  dump-core:  %s\n  capture:    %s\n  destroy:    %s\n",
			dump_core, show(name, "capture"), show(name, "destroy")
	}
}' "$DIR/timings.tsv"

for log in "$DIR"/*.console.log; do
	[ -f "$log" ] || continue
	echo
	echo "== console of $(basename "$log" .console.log)"
	cat "$log"
done

for list in "$DIR"/*.vcpu-list.txt; do
	[ -f "$list" ] || continue
	echo
	echo "== xl vcpu-list of $(basename "$list" .vcpu-list.txt)"
	cat "$list"
done
