//! Feeds arbitrary bytes to the parsers of Xen's vCPU contexts: the HVM
//! save context that `xc_domain_hvm_getcontext` returns, and the PV and HVM
//! `vcpu_guest_context` layouts. Each must return a value or an error,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stardump_capture::xen::context;

fuzz_target!(|data: &[u8]| {
    let _ = context::vcpus_from_hvm_context(data);
    let _ = context::vcpu_from_pv_context(0, data);
    let _ = context::vcpu_from_hvm_vcpu_context(0, data);
    let _ = context::context_online(data);
});
