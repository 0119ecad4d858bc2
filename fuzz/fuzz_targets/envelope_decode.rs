#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| workforce_fuzz::check_envelopes(data));
