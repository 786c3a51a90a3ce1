//! See `sipfence::fuzzing::transports` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipfence::fuzzing::transports(data));
