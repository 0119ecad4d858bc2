//! How each decision changes the scheduler's state. Deciding ([`Scheduler::step`]) and
//! evolving are kept apart so that a recorded log can be applied as it was decided
//! ([`Scheduler::restore`]): recovery never decides the past again, whatever rules a newer
//! build would follow.
//!
//! Evolving does bookkeeping only; every rule (what becomes ready, what retries, what is
//! canceled) is in the deciding.

use workforce_shared::{Attempt, Outcome, RunId, TaskId};

use workforce_shared::Rung;

use super::events::{
    CancelReason, Decision, Input, PauseScope, RunOutcome, SEMANTICS_VERSION, SkipReason,
};
use super::run::{Phase, RunState};
use super::{Scheduler, WorkerInfo};

/// A recorded decision that cannot apply to the state the log before it leaves: the log is
/// damaged, or was not written by a Workforce coordinator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("{decision} names run {run}, which the log never accepted")]
    UnknownRun { decision: &'static str, run: RunId },
    #[error("{decision} names task {task}, which run {run} does not have")]
    UnknownTask {
        decision: &'static str,
        run: RunId,
        task: TaskId,
    },
    #[error(
        "{decision} for task {task} of run {run} (attempt {attempt}) does not follow from its state: {phase}"
    )]
    OutOfOrder {
        decision: &'static str,
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        phase: &'static str,
    },
    #[error("{decision} does not follow from the input it is recorded after ({input})")]
    WrongInput {
        decision: &'static str,
        input: &'static str,
    },
    #[error("run {run} is accepted twice")]
    RunExists { run: RunId },
    #[error("task {task} of run {run} is spawned, but the run has a task of that id")]
    TaskExists { run: RunId, task: TaskId },
    #[error(
        "run {run} was accepted under scheduling rules version {semantics}, newer than this build's {SEMANTICS_VERSION}; open this log with a newer Workforce"
    )]
    NewerSemantics { run: RunId, semantics: u32 },
}

impl Scheduler {
    /// Applies an input as it was recorded, with the decisions recorded after it, deciding
    /// nothing. Used by recovery and replay.
    pub fn restore(&mut self, input: &Input, decisions: &[Decision]) -> Result<(), RestoreError> {
        self.observe(input);
        for decision in decisions {
            self.evolve(input, decision)?;
        }
        Ok(())
    }

    /// Takes in the facts an input carries by itself: which workers are live, and which runs'
    /// deadlines have passed (whether or not the run was still going).
    pub(super) fn observe(&mut self, input: &Input) {
        match input {
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
            Input::RunDeadlinePassed { run } => {
                if let Some(state) = self.runs.get_mut(run) {
                    state.deadline_passed = true;
                }
            }
            Input::RunSubmitted { .. }
            | Input::ResultReceived { .. }
            | Input::RetryDue { .. }
            | Input::CancelRequested { .. }
            | Input::AttemptTimedOut { .. }
            | Input::PublishFailed { .. }
            | Input::CoordinatorStarted { .. }
            | Input::PauseRequested { .. }
            | Input::ResumeRequested { .. }
            | Input::RedriveRequested { .. } => {}
        }
    }

