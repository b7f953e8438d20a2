//! The framer yields the same frames whether the bytes arrive whole or cut anywhere.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lcs_sim::fuzzcheck::framer(data));
