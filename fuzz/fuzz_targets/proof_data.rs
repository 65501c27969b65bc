#![no_main]
//! Fuzz target `proof_data`: see `pouw_fuzz::proof_data` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::proof_data(data));
