#![no_main]
//! Fuzz target `request`: see `pouw_fuzz::request` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::request(data));
