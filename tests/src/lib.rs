//! Helpers for the end-to-end tests: building the test unikernel, running
//! QEMU with a timeout, and asking gdb for its backtrace.
