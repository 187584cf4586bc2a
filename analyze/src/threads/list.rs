//! Walks a thread list in guest memory.
//!
//! Every member is read on its own, so an unreadable name marks only the
//! name; only an unreadable link ends the walk. The walk stops at a null
//! link, at a thread seen before (a loop) and after `max_threads` threads.

use std::collections::HashSet;

use stardump_format::MemoryError;

use super::layout::{IntegerField, NameField, ThreadLayout, MAX_NAME_BYTES};
use crate::unwind::StackMemory;

/// One thread's members as read from memory; each is read separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadEntry {
    /// Address of the thread struct.
    pub address: u64,
    /// The name, when described.
    pub name: Option<Result<String, MemoryError>>,
    /// The id, when described.
    pub id: Option<Result<i64, MemoryError>>,
    /// The flags, when described.
    pub flags: Option<Result<u64, MemoryError>>,
    /// The saved stack pointer.
    pub sp: Result<u64, MemoryError>,
    /// The saved resume address.
    pub ip: Result<u64, MemoryError>,
}

/// Reason a list walk ended before a null link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListStop {
    /// The first-thread pointer in the head could not be read.
    #[error("cannot read the thread list head at {address:#x}: {source}")]
    UnreadableHead {
        /// Address of the first-thread pointer.
        address: u64,
        /// The failed read.
        #[source]
        source: MemoryError,
    },
    /// A thread's link could not be read, so the threads after it are unknown.
    #[error("cannot read the link of the thread at {thread:#x}: {source}")]
    UnreadableLink {
        /// The thread whose link failed.
        thread: u64,
        /// The failed read.
        #[source]
        source: MemoryError,
    },
    /// A link points to a thread already listed.
    #[error("the link of the thread at {thread:#x} points back to the thread at {target:#x} (loop in the list)")]
    Loop {
        /// The thread whose link closes the loop.
        thread: u64,
        /// The thread it points back to.
        target: u64,
    },
    /// The list is longer than the description allows.
    #[error("more than {max_threads} threads in the list; the rest are not shown (corrupt list, or raise list.max_threads)")]
    TooLong {
        /// The bound.
        max_threads: usize,
    },
    /// Adding a member offset to a thread's address overflowed.
    #[error("thread address {thread:#x} plus member offset {offset:#x} overflows")]
    AddressOverflow {
        /// The thread's address.
        thread: u64,
        /// The member offset.
        offset: u64,
    },
}

/// The threads found, in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadList {
    /// The threads.
    pub threads: Vec<ThreadEntry>,
    /// Reason the walk ended early, or `None` at a null link.
    pub stop: Option<ListStop>,
}

fn member_address(thread: u64, offset: u64) -> Result<u64, ListStop> {
    thread.checked_add(offset).ok_or(ListStop::AddressOverflow { thread, offset })
}

/// Reads an integer member at `base + field.offset`.
fn read_integer(memory: &dyn StackMemory, base: u64, field: IntegerField) -> Result<u64, MemoryError> {
    let address = base
        .checked_add(field.offset)
        .ok_or(MemoryError::NotCaptured { address: base, len: field.size as usize })?;
    let mut bytes = [0u8; 8];
    let len = usize::try_from(field.size).unwrap_or(8).min(8);
    memory.read(address, &mut bytes[..len])?;
    let value = u64::from_le_bytes(bytes);
    if field.signed && len < 8 {
        let shift = 64 - 8 * len as u32;
        return Ok((((value << shift) as i64) >> shift) as u64);
    }
    Ok(value)
}

