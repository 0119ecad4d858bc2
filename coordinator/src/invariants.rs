//! Invariants every log must keep, checked from the recorded events alone (never from a
//! scheduler's own state), so that a scheduler bug cannot hide itself:
//!
//! - **one outcome**: no task gets a second terminal outcome (completed, dead-lettered,
//!   canceled, skipped), and in a finished run every task, dispatched or not (spawned ones
//!   included), has exactly one;
//! - **capacity**: no dispatch while its capability already runs as many attempts as its
//!   live workers announce;
//! - **dispatch follows readiness**: an attempt is dispatched at most once, after it was made
//!   ready.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use workforce_shared::{Attempt, Capability, EventSeq, RunId, TaskId, WorkerId};

use crate::log::{Entry, Event};
use crate::scheduler::{Decision, Input};

/// Which invariant a log broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    OneOutcome,
    Capacity,
    DispatchFollowsReadiness,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::OneOutcome => "one terminal outcome per task",
            Invariant::Capacity => "no dispatch at capacity",
            Invariant::DispatchFollowsReadiness => "dispatch follows readiness",
        })
    }
}

/// The first place a log breaks an invariant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant \"{invariant}\" broken at event {seq}: {detail}")]
pub struct Violation {
    pub seq: EventSeq,
    pub invariant: Invariant,
    pub detail: String,
}

/// What a clean log held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub runs: u64,
    pub finished_runs: u64,
    pub dispatches: u64,
    /// Spawns applied, and the tasks they added.
    pub spawns: u64,
    pub spawned: u64,
}

type Key = (RunId, TaskId);

#[derive(Debug, Default)]
struct Ledger {
    /// Tasks of each run, from its plan.
    tasks: BTreeMap<RunId, Vec<TaskId>>,
    outcomes: BTreeMap<Key, u32>,
    ready: BTreeSet<(RunId, TaskId, Attempt)>,
    dispatched: BTreeSet<(RunId, TaskId, Attempt)>,
    /// Attempts running now, and their capability.
    running: BTreeMap<Key, (Attempt, Capability)>,
    in_flight: BTreeMap<Capability, u32>,
    workers: BTreeMap<WorkerId, (Vec<Capability>, u32)>,
    submitted: BTreeMap<RunId, Vec<TaskId>>,
}

impl Ledger {
    fn capacity(&self, capability: &Capability) -> u32 {
        self.workers
            .values()
            .filter(|(caps, _)| caps.contains(capability))
            .map(|(_, n)| *n)
            .fold(0, u32::saturating_add)
    }

    fn in_flight(&self, capability: &Capability) -> u32 {
        self.in_flight.get(capability).copied().unwrap_or(0)
    }

    fn start(&mut self, run: &RunId, task: &TaskId, attempt: Attempt, capability: &Capability) {
        *self.in_flight.entry(capability.clone()).or_default() += 1;
        self.running
            .insert((run.clone(), task.clone()), (attempt, capability.clone()));
    }

    fn end(&mut self, run: &RunId, task: &TaskId) {
        if let Some((_, capability)) = self.running.remove(&(run.clone(), task.clone()))
            && let Some(n) = self.in_flight.get_mut(&capability)
        {
            *n = n.saturating_sub(1);
        }
    }

    fn outcome(&mut self, seq: EventSeq, run: &RunId, task: &TaskId) -> Result<(), Violation> {
        let n = self
            .outcomes
            .entry((run.clone(), task.clone()))
            .or_default();
        *n += 1;
        if *n > 1 {
            return Err(Violation {
                seq,
                invariant: Invariant::OneOutcome,
                detail: format!("task {task} of run {run} has a second terminal outcome"),
            });
        }
        Ok(())
    }
}

/// Checks `events` against every invariant; the first violation is returned.
pub fn check(events: &[(EventSeq, Event)]) -> Result<Checked, Violation> {
    let mut ledger = Ledger::default();
    let mut checked = Checked::default();
    for (seq, event) in events {
        let seq = *seq;
        match &event.entry {
            Entry::Input(input) => match input {
                Input::WorkerJoined {
                    worker,
                    capabilities,
                    concurrency,
                } => {
                    ledger
                        .workers
                        .insert(worker.clone(), (capabilities.clone(), *concurrency));
                }
                Input::WorkerLeft { worker, .. } => {
                    ledger.workers.remove(worker);
                }
                Input::RunSubmitted { run, plan } => {
                    let ids = plan.tasks.iter().map(|t| t.id.clone()).collect();
                    ledger.submitted.insert(run.clone(), ids);
                }
                Input::ResultReceived { .. }
                | Input::RetryDue { .. }
                | Input::CancelRequested { .. }
                | Input::AttemptTimedOut { .. }
                | Input::PublishFailed { .. }
                | Input::CoordinatorStarted { .. } => {}
            },
            Entry::Decision(decision) => match decision {
                Decision::RunAccepted { run, .. } => {
                    checked.runs += 1;
                    let tasks = ledger.submitted.remove(run).unwrap_or_default();
                    ledger.tasks.insert(run.clone(), tasks);
                }
                Decision::TaskReady { run, task, attempt } => {
                    ledger.ready.insert((run.clone(), task.clone(), *attempt));
                }
                Decision::Dispatch {
                    run,
                    task,
                    attempt,
                    capability,
                    ..
                } => {
                    checked.dispatches += 1;
                    let key = (run.clone(), task.clone(), *attempt);
                    if !ledger.ready.contains(&key) || !ledger.dispatched.insert(key) {
                        return Err(Violation {
                            seq,
                            invariant: Invariant::DispatchFollowsReadiness,
                            detail: format!(
                                "attempt {attempt} of task {task} (run {run}) is dispatched without being ready, or twice"
                            ),
                        });
                    }
                    let (running, capacity) =
                        (ledger.in_flight(capability), ledger.capacity(capability));
                    if running >= capacity {
                        return Err(Violation {
                            seq,
                            invariant: Invariant::Capacity,
                            detail: format!(
                                "task {task} of run {run} dispatched to capability {capability} while it runs {running} of a capacity of {capacity}"
                            ),
                        });
                    }
                    ledger.start(run, task, *attempt, capability);
                }
                Decision::AttemptFailed { run, task, .. } => ledger.end(run, task),
                Decision::TasksSpawned { run, tasks, .. } => {
                    checked.spawns += 1;
                    checked.spawned += tasks.len() as u64;
                    let known = ledger.tasks.entry(run.clone()).or_default();
                    known.extend(tasks.iter().map(|t| t.id.clone()));
                }
                Decision::TaskCompleted { run, task, .. }
                | Decision::DeadLettered { run, task, .. }
                | Decision::TaskCanceled { run, task, .. }
                | Decision::TaskSkipped { run, task, .. } => {
                    ledger.end(run, task);
                    ledger.outcome(seq, run, task)?;
                }
                Decision::RunFinished { run, .. } => {
                    checked.finished_runs += 1;
                    let tasks = ledger.tasks.get(run).cloned().unwrap_or_default();
                    for task in tasks {
                        let n = ledger
                            .outcomes
                            .get(&(run.clone(), task.clone()))
                            .copied()
                            .unwrap_or(0);
                        if n != 1 {
                            return Err(Violation {
                                seq,
                                invariant: Invariant::OneOutcome,
                                detail: format!(
                                    "run {run} finished with task {task} having {n} terminal outcomes"
                                ),
                            });
                        }
                    }
                }
                Decision::InputRejected { .. }
                | Decision::StopAttempt { .. }
                | Decision::RetryScheduled { .. }
                | Decision::ResultIgnored { .. } => {}
            },
        }
    }
    Ok(checked)
}
