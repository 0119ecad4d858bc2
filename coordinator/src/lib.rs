//! The Workforce coordinator: schedules plans deterministically, records every input and
//! decision in a redb event log, and talks to workers through NATS JetStream.
//!
//! # Layout
//! - [`api`]: the operator API's messages and its NATS request/reply client.
//! - [`config`]: the coordinator's layered configuration.
//! - [`log`]: the redb event log (batched appends, one writer per data directory).
//! - [`replay`]: re-runs a log's inputs through a fresh scheduler and checks every decision.
//! - [`scheduler`]: the pure state machine (inputs in, decisions out; no I/O, no clock).
//! - [`service`]: the I/O layer: NATS intake, commit-then-act, timers, worker liveness.
//! - [`simulate`]: the real scheduler against simulated workers in virtual time.
pub mod api;
pub mod config;
pub mod log;
pub mod replay;
pub mod scheduler;
pub mod service;
pub mod simulate;

pub use api::{ApiClient, ClientError};
pub use config::{CoordinatorArgs, CoordinatorConfig};
pub use log::EventLog;
pub use scheduler::{Decision, Input, Scheduler};
pub use service::{Coordinator, CoordinatorError};
