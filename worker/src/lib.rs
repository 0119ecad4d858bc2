//! The Workforce worker: pulls assignments for the capabilities it serves from JetStream, runs
//! each with a [`Handler`] (a shell command via [`CommandHandler`], or Rust code), and stores a
//! [`TaskResult`](workforce_shared::TaskResult) for every attempt before acknowledging it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), workforce_worker::WorkerError> {
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use workforce_shared::Capability;
//! use workforce_worker::{CommandHandler, Handler, Worker, WorkerConfig};
//!
//! let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
//! let capability = Capability::new("echo").expect("valid capability");
//! handlers.insert(capability, Arc::new(CommandHandler::new("cat")));
//! let worker = Worker::connect(WorkerConfig::default(), handlers).await?;
//! worker.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```
//!
//! Delivery guarantees: a worker pulls one message per free slot (no prefetch), so a worker
//! that dies holds at most `concurrency` unacknowledged assignments, which JetStream redelivers
//! after `ack_wait`. A result is acknowledged by the broker (deduplicated by message id) before
//! the assignment is acknowledged, so no finished attempt is lost, and a repeat of the same
//! attempt (a redelivery) is stored once within the stream's duplicate window.
//!
//! # Layout
//! - `handler`: the [`Handler`] trait, [`TaskContext`], [`HandlerError`], [`handler_fn`].
//! - `stop`: [`StopSignal`], raised when the coordinator asks to stop an attempt, with the
//!   grace a handler has to stop cleanly; [`StopRequester`] raises it.
//! - `control`: what an attempt tells its run beside its output ([`Growth`]: spawn, branch;
//!   and its usage report), recorded through its context and taken by the worker;
//!   [`SpawnTask`] builds a spawn entry.
//! - `command`: [`CommandHandler`], which runs `sh -c COMMAND` per attempt; its stdin, stdout,
//!   control-file, exit-code and timeout contract is documented on the type.
//! - `control_file`: a command's per-attempt control file (`WORKFORCE_CONTROL`): created,
//!   read within the output limit once the command has ended, and settled into what it asks
//!   of the run and reports using.
//! - `capture`: bounded readers for a command's stdout (capped, counted) and stderr (tail).
//! - `process_group`: signals everything a command started: TERM when its attempt is to
//!   stop, KILL when it times out, is abandoned or does not stop within the grace.
//! - `config`: [`WorkerConfig`] with defaults in code, [`CommandSpec`], [`ConfigError`].
//! - `cli`: [`WorkerArgs`], the layered loader (defaults, TOML file, `WORKFORCE_*`, flags).
//! - `worker`: [`Worker`]: connecting (streams, consumers) separate from running.
//! - `run_loop`: the running worker, sole owner of the in-flight attempts, pull loops and
//!   heartbeat; serves, then drains, then announces it stopped.
//! - `intake`: one pull loop per capability, gated by the worker-wide concurrency limit;
//!   undecodable assignments are terminated here.
//! - `attempt`: one attempt's lifecycle: run, keep the message alive, store the result, ack.
//! - `stop_memory`: the attempts the coordinator asked to stop (the last 10,000), so that one
//!   redelivered later is not run.
//! - `breaker`: pure circuit breakers, one per capability: consecutive failures open one, a
//!   cool-down closes it.
//! - `outcome`: pure steps: a handler's work into an outcome (timeout, panic), a result into
//!   bytes that fit a message.
//! - `heartbeat`: the worker's announcements on core NATS, and the process's
//!   identity (instance, start time) they carry.
//! - `clash`: finds another process started with the same worker id (probe at start, its
//!   heartbeats later); the one that started later stops.
//! - `backoff`: retry delays for I/O steps.
//! - `error`: [`WorkerError`].

mod attempt;
mod backoff;
mod breaker;
mod capture;
mod clash;
mod cli;
mod command;
mod config;
mod control;
mod control_file;
mod error;
mod handler;
mod heartbeat;
mod intake;
mod outcome;
mod process_group;
mod run_loop;
mod stop;
mod stop_memory;
mod worker;

pub use cli::WorkerArgs;
pub use command::{
    CommandHandler, DEFAULT_MAX_OUTPUT_BYTES, PERMANENT_FAILURE_EXIT_CODE, STDERR_TAIL_BYTES,
};
pub use config::{CommandSpec, ConfigError, WorkerConfig, default_worker_id};
pub use control::{Growth, SpawnTask};
pub use error::WorkerError;
pub use handler::{BoxFuture, Handler, HandlerError, HandlerFn, TaskContext, handler_fn};
pub use stop::{DEFAULT_STOP_GRACE, StopRequester, StopSignal};
pub use worker::Worker;
