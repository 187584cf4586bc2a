//! Helpers for the end-to-end tests: building the test unikernel and the
//! stardump binaries, running QEMU under a deadline, building and crashing
//! Linux test programs, and asking gdb for the backtraces that stardump's
//! must equal.
//!
//! Every helper that needs an external program fails with the name of the
//! Debian package to install instead of skipping the test: a test that
//! silently skips proves nothing.

pub mod build;
pub mod gdb;
pub mod process;
pub mod qemu;

use std::path::{Path, PathBuf};

/// Returns the root of the stardump workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// Returns the path of `program` on `PATH`, or panics naming the Debian
/// package that provides it.
pub fn require_program(program: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{program}` not found on PATH: install the Debian package `{debian_package}` \
         (apt-get install {debian_package}), or run `bash .ci/run`, which installs it"
    );
}
