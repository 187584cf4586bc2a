#!/usr/bin/env bash
# Regenerates the bundled example in examples/ud2/: boots the -O2 test
# unikernel with two vCPUs in mode=ud2 under QEMU, waits until it halted in
# its exception handler, and captures it with stardump-capture.
# Run it after a change to the snapshot format or the test unikernel.
set -euo pipefail
cd "$(dirname "$0")/.."

out=examples/ud2
work=$(mktemp -d)
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ]; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -p stardump-capture -p stardump
make -s -C tests/unikernel OUT="$work/build"
image="$work/build/unikernel-O2-fp.elf"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout -s KILL 120 qemu-system-x86_64 -machine microvm -accel tcg -cpu qemu64,+pdpe1gb \
    -m 64M -smp 2 -display none -monitor none -no-reboot \
    -serial "file:$work/serial.log" -kernel "$image" -append mode=ud2 \
    -gdb "tcp:127.0.0.1:$port" &
qemu_pid=$!

for _ in $(seq 1 300); do
    if grep -q 'stardust-test: halted in crash_halt' "$work/serial.log" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
grep -q 'stardust-test: halted in crash_halt' "$work/serial.log" \
    || { echo "the guest did not reach crash_halt; serial output:" >&2; cat "$work/serial.log" >&2; exit 1; }

mkdir -p "$out"
./target/release/stardump-capture "gdb:127.0.0.1:$port" -o "$out/unikernel-ud2.sdump" --image "$image"
cp "$image" "$out/unikernel-O2-fp.elf"
./target/release/stardump bt "$out/unikernel-ud2.sdump" --image "$out/unikernel-O2-fp.elf"
