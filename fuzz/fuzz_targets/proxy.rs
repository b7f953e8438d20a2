//! Arbitrary bytes, connections, closes and time jumps against the proxy: see lcs_sim::fuzzcheck.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lcs_sim::fuzzcheck::proxy(data));
