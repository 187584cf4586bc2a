//! The DWARF of a process's modules, loaded when a frame falls in one, and
//! the frames of one thread grouped by the module that contains them.
//!
//! `bt`, `frame` and `print` read a frame's variables in its own module's
//! DWARF. They read an entry value from the call site in the caller's
//! module, which may be another one: a program calls into glibc, and glibc
//! calls `main`, a `qsort` comparator or a thread's start routine. `bt` and
//! the variable commands build the same [`ThreadModules`], so they resolve
//! entry values alike.

use super::bt::file_address_frames;
use crate::modules::{Module, ModuleSet};
use crate::threads::tail_calls::TailCalls;
use crate::unwind::Backtrace;
use crate::variables::dwarf::DebugInfo;
use crate::variables::location::CallerScope;
use crate::variables::symbols::{ModuleSymbolSet, SymbolTable};

/// The DWARF of one module, for variables and tail calls.
pub(crate) struct ModuleDebug {
    /// The module's DWARF.
    pub(crate) info: DebugInfo,
    /// The module's symbols, relocated by its load bias, with those of the
    /// other modules.
    pub(crate) symbols: SymbolTable,
    /// Indexed on first use.
    tail_calls: Option<TailCalls>,
}

/// The DWARF of each module that has it, loaded on first use, by position
/// in the module set.
#[derive(Default)]
pub(crate) struct ModuleDebugCache {
    by_module: std::collections::HashMap<usize, Option<ModuleDebug>>,
    /// The mapped path of the main program, whose symbol table keeps its
    /// TLS template.
    main: Option<String>,
    /// The dynamic linker's name of each module, by position.
    names: Vec<Option<String>>,
    /// The symbols of every module, read on first use.
    module_symbols: Option<ModuleSymbolSet>,
}

impl ModuleDebugCache {
    /// Creates a cache for `modules`, whose main program is mapped from
    /// `main` and whose modules the dynamic linker names `names`.
    pub(crate) fn new(modules: &ModuleSet, main: Option<&str>, names: &[Option<String>]) -> ModuleDebugCache {
        let mut names = names.to_vec();
        names.resize(modules.modules().len(), None);
        ModuleDebugCache { main: main.map(str::to_owned), names, ..ModuleDebugCache::default() }
    }

    /// Returns the DWARF of the module at `index`, or `None` when it has
    /// none. `modules` is the set `index` points into.
    pub(crate) fn get(&mut self, index: usize, module: &Module, modules: &ModuleSet) -> Option<&mut ModuleDebug> {
        let ModuleDebugCache { by_module, main, names, module_symbols } = self;
        by_module
            .entry(index)
            .or_insert_with(|| {
                if !module.image.has_debug_info() {
                    return None;
                }
                let _span = tracing::debug_span!("debug info", module = %module.mapped_path).entered();
                let module_symbols = module_symbols.get_or_insert_with(|| ModuleSymbolSet::new(modules, names));
                // A shared object's TLS block is not the executable's, so
                // only the main program's table has a TLS template.
                let own = if main.as_deref() == Some(module.mapped_path.as_str()) {
                    SymbolTable::from_image(&module.image)
                } else {
                    let name = names.get(index).cloned().flatten().unwrap_or_else(|| module.mapped_path.clone());
                    SymbolTable::from_shared_object(&module.image).with_file_name(name)
                };
                Some(ModuleDebug {
                    info: module.image.debug_info().clone(),
                    // Globals and symbol names of this module are relocated by its bias.
                    symbols: own.with_load_bias(module.bias).with_function_names(&module.image).with_modules(module_symbols),
                    tail_calls: None,
                })
            })
            .as_mut()
    }

    /// Returns the DWARF of the module at `index` when [`ModuleDebugCache::get`]
    /// loaded it.
    pub(crate) fn loaded(&self, index: usize) -> Option<&ModuleDebug> {
        self.by_module.get(&index)?.as_ref()
    }

    /// Returns the call sites of the module at `index`, when it has DWARF.
    pub(crate) fn tail_calls(&mut self, index: usize, module: &Module, modules: &ModuleSet) -> Option<&TailCalls> {
        let debug = self.get(index, module, modules)?;
        let info = &debug.info;
        Some(debug.tail_calls.get_or_insert_with(|| TailCalls::new(info)))
    }
}

/// The physical frames of one thread, grouped by the module with DWARF that
/// contains each frame's pc.
pub(crate) struct ThreadModules {
    /// For each frame, the position in the module set of the module that
    /// contains its pc.
    frame_modules: Vec<Option<usize>>,
    /// Each module with DWARF that contains a frame, by position in the
    /// module set, with the thread's frames whose pcs are in that module
    /// turned into its file addresses, which its DWARF is looked up by.
    with_frames: Vec<(usize, Backtrace)>,
}

impl ThreadModules {
    /// Groups the frames of `backtrace` by module and loads the DWARF of
    /// each module they fall in into `debug`.
    pub(crate) fn new(backtrace: &Backtrace, modules: &ModuleSet, debug: &mut ModuleDebugCache) -> ThreadModules {
        let frame_modules: Vec<Option<usize>> =
            backtrace.frames.iter().map(|frame| modules.index_for(frame.pc.lookup_address())).collect();
        let mut indexes: Vec<usize> = frame_modules.iter().flatten().copied().collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.retain(|&index| debug.get(index, &modules.modules()[index], modules).is_some());
        let with_frames =
            indexes.into_iter().map(|index| (index, file_address_frames(backtrace, &modules.modules()[index]))).collect();
        ThreadModules { frame_modules, with_frames }
    }

    /// Returns the position in the module set of the module that contains
    /// the pc of frame `frame`.
    pub(crate) fn module_of(&self, frame: usize) -> Option<usize> {
        self.frame_modules.get(frame).copied().flatten()
    }

    /// Returns the modules with DWARF that contain a frame, with the frames
    /// in each one's file addresses.
    pub(crate) fn modules_with_frames(&self) -> &[(usize, Backtrace)] {
        &self.with_frames
    }

    /// Returns, for each frame, the DWARF of its module from `debug`, which
    /// [`ThreadModules::new`] filled: where the call sites of a caller
    /// frame are read (see [`CallerScope`]).
    pub(crate) fn callers<'a>(&'a self, modules: &'a ModuleSet, debug: &'a ModuleDebugCache) -> Vec<Option<CallerScope<'a>>> {
        self.frame_modules
            .iter()
            .map(|module| {
                let index = (*module)?;
                let (_, frames) = self.with_frames.iter().find(|(with, _)| *with == index)?;
                let loaded = debug.loaded(index)?;
                let module = &modules.modules()[index];
                Some(CallerScope {
                    info: &loaded.info,
                    load_bias: module.bias,
                    frames: &frames.frames,
                    image: Some(&module.image),
                })
            })
            .collect()
    }
}
