//! The checks the fuzz targets run: a plan parser and a wire codec that never panic, whatever
//! bytes they are given, and envelopes that survive `encode` after `decode`.
//!
//! # Layout
//! - `fuzz_targets/`: one libFuzzer entry point per input format, each a call into this crate.
//! - `examples/write_seeds.rs`: writes the MessagePack seeds in `corpus/envelope_decode/`.

use std::collections::BTreeSet;
use std::fmt::Debug;

use workforce_shared::{
    Assignment, DeadLetter, Envelope, Heartbeat, Plan, PlanFormat, PlanLimits, TaskResult, decode,
    encode,
};

/// The message size limit the codec is fuzzed with.
pub const ENVELOPE_LIMIT: usize = 1 << 20;

/// Parses `source` as a plan; a plan that parses must be one the validator promises.
pub fn check_plan(source: &str, format: PlanFormat) {
    match Plan::parse(source, format, &PlanLimits::default()) {
        Ok(plan) => {
            assert!(!plan.tasks.is_empty(), "a valid plan has a task");
            let mut ids = BTreeSet::new();
            for task in &plan.tasks {
                assert!(ids.insert(&task.id), "duplicate task id {}", task.id);
            }
            for task in &plan.tasks {
                for dep in &task.needs {
                    assert!(ids.contains(dep), "{} needs unknown {dep}", task.id);
                    assert_ne!(dep, &task.id, "{} needs itself", task.id);
                }
            }
        }
        // Rendering walks the line numbers and names the parser recorded.
        Err(err) => drop(err.to_string()),
    }
}

/// Decodes `bytes` as every envelope kind; what decodes must encode and decode to itself.
pub fn check_envelopes(bytes: &[u8]) {
    round_trip::<Assignment>(bytes);
    round_trip::<TaskResult>(bytes);
    round_trip::<Heartbeat>(bytes);
    round_trip::<DeadLetter>(bytes);
}

fn round_trip<T: Envelope + PartialEq + Debug>(bytes: &[u8]) {
    let value = match decode::<T>(bytes, ENVELOPE_LIMIT) {
        Ok(value) => value,
        Err(err) => return drop(err.to_string()),
    };
    let encoded = match encode(&value) {
        Ok(encoded) => encoded,
        Err(err) => panic!("{} decoded but does not encode: {err}\n{value:?}", T::KIND),
    };
    match decode::<T>(&encoded, ENVELOPE_LIMIT) {
        Ok(again) => assert_eq!(again, value, "{} changed in a round trip", T::KIND),
        Err(err) => panic!("{} does not decode after encode: {err}\n{value:?}", T::KIND),
    }
}
