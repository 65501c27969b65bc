#![no_main]
//! Fuzz target `csv`: see `pouw_fuzz::csv` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::csv(data));
