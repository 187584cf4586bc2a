//! Capture of a running Linux process through ptrace (`pid:PID`).
//!
//! [`capture_process`] seizes and stops every thread ([`attach`]), reads
//! each thread's registers with `PTRACE_GETREGS`, the memory map from
//! `/proc/PID/maps` ([`maps`]) and the readable mappings with
//! `process_vm_readv` ([`memory`]), then detaches. It finds the build id
//! of each mapped ELF file ([`build_id`]) and writes the snapshot after
//! the process runs again. `SPEC.md` describes how a snapshot stores a
//! process: each page at its virtual address, with no page tables.
//!
//! Every thread is detached on all paths: errors, SIGINT and SIGTERM
//! (through the caller's cancel flag) and panics. Seized threads also
//! resume when the capturing process is killed, because the kernel
//! detaches the tracees of a tracer that exits.

pub mod attach;
pub mod build_id;
pub mod capture;
pub mod error;
pub mod maps;
pub mod memory;
mod sys;

pub use capture::{capture_process, ProcessCaptureOptions};
pub use error::{Errno, PtraceError};
