//! Invariants every log must keep, checked from the recorded events alone (never from a
//! scheduler's own state), so that a scheduler bug cannot hide itself:
//!
//! - **one outcome**: no task gets a second terminal outcome (completed, dead-lettered,
//!   canceled, skipped), and in a finished run every task, dispatched or not (spawned ones
//!   included), has exactly one;
//! - **capacity**: no dispatch while its capability already runs as many attempts as its
//!   live workers announce;
//! - **dispatch follows readiness**: an attempt is dispatched at most once, after it was made
//!   ready;
//! - **decisions follow the trigger rules**: a task is made ready, skipped for its rule, or
//!   canceled for a failed upstream only when its rule says so of its whole upstream (the
//!   tasks it needs and everything they spawned, as recorded), and a branch skips only tasks
//!   that need the task that branched;
//! - **nothing paused is dispatched**: no `Dispatch` of a run, or of a capability, between its
//!   `Paused` and its `Resumed`;
//! - **budgets hold at dispatch**: a `Dispatch` never takes a run past `[limits] attempts`, nor
//!   past a budget counting what was charged, what attempts in flight reserve and the task's
//!   estimate (so usage passes a budget only by what attempts in flight use beyond their
//!   estimates).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use workforce_shared::{
    Attempt, Capability, EventSeq, Limits, RunId, TaskId, TaskSpec, Trigger, UpstreamCounts, Usage,
    Verdict, WorkerId,
};

use crate::log::{Entry, Event};
use crate::scheduler::{CancelReason, Decision, Input, PauseScope, SkipReason};

/// Which invariant a log broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    OneOutcome,
    Capacity,
    DispatchFollowsReadiness,
    TriggerRules,
    PausesHold,
    BudgetsHold,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::OneOutcome => "one terminal outcome per task",
            Invariant::Capacity => "no dispatch at capacity",
            Invariant::DispatchFollowsReadiness => "dispatch follows readiness",
            Invariant::TriggerRules => "decisions follow the trigger rules",
            Invariant::PausesHold => "nothing paused is dispatched",
            Invariant::BudgetsHold => "budgets hold at dispatch",
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
    submitted: BTreeMap<RunId, (Vec<TaskSpec>, Limits)>,
    graphs: BTreeMap<RunId, Graph>,
    /// What operators paused and have not resumed.
    paused: BTreeSet<PauseScope>,
}

/// A run's graph as the log records it: what each task needs and its rule, what each spawned,
/// and how each ended.
#[derive(Debug, Default)]
struct Graph {
    specs: BTreeMap<TaskId, (Vec<TaskId>, Trigger)>,
    children: BTreeMap<TaskId, Vec<TaskId>>,
    /// 0 completed, 1 failed (dead-lettered or canceled), 2 skipped.
    ended: BTreeMap<TaskId, u8>,
    /// The run's limits, each task's estimate, and what was charged, reserved and attempted.
    limits: Limits,
    estimates: BTreeMap<TaskId, Usage>,
    used: Usage,
    reserved: Usage,
    attempts: u32,
}

impl Graph {
    fn add(&mut self, tasks: &[TaskSpec]) {
        for t in tasks {
            self.specs
                .insert(t.id.clone(), (t.needs.clone(), t.trigger));
            self.estimates.insert(t.id.clone(), t.estimate);
        }
    }

    /// Reserves `task`'s estimate for a dispatch, unless that would pass a budget or the
    /// run's attempts: then what is passed.
    fn dispatch(&mut self, task: &TaskId) -> Result<(), String> {
        let estimate = self.estimates.get(task).copied().unwrap_or_default();
        if let Some(limit) = self.limits.attempts
            && self.attempts >= limit
        {
            return Err(format!(
                "task {task} is dispatched as attempt {} of a run allowed {limit}",
                self.attempts + 1
            ));
        }
        for part in Usage::PARTS {
            let (Some(limit), Some(used), Some(reserved), Some(more)) = (
                self.limits.budget(part),
                self.used.part(part),
                self.reserved.part(part),
                estimate.part(part),
            ) else {
                continue;
            };
            if used.saturating_add(reserved).saturating_add(more) > limit {
                return Err(format!(
                    "task {task} is dispatched with an estimate of {more} {part} while {used} are used and {reserved} reserved of a budget of {limit}"
                ));
            }
        }
        self.attempts += 1;
        self.reserved = self.reserved.plus(estimate);
        Ok(())
    }

