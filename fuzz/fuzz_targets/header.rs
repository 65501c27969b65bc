#![no_main]
//! Fuzz target `header`: see `pouw_fuzz::header` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::header(data));
