//! The simulator: the real [`Scheduler`](crate::scheduler::Scheduler) against simulated
//! workers and a simulated broker in virtual time.
//!
//! No NATS, no clock, no threads. Task durations, failures and faults come from a seeded
//! generator, so the same plan, settings and seed give the same event log, and the same
//! digest, on every machine. With faults on, it sees what production sees: attempts that time
//! out, permanent failures, workers that leave (their tasks redelivered after the ack wait)
//! and join, duplicate results, assignments that cannot be published, and coordinator
//! restarts that rebuild the state from the log recorded so far ([`crate::recovery`]), some
//! of them between a commit and its effects; and operators who cancel a task or the run, and
//! pause the run or a capability (resuming it later).
//!
//! [`check_seeds`] runs one simulation per seed and checks, from each recorded log alone, the
//! [`invariants`](crate::invariants), that the log replays identically, and that the seed
//! gives the same digest twice.
//!
//! # Layout
//! - `world`: the simulated broker, workers and coordinator, and the faults.
//! - `rng`: SplitMix64, the seeded generator every seeded tool shares.

mod rng;
mod world;

use std::fmt;
use std::ops::RangeInclusive;

use serde::Serialize;
use workforce_shared::{EventSeq, Plan, RunId};

use crate::invariants::{Checked, Violation, check};
use crate::log::{Event, LogError};
use crate::recovery::RecoveryError;
use crate::replay::{ReplayError, replay};
use crate::scheduler::{RunStatus, RunSummary};

pub use rng::SplitMix64;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub workers: u32,
    /// Tasks each simulated worker runs at once.
    pub concurrency: u32,
    pub seed: u64,
    /// Probability (0 to 1) that an attempt fails retryably.
    pub fail_rate: f64,
    /// Attempt durations are drawn uniformly from this range, in virtual milliseconds.
    pub min_task_ms: u64,
    pub max_task_ms: u64,
    /// Inject faults (see the module docs).
    pub faults: bool,
    /// The coordinator's grace past a task's timeout, in virtual milliseconds.
    pub grace_ms: u64,
    /// How long the broker waits for an ack before it redelivers, in virtual milliseconds.
    pub ack_wait_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            workers: 3,
            concurrency: 1,
            seed: 1,
            fail_rate: 0.0,
            min_task_ms: 100,
            max_task_ms: 5_000,
            faults: false,
            grace_ms: 10_000,
            ack_wait_ms: 30_000,
        }
    }
}

/// Faults injected, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub timeouts: u64,
    pub permanent_failures: u64,
    pub workers_left: u64,
    pub workers_joined: u64,
    pub coordinator_restarts: u64,
    pub duplicate_results: u64,
    pub unpublishable: u64,
    /// Operator cancels of one task, and of the whole run.
    pub tasks_canceled: u64,
    pub runs_canceled: u64,
    /// Pauses of the run or of a capability, each resumed later.
    pub pauses: u64,
    /// Usage reports that cannot be read.
    pub bad_usage: u64,
    /// Redrives of a dead-lettered task.
    pub redrives: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.timeouts
            + self.permanent_failures
            + self.workers_left
            + self.workers_joined
            + self.coordinator_restarts
            + self.duplicate_results
            + self.unpublishable
            + self.tasks_canceled
            + self.runs_canceled
            + self.pauses
            + self.bad_usage
            + self.redrives
    }

    fn add(&mut self, other: &FaultCounts) {
        self.timeouts += other.timeouts;
        self.permanent_failures += other.permanent_failures;
        self.workers_left += other.workers_left;
        self.workers_joined += other.workers_joined;
        self.coordinator_restarts += other.coordinator_restarts;
        self.duplicate_results += other.duplicate_results;
        self.unpublishable += other.unpublishable;
        self.tasks_canceled += other.tasks_canceled;
        self.runs_canceled += other.runs_canceled;
        self.pauses += other.pauses;
        self.bad_usage += other.bad_usage;
        self.redrives += other.redrives;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeouts {}, permanent failures {}, workers left {}, workers joined {}, coordinator restarts {}, duplicate results {}, unpublishable {}, tasks canceled {}, runs canceled {}, pauses {}, unreadable usage {}, redrives {}",
            self.timeouts,
            self.permanent_failures,
            self.workers_left,
            self.workers_joined,
            self.coordinator_restarts,
            self.duplicate_results,
            self.unpublishable,
            self.tasks_canceled,
            self.runs_canceled,
            self.pauses,
            self.bad_usage,
            self.redrives
        )
    }
}