    /// Changes the state by one decision, made for `input`.
    pub(super) fn evolve(
        &mut self,
        input: &Input,
        decision: &Decision,
    ) -> Result<(), RestoreError> {
        let kind = decision.kind();
        match decision {
            Decision::RunAccepted { run, semantics, .. } => {
                let Input::RunSubmitted {
                    run: submitted,
                    plan,
                } = input
                else {
                    return Err(RestoreError::WrongInput {
                        decision: kind,
                        input: input.kind(),
                    });
                };
                if submitted != run {
                    return Err(RestoreError::WrongInput {
                        decision: kind,
                        input: input.kind(),
                    });
                }
                if self.runs.contains_key(run) {
                    return Err(RestoreError::RunExists { run: run.clone() });
                }
                if *semantics > SEMANTICS_VERSION {
                    return Err(RestoreError::NewerSemantics {
                        run: run.clone(),
                        semantics: *semantics,
                    });
                }
                let seq = self.run_ids.last_key_value().map_or(0, |(s, _)| s + 1);
                let state = RunState::new(run.clone(), seq, *semantics, plan.clone());
                self.run_ids.insert(seq, run.clone());
                self.runs.insert(run.clone(), state);
            }
            Decision::TaskReady { run, task, attempt } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                match state.tasks[index].phase {
                    Phase::Waiting if *attempt == Attempt::FIRST => {}
                    Phase::BackingOff { next } if next == *attempt => {}
                    ref phase => return Err(out_of_order(kind, run, task, *attempt, phase)),
                }
                state.tasks[index].phase = Phase::Ready;
                state.tasks[index].attempt = *attempt;
                self.enqueue(run, index);
            }
            Decision::Dispatch {
                run,
                task,
                attempt,
                capability,
                ..
            } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let phase = &state.tasks[index].phase;
                if *phase != Phase::Ready || state.tasks[index].attempt != *attempt {
                    return Err(out_of_order(kind, run, task, *attempt, phase));
                }
                state.tasks[index].phase = Phase::Running { attempt: *attempt };
                state.tasks[index].started += 1;
                state.attempts = state.attempts.saturating_add(1);
                state.reserved = state.reserved.plus(state.plan.tasks[index].estimate);
                let key = state.ready_key(index);
                if let Some(queue) = self.ready.get_mut(capability) {
                    queue.remove(&key);
                    queue.served(key.run_seq);
                }
                *self.in_flight.entry(capability.clone()).or_default() += 1;
            }
            Decision::TaskCompleted { run, task, attempt } => {
                let output = match input {
                    Input::ResultReceived { result }
                        if &result.run == run
                            && &result.task == task
                            && result.attempt == *attempt =>
                    {
                        match &result.outcome {
                            Outcome::Succeeded { output, .. } => output.clone(),
                            Outcome::Failed { .. } => {
                                return Err(RestoreError::WrongInput {
                                    decision: kind,
                                    input: "a failed result",
                                });
                            }
                        }
                    }
                    _ => {
                        return Err(RestoreError::WrongInput {
                            decision: kind,
                            input: input.kind(),
                        });
                    }
                };
                let capability = self.end_attempt(kind, run, task, *attempt)?;
                self.release(&capability);
                self.count_result(input, true);
                let (state, index) = self.task_mut(kind, run, task)?;
                state.tasks[index].attempt = *attempt;
                state.finish(index, Phase::Completed { output });
            }
            Decision::AttemptFailed {
                run,
                task,
                attempt,
                cause,
            } => {
                let capability = self.end_attempt(kind, run, task, *attempt)?;
                self.release(&capability);
                if let Input::ResultReceived { result } = input
                    && &result.task == task
                    && result.attempt == *attempt
                {
                    self.count_result(input, false);
                    let (state, index) = self.task_mut(kind, run, task)?;
                    state.tasks[index]
                        .durations
                        .insert(*attempt, result.duration_ms);
                }
                // The phase is settled by the RetryScheduled or DeadLettered that follows.
                let (state, index) = self.task_mut(kind, run, task)?;
                state.tasks[index].failures.push((*attempt, cause.clone()));
            }
            Decision::RetryScheduled {
                run, task, attempt, ..
            } => {
                // Only right after the AttemptFailed of the attempt before.
                let (state, index) = self.task_mut(kind, run, task)?;
                let current = state.tasks[index].attempt;
                let phase = &state.tasks[index].phase;
                if *phase != (Phase::Running { attempt: current }) || current.next() != *attempt {
                    return Err(out_of_order(kind, run, task, *attempt, phase));
                }
                state.tasks[index].phase = Phase::BackingOff { next: *attempt };
            }
            Decision::DeadLettered {
                run,
                task,
                attempts,
            } => {
                // Only right after the AttemptFailed of its last attempt.
                let (state, index) = self.task_mut(kind, run, task)?;
                let current = state.tasks[index].attempt;
                let phase = &state.tasks[index].phase;
                if *phase != (Phase::Running { attempt: current }) || current.0 != *attempts {
                    return Err(out_of_order(kind, run, task, current, phase));
                }
                state.finish(index, Phase::Failed);
                state.dead_letters.push(index);
            }
            Decision::TaskCanceled { run, task, reason } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let capability = state.plan.tasks[index].capability.clone();
                let attempt = state.tasks[index].attempt;
                let freed = match &state.tasks[index].phase {
                    Phase::Running { .. } => true,
                    Phase::Ready => {
                        let key = state.ready_key(index);
                        if let Some(queue) = self.ready.get_mut(&capability) {
                            queue.remove(&key);
                        }
                        false
                    }
                    Phase::Waiting | Phase::BackingOff { .. } => false,
                    phase @ (Phase::Completed { .. }
                    | Phase::Failed
                    | Phase::Canceled { .. }
                    | Phase::Skipped { .. }) => {
                        return Err(out_of_order(kind, run, task, attempt, phase));
                    }
                };
                let (state, index) = self.task_mut(kind, run, task)?;
                state.finish(
                    index,
                    Phase::Canceled {
                        reason: reason.clone(),
                    },
                );
                if freed {
                    self.release(&capability);
                }
            }
            Decision::TasksSpawned { run, parent, tasks } => {
                let (state, index) = self.task_mut(kind, run, parent)?;
                if !matches!(state.tasks[index].phase, Phase::Completed { .. }) {
                    let attempt = state.tasks[index].attempt;
                    let phase = &state.tasks[index].phase;
                    return Err(out_of_order(kind, run, parent, attempt, phase));
                }
                for (i, spec) in tasks.iter().enumerate() {
                    let taken = state.index_of(&spec.id).is_some()
                        || tasks[..i].iter().any(|t| t.id == spec.id);
                    if taken {
                        return Err(RestoreError::TaskExists {
                            run: run.clone(),
                            task: spec.id.clone(),
                        });
                    }
                    let unknown = spec.needs.iter().find(|n| {
                        state.index_of(n).is_none() && !tasks.iter().any(|t| &t.id == *n)
                    });
                    if let Some(need) = unknown {
                        return Err(RestoreError::UnknownTask {
                            decision: kind,
                            run: run.clone(),
                            task: need.clone(),
                        });
                    }
                }
                state.add_tasks(tasks.clone(), Some(index));
            }
            Decision::TaskSkipped { run, task, reason } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                if state.tasks[index].phase != Phase::Waiting {
                    let attempt = state.tasks[index].attempt;
                    let phase = &state.tasks[index].phase;
                    return Err(out_of_order(kind, run, task, attempt, phase));
                }
                state.finish(
                    index,
                    Phase::Skipped {
                        reason: reason.clone(),
                    },
                );
            }
            Decision::RunFinished { run, outcome } => {
                let state = self
                    .runs
                    .get_mut(run)
                    .ok_or_else(|| RestoreError::UnknownRun {
                        decision: kind,
                        run: run.clone(),
                    })?;
                if let (RunOutcome::Canceled, Input::CancelRequested { note, .. }) =
                    (outcome, input)
                {
                    state.cancel_note.clone_from(note);
                }
                state.outcome = Some(outcome.clone());
            }
            Decision::TaskRedriven {
                run,
                task,
                attempt,
                redrives,
            } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let current = state.tasks[index].attempt;
                let phase = &state.tasks[index].phase;
                if *phase != Phase::Failed || *attempt != current.next() {
                    return Err(out_of_order(kind, run, task, *attempt, phase));
                }
                if let Input::RedriveRequested {
                    with_input: Some(new_input),
                    ..
                } = input
                {
                    state.plan.tasks[index].input = new_input.clone();
                }
                state.unfinish(index, Phase::Ready);
                state.dead_letters.retain(|&d| d != index);
                let task_state = &mut state.tasks[index];
                task_state.attempt = *attempt;
                task_state.first_attempt = *attempt;
                task_state.redrives = *redrives;
                self.enqueue(run, index);
            }
            Decision::TaskEscalated {
                run,
                task,
                rung,
                attempt,
            } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let current = state.tasks[index].attempt;
                let phase = &state.tasks[index].phase;
                let step = state.plan.tasks[index]
                    .escalate
                    .get((*rung as usize).wrapping_sub(1))
                    .cloned();
                let follows = *phase == (Phase::Running { attempt: current })
                    && *attempt == current.next()
                    && *rung == state.tasks[index].rung + 1;
                let (true, Some(Rung::Reroute { capability, retry })) = (follows, step) else {
                    return Err(out_of_order(kind, run, task, *attempt, phase));
                };
                let spec = &mut state.plan.tasks[index];
                spec.capability = capability;
                spec.retry = retry;
                let task_state = &mut state.tasks[index];
                task_state.rung = *rung;
                task_state.attempt = *attempt;
                task_state.first_attempt = *attempt;
                task_state.phase = Phase::Ready;
                self.enqueue(run, index);
            }
            Decision::TaskRestored { run, task } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let restorable = matches!(
                    state.tasks[index].phase,
                    Phase::Canceled {
                        reason: CancelReason::UpstreamFailed { .. }
                    } | Phase::Skipped {
                        reason: SkipReason::TriggerUnmet { .. }
                    }
                );
                if !restorable {
                    let attempt = state.tasks[index].attempt;
                    let phase = &state.tasks[index].phase;
                    return Err(out_of_order(kind, run, task, attempt, phase));
                }
                state.unfinish(index, Phase::Waiting);
            }
            Decision::RunReopened { run } => {
                let state = self
                    .runs
                    .get_mut(run)
                    .ok_or_else(|| RestoreError::UnknownRun {
                        decision: kind,
                        run: run.clone(),
                    })?;
                state.outcome = None;
            }
            Decision::UsageCharged {
                run, task, usage, ..
            } => {
                let (state, index) = self.task_mut(kind, run, task)?;
                let estimate = state.plan.tasks[index].estimate;
                state.reserved = state.reserved.minus(estimate);
                state.used = state.used.plus(*usage);
                state.tasks[index].used = state.tasks[index].used.plus(*usage);
            }
            Decision::Paused { scope } | Decision::Resumed { scope } => {
                let pause = matches!(decision, Decision::Paused { .. });
                match scope {
                    PauseScope::Run { run } => {
                        let seq = self
                            .runs
                            .get(run)
                            .ok_or_else(|| RestoreError::UnknownRun {
                                decision: kind,
                                run: run.clone(),
                            })?
                            .seq;
                        if pause {
                            self.paused_runs.insert(seq);
                        } else {
                            self.paused_runs.remove(&seq);
                        }
                    }
                    PauseScope::Capability { capability } => {
                        if pause {
                            self.paused_capabilities.insert(capability.clone());
                        } else {
                            self.paused_capabilities.remove(capability);
                        }
                    }
                }
            }
            Decision::InputRejected { .. }
            | Decision::StopAttempt { .. }
            | Decision::ResultIgnored { .. } => {}
        }
        Ok(())
    }

    /// Counts a result that ended its attempt for the worker that reported it.
    fn count_result(&mut self, input: &Input, succeeded: bool) {
        if let Input::ResultReceived { result } = input {
            self.worker_stats
                .entry(result.worker.clone())
                .or_default()
                .record(succeeded);
        }
    }

    /// Checks that `attempt` is running, and returns its capability.
    fn end_attempt(
        &mut self,
        kind: &'static str,
        run: &RunId,
        task: &TaskId,
        attempt: Attempt,
    ) -> Result<workforce_shared::Capability, RestoreError> {
        let (state, index) = self.task_mut(kind, run, task)?;
        let phase = &state.tasks[index].phase;
        if *phase != (Phase::Running { attempt }) {
            return Err(out_of_order(kind, run, task, attempt, phase));
        }
        Ok(state.plan.tasks[index].capability.clone())
    }

    fn task_mut(
        &mut self,
        decision: &'static str,
        run: &RunId,
        task: &TaskId,
    ) -> Result<(&mut RunState, usize), RestoreError> {
        let state = self
            .runs
            .get_mut(run)
            .ok_or_else(|| RestoreError::UnknownRun {
                decision,
                run: run.clone(),
            })?;
        let index = state
            .index_of(task)
            .ok_or_else(|| RestoreError::UnknownTask {
                decision,
                run: run.clone(),
                task: task.clone(),
            })?;
        Ok((state, index))
    }

    /// Puts a task that just became ready in its capability's queue.
    fn enqueue(&mut self, run: &RunId, index: usize) {
        if let Some(state) = self.runs.get(run) {
            let key = state.ready_key(index);
            let capability = state.plan.tasks[index].capability.clone();
            self.ready.entry(capability).or_default().insert(key);
        }
    }

    fn release(&mut self, capability: &workforce_shared::Capability) {
        if let Some(n) = self.in_flight.get_mut(capability) {
            *n = n.saturating_sub(1);
        }
    }
}

fn out_of_order(
    decision: &'static str,
    run: &RunId,
    task: &TaskId,
    attempt: Attempt,
    phase: &Phase,
) -> RestoreError {
    RestoreError::OutOfOrder {
        decision,
        run: run.clone(),
        task: task.clone(),
        attempt,
        phase: phase.name(),
    }
}
