#![no_main]
//! Fuzz target `idx`: see `pouw_fuzz::idx` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::idx(data));
