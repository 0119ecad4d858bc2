//! `log_writer <data dir> <seed>`: drives the real scheduler against one simulated worker and
//! appends to the event log in `<data dir>`, one input and its decisions per batch, so that
//! every commit is a replayable prefix, as the coordinator's are.
//!
//! Stdout, for `tests/log_crash.rs`, which SIGKILLs this process at random points:
//! `ready <events>` once the existing log is open and replayed, then `committed <seq>` after
//! each append has returned. Every reported sequence must therefore survive the kill.
//!
//! A non-empty log is continued: recovering it (as the coordinator does) rebuilds the
//! scheduler. New run ids carry the
//! log's length at start, which only grows across commits, so they never clash with recorded
//! ones.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use workforce_coordinator::log::{Event, EventLog};
use workforce_coordinator::recovery::{DeadlineRule, recover};
use workforce_coordinator::scheduler::{Input, RunStatus, Scheduler, WorkerLeftReason};
use workforce_coordinator::simulate::SplitMix64;
use workforce_shared::{
    Attempt, Capability, Outcome, PROTOCOL_VERSION, Plan, PlanFormat, PlanLimits, RunId, TaskId,
    TaskResult, WorkerId,
};

/// Batches before exiting on its own; the test kills it long before.
const MAX_BATCHES: u64 = 1_000_000;
const CAPABILITIES: [&str; 3] = ["alpha", "beta", "gamma"];
const TASKS_PER_PLAN: usize = 20;
/// Runs kept going at once, so results, retries and dispatches interleave across runs.
const ACTIVE_RUNS: usize = 2;

/// The writer's choices follow from the seed and the log it continues.
#[derive(Debug)]
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len()))
    }
}

#[derive(Debug)]
struct Writer {
    scheduler: Scheduler,
    rng: Rng,
    worker: WorkerId,
    capabilities: Vec<Capability>,
    start_len: u64,
    runs_started: u64,
}

impl Writer {
    /// The next thing that happens to the scheduler: what a coordinator's intake would feed it.
    fn next_input(&mut self) -> Result<Input> {
        if self.scheduler.workers().is_empty() {
            return Ok(Input::WorkerJoined {
                worker: self.worker.clone(),
                capabilities: self.capabilities.clone(),
                concurrency: 4,
            });
        }
        let active: Vec<RunId> = self
            .scheduler
            .runs()
            .into_iter()
            .filter(|s| s.status == RunStatus::Running)
            .map(|s| s.run)
            .collect();
        let running = self.scheduler.running();
        let backing_off = self.scheduler.backing_off();
        let roll = self.rng.below(100);
        if active.len() < ACTIVE_RUNS || roll < 2 {
            return self.submit();
        }
        if roll < 3
            && let Some(run) = self.rng.pick(&active)
        {
            return Ok(Input::CancelRequested {
                run: run.clone(),
                task: None,
                note: None,
            });
        }
        if roll < 4 {
            return Ok(Input::WorkerLeft {
                worker: self.worker.clone(),
                reason: WorkerLeftReason::HeartbeatsStopped,
                attempts: Vec::new(),
            });
        }
        if roll < 6
            && let Some((run, task, attempt)) = self.rng.pick(&running)
        {
            // A result for an attempt that is not the running one: recorded, then ignored.
            let outcome = self.outcome();
            return Ok(self.result(run, task, attempt.next(), outcome));
        }
        if (running.is_empty() || roll < 30)
            && let Some((run, task, attempt)) = self.rng.pick(&backing_off)
        {
            return Ok(Input::RetryDue {
                run: run.clone(),
                task: task.clone(),
                attempt: *attempt,
            });
        }
        if let Some((run, task, attempt)) = self.rng.pick(&running) {
            let outcome = self.outcome();
            return Ok(self.result(run, task, *attempt, outcome));
        }
        self.submit()
    }

