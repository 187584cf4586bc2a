//! The images a target has loaded, each with its load bias.
//!
//! A unikernel is one image linked at its run-time addresses, so its
//! [`ModuleSet`] has one module with bias 0 that covers every address. A
//! Linux process maps its executable and every shared object at addresses
//! chosen at run time. [`ModuleSet::from_file_mappings`] finds each mapped
//! ELF file by path, by build id or through its `.gnu_debuglink` (see
//! [`crate::debug_file`]). It computes the bias as the dynamic linker does
//! (`l_addr`): the address of the mapping at file offset 0 minus the
//! page-aligned `p_vaddr` of the file's first `PT_LOAD`.
//!
//! A run-time address is the file address plus the bias, modulo 2^64.
//! DWARF, CFI and symbol lookups take file addresses, so callers subtract
//! the bias before a lookup and show run-time addresses to the user.

use std::sync::Arc;
use std::path::{Path, PathBuf};

use stardump_format::{Core, FileMapping, Target};

use crate::check::hex;
use crate::debug_file::{is_regular_file, read_build_id, DebugSearch};
use crate::image::Image;

/// Suffix the kernel appends to the path of a file deleted after it was mapped.
const DELETED_SUFFIX: &str = " (deleted)";

/// Page size used to align `p_vaddr`, as the x86_64 dynamic linker does.
const PAGE_BYTES: u64 = 4096;

/// `AT_SYSINFO_EHDR`: the auxiliary vector entry with the vDSO's address.
const AT_SYSINFO_EHDR: u64 = 33;

/// Maximum size of a vDSO image read from a core. x86_64 kernels map two
/// pages of vDSO code, so a larger header is damage.
const MAX_VDSO_BYTES: u64 = 1 << 20;

/// Name of the vDSO module, as `/proc/PID/maps` names the mapping.
pub const VDSO_NAME: &str = "[vdso]";

/// Maximum number of mapped files loaded as modules, so that a crafted core
/// listing many mappings cannot make the analyzer open and index files
/// without bound. NOTE: a guess, far above the few hundred shared objects
/// of a large process.
const MAX_MODULES: usize = 4096;

/// One loaded image and where it is mapped.
#[derive(Debug)]
pub struct Module {
    /// The ELF file, with its debug file when one was found. It is shared
    /// with the symbol tables, which read its DWARF on first use.
    pub image: Arc<Image>,
    /// Run-time address minus file address, modulo 2^64.
    pub bias: u64,
    /// First run-time address of the image's `PT_LOAD` segments.
    pub start: u64,
    /// Run-time address one past the end of the last segment.
    pub end: u64,
    /// The path the target names the file by (the `NT_FILE` path), or the
    /// image path for a unikernel.
    pub mapped_path: String,
}

impl Module {
    /// Returns the file address of the run-time `address`.
    pub fn file_address(&self, address: u64) -> u64 {
        address.wrapping_sub(self.bias)
    }

    /// Returns the run-time address of the file address `address`.
    pub fn runtime_address(&self, address: u64) -> u64 {
        address.wrapping_add(self.bias)
    }

    /// Returns whether the run-time `address` lies in the module's segments.
    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }
}

/// The images of one target, sorted by address and without overlaps.
#[derive(Debug, Default)]
pub struct ModuleSet {
    modules: Vec<Module>,
}

/// A warning about a mapped file that gave no image, or an image without
/// DWARF or with another build id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleWarning {
    /// The path the target names the file by.
    pub mapped_path: String,
    /// Run-time address of the mapping at file offset 0.
    pub address: u64,
    /// The missing part and its cause.
    pub reason: String,
}

impl std::fmt::Display for ModuleWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {:#x}: {}", self.mapped_path, self.address, self.reason)
    }
}

impl ModuleSet {
    /// Returns a set of one image linked at its run-time addresses, which
    /// covers the whole address space, as a unikernel's does.
    pub fn single(image: Image) -> ModuleSet {
        let mapped_path = image.path().display().to_string();
        ModuleSet { modules: vec![Module { image: Arc::new(image), bias: 0, start: 0, end: u64::MAX, mapped_path }] }
    }

