#!/usr/bin/env bash
# Runs every test, installing the packages they need first.
#
# 1. The workspace's tests. The end-to-end tests boot the test unikernel
#    under QEMU (TCG, no KVM needed), capture it, and compare stardump's
#    backtraces with gdb's.
# 2. The Xen lab (tests/xen-lab): Debian's Xen 4.17 boots under QEMU, runs
#    the Xen PV test unikernel in every end mode, and captures each guest
#    with stardump-capture and with `xl dump-core`. stardump must print the
#    same frames from both files as gdb does.
#
# `--no-xen-lab` skips step 2, which takes 3 to 8 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

run_lab=1
for arg in "$@"; do
    case "$arg" in
    --no-xen-lab) run_lab=0 ;;
    *) echo "usage: scripts/test.sh [--no-xen-lab]" >&2; exit 2 ;;
    esac
done

bash scripts/install-test-deps.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2

if [ "$run_lab" -eq 0 ]; then
    exit 0
fi
bash scripts/xen-lab.sh
