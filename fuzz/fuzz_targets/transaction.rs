#![no_main]
//! Fuzz target `transaction`: see `pouw_fuzz::transaction` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::transaction(data));
