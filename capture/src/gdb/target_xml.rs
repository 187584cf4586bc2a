//! Register layout from the stub's target description (`target.xml` and the
//! feature files it includes through `<xi:include>`).
//!
//! The description fixes each register's name, size and number, and so its
//! offset in a `g` reply. QEMU 7.2, for one, puts fs_base, gs_base,
//! k_gs_base, cr0-cr4, cr8 and efer after the segment selectors, so the
//! client reads the order from here and never assumes one. Fetching the
//! files is left to the caller.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Maximum nesting of `<xi:include>`; gdb's own descriptions use one level.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Maximum number of files fetched for one description. Includes can fan
/// out at every level, so the depth limit alone would allow exponentially
/// many fetches; gdb's own x86_64 descriptions use about five files.
const MAX_FILES: usize = 64;
/// Maximum number of registers; x86_64 with AVX-512 has about 150.
const MAX_REGISTERS: usize = 4096;
/// Maximum register size in bits (AVX-512 zmm registers are 512).
const MAX_REGISTER_BITS: u32 = 4096;

/// Errors of target description parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetXmlError {
    /// The XML is not well formed.
    #[error("invalid XML in {file} at byte {offset}: {reason}")]
    InvalidXml {
        /// The file being parsed.
        file: String,
        /// Byte offset the parser stopped at.
        offset: u64,
        /// The parser's message.
        reason: String,
    },
    /// A `<reg>` element lacks a required attribute or has a bad value.
    #[error("invalid register in {file}: attribute {attribute}='{value}'")]
    InvalidRegister {
        /// The file being parsed.
        file: String,
        /// Attribute name (`name`, `bitsize`, `regnum`).
        attribute: &'static str,
        /// The value found, empty when missing.
        value: String,
    },
    /// Includes nest deeper than [`MAX_INCLUDE_DEPTH`], probably a cycle.
    #[error("target description includes nest deeper than {MAX_INCLUDE_DEPTH} levels at {file}")]
    IncludeTooDeep {
        /// The file that would exceed the depth.
        file: String,
    },
    /// More included files than [`MAX_FILES`].
    #[error("target description includes more than {MAX_FILES} files")]
    TooManyFiles,
    /// More registers than [`MAX_REGISTERS`].
    #[error("target description lists more than {MAX_REGISTERS} registers")]
    TooManyRegisters,
    /// An included file could not be fetched.
    #[error("cannot fetch {file}: {reason}")]
    Fetch {
        /// The file requested.
        file: String,
        /// The fetcher's error message.
        reason: String,
    },
}

/// One register of the target description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterInfo {
    /// Name as gdb spells it (`rip`, `eflags`, `fs_base`).
    pub name: String,
    /// Size in bits.
    pub bitsize: u32,
    /// Register number used by `p` packets and the `g` layout.
    pub regnum: u32,
}

impl RegisterInfo {
    /// Returns the size in bytes, rounded up.
    pub fn len_bytes(&self) -> usize {
        self.bitsize.div_ceil(8) as usize
    }
}

/// Registers of a target, in register-number order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterLayout {
    /// The `<architecture>` element, when present (`i386:x86-64`).
    pub architecture: Option<String>,
    /// Registers sorted by `regnum`.
    pub registers: Vec<RegisterInfo>,
}

impl RegisterLayout {
    /// Returns each register with its byte offset in a `g` reply.
    ///
    /// A `g` reply contains the registers in register-number order, back to
    /// back, so the offset is the sum of the sizes before it.
    pub fn g_offsets(&self) -> Vec<(usize, &RegisterInfo)> {
        let mut offset = 0usize;
        self.registers
            .iter()
            .map(|reg| {
                let at = offset;
                offset += reg.len_bytes();
                (at, reg)
            })
            .collect()
    }

    /// Returns the register named `name`.
    pub fn find(&self, name: &str) -> Option<&RegisterInfo> {
        self.registers.iter().find(|reg| reg.name == name)
    }
}

