//! See `sipfence::fuzzing::pcap` for what this target checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipfence::fuzzing::pcap(data));
