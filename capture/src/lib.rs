//! Live capture backends for stardump: a GDB remote serial protocol client
//! ([`gdb`]), a live [`GdbTarget`] the analyzer can read through the
//! [`stardump_format::Target`] trait from a [`page_cache`], and the capture
//! flow that writes a snapshot ([`capture`]). [`ptrace`] captures a Linux
//! process. With the `xen` feature, [`xen`] captures Xen domains from dom0.

#![warn(missing_docs)]

pub mod capture;
pub mod gdb;
pub mod memory;
pub mod page_cache;
pub mod ptrace;
pub mod ram;
pub mod target;
pub mod walk;
#[cfg(feature = "xen")]
pub mod xen;

pub use target::GdbTarget;
