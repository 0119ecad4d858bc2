//! The vocabulary both sides of Workforce speak: ids, plans, wire envelopes, subject names and
//! the MessagePack codec.
//!
//! Everything here is pure (no I/O) except [`jetstream`], the thin adapter that declares the
//! streams and consumers named by [`subjects`], and [`runtime`], the binaries' edges.
//!
//! # Layout
//! - [`ids`]: validated names and numeric newtypes (`RunId`, `TaskId`, `WorkerId`, `Capability`,
//!   `Attempt`, `EventSeq`).
//! - [`plan`]: parsing and validating a plan file (TOML or JSON) into a [`Plan`], and
//!   substituting parameter values into the concrete plan a run records.
//! - [`envelope`]: the messages on the wire (assignment, result, heartbeat, dead letter).
//! - [`duration`]: serde for human-written durations ("30s") in config files.
//! - [`codec`]: MessagePack with named fields, a version check and a size limit.
//! - [`subjects`]: the one place that builds subject, stream, consumer and message-id strings.
//! - [`jetstream`]: declares the streams and consumers (the only module that talks to NATS).
//! - [`backoff`]: the retry delay for an attempt, with reproducible jitter.
//! - [`runtime`]: what both binaries do at their edges: config layering (defaults, TOML file,
//!   `WORKFORCE_*`, flags), the NATS server list (`--nats a,b`), logging (`WORKFORCE_LOG`), the
//!   SIGTERM/SIGINT future and connecting to NATS. The only module besides [`jetstream`] with
//!   I/O; its `servers` and `config` parts are pure.

pub mod backoff;
pub mod codec;
pub mod duration;
pub mod envelope;
pub mod ids;
pub mod jetstream;
pub mod plan;
pub mod runtime;
pub mod subjects;

pub use backoff::retry_delay_ms;
pub use codec::{CodecError, Envelope, decode, encode};
pub use envelope::{
    Assignment, AttemptError, Breaker, DeadLetter, Heartbeat, HeldAttempt, Instance, Outcome,
    PROTOCOL_VERSION, RESULT_VERSION, SPAWN_VERSION, StopAttempt, TaskResult, UpstreamError,
    UpstreamStatus, Usage, UsageError, WorkerState,
};
pub use ids::{Attempt, Capability, EventSeq, NameError, RunId, TaskId, WorkerId};
pub use plan::{
    Limits, ParamError, ParamSpec, ParamValues, Plan, PlanError, PlanFormat, PlanLimits,
    PlanProblem, RetryPolicy, Rung, SpawnScope, TaskDefaults, TaskSpec, Trigger, UpstreamCounts,
    Verdict, validate_spawn,
};
pub use runtime::NatsServers;
pub use subjects::{Prefix, Subjects};
