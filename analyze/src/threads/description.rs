//! Thread description files: where a unikernel keeps its threads.
//!
//! A description names the global that heads the thread list, the member
//! paths of the link, the saved stack pointer and resume address, and
//! optionally the name, id and flags members. It states no offsets or
//! sizes: [`super::layout`] looks every member up in the image's DWARF, so
//! one description serves every build of the same sources. The format is
//! TOML; analyze/threads/stardust-test.toml is a commented example.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::unwind::registers::REGISTER_NAMES;

/// Default bound on the number of threads a list walk visits.
pub const DEFAULT_MAX_THREADS: usize = 1024;

/// Largest `max_threads` a description may set.
pub const MAX_THREADS_LIMIT: usize = 1 << 20;

/// Text of the descriptions built into stardump, by name.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("stardust-test", include_str!("../../threads/stardust-test.toml")),
    ("mini-os", include_str!("../../threads/mini-os.toml")),
];

/// Invalid description file or value.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    /// The file could not be read.
    #[error("cannot read the thread description {path}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not have the description's fields.
    #[error("invalid thread description {origin}: {source}")]
    InvalidToml {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The parser's error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// A member path is empty or has a component that is not a C identifier.
    #[error("invalid member path {path:?} in `{field}` of {origin}: expected C identifiers joined by `.`")]
    InvalidMemberPath {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The key that contains the path.
        field: &'static str,
        /// The rejected path.
        path: String,
    },
    /// The list head is not a C identifier.
    #[error("invalid list head symbol {symbol:?} in {origin}")]
    InvalidHeadSymbol {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The rejected name.
        symbol: String,
    },
    /// A flag mask is zero, which would match no thread.
    #[error("invalid mask 0 in `flags.{field}` of {origin}")]
    InvalidMask {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The key.
        field: &'static str,
    },
    /// A flag mask is set but no flags member is described.
    #[error("`flags.{field}` is set in {origin} but `members.flags` is missing")]
    MissingFlagsMember {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The mask's key.
        field: &'static str,
    },
    /// `list.max_threads` is out of range.
    #[error("invalid list.max_threads {value} in {origin}: expected 1 to {MAX_THREADS_LIMIT}")]
    InvalidMaxThreads {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The rejected value.
        value: usize,
    },
    /// A stack size is not a power of two of at least one page.
    #[error("invalid running.current_at_stack_base_size_bytes {value:#x} in {origin}: expected a power of two of at least 0x1000")]
    InvalidStackSize {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The rejected value.
        value: u64,
    },
    /// A register of a pushed switch frame is not a general register the
    /// unwinder tracks, or is rsp or rip, which the layout itself defines.
    #[error("invalid register {name:?} in switch_frame.registers of {origin}: expected rax..r15 except rsp")]
    InvalidRegister {
        /// The file, or `built-in NAME`.
        origin: String,
        /// The rejected name.
        name: String,
    },
    /// No built-in description has this name.
    #[error("no built-in thread description named {name:?}; the built-in ones are {known}")]
    UnknownBuiltIn {
        /// The requested name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
}

/// A thread description, as read from TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// Short name of the unikernel, shown in the output.
    pub name: String,
    /// The list head and link.
    pub list: ListDescription,
    /// Member paths inside the thread struct.
    pub members: Members,
    /// Meaning of bits in the flags member.
    #[serde(default)]
    pub flags: FlagMasks,
    /// Rules that match a running thread to its vCPU.
    #[serde(default)]
    pub running: RunningRule,
    /// The unwinding rule for a sleeping thread's saved registers.
    #[serde(default)]
    pub switch_frame: SwitchFrame,
}

/// The thread list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDescription {
    /// Symbol of the global that heads the list.
    pub head: String,
    /// Member path, inside the head, of the pointer to the first thread;
    /// empty when the head is that pointer itself.
    #[serde(default)]
    pub first: String,
    /// Member path, inside the thread struct, of the pointer to the next
    /// thread; a null pointer ends the list.
    pub next: String,
    /// Maximum number of threads visited, so a corrupt list ends.
    #[serde(default = "default_max_threads")]
    pub max_threads: usize,
}

