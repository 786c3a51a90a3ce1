//! See `sipfence::fuzzing::decide_and_apply` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipfence::fuzzing::decide_and_apply(data));
