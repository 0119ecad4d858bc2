//! The Workforce coordinator: schedules plans deterministically, records every input and
//! decision in a redb event log, and talks to workers through NATS JetStream.
//!
//! # Layout
//! - [`api`]: the operator API's messages and its NATS request/reply client.
//! - [`config`]: the coordinator's layered configuration.
//! - [`scheduler`]: the pure state machine: one [`Scheduler::step`] per input, returning the
//!   decisions to record and the effects to carry out (no I/O, no clock).
//! - [`log`]: the redb event log (batched appends, one writer per data directory, versioned).
//! - [`recovery`]: rebuilds the state, timers and owed publishes from a log, deciding nothing.
//! - [`replay`]: re-decides a log's inputs with a fresh scheduler and checks every decision.
//! - [`invariants`]: what every log must keep, checked from the log alone.
//! - [`service`]: the I/O layer: NATS intake, commit-then-act, timers, worker liveness.
//! - [`simulate`]: the real scheduler against simulated workers, faults and restarts in
//!   virtual time.
pub mod api;
pub mod config;
pub mod invariants;
pub mod log;
pub mod recovery;
pub mod replay;
pub mod scheduler;
pub mod service;
pub mod simulate;

pub use api::{ApiClient, ClientError};
pub use config::{CoordinatorArgs, CoordinatorConfig};
pub use log::EventLog;
pub use scheduler::{Decision, Effect, Input, Scheduler, Step};
pub use service::{Coordinator, CoordinatorError};
