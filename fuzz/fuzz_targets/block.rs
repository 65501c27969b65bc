#![no_main]
//! Fuzz target `block`: see `pouw_fuzz::block` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::block(data));
