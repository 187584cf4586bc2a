//! The GDB remote serial protocol: packet framing, the client, the target
//! description and QEMU's extensions.

pub mod client;
pub mod error;
pub mod packet;
pub mod qemu;
pub mod registers;
pub mod target_xml;

pub use client::{ClientOptions, GdbClient, StubFeatures, ThreadId};
pub use error::GdbError;
