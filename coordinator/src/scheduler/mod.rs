//! The scheduler: a pure, deterministic state machine.
//!
//! [`Scheduler::step`] takes one [`Input`] and returns a [`Step`]: the [`Decision`]s it leads
//! to (to record) and the [`Effect`]s they owe (to carry out once recorded). It does no I/O,
//! reads no clock and draws no random numbers; every collection it iterates is ordered. The
//! same inputs in the same order therefore give the same decisions, which is what makes the
//! event log replayable and the simulator faithful.
//!
//! Deciding and changing state are kept apart: every change of state is the evolution of one
//! recorded decision ([`evolve`]), so [`Scheduler::restore`] rebuilds the state from a log
//! without deciding anything again, whatever rules the log was written under.
//!
//! Dispatch order: among ready tasks of a capability, higher priority first, then earlier run,
//! then plan order. Dispatch is capacity-aware: a capability gets at most as many running tasks
//! as its live workers announce, so the broker holds no backlog that a later, higher-priority
//! task would queue behind. A worker serving several capabilities counts its concurrency for
//! each, which bounds (not removes) what the broker may hold for it.
//!
//! # Layout
//! - [`events`]: inputs, decisions and their reasons (what the log holds).
//! - [`step`]: the step, its effects and the timers it asks for.
//! - `evolve`: how each decision changes the state; `restore` applies recorded ones.
//! - `run`: one run's state: its tasks (grown by spawns), what each waits for, their counts.
//! - `settle`: checking a spawn or branch, and applying the trigger rules after tasks end.
//! - `view`: what `status`, `runs` and `workers` show.

mod budget;
mod events;
mod evolve;
mod ready;
mod redrive;
mod run;
mod settle;
mod step;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use workforce_shared::{
    Attempt, Capability, Outcome, RunId, TaskId, TaskResult, TaskSpec, WorkerId, retry_delay_ms,
};

use ready::ReadyQueue;
use run::{Ending, Phase, RunState};
use settle::{Judgement, Settle};

pub use events::{
    COORDINATOR, CancelReason, Decision, FailureCause, IgnoreReason, Input, PauseScope,
    PublishFailure, REDRIVE_LIMIT, RedriveRefusal, Rejection, RunOutcome, SEMANTICS_VERSION,
    SkipReason, StopReason, WorkerLeftReason,
};
pub use evolve::RestoreError;
pub use step::{Effect, Fate, Step, Timer};
pub use view::{
    DeadLetterView, FailedAttempt, LiveWorker, RunStatus, RunSummary, RunView, TaskStatus,
    TaskView, WorkerView,
};

/// Outcomes of the results a worker reported that counted (not ignored).
#[derive(Clone, Debug, Default)]
struct WorkerStats {
    completed: u64,
    failed: u64,
    /// The last [`RECENT_WINDOW`] outcomes, oldest first: `true` for a success.
    recent: std::collections::VecDeque<bool>,
}

/// How many of a worker's latest outcomes its success rate is over.
pub const RECENT_WINDOW: usize = 20;

