//! Thread awareness: the unikernel's own scheduler threads, not only the
//! vCPUs.
//!
//! A [`description::Description`] names the thread list and the members
//! that hold a sleeping thread's saved stack pointer and resume address.
//! [`layout`] resolves those members through the image's DWARF, [`list`]
//! walks the list in guest memory, and [`state`] decides whether each
//! thread runs on a vCPU or sleeps, and where the unwinder starts for a
//! sleeping one. [`tail_calls`] adds the frames of functions that left
//! the stack through a tail call. Unwinding and printing are left to the
//! caller (`stardump threads`).

pub mod description;
pub mod layout;
pub mod list;
pub mod state;
pub mod tail_calls;

pub use description::{Description, DescriptionError};
pub use layout::{LayoutError, ThreadLayout};
pub use list::{ListStop, ThreadEntry, ThreadList};
pub use state::{SleepingStart, ThreadState};
