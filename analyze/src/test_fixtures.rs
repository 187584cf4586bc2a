//! Test images built with gcc from `tests/fixtures/`, once per test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn build_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("create a temporary directory for test images")).path()
}

/// Runs gcc with `args` on the fixture `sources`, writing `output` in the
/// shared build directory; panics with gcc's output on failure.
pub fn gcc(output: &str, args: &[&str], sources: &[&str]) -> PathBuf {
    let path = build_dir().join(output);
    let mut command = Command::new("gcc");
    command.args(args).arg("-o").arg(&path);
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
