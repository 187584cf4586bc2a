//! Test images built with gcc from `tests/fixtures/`, once per test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Returns the directory for built test images: under the target
/// directory, because a temporary directory held in a static is never
/// deleted.
fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dir = target.join("test-fixtures/analyze");
        std::fs::create_dir_all(&dir).expect("create the directory for test images");
        dir
    })
}

/// Runs gcc with `args` on the fixture `sources`, writing `output` in the
/// shared build directory; panics with gcc's output on failure.
pub fn gcc(output: &str, args: &[&str], sources: &[&str]) -> PathBuf {
    let path = build_dir().join(output);
    // Test processes, and the test threads of one process, may build the
    // same image at once, so each build writes its own file and renames it
    // into place.
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let build = BUILDS.fetch_add(1, Ordering::Relaxed);
    let partial = build_dir().join(format!("{output}.{}.{build}", std::process::id()));
    let mut command = Command::new("gcc");
    command.args(args).arg("-o").arg(&partial);
    for source in sources {
        command.arg(fixture_dir().join(source));
    }
    let result = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run gcc ({error}): install the Debian package gcc"));
    assert!(
        result.status.success(),
        "gcc {args:?} {sources:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&partial, &path).expect("rename the built test image into place");
    path
}

/// The freestanding image of `trap_stack.S`, built once.
pub fn trap_image_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        gcc(
            "trap_stack.elf",
            &["-nostdlib", "-static", "-no-pie", "-g", "-Wl,--build-id", "-Wl,-e,entry"],
            &["trap_stack.S"],
        )
    })
}

/// The freestanding image of `hypercall_stack.S`, built once.
pub fn hypercall_image_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        gcc(
            "hypercall_stack.elf",
            &["-nostdlib", "-static", "-no-pie", "-g", "-Wl,-e,entry"],
            &["hypercall_stack.S"],
        )
    })
}