    /// Returns the modules in address order.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// Returns whether no image was loaded.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Returns the module whose segments contain the run-time `address`.
    pub fn module_for(&self, address: u64) -> Option<&Module> {
        self.index_for(address).map(|index| &self.modules[index])
    }

    /// Returns the position in [`ModuleSet::modules`] of the module whose
    /// segments contain the run-time `address`.
    pub fn index_for(&self, address: u64) -> Option<usize> {
        let index = self.modules.partition_point(|module| module.start <= address).checked_sub(1)?;
        self.modules[index].contains(address).then_some(index)
    }

    /// Loads every ELF file that `mappings` map at file offset 0.
    ///
    /// `executable` names the mapping of the main program and `image_override`
    /// an explicit file for it (the user's `--image`), which is used even
    /// when its build id differs, with a warning. Files that cannot be found
    /// or do not match are left out, each with a warning.
    pub fn from_file_mappings(
        mappings: &[FileMapping],
        executable: Option<&FileMapping>,
        image_override: Option<&Path>,
        search: &DebugSearch,
    ) -> (ModuleSet, Vec<ModuleWarning>) {
        let mut modules: Vec<Module> = Vec::new();
        let mut warnings = Vec::new();
        let mut loaded_paths = std::collections::HashSet::new();
        // The vDSO has no file; add_vdso loads it from memory.
        for mapping in mappings.iter().filter(|mapping| mapping.file_offset == 0 && mapping.path != VDSO_NAME) {
            let is_executable = executable.is_some_and(|exe| exe.start == mapping.start);
            let override_path = image_override.filter(|_| is_executable);
            let warn = |reason: String| ModuleWarning {
                mapped_path: mapping.path.clone(),
                address: mapping.start,
                reason,
            };
            // The dynamic linker maps an ELF file at offset 0 once, so a
            // second such mapping of the same path is data, not code.
            if !loaded_paths.insert(mapping.path.as_str()) {
                tracing::debug!(path = %mapping.path, start = format_args!("{:#x}", mapping.start), "path mapped at offset 0 again");
                continue;
            }
            if modules.len() == MAX_MODULES {
                warnings.push(warn(format!("no symbols: more than {MAX_MODULES} files are mapped, so the rest were not loaded")));
                break;
            }
            // A file mapped at offset 0 that is no ELF file (a locale
            // archive, a font) is no module, and no warning either.
            match load_mapping(mapping, override_path, search) {
                Ok(Some((module, degraded))) => {
                    warnings.extend(degraded.map(warn));
                    if let Some(overlapping) = modules.iter().find(|m| m.start < module.end && module.start < m.end) {
                        warnings.push(warn(format!(
                            "its segments {:#x}..{:#x} overlap those of {}, so it was left out",
                            module.start, module.end, overlapping.mapped_path
                        )));
                        continue;
                    }
                    modules.push(module);
                }
                Ok(None) => {}
                Err(reason) => warnings.push(warn(reason)),
            }
        }
        modules.sort_by_key(|module| module.start);
        (ModuleSet { modules }, warnings)
    }
}

impl ModuleSet {
    /// Adds the vDSO of a Linux process, read from its memory as gdb does,
    /// because the kernel's signal return and time functions have no file.
    /// The address comes from a core's auxiliary vector or from the
    /// `[vdso]` mapping a `pid:` snapshot records. Returns a warning when the
    /// address is known but the image cannot be read, and nothing when
    /// there is no vDSO address.
    pub fn add_vdso(&mut self, core: &Core) -> Option<ModuleWarning> {
        let address = match core {
            Core::LinuxCore(linux) => {
                linux.auxv().iter().find(|&&(key, _)| key == AT_SYSINFO_EHDR).map(|&(_, value)| value)?
            }
            _ => core.file_mappings().iter().find(|mapping| mapping.path == VDSO_NAME)?.start,
        };
        let warn = |reason: String| ModuleWarning { mapped_path: VDSO_NAME.to_owned(), address, reason };
        let module = match read_vdso(core, address) {
            Ok(module) => module,
            Err(reason) => return Some(warn(reason)),
        };
        if let Some(overlapping) = self.modules.iter().find(|m| m.start < module.end && module.start < m.end) {
            return Some(warn(format!("it overlaps {}, so it was left out", overlapping.mapped_path)));
        }
        let position = self.modules.partition_point(|m| m.start < module.start);
        self.modules.insert(position, module);
        None
    }
}

