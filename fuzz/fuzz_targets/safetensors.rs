#![no_main]
//! Fuzz target `safetensors`: see `pouw_fuzz::safetensors` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::safetensors(data));