#[derive(Debug)]
pub struct SimReport {
    pub run: RunId,
    pub events: u64,
    /// SHA-256 of every event, encoded, in order.
    pub digest: String,
    /// Virtual time at which the run finished.
    pub virtual_ms: u64,
    pub attempts: u64,
    pub summary: Option<RunSummary>,
    pub faults: FaultCounts,
    /// The recorded log, as an event log would read it back.
    pub log: Vec<(EventSeq, Event)>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("a simulated coordinator restart could not recover: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("the simulated run's id: {0}")]
    Name(#[from] workforce_shared::NameError),
}

/// Receives simulated events in batches: an event log's append, say.
pub type EventSink<'a> = &'a mut dyn FnMut(&[Event]) -> Result<(), LogError>;

/// Runs `plan` to the end in virtual time. Every event goes to `sink` (an event log's append,
/// say) in batches, and into the digest.
pub fn simulate(
    plan: &Plan,
    config: &SimConfig,
    sink: Option<EventSink<'_>>,
) -> Result<SimReport, SimError> {
    world::run(plan, config, sink)
}

/// What is wrong with one seed's simulation.
#[derive(Debug, thiserror::Error)]
pub enum SeedProblem {
    #[error(transparent)]
    Invariant(#[from] Violation),
    #[error("the log does not replay: {0}")]
    Replay(#[from] ReplayError),
    #[error("the same seed gave two digests: {first} and {second}")]
    Digest { first: String, second: String },
    #[error("the run did not finish (status {status})")]
    Unfinished { status: String },
    #[error(
        "task {task} declares `spawns` and completed, but nothing was spawned: the simulation did not grow the graph"
    )]
    NeverSpawned { task: String },
    #[error("the simulation failed: {0}")]
    Sim(#[from] SimError),
}

/// The first seed whose simulation breaks an invariant.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: {problem}")]
pub struct SeedFailure {
    pub seed: u64,
    #[source]
    pub problem: SeedProblem,
}

/// What a range of seeds gave, when none broke an invariant.
#[derive(Debug, Default)]
pub struct SeedsReport {
    pub runs: u64,
    pub events: u64,
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub faults: FaultCounts,
    /// Spawns applied, and the tasks they added.
    pub spawns: u64,
    pub spawned: u64,
}

impl fmt::Display for SeedsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} runs, 0 invariant violations (faults injected: {} — {}; spawns {}, adding {} tasks)",
            self.runs,
            self.faults.total(),
            self.faults,
            self.spawns,
            self.spawned
        )
    }
}

/// Checks every invariant a recorded log must keep: the invariants themselves, and that it
/// replays identically.
pub fn verify_log(log: &[(EventSeq, Event)]) -> Result<Checked, SeedProblem> {
    let checked = check(log)?;
    replay(log, None)?;
    Ok(checked)
}

/// Simulates one seed twice, lets `tamper` change the first log (tests use it to show that a
/// damaged log is caught), and checks it.
pub fn check_seed(
    plan: &Plan,
    config: &SimConfig,
    tamper: impl FnOnce(&mut Vec<(EventSeq, Event)>),
) -> Result<(SimReport, Checked), SeedFailure> {
    let fail = |problem: SeedProblem| SeedFailure {
        seed: config.seed,
        problem,
    };
    let mut report = simulate(plan, config, None).map_err(|e| fail(e.into()))?;
    let again = simulate(plan, config, None).map_err(|e| fail(e.into()))?;
    if again.digest != report.digest {
        return Err(fail(SeedProblem::Digest {
            first: report.digest,
            second: again.digest,
        }));
    }
    tamper(&mut report.log);
    let checked = verify_log(&report.log).map_err(fail)?;
    if checked.spawns == 0
        && let Some(task) = completed_spawner(plan, &report.log)
    {
        return Err(fail(SeedProblem::NeverSpawned { task }));
    }
    match report.summary.as_ref().map(|s| s.status) {
        Some(
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled | RunStatus::Stopped,
        ) => Ok((report, checked)),
        other => Err(fail(SeedProblem::Unfinished {
            status: other.map_or("unknown", RunStatus::as_str).to_owned(),
        })),
    }
}

/// Runs and checks one simulation per seed of `seeds`; stops at the first that fails.
pub fn check_seeds(
    plan: &Plan,
    config: &SimConfig,
    seeds: RangeInclusive<u64>,
) -> Result<SeedsReport, SeedFailure> {
    let mut total = SeedsReport::default();
    for seed in seeds {
        let config = SimConfig {
            seed,
            ..config.clone()
        };
        let (report, checked) = check_seed(plan, &config, |_| {})?;
        total.runs += 1;
        total.spawns += checked.spawns;
        total.spawned += checked.spawned;
        total.events += report.events;
        total.attempts += report.attempts;
        match report.summary.map(|s| s.status) {
            Some(RunStatus::Succeeded) => total.succeeded += 1,
            Some(_) | None => total.failed += 1,
        }
        total.faults.add(&report.faults);
    }
    Ok(total)
}

/// A task of the plan that declares `spawns` and completed in `log`, if any.
fn completed_spawner(plan: &Plan, log: &[(EventSeq, Event)]) -> Option<String> {
    log.iter().find_map(|(_, event)| match &event.entry {
        crate::log::Entry::Decision(crate::scheduler::Decision::TaskCompleted { task, .. })
            if plan
                .task(task)
                .is_some_and(|t| t.spawns.as_ref().is_some_and(|s| !s.is_empty())) =>
        {
            Some(task.to_string())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests;