fn default_max_threads() -> usize {
    DEFAULT_MAX_THREADS
}

/// Member paths inside the thread struct, such as `sp` or `regs.sp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// The saved stack pointer.
    pub sp: String,
    /// The saved resume address.
    pub ip: String,
    /// The name: a pointer to a NUL-terminated string or a `char` array.
    #[serde(default)]
    pub name: Option<String>,
    /// An integer id.
    #[serde(default)]
    pub id: Option<String>,
    /// An integer of flag bits, tested with [`FlagMasks`].
    #[serde(default)]
    pub flags: Option<String>,
}

/// Bits of the flags member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagMasks {
    /// A thread with any of these bits set runs on a vCPU, so its saved
    /// registers are stale and the vCPU's are used instead.
    #[serde(default)]
    pub running: Option<u64>,
    /// A thread with any of these bits set and not running has no saved
    /// context to unwind (such as an AP's idle thread with sp and ip 0).
    #[serde(default)]
    pub skip: Option<u64>,
}

/// Rules that find the thread a vCPU runs. Without `flags.running` a thread
/// is running when one of these rules names it. With it, the rules decide
/// on which vCPU. When no rule applies and the snapshot has one vCPU, the
/// running thread is on that vCPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunningRule {
    /// Offset from the vCPU's GS base of the per-CPU pointer to the current
    /// thread.
    #[serde(default)]
    pub current_at_gs_base_offset: Option<u64>,
    /// Size of the aligned thread stacks whose first word points to the
    /// thread that owns the stack. The word at the vCPU's rsp rounded down
    /// to this size is a pointer to its current thread.
    #[serde(default)]
    pub current_at_stack_base_size_bytes: Option<u64>,
}

/// The start of the unwinder for a sleeping thread's saved `sp` and `ip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SwitchFrame {
    /// The unwinder starts at pc = ip, rsp = sp, with every other register
    /// unknown, and the CFI at ip recovers the callee-saved registers and
    /// the return address from the stack.
    #[default]
    Cfi,
    /// The switch function has no CFI: when ip is inside `function`, sp
    /// points at `registers` pushed in this order from sp upward, followed
    /// by the return address into the caller. Elsewhere (a thread that never
    /// ran) the unwinder starts at pc = ip, rsp = sp as for `cfi`.
    Pushed {
        /// Symbol of the context switch function.
        function: String,
        /// Register names, lowest address first.
        registers: Vec<String>,
    },
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(first) if first == '_' || first.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Returns whether `path` is C identifiers joined by `.`.
pub fn is_member_path(path: &str) -> bool {
    path.split('.').all(is_identifier)
}

/// Returns the DWARF number of a tracked general register other than rsp.
pub fn register_number(name: &str) -> Option<u16> {
    let position = REGISTER_NAMES.iter().position(|known| *known == name)?;
    (name != "rsp" && name != "rip").then_some(position as u16)
}

