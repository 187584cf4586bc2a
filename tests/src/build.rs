//! Builds what the end-to-end tests run: the stardump binaries, with the
//! same profile as the test, and the four variants of the test unikernel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{require_program, workspace_root};

/// The build variants of the test unikernel: optimization level and
/// whether frame pointers are kept.
pub const UNIKERNEL_VARIANTS: [&str; 4] = ["O0-fp", "O0-nofp", "O2-fp", "O2-nofp"];

/// Paths of the two stardump programs.
#[derive(Debug)]
pub struct Binaries {
    /// The analyzer, `stardump`.
    pub stardump: PathBuf,
    /// The capture tool, `stardump-capture`.
    pub capture: PathBuf,
}

/// Returns the target directory that cargo uses for this test binary.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    workspace_root().join("target")
}

/// Builds `stardump` and `stardump-capture` once per test process and
/// returns their paths.
///
/// `cargo test` of this package does not build other packages' binaries,
/// so the tests ask cargo for them. The build is a no-op when they are up
/// to date.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let release = !cfg!(debug_assertions);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace_root())
            .args(["build", "-p", "stardump", "-p", "stardump-capture"]);
        if release {
            command.arg("--release");
        }
        let status = command.status().expect("failed to run cargo build");
        assert!(status.success(), "cargo build of the stardump binaries failed");
        let profile_dir = target_dir().join(if release { "release" } else { "debug" });
        Binaries {
            stardump: profile_dir.join("stardump"),
            capture: profile_dir.join("stardump-capture"),
        }
    })
}

/// Builds every variant of the test unikernel once per test process and
/// returns the directory holding `unikernel-VARIANT.elf`.
pub fn unikernel_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_program("gcc", "gcc");
        require_program("ld", "binutils");
        require_program("make", "make");
        let out = target_dir().join("unikernel");
        let output = Command::new("make")
            .arg("-C")
            .arg(workspace_root().join("tests/unikernel"))
            .arg(format!("OUT={}", out.display()))
            .output()
            .expect("failed to run make");
        assert!(
            output.status.success(),
            "building the test unikernel failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// Returns the path of the unikernel image of `variant`.
pub fn unikernel_image(variant: &str) -> PathBuf {
    let path = unikernel_dir().join(format!("unikernel-{variant}.elf"));
    assert!(path.is_file(), "the unikernel build did not produce {}", path.display());
    path
}