/// Reads the vDSO's ELF image at `address` from `core` and loads it.
fn read_vdso(core: &Core, address: u64) -> Result<Module, String> {
    let read = |offset: u64, len: usize| -> Result<Vec<u8>, String> {
        let mut bytes = vec![0u8; len];
        let at = address.checked_add(offset).ok_or("the vDSO's end overflows")?;
        core.read_virtual(0, at, &mut bytes).map_err(|error| format!("no symbols: {error}"))?;
        Ok(bytes)
    };

    let header = read(0, 64)?;
    if !header.starts_with(b"\x7fELF") || header[4] != 2 {
        return Err("no symbols: no 64-bit ELF header at the vDSO's address".into());
    }
    let u16_at = |offset: usize| u64::from(u16::from_le_bytes([header[offset], header[offset + 1]]));
    let u64_at = |offset: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[offset..offset + 8]);
        u64::from_le_bytes(word)
    };
    // The image ends with whichever table comes last: the section headers
    // (e_shoff, e_shentsize, e_shnum) or the program headers.
    let table_end = |offset: u64, entry_size: u64, count: u64| entry_size.checked_mul(count)?.checked_add(offset);
    let sections_end = table_end(u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    let segments_end = table_end(u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let len = sections_end.zip(segments_end).map(|(a, b)| a.max(b)).filter(|&len| len <= MAX_VDSO_BYTES);
    let len = len.ok_or_else(|| format!("no symbols: its ELF header gives a size above {MAX_VDSO_BYTES} bytes"))?;
    let bytes = read(0, len as usize)?;

    let image = Image::from_bytes(Path::new(VDSO_NAME), bytes).map_err(|error| format!("no symbols: {error}"))?;
    let bias = load_bias(&image, address).ok_or("no symbols: the vDSO has no PT_LOAD segment at offset 0")?;
    let (file_start, file_end) = segment_range(&image).unwrap_or((0, 0));
    let (start, end) = (file_start.wrapping_add(bias), file_end.wrapping_add(bias));
    if end < start {
        return Err(format!("no symbols: its segments wrap around the address space at bias {bias:#x}"));
    }
    tracing::debug!(address = format_args!("{address:#x}"), len, "loaded the vDSO");
    Ok(Module { image: Arc::new(image), bias, start, end, mapped_path: VDSO_NAME.to_owned() })
}

/// Returns the mapping of the main program of a process core: from the
/// auxiliary vector of a Linux core, or for a process snapshot the mapping
/// at file offset 0 whose build id is the one the capture recorded.
pub fn executable_mapping(core: &Core) -> Option<&FileMapping> {
    if let Core::LinuxCore(linux) = core {
        return linux.executable();
    }
    let build_id = core.metadata().image_build_id.as_deref()?;
    core.file_mappings().iter().find(|mapping| mapping.file_offset == 0 && mapping.build_id.as_deref() == Some(build_id))
}

/// Returns the path of a mapped file as it is on disk: without the
/// kernel's " (deleted)" suffix.
fn disk_path(mapping: &FileMapping) -> &str {
    mapping.path.strip_suffix(DELETED_SUFFIX).unwrap_or(&mapping.path)
}

/// Loads the image mapped by `mapping`. Returns `Ok(None)` for a file that
/// is not ELF, the module with an optional warning about what it lacks, or
/// why no module could be loaded.
fn load_mapping(
    mapping: &FileMapping,
    override_path: Option<&Path>,
    search: &DebugSearch,
) -> Result<Option<(Module, Option<String>)>, String> {
    let path = override_path.map_or_else(|| PathBuf::from(disk_path(mapping)), Path::to_owned);
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned());
    let expected = mapping.build_id.as_deref();
    let mut notes = Vec::new();

    // The file at the path, when its build id matches or the core has none.
    let on_disk = read_build_id(&path);
    let mut file = match (&on_disk, expected) {
        (_, _) if override_path.is_some() => {
            if let (Some(found), Some(expected)) = (&on_disk, expected) {
                if found.as_slice() != expected {
                    notes.push(format!(
                        "the image {} has build id {}, the core records {}; names and lines may be wrong",
                        path.display(),
                        hex(found),
                        hex(expected)
                    ));
                }
            }
            Some(path.clone())
        }
        (Some(found), Some(expected)) if found.as_slice() == expected => Some(path.clone()),
        (Some(_), None) => Some(path.clone()),
        (None, None) => {
            if !path.exists() {
                return Err(format!("no symbols: {} not found and the core records no build id", path.display()));
            }
            if !is_elf(&path) {
                return Ok(None);
            }
            Some(path.clone())
        }
        (found, Some(expected)) => {
            let reason = match found {
                Some(found) => format!("{} has build id {}", path.display(), hex(found)),
                None if path.exists() => format!("{} has no build id", path.display()),
                None => format!("{} not found", path.display()),
            };
            tracing::debug!(%reason, build_id = hex(expected), "file at the mapped path does not match");
            notes.push(reason);
            None
        }
    };

    // Another copy with the right build id in the debug directories.
    if file.is_none() {
        if let Some(expected) = expected {
            file = search.find_by_build_id(expected, name.as_deref());
            if file.is_none() {
                return Err(format!(
                    "no symbols: {}, and no file with build id {} in {}",
                    notes.join(", "),
                    hex(expected),
                    describe_dirs(search)
                ));
            }
        }
    }
    let Some(file) = file else {
        return Err("no symbols: no file found".into());
    };

    let mut image = Image::open(&file).map_err(|error| format!("no symbols: {error}"))?;
    if !image.has_debug_info() {
        match find_debug_file(&image, search) {
            Some(debug_path) => {
                image = Image::open_split(&file, &debug_path)
                    .map_err(|error| format!("no symbols: with debug file {}: {error}", debug_path.display()))?;
            }
            None => notes.push(format!(
                "no DWARF: {} is stripped and no separate debug file was found{} in {}",
                file.display(),
                describe_keys(&image),
                describe_dirs(search)
            )),
        }
    }
    if image.lacks_code() {
        notes.push(format!(
            "no code: {} has no bytes in its code sections, as in a separate debug file; pass the program \
             itself and find its debug file with --debug-dir",
            file.display()
        ));
    }
    if image.symbols().is_empty() && !image.has_debug_info() {
        notes.push(format!("no symbols: {} has neither a symbol table nor DWARF", file.display()));
    }

    let bias = load_bias(&image, mapping.start)
        .ok_or_else(|| format!("no symbols: {} has no PT_LOAD segment at file offset 0", file.display()))?;
    let (file_start, file_end) = segment_range(&image).unwrap_or((0, 0));
    let module = Module {
        start: file_start.wrapping_add(bias),
        end: file_end.wrapping_add(bias),
        bias,
        mapped_path: mapping.path.clone(),
        image: Arc::new(image),
    };
    if module.end < module.start {
        return Err(format!("no symbols: its segments wrap around the address space at bias {bias:#x}"));
    }
    tracing::debug!(
        path = %mapping.path,
        file = %file.display(),
        debug_file = ?module.image.debug_path(),
        bias = format_args!("{bias:#x}"),
        start = format_args!("{:#x}", module.start),
        end = format_args!("{:#x}", module.end),
        "loaded module"
    );
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Some((module, note)))
}

