#![no_main]
//! Fuzz target `iteration_message`: see `pouw_fuzz::iteration_message` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::iteration_message(data));
