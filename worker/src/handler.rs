//! What task code implements: [`Handler`], given a [`TaskContext`], returns an output or a
//! [`HandlerError`] that says whether a retry could help.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use workforce_shared::{Assignment, Attempt, Capability, RunId, TaskId};

pub use futures::future::BoxFuture;

/// One attempt of one task, as a handler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskContext {
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
    pub capability: Capability,
    pub input: Value,
    /// Outputs of the tasks this one needs, by task id.
    pub upstream: BTreeMap<TaskId, Value>,
    /// How long the attempt may take. The worker abandons a handler that is still running a
    /// little after this (dropping its future) and reports a retryable timeout.
    pub timeout: Duration,
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
            timeout: Duration::from_millis(assignment.timeout_ms),
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
/// the future, so resources a handler starts should stop on drop.
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
