//! The vocabulary both sides of Workforce speak: ids, plans, wire envelopes, subject names and
//! the MessagePack codec.
//!
//! Everything here is pure (no I/O) except [`jetstream`], the thin adapter that declares the
//! streams and consumers named by [`subjects`].
//!
//! # Layout
//! - [`ids`]: validated names and numeric newtypes (`RunId`, `TaskId`, `WorkerId`, `Capability`,
//!   `Attempt`, `EventSeq`).
//! - [`plan`]: parsing and validating a plan file (TOML or JSON) into a [`Plan`].
//! - [`envelope`]: the messages on the wire (assignment, result, heartbeat, dead letter).
//! - [`duration`]: serde for human-written durations ("30s") in config files.
//! - [`codec`]: MessagePack with named fields, a version check and a size limit.
//! - [`subjects`]: the one place that builds subject, stream, consumer and message-id strings.
//! - [`jetstream`]: declares the streams and consumers (the only module that talks to NATS).
//! - [`backoff`]: the retry delay for an attempt, with reproducible jitter.

pub mod backoff;
pub mod codec;
pub mod duration;
pub mod envelope;
pub mod ids;
pub mod jetstream;
pub mod plan;
pub mod subjects;

pub use backoff::retry_delay_ms;
pub use codec::{CodecError, Envelope, decode, encode};
pub use envelope::{
    Assignment, AttemptError, DeadLetter, Heartbeat, Outcome, PROTOCOL_VERSION, StopAttempt,
    TaskResult, WorkerState,
};
pub use ids::{Attempt, Capability, EventSeq, NameError, RunId, TaskId, WorkerId};
pub use plan::{Plan, PlanError, PlanFormat, PlanLimits, PlanProblem, RetryPolicy, TaskSpec};
pub use subjects::{Prefix, Subjects};
