//! Fuzzes target description parsing: every file, the included ones too,
//! has the fuzzer's contents, so includes nest until the depth limit.
//!
//! Run with `cargo fuzz run target_xml` from `capture/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stardump_capture::gdb::target_xml::parse_target_description;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut fetch = |_: &str| Ok::<_, String>(text.clone());
    if let Ok(layout) = parse_target_description("target.xml", &mut fetch) {
        let _ = layout.g_offsets();
    }
});
