#!/usr/bin/env bash
# Runs every test of the workspace, installing the packages they need first.
# The end-to-end tests boot the test unikernel under QEMU (TCG, no KVM
# needed), capture it, and compare stardump's backtraces with gdb's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2