impl WorkerStats {
    fn record(&mut self, succeeded: bool) {
        if succeeded {
            self.completed += 1;
        } else {
            self.failed += 1;
        }
        if self.recent.len() == RECENT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(succeeded);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct WorkerInfo {
    capabilities: Vec<Capability>,
    concurrency: u32,
}

/// The scheduler's whole state. Build one with [`Scheduler::default`] and feed it inputs.
#[derive(Clone, Debug, Default)]
pub struct Scheduler {
    runs: BTreeMap<RunId, RunState>,
    /// Submission order, for tie-breaking and listing.
    run_ids: BTreeMap<u64, RunId>,
    workers: BTreeMap<WorkerId, WorkerInfo>,
    /// Tasks dispatched and not yet finished, per capability.
    in_flight: BTreeMap<Capability, u32>,
    ready: BTreeMap<Capability, ReadyQueue>,
    /// Runs (by submission sequence) and capabilities an operator paused: nothing of them is
    /// dispatched until resumed.
    paused_runs: BTreeSet<u64>,
    paused_capabilities: BTreeSet<Capability>,
    /// What each worker's results came to, live or gone.
    worker_stats: BTreeMap<WorkerId, WorkerStats>,
}

/// What a step has produced so far.
#[derive(Debug)]
struct Out {
    decisions: Vec<Decision>,
    effects: Vec<Effect>,
    fate: Fate,
}

impl Scheduler {
    /// Decides what one input leads to, changes the state accordingly, and returns what to
    /// record and what to do.
    pub fn step(&mut self, input: Input) -> Step {
        let mut out = Out {
            decisions: Vec::new(),
            effects: Vec::new(),
            fate: Fate::Applied,
        };
        self.observe(&input);
        match &input {
            Input::RunSubmitted { run, .. } => self.submit(&input, run, &mut out),
            Input::ResultReceived { result } => self.result(&input, result, &mut out),
            Input::RetryDue { run, task, attempt } => {
                self.retry_due(&input, run, task, *attempt, &mut out)
            }
            Input::CancelRequested { run, task, .. } => {
                self.cancel(&input, run, task.as_ref(), &mut out)
            }
            Input::AttemptTimedOut { run, task, attempt } => {
                if let Some((index, timeout_ms)) = self.running_task(run, task, *attempt) {
                    self.emit(
                        &input,
                        Decision::StopAttempt {
                            run: run.clone(),
                            task: task.clone(),
                            attempt: *attempt,
                        },
                        &mut out,
                    );
                    let cause = FailureCause::TimedOut { timeout_ms };
                    self.fail(&input, run, index, *attempt, cause, &mut out);
                }
            }
            Input::PublishFailed {
                run,
                task,
                attempt,
                failure,
            } => {
                if let Some((index, _)) = self.running_task(run, task, *attempt) {
                    let cause = FailureCause::Unpublishable {
                        failure: failure.clone(),
                    };
                    self.fail(&input, run, index, *attempt, cause, &mut out);
                }
            }
            Input::RunDeadlinePassed { run } => self.deadline_passed(&input, run, &mut out),
            Input::RedriveRequested {
                run, task, force, ..
            } => self.redrive(&input, run, task.as_ref(), *force, &mut out),
            Input::PauseRequested { scope } => self.pause(&input, scope, true, &mut out),
            Input::ResumeRequested { scope } => self.pause(&input, scope, false, &mut out),
            Input::WorkerLeft {
                worker, attempts, ..
            } => {
                // Its attempts still running fail over at once: stopped (so that a redelivery
                // of one is not run), failed, and retried with no backoff.
                for held in attempts {
                    if let Some((index, _)) = self.running_task(&held.run, &held.task, held.attempt)
                    {
                        let stop = Decision::StopAttempt {
                            run: held.run.clone(),
                            task: held.task.clone(),
                            attempt: held.attempt,
                        };
                        self.emit(&input, stop, &mut out);
                        let cause = FailureCause::WorkerLost {
                            worker: worker.clone(),
                        };
                        self.fail(&input, &held.run, index, held.attempt, cause, &mut out);
                    }
                }
            }
            // Facts the state takes in `observe`; what they free up is dispatched below.
            Input::WorkerJoined { .. } | Input::CoordinatorStarted { .. } => {}
        }
        self.dispatch(&input, &mut out);
        Step {
            input,
            decisions: out.decisions,
            effects: out.effects,
            fate: out.fate,
        }
    }

    /// Records a decision: changes the state by it and collects the effect it owes. A
    /// decision that does not apply to the state is a bug of the deciding: it is dropped, not
    /// recorded, so that the log never holds what recovery could not restore.
    fn emit(&mut self, input: &Input, decision: Decision, out: &mut Out) {
        if let Err(error) = self.evolve(input, &decision) {
            debug_assert!(false, "{decision:?} does not apply: {error}");
            tracing::error!(%error, ?decision, "the scheduler made a decision its state cannot take; dropped");
            return;
        }
        if let Some(effect) = self.effect(&decision) {
            out.effects.push(effect);
        }
        out.decisions.push(decision);
    }

    fn submit(&mut self, input: &Input, run: &RunId, out: &mut Out) {
        if self.runs.contains_key(run) {
            let rejection = Rejection::RunExists { run: run.clone() };
            out.fate = Fate::Rejected(rejection.clone());
            self.emit(input, Decision::InputRejected { rejection }, out);
            return;
        }
        let Input::RunSubmitted { plan, .. } = input else {
            return;
        };
        let accepted = Decision::RunAccepted {
            run: run.clone(),
            tasks: u32::try_from(plan.tasks.len()).unwrap_or(u32::MAX),
            semantics: SEMANTICS_VERSION,
        };
        self.emit(input, accepted, out);
        let all = self.runs.get(run).map_or(0, |state| state.tasks.len());
        self.settle(input, run, Settle::fresh(0..all), out);
    }

    fn result(&mut self, input: &Input, result: &TaskResult, out: &mut Out) {
        let reason = match self.runs.get(&result.run) {
            None => Some(IgnoreReason::UnknownRun),
            Some(state) => match state.index_of(&result.task) {
                None => Some(IgnoreReason::UnknownTask),
                Some(index) => match &state.tasks[index].phase {
                    Phase::Running { attempt } if *attempt == result.attempt => None,
                    Phase::Completed { .. }
                    | Phase::Failed
                    | Phase::Canceled { .. }
                    | Phase::Skipped { .. } => Some(IgnoreReason::AlreadyFinished),
                    Phase::Running { .. }
                    | Phase::Waiting
                    | Phase::Ready
                    | Phase::BackingOff { .. } => Some(IgnoreReason::StaleAttempt),
                },
            },
        };
        if let Some(reason) = reason {
            out.fate = Fate::Ignored(reason);
            let decision = Decision::ResultIgnored {
                run: result.run.clone(),
                task: result.task.clone(),
                attempt: result.attempt,
                reason,
            };
            self.emit(input, decision, out);
            return;
        }
        let Some(index) = self
            .runs
            .get(&result.run)
            .and_then(|s| s.index_of(&result.task))
        else {
            return;
        };
        let run = &result.run;
        // An unreadable usage report fails the attempt, whatever it did; its estimate is
        // charged (budgets fail closed).
        if let Err(error) = Self::reported(input, run, &result.task, result.attempt) {
            let cause = FailureCause::UsageUnreadable { error };
            self.fail(input, run, index, result.attempt, cause, out);
            return;
        }
        match &result.outcome {
            Outcome::Succeeded { spawn, branch, .. } => {
                let grown = match self.check_growth(run, index, spawn, branch.as_deref()) {
                    Ok(grown) => grown,
                    Err(problems) => {
                        let cause = FailureCause::ControlRefused { problems };
                        self.fail(input, run, index, result.attempt, cause, out);
                        return;
                    }
                };
                let completed = Decision::TaskCompleted {
                    run: run.clone(),
                    task: result.task.clone(),
                    attempt: result.attempt,
                };
                self.emit(input, completed, out);
                self.charge(input, run, index, result.attempt, out);
                let before = self.runs.get(run).map_or(0, |state| state.tasks.len());
                if !grown.spawned.is_empty() {
                    let spawned = Decision::TasksSpawned {
                        run: run.clone(),
                        parent: result.task.clone(),
                        tasks: grown.spawned,
                    };
                    self.emit(input, spawned, out);
                }
                if self.stop_if_exhausted(input, run, out) {
                    return;
                }
                let after = self.runs.get(run).map_or(0, |state| state.tasks.len());
                let mut settle = Settle::fresh(before..after);
                settle.ended.push_back((index, None));
                for unchosen in grown.unchosen {
                    let reason = SkipReason::NotChosen {
                        by: result.task.clone(),
                    };
                    settle.fates.insert(unchosen, Judgement::Skip(reason));
                    settle.ended.push_back((unchosen, Some(Ending::Skipped)));
                }
                self.settle(input, run, settle, out);
                self.finish_if_done(input, run, out);
            }
            Outcome::Failed { error, permanent } => {
                let cause = FailureCause::Worker {
                    worker: result.worker.clone(),
                    error: error.clone(),
                    permanent: *permanent,
                };
                self.fail(input, run, index, result.attempt, cause, out);
            }
        }
    }

    /// The attempt failed: retry it, or dead-letter the task and cancel what needs it.
    fn fail(
        &mut self,
        input: &Input,
        run: &RunId,
        index: usize,
        attempt: Attempt,
        cause: FailureCause,
        out: &mut Out,
    ) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        let spec = &state.plan.tasks[index];
        let task = spec.id.clone();
        // Attempts since the latest redrive (since the first, before any).
        let made = attempt.0.saturating_sub(state.tasks[index].first_attempt.0) + 1;
        let lost = matches!(cause, FailureCause::WorkerLost { .. });
        let retry = (!cause.is_permanent() && made < spec.retry.max_attempts).then(|| {
            let next = attempt.next();
            let delay = if lost {
                0
            } else {
                retry_delay_ms(&spec.retry, run, &task, next)
            };
            (next, delay)
        });
        // Out of retries: the next rung of its ladder, if it has one.
        let rung = (retry.is_none() && (state.tasks[index].rung as usize) < spec.escalate.len())
            .then(|| state.tasks[index].rung + 1);
        let failed = Decision::AttemptFailed {
            run: run.clone(),
            task: task.clone(),
            attempt,
            cause,
        };
        self.emit(input, failed, out);
        self.charge(input, run, index, attempt, out);
        if let Some(rung) = rung {
            let decision = Decision::TaskEscalated {
                run: run.clone(),
                task,
                rung,
                attempt: attempt.next(),
            };
            self.emit(input, decision, out);
            self.stop_if_exhausted(input, run, out);
            return;
        }
        if let Some((next, delay_ms)) = retry {
            let decision = Decision::RetryScheduled {
                run: run.clone(),
                task,
                attempt: next,
                delay_ms,
            };
            self.emit(input, decision, out);
            self.stop_if_exhausted(input, run, out);
            return;
        }
        let dead = Decision::DeadLettered {
            run: run.clone(),
            task: task.clone(),
            attempts: attempt.0,
        };
        self.emit(input, dead, out);
        let mut settle = Settle::default();
        settle.ended.push_back((index, None));
        self.settle(input, run, settle, out);
        if !self.stop_if_exhausted(input, run, out) {
            self.finish_if_done(input, run, out);
        }
    }

    /// The task's index and timeout when `attempt` is the one running; a late timer or a
    /// failed publish of an attempt that has its outcome changes nothing.
    fn running_task(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> Option<(usize, u64)> {
        let state = self.runs.get(run)?;
        let index = state.index_of(task)?;
        (state.tasks[index].phase == (Phase::Running { attempt }))
            .then(|| (index, state.plan.tasks[index].timeout_ms))
    }

    fn retry_due(
        &mut self,
        input: &Input,
        run: &RunId,
        task: &TaskId,
        attempt: Attempt,
        out: &mut Out,
    ) {
        // A timer for a canceled task or an old attempt is harmless: nothing to do.
        let due = self.runs.get(run).is_some_and(|state| {
            state.index_of(task).is_some_and(|index| {
                state.tasks[index].phase == (Phase::BackingOff { next: attempt })
            })
        });
        if due {
            let decision = Decision::TaskReady {
                run: run.clone(),
                task: task.clone(),
                attempt,
            };
            self.emit(input, decision, out);
        }
    }

    /// An operator's cancel: of the whole run, or of one task (and, by the trigger rules, what
    /// waits for it). Under rules 2 and later, each canceled attempt still running is told to
    /// stop first.
    fn cancel(&mut self, input: &Input, run: &RunId, task: Option<&TaskId>, out: &mut Out) {
        let rejection = match self.runs.get(run) {
            None => Some(Rejection::UnknownRun { run: run.clone() }),
            Some(state) if state.outcome.is_some() => {
                Some(Rejection::RunFinished { run: run.clone() })
            }
            Some(state) => task.and_then(|task| match state.index_of(task) {
                None => Some(Rejection::UnknownTask {
                    run: run.clone(),
                    task: task.clone(),
                }),
                Some(index) if state.tasks[index].phase.is_terminal() => {
                    Some(Rejection::TaskFinished {
                        run: run.clone(),
                        task: task.clone(),
                    })
                }
                Some(_) => None,
            }),
        };
        if let Some(rejection) = rejection {
            out.fate = Fate::Rejected(rejection.clone());
            self.emit(input, Decision::InputRejected { rejection }, out);
            return;
        }
        let Some(state) = self.runs.get(run) else {
            return;
        };
        let stops = state.semantics >= 2;
        let chosen: Vec<usize> = match task.and_then(|t| state.index_of(t)) {
            Some(index) => vec![index],
            None => (0..state.tasks.len())
                .filter(|&i| !state.tasks[i].phase.is_terminal())
                .collect(),
        };
        let note = match input {
            Input::CancelRequested { note, .. } => note.clone(),
            _ => None,
        };
        let canceled: Vec<(TaskId, Option<Attempt>)> = chosen
            .iter()
            .map(|&i| {
                let running = match state.tasks[i].phase {
                    Phase::Running { attempt } if stops => Some(attempt),
                    _ => None,
                };
                (state.plan.tasks[i].id.clone(), running)
            })
            .collect();
        for (id, running) in canceled {
            if let Some(attempt) = running {
                let stop = Decision::StopAttempt {
                    run: run.clone(),
                    task: id.clone(),
                    attempt,
                };
                self.emit(input, stop, out);
            }
            let reason = match task {
                Some(_) => CancelReason::OperatorCanceled { note: note.clone() },
                None => CancelReason::RunCanceled,
            };
            let index = self.runs.get(run).and_then(|state| state.index_of(&id));
            let decision = Decision::TaskCanceled {
                run: run.clone(),
                task: id,
                reason,
            };
            self.emit(input, decision, out);
            if let (Some(attempt), Some(index)) = (running, index) {
                self.charge(input, run, index, attempt, out);
            }
        }
        if task.is_none() {
            let finished = Decision::RunFinished {
                run: run.clone(),
                outcome: RunOutcome::Canceled,
            };
            self.emit(input, finished, out);
            return;
        }
        let mut settle = Settle::default();
        settle.ended.extend(chosen.into_iter().map(|i| (i, None)));
        self.settle(input, run, settle, out);
        self.finish_if_done(input, run, out);
    }

    /// Pauses (`pause`) or resumes dispatch of a run or a capability. What is running runs on;
    /// what becomes ready meanwhile waits.
    fn pause(&mut self, input: &Input, scope: &PauseScope, pause: bool, out: &mut Out) {
        let paused = self.is_paused(scope);
        let rejection = match scope {
            PauseScope::Run { run } => match self.runs.get(run) {
                None => Some(Rejection::UnknownRun { run: run.clone() }),
                Some(state) if state.outcome.is_some() => {
                    Some(Rejection::RunFinished { run: run.clone() })
                }
                Some(_) => None,
            },
            PauseScope::Capability { .. } => None,
        }
        .or_else(|| match (pause, paused) {
            (true, true) => Some(Rejection::AlreadyPaused {
                scope: scope.clone(),
            }),
            (false, false) => Some(Rejection::NotPaused {
                scope: scope.clone(),
            }),
            _ => None,
        });
        if let Some(rejection) = rejection {
            out.fate = Fate::Rejected(rejection.clone());
            self.emit(input, Decision::InputRejected { rejection }, out);
            return;
        }
        let scope = scope.clone();
        let decision = if pause {
            Decision::Paused { scope }
        } else {
            Decision::Resumed { scope }
        };
        self.emit(input, decision, out);
    }

    /// Whether `scope` is paused now.
    pub fn is_paused(&self, scope: &PauseScope) -> bool {
        match scope {
            PauseScope::Run { run } => self
                .runs
                .get(run)
                .is_some_and(|state| self.paused_runs.contains(&state.seq)),
            PauseScope::Capability { capability } => self.paused_capabilities.contains(capability),
        }
    }

    fn finish_if_done(&mut self, input: &Input, run: &RunId, out: &mut Out) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        if state.outcome.is_some() || state.tasks.iter().any(|t| !t.phase.is_terminal()) {
            return;
        }
        let outcome = match state.failure() {
            None => RunOutcome::Succeeded,
            Some(task) => RunOutcome::Failed { task },
        };
        let decision = Decision::RunFinished {
            run: run.clone(),
            outcome,
        };
        self.emit(input, decision, out);
    }

    /// Live capacity for a capability: the sum of the concurrency its live workers announce.
    pub fn capacity(&self, capability: &Capability) -> u32 {
        self.workers
            .values()
            .filter(|w| w.capabilities.contains(capability))
            .map(|w| w.concurrency)
            .fold(0u32, u32::saturating_add)
    }

    fn dispatch(&mut self, input: &Input, out: &mut Out) {
        let capabilities: Vec<Capability> = self
            .ready
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(c, _)| c.clone())
            .collect();
        for capability in capabilities {
            if self.paused_capabilities.contains(&capability) {
                continue;
            }
            let capacity = self.capacity(&capability);
            loop {
                let running = self.in_flight.get(&capability).copied().unwrap_or(0);
                if running >= capacity {
                    break;
                }
                let (paused, runs, run_ids) = (&self.paused_runs, &self.runs, &self.run_ids);
                let held = |run_seq: u64, task: usize| {
                    paused.contains(&run_seq)
                        || run_ids
                            .get(&run_seq)
                            .and_then(|run| runs.get(run))
                            .is_some_and(|state| budget::blocking_limit(state, task).is_some())
                };
                let Some(key) = self
                    .ready
                    .get(&capability)
                    .and_then(|queue| queue.next(held))
                else {
                    break;
                };
                // Taken off the queue here, so that the loop ends whatever evolve does.
                if let Some(queue) = self.ready.get_mut(&capability) {
                    queue.remove(&key);
                }
                let Some(state) = self
                    .run_ids
                    .get(&key.run_seq)
                    .and_then(|run| self.runs.get(run))
                else {
                    continue;
                };
                let spec = &state.plan.tasks[key.task];
                let decision = Decision::Dispatch {
                    run: state.id.clone(),
                    task: spec.id.clone(),
                    attempt: state.tasks[key.task].attempt,
                    capability: capability.clone(),
                    timeout_ms: spec.timeout_ms,
                };
                self.emit(input, decision, out);
            }
        }
        self.stop_stuck_runs(input, out);
    }

