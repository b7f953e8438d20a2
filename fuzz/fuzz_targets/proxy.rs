//! Arbitrary bytes, connections, closes and time jumps against the proxy: see lcs_sim::sip::fuzzcheck.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lcs_sim::sip::fuzzcheck::proxy(data));
