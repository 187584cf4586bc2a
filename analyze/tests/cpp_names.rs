//! C++ frame names of Linux process cores, compared with gdb's.
//!
//! tests/fixtures/cpp_crash.cpp is built with g++ at -O0 and at -O2 and
//! crashes twice: once into a kernel core, once under gdb, which writes a
//! gcore file. For each core, every frame of every thread in
//! `stardump bt --json` must have the function name and the argument names
//! of gdb's `thread apply all bt` on the same core. The fixture's frames
//! cover the ways gdb builds a name: demangled linkage names, names built
//! from the DIE tree for lambdas, their callers and an anonymous
//! namespace, inlined frames, and names gdb's C++ parser rejects and shows
//! whole.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stardump_tests::gdb::GdbThread;
use stardump_tests::linux::{build_program, core_backtraces, gdb_core, kernel_core, output_text};
use stardump_tests::require_program;

/// Frames stardump may print per thread; the fixture's threads have fewer
/// than 20.
const FRAME_LIMIT: &str = "100";

/// Names that gdb 13 gives frames of the fixture, one per way of naming.
/// The test checks that gdb's backtraces contain each, so a fixture or
/// compiler change that loses a case fails instead of passing vacuously.
const EXPECTED_NAMES: [&str; 12] = [
    // An inlined template method at -O2, out of line at -O0.
    "app::Box<int>::get",
    // A template function, whose linkage name has a return type.
    "app::twice<int>",
    "app::Outer::Inner::method",
    "app::Counter::operator+=",
    // An ABI tag, which gdb's parser rejects.
    "app::label[abi:cxx11](int)",
    // A lambda's operator(), whose DIE has no linkage name.
    "operator()",
    // A function type as a template argument, which gdb's parser rejects.
    "std::function<void (int)>::operator()(int) const",
    "app::run_all",
    "(anonymous namespace)::start",
    "app::Worker::run",
    // The caller of a lambda through std::thread, named from the DIE tree
    // with its class, and rejected by gdb's parser.
    "std::thread::_State_impl<std::thread::_Invoker<std::tuple<main()::<lambda()> > > >::_M_run(void)",
    "main",
];

/// One frame reduced to what is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NamedFrame {
    function: Option<String>,
    arguments: Vec<String>,
}

impl std::fmt::Display for NamedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.function.as_deref().unwrap_or("??"), self.arguments.join(", "))
    }
}

/// One thread of stardump's JSON: its frames, and the functions it shows
/// as inlined.
struct StardumpThread {
    frames: Vec<NamedFrame>,
    inlined: Vec<String>,
}

fn gdb_frames(thread: &GdbThread) -> Vec<NamedFrame> {
    thread
        .frames
        .iter()
        .map(|frame| NamedFrame {
            function: if frame.signal_frame { Some("<signal handler called>".to_owned()) } else { frame.function.clone() },
            arguments: frame.arguments.clone(),
        })
        .collect()
}

/// Returns stardump's threads of `core`.
fn stardump_threads(core: &Path) -> Vec<StardumpThread> {
    let output = Command::new(env!("CARGO_BIN_EXE_stardump"))
        .arg("bt")
        .arg(core)
        .args(["--json", "--limit", FRAME_LIMIT])
        .output()
        .expect("running stardump");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stardump bt printed no JSON ({error}):\n{}", output_text(&output)));
    let threads = report["threads"].as_array().expect("threads array");
    threads
        .iter()
        .map(|thread| {
            let frames = thread["frames"].as_array().expect("frames array");
            let named = frames
                .iter()
                .map(|frame| {
                    let function = if frame["kind"] == "trap" {
                        Some("<signal handler called>".to_owned())
                    } else {
                        frame["function"].as_str().map(str::to_owned)
                    };
                    let arguments = frame["arguments"]
                        .as_array()
                        .map(|arguments| {
                            arguments.iter().filter_map(|argument| argument["name"].as_str().map(str::to_owned)).collect()
                        })
                        .unwrap_or_default();
                    NamedFrame { function, arguments }
                })
                .collect();
            let inlined = frames
                .iter()
                .filter(|frame| frame["kind"] == "inline")
                .filter_map(|frame| frame["function"].as_str().map(str::to_owned))
                .collect();
            StardumpThread { frames: named, inlined }
        })
        .collect()
}