/// Reads a NUL-terminated string of at most [`MAX_NAME_BYTES`] bytes at
/// `address`, one byte at a time so a string that ends just before an
/// unmapped page still reads.
fn read_c_string(memory: &dyn StackMemory, address: u64, max_bytes: u64) -> Result<String, MemoryError> {
    let mut bytes = Vec::new();
    for index in 0..max_bytes {
        let Some(byte_address) = address.checked_add(index) else { break };
        let mut byte = [0u8; 1];
        match memory.read(byte_address, &mut byte) {
            Ok(()) => {}
            // A string cut by an unreadable page after its first byte is
            // still worth showing.
            Err(_) if !bytes.is_empty() => break,
            Err(error) => return Err(error),
        }
        if byte[0] == 0 {
            break;
        }
        bytes.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_name(memory: &dyn StackMemory, thread: u64, field: NameField) -> Result<String, MemoryError> {
    match field {
        NameField::Pointer { offset } => {
            let pointer = read_integer(memory, thread, IntegerField { offset, size: 8, signed: false })?;
            read_c_string(memory, pointer, MAX_NAME_BYTES)
        }
        NameField::Array { offset, len_bytes } => {
            let address = thread
                .checked_add(offset)
                .ok_or(MemoryError::NotCaptured { address: thread, len: len_bytes as usize })?;
            read_c_string(memory, address, len_bytes)
        }
    }
}

fn read_entry(memory: &dyn StackMemory, layout: &ThreadLayout, address: u64) -> ThreadEntry {
    ThreadEntry {
        address,
        name: layout.name.map(|field| read_name(memory, address, field)),
        id: layout.id.map(|field| read_integer(memory, address, field).map(|value| value as i64)),
        flags: layout.flags.map(|field| read_integer(memory, address, field)),
        sp: read_integer(memory, address, layout.sp),
        ip: read_integer(memory, address, layout.ip),
    }
}

/// Walks the list that `layout` describes, visiting at most `max_threads`.
pub fn walk(memory: &dyn StackMemory, layout: &ThreadLayout, max_threads: usize) -> ThreadList {
    let mut threads = Vec::new();
    let head = match member_address(layout.head_address, layout.first_offset) {
        Ok(head) => head,
        Err(stop) => return ThreadList { threads, stop: Some(stop) },
    };
    let mut next = match memory.read_u64(head) {
        Ok(first) => first,
        Err(source) => return ThreadList { threads, stop: Some(ListStop::UnreadableHead { address: head, source }) },
    };
    let mut seen = HashSet::new();
    let mut previous = layout.head_address;
    while next != 0 {
        let _span = tracing::debug_span!("thread", address = format_args!("{next:#x}")).entered();
        if !seen.insert(next) {
            return ThreadList { threads, stop: Some(ListStop::Loop { thread: previous, target: next }) };
        }
        if threads.len() >= max_threads {
            return ThreadList { threads, stop: Some(ListStop::TooLong { max_threads }) };
        }
        let entry = read_entry(memory, layout, next);
        tracing::debug!(name = ?entry.name, sp = ?entry.sp, ip = ?entry.ip, "thread read");
        threads.push(entry);
        previous = next;
        next = match read_integer(memory, previous, layout.next) {
            Ok(link) => link,
            Err(source) => {
                // The caller reports the stop in place, so this is no warning.
                tracing::debug!(thread = format_args!("{previous:#x}"), %source, "thread link unreadable");
                return ThreadList { threads, stop: Some(ListStop::UnreadableLink { thread: previous, source }) };
            }
        };
    }
    ThreadList { threads, stop: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::memory::WordStack;

    const BASE: u64 = 0x1000;

    /// Layout of a struct { char *name; u64 sp; u64 ip; i32 id; u32 flags; struct t *next; },
    /// with the head pointer at word 0 of the stack.
    fn layout() -> ThreadLayout {
        let word = |index: u64, size: u64| IntegerField { offset: index * 8, size, signed: false };
        ThreadLayout {
            head_address: BASE,
            first_offset: 0,
            type_name: "struct t".into(),
            next: word(4, 8),
            sp: word(1, 8),
            ip: word(2, 8),
            name: Some(NameField::Pointer { offset: 0 }),
            id: Some(IntegerField { offset: 24, size: 4, signed: true }),
            flags: Some(IntegerField { offset: 28, size: 4, signed: false }),
        }
    }

    /// Address of word `index` of the test memory.
    fn at(index: u64) -> u64 {
        BASE + index * 8
    }

    /// Returns memory with a head at word 0, a name "ab" at word 1, and
    /// threads of five words each from word 2 on. `links[i]` is thread i's
    /// link.
    fn memory(links: &[u64]) -> WordStack {
        let mut words = vec![at(2), u64::from_le_bytes(*b"ab\0\0\0\0\0\0")];
        for (index, link) in links.iter().enumerate() {
            let id_and_flags = (index as u64) | (0x2u64 << 32);
            words.extend([at(1), 0x7000 + index as u64, 0x8000 + index as u64, id_and_flags, *link]);
        }
        WordStack { base: BASE, words }
    }

    fn thread(index: u64) -> u64 {
        at(2 + 5 * index)
    }

    #[test]
    fn walk_reads_every_member() {
        let list = walk(&memory(&[thread(1), 0]), &layout(), 16);
        assert_eq!(list.stop, None);
        assert_eq!(list.threads.len(), 2);
        let second = &list.threads[1];
        assert_eq!(second.address, thread(1));
        assert_eq!(second.name, Some(Ok("ab".to_owned())));
        assert_eq!(second.sp, Ok(0x7001));
        assert_eq!(second.ip, Ok(0x8001));
        assert_eq!(second.id, Some(Ok(1)));
        assert_eq!(second.flags, Some(Ok(2)));
    }

    #[test]
    fn walk_sign_extends_id() {
        let mut memory = memory(&[0]);
        memory.words[5] = 0xffff_fffe;
        let list = walk(&memory, &layout(), 16);
        assert_eq!(list.threads[0].id, Some(Ok(-2)));
    }

    #[test]
    fn walk_stops_on_loop() {
        let list = walk(&memory(&[thread(1), thread(0)]), &layout(), 16);
        assert_eq!(list.threads.len(), 2);
        assert_eq!(list.stop, Some(ListStop::Loop { thread: thread(1), target: thread(0) }));
    }

    #[test]
    fn walk_stops_at_bound() {
        let list = walk(&memory(&[thread(1), thread(2), 0]), &layout(), 2);
        assert_eq!(list.threads.len(), 2);
        assert_eq!(list.stop, Some(ListStop::TooLong { max_threads: 2 }));
    }

    #[test]
    fn walk_marks_unreadable_members_in_place() {
        // The second thread starts at the last word: sp, ip and the link
        // are past the end of the memory.
        let mut memory = memory(&[0]);
        let last = memory.words.len() as u64;
        memory.words[6] = at(last);
        memory.words.push(at(1));
        let list = walk(&memory, &layout(), 16);
        assert_eq!(list.threads.len(), 2);
        let damaged = &list.threads[1];
        assert_eq!(damaged.name, Some(Ok("ab".to_owned())));
        assert!(matches!(damaged.sp, Err(MemoryError::NotCaptured { .. })));
        assert!(matches!(list.stop, Some(ListStop::UnreadableLink { thread, .. }) if thread == at(last)));
    }

    #[test]
    fn walk_reports_unreadable_head() {
        let mut layout = layout();
        layout.head_address = 0x10;
        let list = walk(&memory(&[0]), &layout, 16);
        assert!(list.threads.is_empty());
        assert!(matches!(list.stop, Some(ListStop::UnreadableHead { address: 0x10, .. })));
    }

    #[test]
    fn walk_of_empty_list() {
        let mut memory = memory(&[]);
        memory.words[0] = 0;
        let list = walk(&memory, &layout(), 16);
        assert!(list.threads.is_empty());
        assert_eq!(list.stop, None);
    }

    #[test]
    fn unterminated_name_is_bounded() {
        let memory = WordStack { base: BASE, words: vec![u64::from_le_bytes(*b"abcdefgh"); 32] };
        assert_eq!(read_c_string(&memory, BASE, MAX_NAME_BYTES).unwrap().len(), MAX_NAME_BYTES as usize);
        // A name cut by the end of memory keeps what was read.
        assert_eq!(read_c_string(&memory, BASE + 32 * 8 - 3, MAX_NAME_BYTES).unwrap(), "fgh");
        assert!(read_c_string(&memory, 0x10, MAX_NAME_BYTES).is_err());
    }
}
