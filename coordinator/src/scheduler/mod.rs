//! The scheduler: a pure, deterministic state machine.
//!
//! [`Scheduler::apply`] takes one [`Input`] and returns the [`Decision`]s it leads to. It does
//! no I/O, reads no clock and draws no random numbers; every collection it iterates is ordered.
//! The same inputs in the same order therefore give the same decisions, which is what makes
//! the event log replayable and the simulator faithful.
//!
//! Dispatch order: among ready tasks of a capability, higher priority first, then earlier run,
//! then plan order. Dispatch is capacity-aware: a capability gets at most as many running tasks
//! as its live workers announce, so the broker holds no backlog that a later, higher-priority
//! task would queue behind. A worker serving several capabilities counts its concurrency for
//! each, which bounds (not removes) what the broker may hold for it.

mod run;
mod view;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use workforce_shared::{
    Assignment, Attempt, Capability, DeadLetter, Outcome, PROTOCOL_VERSION, Plan, RunId, TaskId,
    TaskResult, WorkerId, retry_delay_ms,
};

use run::{Phase, RunState};
pub use view::{RunStatus, RunSummary, RunView, TaskStatus, TaskView, WorkerView};

/// Everything the scheduler reacts to. Recorded in the event log before its decisions act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// An operator submitted a validated plan; the I/O layer chose the run id.
    RunSubmitted { run: RunId, plan: Plan },
    /// A worker published the result of an attempt.
    ResultReceived { result: TaskResult },
    /// The backoff before `attempt` of a task has elapsed.
    RetryDue {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// A worker announced itself, or changed what it announces.
    WorkerJoined {
        worker: WorkerId,
        capabilities: Vec<Capability>,
        concurrency: u32,
    },
    /// A worker stopped, began draining, or its heartbeats stopped.
    WorkerLeft {
        worker: WorkerId,
        reason: WorkerLeftReason,
    },
    /// An operator asked to cancel a run.
    CancelRequested { run: RunId },
    /// A dispatched attempt ran past its timeout (plus the coordinator's grace) with no result.
    AttemptTimedOut {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The coordinator (re)started on this log. Changes nothing; recorded so the log shows it.
    CoordinatorStarted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLeftReason {
    Stopped,
    Draining,
    HeartbeatsStopped,
}

/// What the scheduler decided. Decisions with effects (dispatch, retry timer, dead letter) are
/// carried out by the I/O layer only after the batch that records them is committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    RunAccepted {
        run: RunId,
        tasks: u32,
    },
    /// The input could not be acted on (duplicate run id, unknown run).
    InputRejected {
        reason: String,
    },
    /// Publish an assignment for this attempt.
    Dispatch {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        capability: Capability,
    },
    TaskCompleted {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// Tell whichever worker runs this attempt to stop it: its outcome no longer counts.
    StopAttempt {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// Arm a timer: after `delay_ms`, feed [`Input::RetryDue`] for `attempt`.
    RetryScheduled {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        delay_ms: u64,
    },
    /// Attempts ran out or the failure was permanent: publish a dead letter.
    DeadLettered {
        run: RunId,
        task: TaskId,
        attempts: u32,
        error: String,
    },
    TaskCanceled {
        run: RunId,
        task: TaskId,
        reason: CancelReason,
    },
    RunFinished {
        run: RunId,
        outcome: RunOutcome,
    },
    /// A result that changes nothing: recorded so that the log explains every message.
    ResultIgnored {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        reason: IgnoreReason,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CancelReason {
    /// A task it needs (directly or not) was dead-lettered.
    UpstreamFailed { task: TaskId },
    /// An operator canceled the run.
    RunCanceled,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::UpstreamFailed { task } => write!(f, "upstream task {task} failed"),
            CancelReason::RunCanceled => write!(f, "run canceled by operator"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    Failed { reason: String },
    Canceled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    UnknownRun,
    UnknownTask,
    /// An attempt other than the one running (a late result of an earlier attempt).
    StaleAttempt,
    /// The task already has its outcome (a second copy of the same result).
    AlreadyFinished,
}

/// The worker id recorded for failures the coordinator itself decides (timeouts).
pub const COORDINATOR: &str = "coordinator";

/// Sort key of a ready task: higher priority, then earlier run, then plan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ReadyKey {
    priority: Reverse<i32>,
    run_seq: u64,
    task: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct WorkerInfo {
    capabilities: Vec<Capability>,
    concurrency: u32,
}

/// The scheduler's whole state. Build one with [`Scheduler::default`] and feed it inputs.
#[derive(Debug, Default)]
pub struct Scheduler {
    runs: BTreeMap<RunId, RunState>,
    /// Submission order, for tie-breaking and listing.
    run_ids: BTreeMap<u64, RunId>,
    workers: BTreeMap<WorkerId, WorkerInfo>,
    /// Tasks dispatched and not yet finished, per capability.
    in_flight: BTreeMap<Capability, u32>,
    ready: BTreeMap<Capability, BTreeSet<ReadyKey>>,
}

impl Scheduler {
    /// Applies one input and returns the decisions it leads to, in order.
    pub fn apply(&mut self, input: &Input) -> Vec<Decision> {
        let mut out = Vec::new();
        match input {
            Input::RunSubmitted { run, plan } => self.submit(run, plan, &mut out),
            Input::ResultReceived { result } => self.result(result, &mut out),
            Input::RetryDue { run, task, attempt } => self.retry_due(run, task, *attempt),
            Input::WorkerJoined {
                worker,
                capabilities,
                concurrency,
            } => {
                self.workers.insert(
                    worker.clone(),
                    WorkerInfo {
                        capabilities: capabilities.clone(),
                        concurrency: *concurrency,
                    },
                );
            }
            Input::WorkerLeft { worker, .. } => {
                self.workers.remove(worker);
            }
            Input::CancelRequested { run } => self.cancel(run, &mut out),
            Input::AttemptTimedOut { run, task, attempt } => {
                self.timed_out(run, task, *attempt, &mut out)
            }
            Input::CoordinatorStarted => {}
        }
        self.dispatch(&mut out);
        out
    }

    fn submit(&mut self, run: &RunId, plan: &Plan, out: &mut Vec<Decision>) {
        if self.runs.contains_key(run) {
            out.push(Decision::InputRejected {
                reason: format!("run {run} already exists"),
            });
            return;
        }
        let seq = self.run_ids.last_key_value().map_or(0, |(s, _)| s + 1);
        let state = RunState::new(run.clone(), seq, plan.clone());
        out.push(Decision::RunAccepted {
            run: run.clone(),
            tasks: u32::try_from(plan.tasks.len()).unwrap_or(u32::MAX),
        });
        let ready: Vec<usize> = state.initially_ready().collect();
        self.run_ids.insert(seq, run.clone());
        self.runs.insert(run.clone(), state);
        for task in ready {
            self.make_ready(run, task);
        }
    }

    fn result(&mut self, result: &TaskResult, out: &mut Vec<Decision>) {
        let ignore = |reason| Decision::ResultIgnored {
            run: result.run.clone(),
            task: result.task.clone(),
            attempt: result.attempt,
            reason,
        };
        let Some(state) = self.runs.get_mut(&result.run) else {
            out.push(ignore(IgnoreReason::UnknownRun));
            return;
        };
        let Some(index) = state.index_of(&result.task) else {
            out.push(ignore(IgnoreReason::UnknownTask));
            return;
        };
        let attempt = match &state.tasks[index].phase {
            Phase::Running { attempt } => *attempt,
            Phase::Completed { .. } | Phase::Failed { .. } | Phase::Canceled { .. } => {
                out.push(ignore(IgnoreReason::AlreadyFinished));
                return;
            }
            Phase::Waiting | Phase::Ready | Phase::BackingOff { .. } => {
                out.push(ignore(IgnoreReason::StaleAttempt));
                return;
            }
        };
        if attempt != result.attempt {
            out.push(ignore(IgnoreReason::StaleAttempt));
            return;
        }
        let capability = state.plan.tasks[index].capability.clone();
        self.release(&capability);
        let run = result.run.clone();
        match &result.outcome {
            Outcome::Succeeded { output } => self.complete(&run, index, attempt, output, out),
            Outcome::Failed { error, permanent } => {
                self.fail(&run, index, attempt, &result.worker, error, *permanent, out)
            }
        }
    }

    fn complete(
        &mut self,
        run: &RunId,
        index: usize,
        attempt: Attempt,
        output: &serde_json::Value,
        out: &mut Vec<Decision>,
    ) {
        let Some(state) = self.runs.get_mut(run) else {
            return;
        };
        out.push(Decision::TaskCompleted {
            run: run.clone(),
            task: state.plan.tasks[index].id.clone(),
            attempt,
        });
        let unblocked = state.complete(index, attempt, output.clone());
        for task in unblocked {
            self.make_ready(run, task);
        }
        self.finish_if_done(run, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        run: &RunId,
        index: usize,
        attempt: Attempt,
        worker: &WorkerId,
        error: &str,
        permanent: bool,
        out: &mut Vec<Decision>,
    ) {
        let Some(state) = self.runs.get_mut(run) else {
            return;
        };
        state.record_error(index, attempt, worker, error);
        let spec = &state.plan.tasks[index];
        let task = spec.id.clone();
        if !permanent && attempt.0 < spec.retry.max_attempts {
            let next = attempt.next();
            let delay_ms = retry_delay_ms(&spec.retry, run, &task, next);
            state.tasks[index].phase = Phase::BackingOff { next };
            out.push(Decision::RetryScheduled {
                run: run.clone(),
                task,
                attempt: next,
                delay_ms,
            });
            return;
        }
        let error = if permanent {
            format!("permanent failure: {error}")
        } else {
            error.to_owned()
        };
        state.tasks[index].phase = Phase::Failed {
            error: error.clone(),
        };
        if state.failure.is_none() {
            state.failure = Some(format!(
                "task {task} dead-lettered after {} attempt(s): {error}",
                attempt.0
            ));
        }
        out.push(Decision::DeadLettered {
            run: run.clone(),
            task: task.clone(),
            attempts: attempt.0,
            error,
        });
        for dependent in state.transitive_dependents(index) {
            if state.tasks[dependent].phase.is_terminal() {
                continue;
            }
            state.tasks[dependent].phase = Phase::Canceled {
                reason: CancelReason::UpstreamFailed { task: task.clone() },
            };
            out.push(Decision::TaskCanceled {
                run: run.clone(),
                task: state.plan.tasks[dependent].id.clone(),
                reason: CancelReason::UpstreamFailed { task: task.clone() },
            });
            // A dependent of an unfinished task is never ready or running, so nothing to
            // remove from the ready sets or in-flight counts.
        }
        self.finish_if_done(run, out);
    }

    fn timed_out(&mut self, run: &RunId, task: &TaskId, attempt: Attempt, out: &mut Vec<Decision>) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        let Some(index) = state.index_of(task) else {
            return;
        };
        // Only the attempt still running can time out; a late timer changes nothing.
        if state.tasks[index].phase != (Phase::Running { attempt }) {
            return;
        }
        let spec = &state.plan.tasks[index];
        let capability = spec.capability.clone();
        let error = format!(
            "attempt {attempt} timed out: no result within its timeout of {}ms",
            spec.timeout_ms
        );
        out.push(Decision::StopAttempt {
            run: run.clone(),
            task: task.clone(),
            attempt,
        });
        self.release(&capability);
        let coordinator = WorkerId::sanitized(COORDINATOR);
        self.fail(run, index, attempt, &coordinator, &error, false, out);
    }

    fn retry_due(&mut self, run: &RunId, task: &TaskId, attempt: Attempt) {
        let Some(state) = self.runs.get_mut(run) else {
            return;
        };
        let Some(index) = state.index_of(task) else {
            return;
        };
        // A timer for a canceled task or an old attempt is harmless: nothing to do.
        if state.tasks[index].phase == (Phase::BackingOff { next: attempt }) {
            state.tasks[index].phase = Phase::Ready;
            state.tasks[index].attempt = attempt;
            let key = state.ready_key(index);
            let capability = state.plan.tasks[index].capability.clone();
            self.ready.entry(capability).or_default().insert(key);
        }
    }

    fn cancel(&mut self, run: &RunId, out: &mut Vec<Decision>) {
        let Some(state) = self.runs.get_mut(run) else {
            out.push(Decision::InputRejected {
                reason: format!("no run {run}"),
            });
            return;
        };
        if state.outcome.is_some() {
            out.push(Decision::InputRejected {
                reason: format!("run {run} has already finished"),
            });
            return;
        }
        let mut freed = Vec::new();
        for index in 0..state.tasks.len() {
            let phase = &state.tasks[index].phase;
            if phase.is_terminal() {
                continue;
            }
            let capability = state.plan.tasks[index].capability.clone();
            match phase {
                Phase::Running { .. } => freed.push(capability),
                Phase::Ready => {
                    let key = state.ready_key(index);
                    if let Some(set) = self.ready.get_mut(&capability) {
                        set.remove(&key);
                    }
                }
                Phase::Waiting | Phase::BackingOff { .. } => {}
                Phase::Completed { .. } | Phase::Failed { .. } | Phase::Canceled { .. } => {}
            }
            state.tasks[index].phase = Phase::Canceled {
                reason: CancelReason::RunCanceled,
            };
            out.push(Decision::TaskCanceled {
                run: run.clone(),
                task: state.plan.tasks[index].id.clone(),
                reason: CancelReason::RunCanceled,
            });
        }
        state.outcome = Some(RunOutcome::Canceled);
        out.push(Decision::RunFinished {
            run: run.clone(),
            outcome: RunOutcome::Canceled,
        });
        for capability in freed {
            self.release(&capability);
        }
    }

    fn finish_if_done(&mut self, run: &RunId, out: &mut Vec<Decision>) {
        let Some(state) = self.runs.get_mut(run) else {
            return;
        };
        if state.outcome.is_some() || state.tasks.iter().any(|t| !t.phase.is_terminal()) {
            return;
        }
        let outcome = match &state.failure {
            None => RunOutcome::Succeeded,
            Some(reason) => RunOutcome::Failed {
                reason: reason.clone(),
            },
        };
        state.outcome = Some(outcome.clone());
        out.push(Decision::RunFinished {
            run: run.clone(),
            outcome,
        });
    }

    fn make_ready(&mut self, run: &RunId, index: usize) {
        let Some(state) = self.runs.get_mut(run) else {
            return;
        };
        state.tasks[index].phase = Phase::Ready;
        let key = state.ready_key(index);
        let capability = state.plan.tasks[index].capability.clone();
        self.ready.entry(capability).or_default().insert(key);
    }

    fn release(&mut self, capability: &Capability) {
        if let Some(n) = self.in_flight.get_mut(capability) {
            *n = n.saturating_sub(1);
        }
    }

    /// Live capacity for a capability: the sum of the concurrency its live workers announce.
    pub fn capacity(&self, capability: &Capability) -> u32 {
        self.workers
            .values()
            .filter(|w| w.capabilities.contains(capability))
            .map(|w| w.concurrency)
            .fold(0u32, u32::saturating_add)
    }

    fn dispatch(&mut self, out: &mut Vec<Decision>) {
        let capabilities: Vec<Capability> = self
            .ready
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(c, _)| c.clone())
            .collect();
        for capability in capabilities {
            let capacity = self.capacity(&capability);
            loop {
                let running = self.in_flight.get(&capability).copied().unwrap_or(0);
                if running >= capacity {
                    break;
                }
                let Some(set) = self.ready.get_mut(&capability) else {
                    break;
                };
                let Some(key) = set.pop_first() else {
                    break;
                };
                let Some(run) = self.run_ids.get(&key.run_seq).cloned() else {
                    continue;
                };
                let Some(state) = self.runs.get_mut(&run) else {
                    continue;
                };
                let attempt = state.tasks[key.task].attempt;
                state.tasks[key.task].phase = Phase::Running { attempt };
                *self.in_flight.entry(capability.clone()).or_default() += 1;
                out.push(Decision::Dispatch {
                    run: run.clone(),
                    task: state.plan.tasks[key.task].id.clone(),
                    attempt,
                    capability: capability.clone(),
                });
            }
        }
    }

    /// The message to publish for a [`Decision::Dispatch`].
    pub fn assignment(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> Option<Assignment> {
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
        })
    }

    /// The message to publish for a [`Decision::DeadLettered`].
    pub fn dead_letter(&self, run: &RunId, task: &TaskId) -> Option<DeadLetter> {
        let state = self.runs.get(run)?;
        let index = state.index_of(task)?;
        let last = state.tasks[index].attempt;
        Some(DeadLetter {
            v: PROTOCOL_VERSION,
            run: run.clone(),
            task: task.clone(),
            last_assignment: self.assignment(run, task, last)?,
            errors: state.tasks[index].errors.clone(),
        })
    }

    /// Attempts that are dispatched and unfinished, for republishing after a restart.
    pub fn running(&self) -> Vec<(RunId, TaskId, Attempt)> {
        let mut out = Vec::new();
        for (run, state) in &self.runs {
            for (index, task) in state.tasks.iter().enumerate() {
                if let Phase::Running { attempt } = task.phase {
                    out.push((run.clone(), state.plan.tasks[index].id.clone(), attempt));
                }
            }
        }
        out
    }

    /// Tasks waiting for a retry timer: (run, task, attempt it will make).
    pub fn backing_off(&self) -> Vec<(RunId, TaskId, Attempt)> {
        let mut out = Vec::new();
        for (run, state) in &self.runs {
            for (index, task) in state.tasks.iter().enumerate() {
                if let Phase::BackingOff { next } = task.phase {
                    out.push((run.clone(), state.plan.tasks[index].id.clone(), next));
                }
            }
        }
        out
    }

    /// Whether `attempt` of the task is the one running now.
    pub fn is_running(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> bool {
        self.runs.get(run).is_some_and(|state| {
            state
                .index_of(task)
                .is_some_and(|i| state.tasks[i].phase == (Phase::Running { attempt }))
        })
    }

    /// The task's timeout, for arming the coordinator's deadline on a dispatch.
    pub fn timeout_ms(&self, run: &RunId, task: &TaskId) -> Option<u64> {
        let state = self.runs.get(run)?;
        Some(state.plan.tasks[state.index_of(task)?].timeout_ms)
    }

    pub fn has_run(&self, run: &RunId) -> bool {
        self.runs.contains_key(run)
    }

    pub fn known_workers(&self) -> impl Iterator<Item = &WorkerId> {
        self.workers.keys()
    }

    /// Whether the worker is known with exactly these announcements.
    pub fn worker_matches(
        &self,
        worker: &WorkerId,
        capabilities: &[Capability],
        concurrency: u32,
    ) -> bool {
        self.workers.get(worker).is_some_and(|w| {
            w.capabilities.as_slice() == capabilities && w.concurrency == concurrency
        })
    }
}
