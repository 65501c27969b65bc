#![no_main]
//! Fuzz target `response`: see `pouw_fuzz::response` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::response(data));
