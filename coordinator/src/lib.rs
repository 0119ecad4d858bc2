//! The Workforce coordinator: schedules plans deterministically, records every input and
//! decision in a redb event log, and talks to workers through NATS JetStream.
//!
//! # Layout
//! - [`scheduler`]: the pure state machine (inputs in, decisions out; no I/O, no clock).
pub mod scheduler;

pub use scheduler::{Decision, Input, Scheduler};
