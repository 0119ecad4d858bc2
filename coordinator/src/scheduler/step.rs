//! The contract between the scheduler and everything around it: one [`Step`] per input,
//! holding what to record and what to do once it is recorded.

use workforce_shared::{
    Assignment, Attempt, AttemptError, DeadLetter, PROTOCOL_VERSION, RunId, StopAttempt, TaskId,
};

use super::Scheduler;
use super::events::{Decision, IgnoreReason, Input, Rejection};

/// What one input led to. The caller records `input` and `decisions` (in that order, in one
/// commit with the rest of its batch) and only then carries out `effects`.
#[derive(Debug)]
pub struct Step {
    pub input: Input,
    pub decisions: Vec<Decision>,
    pub effects: Vec<Effect>,
    /// What became of the input itself, for the one who sent it.
    pub fate: Fate,
}

/// What became of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Acted on (possibly with no decision, like a heartbeat that changes nothing yet).
    Applied,
    /// A result that changes nothing: recorded, then terminated on the broker.
    Ignored(IgnoreReason),
    /// Refused: the sender is told why.
    Rejected(Rejection),
}

/// What a committed decision owes the world. Each carries everything it needs: the I/O layer
/// never asks the scheduler again.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Publish this assignment, and fail the attempt if no result comes within its
    /// `timeout_ms` plus the coordinator's grace.
    Assign(Assignment),
    /// The attempt has its outcome: its deadline and any unpublished assignment are void.
    AttemptEnded {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// After `delay_ms`, feed [`Input::RetryDue`].
    ArmRetry {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        delay_ms: u64,
    },
    /// Tell workers to stop this attempt (best effort: a worker's own timeout is the backstop).
    Stop(StopAttempt),
    /// Publish this dead letter.
    DeadLetter(DeadLetter),
    /// After `delay_ms`, feed [`Input::RunDeadlinePassed`].
    ArmRunDeadline { run: RunId, delay_ms: u64 },
}

/// A timer the I/O layer (or the simulator) keeps for the scheduler.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The backoff before `attempt` has elapsed.
    RetryDue {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The attempt's timeout plus grace has elapsed.
    Deadline {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The run's `[limits] deadline` has passed.
    RunDeadline { run: RunId },
}

impl Timer {
    /// The input to feed when the timer fires.
    pub fn into_input(self) -> Input {
        match self {
            Timer::RetryDue { run, task, attempt } => Input::RetryDue { run, task, attempt },
            Timer::Deadline { run, task, attempt } => Input::AttemptTimedOut { run, task, attempt },
            Timer::RunDeadline { run } => Input::RunDeadlinePassed { run },
        }
    }
}

/// What each decision owes, built from the state it leaves.
impl Scheduler {
    /// The effect a decision owes, built from the state it leaves.
    pub(super) fn effect(&self, decision: &Decision) -> Option<Effect> {
        match decision {
            Decision::Dispatch {
                run, task, attempt, ..
            } => self.assignment(run, task, *attempt).map(Effect::Assign),
            Decision::TaskCompleted { run, task, attempt }
            | Decision::AttemptFailed {
                run, task, attempt, ..
            } => Some(Effect::AttemptEnded {
                run: run.clone(),
                task: task.clone(),
                attempt: *attempt,
            }),
            Decision::TaskCanceled { run, task, .. } => {
                let state = self.runs.get(run)?;
                let attempt = state.tasks[state.index_of(task)?].attempt;
                Some(Effect::AttemptEnded {
                    run: run.clone(),
                    task: task.clone(),
                    attempt,
                })
            }
            Decision::StopAttempt { run, task, attempt } => Some(Effect::Stop(StopAttempt {
                v: PROTOCOL_VERSION,
                run: run.clone(),
                task: task.clone(),
                attempt: *attempt,
            })),
            Decision::RetryScheduled {
                run,
                task,
                attempt,
                delay_ms,
            } => Some(Effect::ArmRetry {
                run: run.clone(),
                task: task.clone(),
                attempt: *attempt,
                delay_ms: *delay_ms,
            }),
            Decision::DeadLettered { run, task, .. } => {
                self.dead_letter(run, task).map(Effect::DeadLetter)
            }
            Decision::RunAccepted { run, .. } => {
                let delay_ms = self.runs.get(run)?.plan.limits.deadline_ms?;
                Some(Effect::ArmRunDeadline {
                    run: run.clone(),
                    delay_ms,
                })
            }
            Decision::TasksSpawned { .. }
            | Decision::UsageCharged { .. }
            | Decision::TaskRedriven { .. }
            | Decision::TaskEscalated { .. }
            | Decision::TaskRestored { .. }
            | Decision::RunReopened { .. }
            | Decision::TaskSkipped { .. }
            | Decision::Paused { .. }
            | Decision::Resumed { .. }
            | Decision::InputRejected { .. }
            | Decision::TaskReady { .. }
            | Decision::RunFinished { .. }
            | Decision::ResultIgnored { .. } => None,
        }
    }

    /// The assignment of an attempt, as its dispatch publishes it.
    pub(super) fn assignment(
        &self,
        run: &RunId,
        task: &TaskId,
        attempt: Attempt,
    ) -> Option<Assignment> {
        let state = self.runs.get(run)?;
        let index = state.index_of(task)?;
        let spec = &state.plan.tasks[index];
        Some(Assignment {
            v: PROTOCOL_VERSION,
            run: run.clone(),
            task: task.clone(),
            attempt,
            capability: spec.capability.clone(),
            input: spec.input.clone(),
            upstream: state.upstream_outputs(index),
            timeout_ms: spec.timeout_ms,
            upstream_errors: state.upstream_errors(index),
        })
    }

    /// The dead letter of a dead-lettered task: its last assignment and every failure, as text.
    pub(super) fn dead_letter(&self, run: &RunId, task: &TaskId) -> Option<DeadLetter> {
        let state = self.runs.get(run)?;
        let index = state.index_of(task)?;
        let last = state.tasks[index].attempt;
        Some(DeadLetter {
            v: PROTOCOL_VERSION,
            run: run.clone(),
            task: task.clone(),
            last_assignment: self.assignment(run, task, last)?,
            errors: state.tasks[index]
                .failures
                .iter()
                .map(|(attempt, cause)| AttemptError {
                    attempt: *attempt,
                    worker: cause.worker(),
                    error: cause.to_string(),
                })
                .collect(),
        })
    }

    /// The effects owed by recorded decisions whose effects may not have been carried out,
    /// as the state now stands: assignments of attempts still running, and dead letters.
    pub fn owed_effect(&self, decision: &Decision) -> Option<Effect> {
        match decision {
            Decision::Dispatch {
                run, task, attempt, ..
            } if self.is_running(run, task, *attempt) => self.effect(decision),
            Decision::DeadLettered { .. } => self.effect(decision),
            _ => None,
        }
    }
}
