//! The README's first command: `stardump bt` on the bundled example
//! snapshot prints the crashed backtrace. The expected output is a reviewed
//! snapshot file; regenerate the example with scripts/make-example.sh and
//! review the new output with `cargo insta review`.

use std::process::Command;

use stardump_tests::build::binaries;
use stardump_tests::workspace_root;

fn run_stardump(args: &[&str]) -> String {
    let output = Command::new(&binaries().stardump)
        .current_dir(workspace_root())
        .args(args)
        .output()
        .expect("running stardump");
    assert!(
        output.status.success(),
        "stardump {args:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stardump printed UTF-8")
}

#[test]
fn example_backtrace() {
    let stdout = run_stardump(&[
        "bt",
        "examples/ud2/unikernel-ud2.sdump",
        "--image",
        "examples/ud2/unikernel-O2-fp.elf",
    ]);
    insta::assert_snapshot!(stdout);
}

#[test]
fn example_info() {
    let stdout = run_stardump(&["info", "examples/ud2/unikernel-ud2.sdump"]);
    // The snapshot's path is printed as given, so the output is the same on
    // every machine.
    insta::assert_snapshot!(stdout);
}

#[test]
fn example_registers() {
    let stdout = run_stardump(&["regs", "examples/ud2/unikernel-ud2.sdump", "--vcpu", "0"]);
    insta::assert_snapshot!(stdout);
}
