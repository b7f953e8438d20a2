//! Parse → serialise → parse round-trips (and the parser agrees with its reference).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lcs_sim::fuzzcheck::parse(data));