impl Description {
    /// Parses and checks a description; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Description, DescriptionError> {
        let description: Description = toml::from_str(text)
            .map_err(|source| DescriptionError::InvalidToml { origin: origin.to_owned(), source })?;
        description.validate(origin)?;
        Ok(description)
    }

    /// Reads and parses the description file at `path`.
    pub fn from_file(path: &Path) -> Result<Description, DescriptionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DescriptionError::Unreadable { path: path.to_owned(), source })?;
        Description::parse(&text, &path.display().to_string())
    }

    /// Returns the built-in description `name`.
    pub fn built_in(name: &str) -> Result<Description, DescriptionError> {
        match BUILT_IN.iter().find(|(known, _)| *known == name) {
            Some((known, text)) => Description::parse(text, &format!("built-in {known}")),
            None => Err(DescriptionError::UnknownBuiltIn {
                name: name.to_owned(),
                known: BUILT_IN.iter().map(|(known, _)| *known).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Returns every built-in description.
    pub fn all_built_in() -> Result<Vec<Description>, DescriptionError> {
        BUILT_IN.iter().map(|(name, _)| Description::built_in(name)).collect()
    }

    fn validate(&self, origin: &str) -> Result<(), DescriptionError> {
        let origin = origin.to_owned();

        if !is_identifier(&self.list.head) {
            return Err(DescriptionError::InvalidHeadSymbol { origin, symbol: self.list.head.clone() });
        }
        let mut paths: Vec<(&'static str, &str)> = vec![
            ("list.next", &self.list.next),
            ("members.sp", &self.members.sp),
            ("members.ip", &self.members.ip),
        ];
        if !self.list.first.is_empty() {
            paths.push(("list.first", &self.list.first));
        }
        let optional = [
            ("members.name", &self.members.name),
            ("members.id", &self.members.id),
            ("members.flags", &self.members.flags),
        ];
        for (field, path) in optional {
            if let Some(path) = path {
                paths.push((field, path));
            }
        }

        for (field, path) in paths {
            if !is_member_path(path) {
                return Err(DescriptionError::InvalidMemberPath { origin, field, path: path.to_owned() });
            }
        }

        if !(1..=MAX_THREADS_LIMIT).contains(&self.list.max_threads) {
            return Err(DescriptionError::InvalidMaxThreads { origin, value: self.list.max_threads });
        }

        for (field, mask) in [("running", self.flags.running), ("skip", self.flags.skip)] {
            match mask {
                Some(0) => return Err(DescriptionError::InvalidMask { origin, field }),
                Some(_) if self.members.flags.is_none() => {
                    return Err(DescriptionError::MissingFlagsMember { origin, field })
                }
                _ => {}
            }
        }

        if let Some(size) = self.running.current_at_stack_base_size_bytes {
            if !size.is_power_of_two() || size < 0x1000 {
                return Err(DescriptionError::InvalidStackSize { origin, value: size });
            }
        }

        if let SwitchFrame::Pushed { function, registers } = &self.switch_frame {
            if !is_identifier(function) {
                return Err(DescriptionError::InvalidHeadSymbol { origin, symbol: function.clone() });
            }
            if let Some(bad) = registers.iter().find(|name| register_number(name).is_none()) {
                return Err(DescriptionError::InvalidRegister { origin, name: bad.clone() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[list]
head = "threads"
next = "next"
[members]
sp = "sp"
ip = "ip"
"#;

    fn with(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    #[test]
    fn built_in_descriptions_parse() {
        let all = Description::all_built_in().unwrap();
        assert_eq!(all.len(), BUILT_IN.len());
        let test = Description::built_in("stardust-test").unwrap();
        assert_eq!(test.list.head, "thread_list");
        assert_eq!(test.flags.running, Some(0x2));
        assert_eq!(test.flags.skip, Some(0x8));
        assert_eq!(test.switch_frame, SwitchFrame::Cfi);
        let mini_os = Description::built_in("mini-os").unwrap();
        assert_eq!(mini_os.list.first, "tqh_first");
        assert_eq!(mini_os.list.next, "thread_list.tqe_next");
        assert!(matches!(mini_os.switch_frame, SwitchFrame::Pushed { .. }));
    }

    #[test]
    fn minimal_description_defaults() {
        let description = Description::parse(MINIMAL, "test").unwrap();
        assert_eq!(description.list.first, "");
        assert_eq!(description.list.max_threads, DEFAULT_MAX_THREADS);
        assert_eq!(description.members.name, None);
        assert_eq!(description.flags, FlagMasks::default());
        assert_eq!(description.running, RunningRule::default());
        assert_eq!(description.switch_frame, SwitchFrame::Cfi);
    }

    #[test]
    fn unknown_built_in_lists_known() {
        let error = Description::built_in("linux").unwrap_err().to_string();
        assert!(error.contains("stardust-test, mini-os"), "{error}");
    }

    #[test]
    fn unknown_key_rejected() {
        let error = Description::parse(&with("[members2]\nx = 1\n"), "test.toml").unwrap_err();
        assert!(matches!(error, DescriptionError::InvalidToml { .. }), "{error}");
        assert!(error.to_string().contains("test.toml"), "{error}");
    }

    #[test]
    fn missing_required_member_rejected() {
        let text = MINIMAL.replace("ip = \"ip\"\n", "");
        let error = Description::parse(&text, "test").unwrap_err().to_string();
        assert!(error.contains("ip"), "{error}");
    }

    #[test]
    fn bad_member_path_rejected() {
        for path in ["", "a..b", "1st", "a-b", "a.b."] {
            let text = MINIMAL.replace("sp = \"sp\"", &format!("sp = {path:?}"));
            let error = Description::parse(&text, "test").unwrap_err();
            assert!(
                matches!(&error, DescriptionError::InvalidMemberPath { field: "members.sp", path: bad, .. } if bad == path),
                "{path:?}: {error}"
            );
        }
    }

    #[test]
    fn nested_member_path_accepted() {
        let text = MINIMAL.replace("next = \"next\"", "next = \"link.tqe_next\"");
        assert_eq!(Description::parse(&text, "test").unwrap().list.next, "link.tqe_next");
    }

    #[test]
    fn bad_head_symbol_rejected() {
        let text = MINIMAL.replace("head = \"threads\"", "head = \"a b\"");
        let error = Description::parse(&text, "test").unwrap_err();
        assert!(matches!(error, DescriptionError::InvalidHeadSymbol { .. }), "{error}");
    }

    #[test]
    fn zero_mask_rejected() {
        let text = format!("{}[flags]\nrunning = 0\n", MINIMAL.replace("ip = \"ip\"", "ip = \"ip\"\nflags = \"flags\""));
        let error = Description::parse(&text, "test").unwrap_err();
        assert!(matches!(error, DescriptionError::InvalidMask { field: "running", .. }), "{error}");
    }

    #[test]
    fn mask_without_flags_member_rejected() {
        let error = Description::parse(&with("[flags]\nskip = 8\n"), "test").unwrap_err();
        assert!(matches!(error, DescriptionError::MissingFlagsMember { field: "skip", .. }), "{error}");
    }

    #[test]
    fn max_threads_bounds() {
        for value in [0, MAX_THREADS_LIMIT + 1] {
            let text = MINIMAL.replace("next = \"next\"", &format!("next = \"next\"\nmax_threads = {value}"));
            let error = Description::parse(&text, "test").unwrap_err();
            assert!(matches!(error, DescriptionError::InvalidMaxThreads { value: bad, .. } if bad == value), "{error}");
        }
        let text = MINIMAL.replace("next = \"next\"", "next = \"next\"\nmax_threads = -1");
        assert!(matches!(Description::parse(&text, "test"), Err(DescriptionError::InvalidToml { .. })));
    }

    #[test]
    fn stack_size_must_be_page_power_of_two() {
        for value in [0x3000u64, 0x800, 0] {
            let text = with(&format!("[running]\ncurrent_at_stack_base_size_bytes = {value}\n"));
            let error = Description::parse(&text, "test").unwrap_err();
            assert!(matches!(error, DescriptionError::InvalidStackSize { value: bad, .. } if bad == value), "{error}");
        }
        let text = with("[running]\ncurrent_at_stack_base_size_bytes = 0x10000\n");
        assert_eq!(Description::parse(&text, "test").unwrap().running.current_at_stack_base_size_bytes, Some(0x10000));
    }

    #[test]
    fn pushed_switch_frame_registers_checked() {
        let good = with("[switch_frame]\nkind = \"pushed\"\nfunction = \"switch\"\nregisters = [\"r15\", \"rbp\"]\n");
        let description = Description::parse(&good, "test").unwrap();
        assert_eq!(
            description.switch_frame,
            SwitchFrame::Pushed { function: "switch".into(), registers: vec!["r15".into(), "rbp".into()] }
        );
        for bad in ["rsp", "rip", "xmm0"] {
            let text = with(&format!("[switch_frame]\nkind = \"pushed\"\nfunction = \"switch\"\nregisters = [{bad:?}]\n"));
            let error = Description::parse(&text, "test").unwrap_err();
            assert!(matches!(&error, DescriptionError::InvalidRegister { name, .. } if name == bad), "{error}");
        }
        let unknown_kind = with("[switch_frame]\nkind = \"magic\"\n");
        assert!(matches!(Description::parse(&unknown_kind, "test"), Err(DescriptionError::InvalidToml { .. })));
    }
}
