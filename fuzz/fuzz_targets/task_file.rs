#![no_main]
//! Fuzz target `task_file`: see `pouw_fuzz::task_file` and docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pouw_fuzz::task_file(data));