/// Lists every frame where stardump's name or argument names differ from
/// gdb's, for every thread of `core`, and returns stardump's threads.
fn compare_core(label: &str, program: &Path, core: &Path, mismatches: &mut Vec<String>) -> Vec<StardumpThread> {
    let (gdb_threads, gdb_text) = core_backtraces(program, core, core.parent().expect("core in a directory"));
    let ours = stardump_threads(core);
    assert!(!gdb_threads.is_empty(), "gdb printed no backtrace for {label}:\n{gdb_text}");
    assert_eq!(gdb_threads.len(), ours.len(), "thread count of {label}\ngdb:\n{gdb_text}");

    let gdb_names: Vec<String> =
        gdb_threads.iter().flat_map(|thread| thread.frames.iter().filter_map(|frame| frame.function.clone())).collect();
    for expected in EXPECTED_NAMES {
        assert!(gdb_names.iter().any(|name| name == expected), "gdb shows no frame {expected:?} in {label}:\n{gdb_text}");
    }

    let before = mismatches.len();
    // gdb numbers a core's threads in the order of their NT_PRSTATUS notes,
    // which is stardump's thread order.
    for (index, thread) in ours.iter().enumerate() {
        let gdb_thread = gdb_threads
            .iter()
            .find(|candidate| candidate.number as usize == index + 1)
            .unwrap_or_else(|| panic!("gdb has no thread {} in {label}:\n{gdb_text}", index + 1));
        let expected = gdb_frames(gdb_thread);
        for level in 0..expected.len().max(thread.frames.len()) {
            let (theirs, mine) = (expected.get(level), thread.frames.get(level));
            if theirs != mine {
                let show = |frame: Option<&NamedFrame>| frame.map_or("(none)".to_owned(), ToString::to_string);
                mismatches.push(format!(
                    "{label} thread {} frame #{level}: gdb {}, stardump {}",
                    index + 1,
                    show(theirs),
                    show(mine)
                ));
            }
        }
    }
    if mismatches.len() > before {
        eprintln!("gdb's backtraces of {label}:\n{gdb_text}");
    }
    ours
}

/// Builds the fixture at `optimization`, takes a kernel core and a gcore
/// file of its crash, and compares both with gdb.
fn check_names(optimization: &str) {
    require_program("g++", "g++");
    require_program("gdb", "gdb");
    let run_dir = tempfile::tempdir().expect("creating a run directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cpp_crash.cpp");
    let source = fs::read_to_string(&source).expect("reading tests/fixtures/cpp_crash.cpp");
    let flags = ["-std=c++17", "-g", optimization, "-pthread"];
    let program = build_program(run_dir.path(), "cpp_crash", "g++", &source, &flags);

    let kernel_dir = run_dir.path().join("kernel");
    fs::create_dir(&kernel_dir).expect("creating the kernel core's directory");
    let kernel = kernel_core(&program, &kernel_dir);
    let gcore = gdb_core(&program, &run_dir.path().join("gcore.core"));

    let mut mismatches = Vec::new();
    for (kind, core) in [("kernel core", &kernel), ("gcore", &gcore)] {
        let label = format!("{optimization} {kind}");
        let threads = compare_core(&label, &program, core, &mut mismatches);
        if optimization == "-O2" {
            let inlined = threads.iter().any(|thread| thread.inlined.iter().any(|name| name == "app::Box<int>::get"));
            assert!(inlined, "{label}: app::Box<int>::get is not an inlined frame");
        }
    }
    assert!(mismatches.is_empty(), "{} frames differ from gdb's:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn cpp_names_match_gdb_at_o0() {
    check_names("-O0");
}

#[test]
fn cpp_names_match_gdb_at_o2() {
    check_names("-O2");
}
