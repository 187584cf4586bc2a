//! The stardump analysis engine.
//!
//! The modules follow the data's path: [`image`] loads an ELF file,
//! [`modules`] places the images a target loaded at their addresses (with
//! [`debug_file`] finding files by build id and debug link), [`unwind`]
//! walks a vCPU's stack through a [`stardump_format::Target`], [`symbolize`]
//! names the frames, [`check`] compares the image with the
//! snapshot, [`image_fallback`] reads code the dump lacks from the image,
//! [`live`] opens live targets (`gdb:HOST:PORT`) in place of a file, and
//! [`cmd`] implements the `stardump` subcommands.

#![warn(missing_docs)]

pub mod check;
pub mod cpp_name;
pub mod disassemble;
pub mod function_name;
pub mod cmd;
pub mod debug_file;
pub mod image;
pub mod image_fallback;
pub mod line_table;
pub mod link_map;
pub mod live;
pub mod modules;
pub mod signal;
pub mod symbolize;
pub mod threads;
pub mod unwind;
pub mod variables;

#[cfg(test)]
mod test_fixtures;