    fn charge(&mut self, task: &TaskId, usage: Usage) {
        let estimate = self.estimates.get(task).copied().unwrap_or_default();
        self.reserved = self.reserved.minus(estimate);
        self.used = self.used.plus(usage);
    }

    /// What the rule of `task` says of its upstream as recorded so far.
    fn verdict(&self, task: &TaskId) -> Option<Verdict> {
        let (needs, trigger) = self.specs.get(task)?;
        let mut counts = UpstreamCounts::default();
        let mut stack: Vec<&TaskId> = needs.iter().collect();
        while let Some(t) = stack.pop() {
            match self.ended.get(t) {
                Some(0) => counts.completed += 1,
                Some(1) => counts.failed += 1,
                Some(_) => counts.skipped += 1,
                None => counts.unfinished += 1,
            }
            stack.extend(self.children.get(t).into_iter().flatten());
        }
        Some(trigger.verdict(counts))
    }

    /// Checks a decision about `task` against its rule: `None` when it follows.
    fn check(&self, task: &TaskId, decision: &Decision) -> Option<String> {
        let expected = match decision {
            Decision::TaskReady { attempt, .. } if *attempt == Attempt::FIRST => Verdict::Run,
            Decision::TaskSkipped {
                reason: SkipReason::TriggerUnmet { .. },
                ..
            } => Verdict::Skip,
            Decision::TaskCanceled {
                reason: CancelReason::UpstreamFailed { .. },
                ..
            } => Verdict::Cancel,
            Decision::TaskSkipped {
                reason: SkipReason::NotChosen { by },
                ..
            } => {
                let follows = self
                    .specs
                    .get(task)
                    .is_some_and(|(needs, _)| needs.contains(by))
                    && self.ended.get(by) == Some(&0);
                return (!follows).then(|| {
                    format!("task {task} is skipped by a branch of {by}, which it does not need or which did not complete")
                });
            }
            _ => return None,
        };
        let found = self.verdict(task)?;
        (found != expected).then(|| {
            format!(
                "{} for task {task}, but its rule says {found:?} of its upstream as recorded",
                decision.kind()
            )
        })
    }
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
    let mut pending: Vec<(EventSeq, &Decision)> = Vec::new();
    let mut checked = Checked::default();
    for (seq, event) in events {
        let seq = *seq;
        if matches!(event.entry, Entry::Input(_)) {
            check_rules(&ledger, &mut pending)?;
        }
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
                    ledger
                        .submitted
                        .insert(run.clone(), (plan.tasks.clone(), plan.limits));
                }
                Input::ResultReceived { .. }
                | Input::RetryDue { .. }
                | Input::CancelRequested { .. }
                | Input::AttemptTimedOut { .. }
                | Input::PublishFailed { .. }
                | Input::CoordinatorStarted { .. }
                | Input::PauseRequested { .. }
                | Input::ResumeRequested { .. }
                | Input::RunDeadlinePassed { .. }
                | Input::RedriveRequested { .. } => {}
            },
            Entry::Decision(decision) => {
                if decided_task(decision).is_some() {
                    pending.push((seq, decision));
                }
                ledger.record_ending(decision);
                match decision {
                    Decision::RunAccepted { run, .. } => {
                        checked.runs += 1;
                        let (tasks, limits) = ledger.submitted.remove(run).unwrap_or_default();
                        let graph = ledger.graphs.entry(run.clone()).or_default();
                        graph.limits = limits;
                        graph.add(&tasks);
                        ledger
                            .tasks
                            .insert(run.clone(), tasks.into_iter().map(|t| t.id).collect());
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
                        let held = [
                            PauseScope::Run { run: run.clone() },
                            PauseScope::Capability {
                                capability: capability.clone(),
                            },
                        ];
                        if let Some(scope) = held.iter().find(|s| ledger.paused.contains(*s)) {
                            return Err(Violation {
                                seq,
                                invariant: Invariant::PausesHold,
                                detail: format!(
                                    "attempt {attempt} of task {task} (run {run}) is dispatched while {scope} is paused"
                                ),
                            });
                        }
                        if let Some(graph) = ledger.graphs.get_mut(run)
                            && let Err(detail) = graph.dispatch(task)
                        {
                            return Err(Violation {
                                seq,
                                invariant: Invariant::BudgetsHold,
                                detail: format!("run {run}: {detail}"),
                            });
                        }
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
                        let graph = ledger.graphs.entry(run.clone()).or_default();
                        graph.add(tasks);
                        if let Decision::TasksSpawned { parent, .. } = decision {
                            let children = graph.children.entry(parent.clone()).or_default();
                            children.extend(tasks.iter().map(|t| t.id.clone()));
                        }
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
                    Decision::TaskRedriven {
                        run, task, attempt, ..
                    } => {
                        // Its outcome is undone: it gets another.
                        ledger.reopen(run, task);
                        ledger.ready.insert((run.clone(), task.clone(), *attempt));
                    }
                    Decision::TaskRestored { run, task } => ledger.reopen(run, task),
                    Decision::TaskEscalated {
                        run, task, attempt, ..
                    } => {
                        ledger.ready.insert((run.clone(), task.clone(), *attempt));
                    }
                    Decision::RunReopened { .. } => {}
                    Decision::UsageCharged {
                        run, task, usage, ..
                    } => {
                        if let Some(graph) = ledger.graphs.get_mut(run) {
                            graph.charge(task, *usage);
                        }
                    }
                    Decision::Paused { scope } => {
                        ledger.paused.insert(scope.clone());
                    }
                    Decision::Resumed { scope } => {
                        ledger.paused.remove(scope);
                    }
                    Decision::InputRejected { .. }
                    | Decision::StopAttempt { .. }
                    | Decision::RetryScheduled { .. }
                    | Decision::ResultIgnored { .. } => {}
                }
            }
        }
    }
    check_rules(&ledger, &mut pending)?;
    Ok(checked)
}

