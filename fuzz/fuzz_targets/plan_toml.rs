#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use workforce_shared::PlanFormat;

// Plans are read as UTF-8 text; other bytes never reach the parser.
fuzz_target!(|data: &[u8]| -> Corpus {
    match std::str::from_utf8(data) {
        Ok(source) => {
            workforce_fuzz::check_plan(source, PlanFormat::Toml);
            Corpus::Keep
        }
        Err(_) => Corpus::Reject,
    }
});
