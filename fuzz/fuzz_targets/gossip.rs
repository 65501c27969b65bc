#![no_main]
//! Fuzz target `gossip`: see `pouw_fuzz::gossip` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::gossip(data));
