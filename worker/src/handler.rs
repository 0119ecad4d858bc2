//! What task code implements: [`Handler`], given a [`TaskContext`], returns an output or a
//! [`HandlerError`] that says whether a retry could help; through the context it may also ask
//! the run to grow (spawn, branch), report what it used (tokens, cost, tool calls), and learn
//! that its attempt is to stop ([`StopSignal`]).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use workforce_shared::{Assignment, Attempt, Capability, RunId, TaskId, UpstreamError, Usage};

pub use futures::future::BoxFuture;

use crate::control::{Control, Growth, UsageReport};
use crate::stop::StopSignal;

/// One attempt of one task, as a handler sees it.
///
/// Beside its output a handler may ask the run to grow: [`spawn`](Self::spawn) tasks and take
/// a [`branch`](Self::branch). Only a success carries what was asked; a failure drops it. It
/// may also [`report_usage`](Self::report_usage), which counts however the attempt ends. What
/// is asked or reported after the handler has returned is ignored with a warning. Clones of a
/// context share what it asks and reports, and its [`stop_signal`](Self::stop_signal).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskContext {
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
    pub capability: Capability,
    pub input: Value,
    /// Outputs of the tasks this one waits for that completed, by task id.
    pub upstream: BTreeMap<TaskId, Value>,
    /// The tasks this one waits for that failed, were canceled or were skipped, with why. Only
    /// a task whose trigger rule runs it past them (`all_done`, say) has any.
    pub upstream_errors: BTreeMap<TaskId, UpstreamError>,
    /// How long the attempt may take. The worker abandons a handler that is still running a
    /// little after this (dropping its future) and reports a retryable timeout.
    pub timeout: Duration,
    control: Control,
    stop: StopSignal,
}

impl TaskContext {
    /// A context with no upstream tasks, asking nothing yet; for tests of handlers.
    pub fn new(
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        capability: Capability,
        input: Value,
        timeout: Duration,
    ) -> Self {
        Self {
            run,
            task,
            attempt,
            capability,
            input,
            upstream: BTreeMap::new(),
            upstream_errors: BTreeMap::new(),
            timeout,
            control: Control::default(),
            stop: StopSignal::never(),
        }
    }

    /// This context, stopped by `signal` instead of never.
    pub fn with_stop_signal(mut self, signal: StopSignal) -> Self {
        self.stop = signal;
        self
    }

    /// Raised when the coordinator asks to stop this attempt (it timed the attempt out, say).
    /// The attempt's outcome no longer counts: a handler that can stop early watches it and
    /// returns within its [`grace`](StopSignal::grace), what it returns being discarded; one
    /// that does not is dropped a little after that.
    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Adds a task to the run if this attempt succeeds: a [`SpawnTask`](crate::SpawnTask), or
    /// any JSON object in a plan's task shape (`{"id": ..., "capability": ..., ...}`). The
    /// coordinator checks the whole spawn and fails the attempt permanently if it does not fit.
    pub fn spawn(&self, entry: impl Into<Value>) {
        self.control.spawn([entry.into()]);
    }

    /// [`spawn`](Self::spawn)s each of `entries`, in order.
    pub fn spawn_all(&self, entries: impl IntoIterator<Item = impl Into<Value>>) {
        self.control.spawn(entries.into_iter().map(Into::into));
    }

    /// Runs only these of the tasks that need this one if this attempt succeeds; the others
    /// are skipped. Each call adds to the list; never calling it runs them all, calling it with
    /// no ids runs none.
    pub fn branch(&self, ids: impl IntoIterator<Item = impl Into<String>>) {
        self.control.branch(ids.into_iter().map(Into::into));
    }

    /// What this attempt has asked of the run so far.
    pub fn growth(&self) -> Growth {
        self.control.growth()
    }

    /// Reports what this attempt used, added to what it reported before. Call it before
    /// returning, `Ok` or `Err`: the worker sends the total with the result however the attempt
    /// ends, also when the handler panics or is abandoned at its timeout (what it reported until
    /// then), so that budgets count a failed attempt's spending too. An attempt that sends no
    /// result (the coordinator asked to stop it, or a draining worker handed it back) sends
    /// nothing it reported either.
    pub fn report_usage(&self, usage: Usage) {
        self.control.report_usage(UsageReport::Total(usage));
    }

    /// What this attempt has reported using so far, as its result will carry it (the
    /// envelope's `usage`): `None` if nothing was reported. A command's report is kept as it
    /// wrote it, also one that cannot be read, which fails the attempt.
    pub fn usage(&self) -> Option<Value> {
        self.control.usage().to_value()
    }

    /// The shared record the worker takes the growth and usage from once the handler has
    /// returned.
    pub(crate) fn control(&self) -> &Control {
        &self.control
    }
}

impl From<Assignment> for TaskContext {
    fn from(assignment: Assignment) -> Self {
        Self {
            run: assignment.run,
            task: assignment.task,
            attempt: assignment.attempt,
            capability: assignment.capability,
            input: assignment.input,
            upstream: assignment.upstream,
            upstream_errors: assignment.upstream_errors,
            timeout: Duration::from_millis(assignment.timeout_ms),
            control: Control::default(),
            stop: StopSignal::never(),
        }
    }
}

/// Why an attempt failed. The coordinator retries `Retryable` failures (within the task's retry
/// policy) and dead-letters a task at once on a `Permanent` one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Another attempt may succeed: a timeout, a flaky dependency, a crash.
    #[error("{0}")]
    Retryable(String),
    /// No attempt will succeed: bad input, a refused request, an output too large to keep.
    #[error("{0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Retryable(_) => false,
            Self::Permanent(_) => true,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(message) | Self::Permanent(message) => message,
        }
    }
}

/// Serves one capability. Object safe, so a worker holds `Arc<dyn Handler>` per capability.
///
/// A handler may be called for several attempts at once (up to the worker's concurrency), and
/// a retried or redelivered attempt may reach it again: handlers should be idempotent. A panic
/// becomes a retryable failure. When the worker abandons an attempt (timeout, shutdown) it drops
/// the future, so resources a handler starts should stop on drop. When the coordinator asks to
/// stop an attempt, the context's [`stop_signal`](TaskContext::stop_signal) is raised first,
/// and the future dropped only if it has not returned a little after the signal's grace.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, task: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>>;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F>(F);

/// Wraps `f` (`Fn(TaskContext) -> impl Future<Output = Result<Value, HandlerError>>`) as a
/// [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    fn handle(&self, task: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin((self.0)(task))
    }
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}