    /// Attempts that are dispatched and unfinished.
    pub fn running(&self) -> Vec<(RunId, TaskId, Attempt)> {
        self.tasks_where(|phase| match phase {
            Phase::Running { attempt } => Some(*attempt),
            _ => None,
        })
    }

    /// Tasks waiting for a retry timer: (run, task, attempt it will make).
    pub fn backing_off(&self) -> Vec<(RunId, TaskId, Attempt)> {
        self.tasks_where(|phase| match phase {
            Phase::BackingOff { next } => Some(*next),
            _ => None,
        })
    }

    fn tasks_where(
        &self,
        pick: impl Fn(&Phase) -> Option<Attempt>,
    ) -> Vec<(RunId, TaskId, Attempt)> {
        let mut out = Vec::new();
        for (run, state) in &self.runs {
            for (index, task) in state.tasks.iter().enumerate() {
                if let Some(attempt) = pick(&task.phase) {
                    out.push((run.clone(), state.plan.tasks[index].id.clone(), attempt));
                }
            }
        }
        out
    }

    /// Whether `attempt` of the task is the one running now.
    pub fn is_running(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> bool {
        self.running_task(run, task, attempt).is_some()
    }

    /// Runs with a deadline that has not passed yet, finished or not (a redrive may reopen a
    /// finished one), and the deadline (ms from submission).
    pub fn run_deadlines(&self) -> Vec<(RunId, u64)> {
        self.runs
            .values()
            .filter(|state| !state.deadline_passed)
            .filter_map(|state| Some((state.id.clone(), state.plan.limits.deadline_ms?)))
            .collect()
    }

    /// A task of a run, as the run holds it (spawned ones included).
    pub fn task_spec(&self, run: &RunId, task: &TaskId) -> Option<&TaskSpec> {
        let state = self.runs.get(run)?;
        Some(&state.plan.tasks[state.index_of(task)?])
    }

    /// The tasks that need `task` directly: those a branch of it chooses among.
    pub fn dependents_of(&self, run: &RunId, task: &TaskId) -> Vec<TaskId> {
        let Some(state) = self.runs.get(run) else {
            return Vec::new();
        };
        state.index_of(task).map_or_else(Vec::new, |index| {
            state
                .dependents(index)
                .iter()
                .map(|&d| state.plan.tasks[d].id.clone())
                .collect()
        })
    }

    pub fn has_run(&self, run: &RunId) -> bool {
        self.runs.contains_key(run)
    }
}