    fn outcome(&mut self) -> Outcome {
        match self.rng.below(100) {
            0..80 => Outcome::succeeded(serde_json::json!({ "n": self.rng.next() % 1000 })),
            80..95 => Outcome::Failed {
                error: "simulated retryable failure".into(),
                permanent: false,
            },
            _ => Outcome::Failed {
                error: "simulated permanent failure".into(),
                permanent: true,
            },
        }
    }

    fn result(&self, run: &RunId, task: &TaskId, attempt: Attempt, outcome: Outcome) -> Input {
        Input::ResultReceived {
            result: TaskResult {
                v: PROTOCOL_VERSION,
                run: run.clone(),
                task: task.clone(),
                attempt,
                worker: self.worker.clone(),
                outcome,
                duration_ms: 1,
                usage: None,
            },
        }
    }

    fn submit(&mut self) -> Result<Input> {
        let run = RunId::new(format!("crash-{}-{}", self.start_len, self.runs_started))?;
        self.runs_started += 1;
        let plan = self.plan(&run)?;
        Ok(Input::RunSubmitted { run, plan })
    }

    /// A random DAG of [`TASKS_PER_PLAN`] tasks, each needing up to two earlier ones.
    fn plan(&mut self, run: &RunId) -> Result<Plan> {
        let mut src = format!("name = \"plan of {run}\"\n");
        for i in 0..TASKS_PER_PLAN {
            let capability = CAPABILITIES[self.rng.below(CAPABILITIES.len())];
            let priority = self.rng.below(3) as i32 - 1;
            let mut needs: Vec<usize> = (0..self.rng.below(3).min(i))
                .map(|_| self.rng.below(i))
                .collect();
            needs.sort_unstable();
            needs.dedup();
            let needs: Vec<String> = needs.iter().map(|n| format!("\"t{n}\"")).collect();
            src.push_str(&format!(
                "[[tasks]]\nid = \"t{i}\"\ncapability = \"{capability}\"\npriority = {priority}\n\
                 needs = [{}]\ninput = {{ n = {i} }}\n\
                 retry = {{ max_attempts = 3, initial_backoff = \"1s\" }}\n",
                needs.join(", ")
            ));
        }
        Plan::parse(&src, PlanFormat::Toml, &PlanLimits::default())
            .with_context(|| format!("generated plan is invalid:\n{src}"))
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(seed), None) = (args.next(), args.next(), args.next()) else {
        bail!("usage: log_writer <data dir> <seed>");
    };
    let seed: u64 = seed
        .parse()
        .with_context(|| format!("seed {seed:?} is not an unsigned integer"))?;
    let mut log = EventLog::open(&PathBuf::from(dir))?;
    let contents = log.contents()?;
    let events = contents.events;
    // As the coordinator does: restore what was recorded, decide nothing again.
    let rule = DeadlineRule {
        grace_ms: 0,
        floor_ms: 0,
    };
    let recovered = recover(&events, contents.effects_done, rule)
        .context("the existing log does not recover")?;
    let start_len = log.len();
    // Virtual time: one tick per input, continuing the log's.
    let first_ms = events.last().map_or(0, |(_, e)| e.at_ms) + 1;
    drop(events);

    let mut writer = Writer {
        scheduler: recovered.scheduler,
        rng: Rng(SplitMix64::new(seed ^ start_len.rotate_left(32))),
        worker: WorkerId::new("crash-worker")?,
        capabilities: CAPABILITIES
            .iter()
            .map(|c| Capability::new(*c))
            .collect::<Result<_, _>>()?,
        start_len,
        runs_started: 0,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {start_len}")?;
    out.flush()?;
    for at_ms in first_ms..first_ms + MAX_BATCHES {
        let input = writer.next_input()?;
        let step = writer.scheduler.step(input);
        let batch = Event::of_step(at_ms, step.input, step.decisions);
        let first = log.append(&batch)?;
        // Only after the commit returned: the parent counts this sequence as durable.
        writeln!(out, "committed {}", first.0 + batch.len() as u64 - 1)?;
        out.flush()?;
    }
    Ok(())
}