/// Parses the description `root_file`, fetching included files through
/// `fetch(name) -> contents`.
pub fn parse_target_description(
    root_file: &str,
    fetch: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<RegisterLayout, TargetXmlError> {
    let mut state = ParseState::default();
    parse_file(root_file, 0, fetch, &mut state)?;
    let mut layout = state.layout;
    layout.registers.sort_by_key(|reg| reg.regnum);
    Ok(layout)
}

/// What parsing collected so far, across included files.
#[derive(Default)]
struct ParseState {
    layout: RegisterLayout,
    next_regnum: u32,
    files_fetched: usize,
}

fn parse_file(
    file: &str,
    depth: usize,
    fetch: &mut dyn FnMut(&str) -> Result<String, String>,
    state: &mut ParseState,
) -> Result<(), TargetXmlError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(TargetXmlError::IncludeTooDeep { file: file.to_owned() });
    }
    state.files_fetched += 1;
    if state.files_fetched > MAX_FILES {
        return Err(TargetXmlError::TooManyFiles);
    }
    let text = fetch(file).map_err(|reason| TargetXmlError::Fetch {
        file: file.to_owned(),
        reason,
    })?;

    let mut reader = Reader::from_str(&text);
    let mut in_architecture = false;
    loop {
        let event = reader.read_event().map_err(|error| TargetXmlError::InvalidXml {
            file: file.to_owned(),
            offset: reader.buffer_position(),
            reason: error.to_string(),
        })?;
        match event {
            Event::Start(element) | Event::Empty(element) => match element.name().as_ref() {
                b"reg" => {
                    if state.layout.registers.len() >= MAX_REGISTERS {
                        return Err(TargetXmlError::TooManyRegisters);
                    }
                    let reg = parse_reg(file, &element, state.next_regnum)?;
                    state.next_regnum = reg.regnum.saturating_add(1);
                    state.layout.registers.push(reg);
                }
                b"xi:include" | b"include" => {
                    if let Some(href) = attribute(&element, b"href") {
                        parse_file(&href, depth + 1, fetch, state)?;
                    }
                }
                b"architecture" => in_architecture = true,
                _ => {}
            },
            Event::Text(text) if in_architecture => {
                let name = String::from_utf8_lossy(text.as_ref()).trim().to_owned();
                if !name.is_empty() {
                    state.layout.architecture = Some(name);
                }
            }
            Event::End(_) => in_architecture = false,
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

fn parse_reg(file: &str, element: &BytesStart<'_>, default_regnum: u32) -> Result<RegisterInfo, TargetXmlError> {
    let invalid = |attribute: &'static str, value: Option<String>| TargetXmlError::InvalidRegister {
        file: file.to_owned(),
        attribute,
        value: value.unwrap_or_default(),
    };

    let name = attribute(element, b"name")
        .filter(|name| !name.is_empty())
        .ok_or_else(|| invalid("name", None))?;
    let bitsize_text = attribute(element, b"bitsize");
    let bitsize = bitsize_text
        .as_deref()
        .and_then(|text| text.parse::<u32>().ok())
        .filter(|&bits| bits > 0 && bits <= MAX_REGISTER_BITS)
        .ok_or_else(|| invalid("bitsize", bitsize_text.clone()))?;
    let regnum = match attribute(element, b"regnum") {
        None => default_regnum,
        Some(text) => text.parse::<u32>().map_err(|_| invalid("regnum", Some(text)))?,
    };
    Ok(RegisterInfo { name, bitsize, regnum })
}

fn attribute(element: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|attr| attr.key.as_ref() == key)
        .map(|attr| String::from_utf8_lossy(&attr.value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target><architecture>i386:x86-64</architecture><xi:include href="core.xml"/><xi:include href="extra.xml"/></target>"#;
    const CORE: &str = r#"<?xml version="1.0"?>
<feature name="org.gnu.gdb.i386.core">
  <flags id="i386_eflags" size="4"><field name="CF" start="0" end="0"/></flags>
  <reg name="rax" bitsize="64" type="int64"/>
  <reg name="rip" bitsize="64" type="code_ptr"/>
  <reg name="eflags" bitsize="32" type="i386_eflags"/>
  <reg name="cs" bitsize="32" type="int32"/>
</feature>"#;
    const EXTRA: &str = r#"<feature name="x"><reg name="fs_base" bitsize="64" regnum="10"/><reg name="cr3" bitsize="64"/><reg name="xmm0" bitsize="128" regnum="5"/></feature>"#;

    fn fetch(name: &str) -> Result<String, String> {
        match name {
            "target.xml" => Ok(ROOT.into()),
            "core.xml" => Ok(CORE.into()),
            "extra.xml" => Ok(EXTRA.into()),
            _ => Err(format!("no file {name}")),
        }
    }

    #[test]
    fn includes_are_followed_in_order() {
        let layout = parse_target_description("target.xml", &mut fetch).unwrap();
        assert_eq!(layout.architecture.as_deref(), Some("i386:x86-64"));
        let names: Vec<_> = layout.registers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["rax", "rip", "eflags", "cs", "xmm0", "fs_base", "cr3"]);
    }

    #[test]
    fn regnum_continues_after_explicit_number() {
        let layout = parse_target_description("target.xml", &mut fetch).unwrap();
        assert_eq!(layout.find("cr3").unwrap().regnum, 11);
        assert_eq!(layout.find("cs").unwrap().regnum, 3);
    }

    #[test]
    fn g_offsets_follow_sizes() {
        let layout = parse_target_description("target.xml", &mut fetch).unwrap();
        let offsets: Vec<_> = layout.g_offsets().into_iter().map(|(at, r)| (r.name.as_str(), at)).collect();
        assert_eq!(
            offsets,
            [("rax", 0), ("rip", 8), ("eflags", 16), ("cs", 20), ("xmm0", 24), ("fs_base", 40), ("cr3", 48)]
        );
    }

    #[test]
    fn missing_bitsize_is_rejected() {
        let mut fetch = |_: &str| Ok::<_, String>(r#"<feature><reg name="rax"/></feature>"#.to_owned());
        let error = parse_target_description("a.xml", &mut fetch).unwrap_err();
        assert_eq!(
            error,
            TargetXmlError::InvalidRegister { file: "a.xml".into(), attribute: "bitsize", value: String::new() }
        );
    }

    #[test]
    fn include_cycle_is_rejected() {
        let mut fetch = |_: &str| Ok::<_, String>(r#"<target><xi:include href="a.xml"/></target>"#.to_owned());
        let error = parse_target_description("a.xml", &mut fetch).unwrap_err();
        assert_eq!(error, TargetXmlError::IncludeTooDeep { file: "a.xml".into() });
    }

    #[test]
    fn include_fan_out_is_bounded() {
        let root: String = (0..100).map(|i| format!(r#"<xi:include href="f{i}.xml"/>"#)).collect();
        let root = format!("<target>{root}</target>");
        let mut fetches = 0;
        let mut fetch = |name: &str| {
            fetches += 1;
            Ok::<_, String>(if name == "t.xml" { root.clone() } else { "<feature/>".to_owned() })
        };
        let error = parse_target_description("t.xml", &mut fetch).unwrap_err();
        assert_eq!(error, TargetXmlError::TooManyFiles);
        assert_eq!(fetches, MAX_FILES);
    }

    #[test]
    fn missing_include_names_file() {
        let mut fetch = |name: &str| {
            if name == "t.xml" {
                Ok(r#"<target><xi:include href="gone.xml"/></target>"#.to_owned())
            } else {
                Err("E01".to_owned())
            }
        };
        let error = parse_target_description("t.xml", &mut fetch).unwrap_err();
        assert_eq!(error, TargetXmlError::Fetch { file: "gone.xml".into(), reason: "E01".into() });
    }
}
