//! The Workforce coordinator: schedules plans deterministically, records every input and
//! decision in a redb event log, and talks to workers through NATS JetStream.
//!
//! # Layout
//! - [`log`]: the redb event log (batched appends, one writer per data directory).
//! - [`replay`]: re-runs a log's inputs through a fresh scheduler and checks every decision.
//! - [`scheduler`]: the pure state machine (inputs in, decisions out; no I/O, no clock).
//! - [`simulate`]: the real scheduler against simulated workers in virtual time.
pub mod log;
pub mod replay;
pub mod scheduler;
pub mod simulate;

pub use scheduler::{Decision, Input, Scheduler};
