#!/usr/bin/env bash
# Runs the Xen lab with a stardump-capture built for Xen, then checks the
# results: gdb on every dump-core (run.sh does that), stardump bt on every
# snapshot and dump-core, the crash guests' arguments and locals against
# gdb's, and the dump-core reader's own end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$PWD/target/xen-lab"
rm -rf "$out"
cargo build --release --locked -p stardump
cargo build --release --locked -p stardump-capture --features xen
bash tests/xen-lab/run.sh --out "$out" --capture-bin target/release/stardump-capture
python3 tests/xen-lab/check-stardump.py "$out" target/release/stardump
python3 tests/xen-lab/check-variables.py "$out" target/release/stardump
python3 tests/xen-lab/check-image-fallback.py "$out" target/release/stardump
STARDUMP_XEN_LAB_OUT="$out" cargo test --locked -p stardump-format --test foreign_xen_lab -- --ignored
STARDUMP_XEN_LAB_RESULTS="$out" cargo test --locked -p stardump-capture --features xen --test xen_lab -- --ignored
