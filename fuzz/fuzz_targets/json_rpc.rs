#![no_main]
//! Fuzz target `json_rpc`: see `pouw_fuzz::json_rpc` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::json_rpc(data));