/// Finds the separate debug file of the stripped `image`: by build id,
/// then through `.gnu_debuglink`, as gdb does.
fn find_debug_file(image: &Image, search: &DebugSearch) -> Option<PathBuf> {
    let by_build_id = image.build_id().and_then(|build_id| {
        search.build_id_candidates(build_id).into_iter().find(|path| {
            path.as_path() != image.path() && read_build_id(path).as_deref() == Some(build_id)
        })
    });
    by_build_id.or_else(|| image.debug_link().and_then(|link| search.find_by_debug_link(image.path(), link)))
}

/// Describes what a debug file was looked up by, for a warning.
fn describe_keys(image: &Image) -> String {
    let mut keys = Vec::new();
    if let Some(build_id) = image.build_id() {
        keys.push(format!("build id {}", hex(build_id)));
    }
    if let Some(link) = image.debug_link() {
        keys.push(format!(".gnu_debuglink {}", link.file_name));
    }
    match keys.is_empty() {
        true => String::new(),
        false => format!(" (by {})", keys.join(" or ")),
    }
}

fn describe_dirs(search: &DebugSearch) -> String {
    let dirs: Vec<String> = search.directories().iter().map(|dir| dir.display().to_string()).collect();
    dirs.join(", ")
}

/// Returns whether the file at `path` starts with the ELF magic.
fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    if !is_regular_file(path) {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Returns the load bias of `image` mapped with file offset 0 at
/// `mapped_start`: the mapped address minus the page-aligned `p_vaddr` of
/// the segment that maps file offset 0.
fn load_bias(image: &Image, mapped_start: u64) -> Option<u64> {
    let first = image
        .segments()
        .iter()
        .find(|segment| segment.file_offset < PAGE_BYTES && segment.memory_len_bytes > 0)?;
    let aligned = first.address & !(PAGE_BYTES - 1);
    Some(mapped_start.wrapping_sub(aligned))
}

/// Returns the file addresses spanned by the image's `PT_LOAD` segments.
fn segment_range(image: &Image) -> Option<(u64, u64)> {
    let mut ranges = image
        .segments()
        .iter()
        .filter(|segment| segment.memory_len_bytes > 0)
        .filter_map(|segment| Some((segment.address, segment.address.checked_add(segment.memory_len_bytes)?)));
    let first = ranges.next()?;
    Some(ranges.fold(first, |(start, end), (s, e)| (start.min(s), end.max(e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;

    /// Address at which the tests place the program's first mapping.
    const MAPPED_AT: u64 = 0x5555_5555_4000;

    /// Builds a position-independent program once, because tests of one
    /// process building the same file at once race on its temporary name.
    fn pie() -> PathBuf {
        static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        PATH.get_or_init(|| {
            test_fixtures::gcc("inline-pie", &["-O2", "-g", "-fpie", "-pie", "-Wl,--build-id"], &["inline.c"])
        })
        .clone()
    }

    fn mapping(path: &Path, build_id: Option<Vec<u8>>) -> FileMapping {
        FileMapping {
            start: MAPPED_AT,
            end: MAPPED_AT + 0x1000,
            file_offset: 0,
            path: path.display().to_string(),
            build_id,
        }
    }

    fn no_system_dir(dirs: Vec<PathBuf>) -> DebugSearch {
        DebugSearch { debug_dirs: dirs, system_dir: false }
    }

    #[test]
    fn pie_bias_is_mapped_address() {
        let path = pie();
        let build_id = read_build_id(&path);
        let (set, warnings) = ModuleSet::from_file_mappings(&[mapping(&path, build_id)], None, None, &no_system_dir(vec![]));
        assert_eq!(warnings, Vec::new());
        let module = &set.modules()[0];
        // gcc links a PIE's first PT_LOAD at address 0.
        assert_eq!(module.bias, MAPPED_AT);
        let outer = module.image.symbols().iter().find(|symbol| symbol.name == "outer").unwrap().address;
        let runtime = module.runtime_address(outer);
        assert_eq!(set.module_for(runtime).map(|m| m.bias), Some(MAPPED_AT));
        assert_eq!(module.file_address(runtime), outer);
        assert!(set.module_for(MAPPED_AT - 1).is_none());
    }

    #[test]
    fn build_id_mismatch_warns() {
        let path = pie();
        let wrong = vec![0xab; 20];
        let (set, warnings) = ModuleSet::from_file_mappings(&[mapping(&path, Some(wrong))], None, None, &no_system_dir(vec![]));
        assert!(set.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].reason.contains("no file with build id abababab"), "{}", warnings[0]);
        assert_eq!(warnings[0].address, MAPPED_AT);
    }

    #[test]
    fn image_override_replaces_executable() {
        let path = pie();
        let missing = mapping(Path::new("/nonexistent/program"), None);
        let (set, warnings) =
            ModuleSet::from_file_mappings(std::slice::from_ref(&missing), Some(&missing), Some(&path), &no_system_dir(vec![]));
        assert_eq!(warnings, Vec::new());
        assert_eq!(set.modules()[0].image.path(), path.as_path());
        assert_eq!(set.modules()[0].mapped_path, "/nonexistent/program");
    }

    #[test]
    fn missing_file_warns() {
        let (set, warnings) = ModuleSet::from_file_mappings(
            &[mapping(Path::new("/nonexistent/libfoo.so"), None)],
            None,
            None,
            &no_system_dir(vec![]),
        );
        assert!(set.is_empty());
        assert!(warnings[0].reason.contains("not found"), "{}", warnings[0]);
    }

    #[test]
    fn second_offset_zero_mapping_skipped() {
        let path = pie();
        let build_id = read_build_id(&path);
        let mut again = mapping(&path, build_id.clone());
        again.start = MAPPED_AT + 0x10_0000;
        again.end = again.start + 0x1000;
        let (set, warnings) =
            ModuleSet::from_file_mappings(&[mapping(&path, build_id), again], None, None, &no_system_dir(vec![]));
        assert_eq!(warnings, Vec::new());
        assert_eq!(set.modules().len(), 1);
        assert_eq!(set.modules()[0].bias, MAPPED_AT);
    }

    #[test]
    fn non_elf_mapping_is_silent() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("locale-archive");
        std::fs::write(&data, b"not an ELF file").unwrap();
        let (set, warnings) = ModuleSet::from_file_mappings(&[mapping(&data, None)], None, None, &no_system_dir(vec![]));
        assert!(set.is_empty());
        assert_eq!(warnings, Vec::new());
    }

    #[test]
    fn stripped_file_finds_debug_file_by_build_id() {
        let dir = tempfile::tempdir().unwrap();
        let stripped = dir.path().join("program");
        let debug = dir.path().join("program.debug");
        std::fs::copy(pie(), &stripped).unwrap();
        let run = |args: &[&std::ffi::OsStr]| {
            let status = std::process::Command::new(args[0]).args(&args[1..]).status();
            assert!(status.is_ok_and(|status| status.success()), "{args:?} failed: install the Debian package binutils");
        };
        run(&["objcopy".as_ref(), "--only-keep-debug".as_ref(), stripped.as_os_str(), debug.as_os_str()]);
        run(&["strip".as_ref(), "--strip-all".as_ref(), stripped.as_os_str()]);
        let build_id = read_build_id(&stripped).expect("the fixture has a build id");
        let debug_dir = dir.path().join("debug");
        let tree = DebugSearch::new(vec![debug_dir.clone()]).build_id_candidates(&build_id).remove(0);
        std::fs::create_dir_all(tree.parent().unwrap()).unwrap();
        std::fs::rename(&debug, &tree).unwrap();

        let (set, warnings) =
            ModuleSet::from_file_mappings(&[mapping(&stripped, Some(build_id))], None, None, &no_system_dir(vec![debug_dir]));
        assert_eq!(warnings, Vec::new());
        let image = &set.modules()[0].image;
        assert!(image.has_debug_info());
        assert_eq!(image.debug_path(), Some(tree.as_path()));
        // .eh_frame comes from the stripped file, which has the bytes.
        assert!(image.eh_frame().is_some());
        assert!(image.symbols().iter().any(|symbol| symbol.name == "outer"));
    }
}
