#![no_main]
//! Fuzz target `chain_spec`: see `pouw_fuzz::chain_spec` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::chain_spec(data));