/// Checks the trigger-rule decisions of one step against the graph as the whole step left
/// it: a step emits them in task order, not in the order its ends were taken in, and a
/// decided verdict never changes as more upstream tasks end.
fn check_rules(ledger: &Ledger, pending: &mut Vec<(EventSeq, &Decision)>) -> Result<(), Violation> {
    for (seq, decision) in pending.drain(..) {
        if let (Some(run), Some(task)) = (decision.run(), decided_task(decision))
            && let Some(graph) = ledger.graphs.get(run)
            && let Some(detail) = graph.check(task, decision)
        {
            return Err(Violation {
                seq,
                invariant: Invariant::TriggerRules,
                detail: format!("run {run}: {detail}"),
            });
        }
    }
    Ok(())
}

/// The task a decision settles by a trigger rule or a branch, if it is such a decision.
fn decided_task(decision: &Decision) -> Option<&TaskId> {
    match decision {
        Decision::TaskReady { task, .. }
        | Decision::TaskSkipped { task, .. }
        | Decision::TaskCanceled { task, .. } => Some(task),
        _ => None,
    }
}

impl Ledger {
    /// A task that ended waits or runs again (a redrive, a restore): its outcome is undone.
    fn reopen(&mut self, run: &RunId, task: &TaskId) {
        if let Some(n) = self.outcomes.get_mut(&(run.clone(), task.clone())) {
            *n = n.saturating_sub(1);
        }
        if let Some(graph) = self.graphs.get_mut(run) {
            graph.ended.remove(task);
        }
    }

    /// Notes how a task ended, for the rules of the tasks that wait on it.
    fn record_ending(&mut self, decision: &Decision) {
        let (run, task, ending) = match decision {
            Decision::TaskCompleted { run, task, .. } => (run, task, 0),
            Decision::DeadLettered { run, task, .. } | Decision::TaskCanceled { run, task, .. } => {
                (run, task, 1)
            }
            Decision::TaskSkipped { run, task, .. } => (run, task, 2),
            _ => return,
        };
        if let Some(graph) = self.graphs.get_mut(run) {
            graph.ended.insert(task.clone(), ending);
        }
    }
}
