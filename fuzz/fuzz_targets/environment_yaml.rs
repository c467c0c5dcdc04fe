//! Fuzzes `ferry_pipeline::parse_environment` with arbitrary text: no panic, no stack
//! overflow on a worker-sized stack, positioned diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_fuzz::check_reader(data, ferry_pipeline::parse_environment);
});
