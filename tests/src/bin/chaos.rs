//! `chaos`: a long run under injected faults, outside the default suite (`just chaos`).
//!
//! Submits a seeded plan of hundreds of tasks over several capabilities to a real cluster (NATS
//! in a container, the coordinator and workers as child processes, see the harness). While it
//! runs, one fault at a time at seeded random moments: a worker is SIGKILLed and replaced, the
//! coordinator is SIGKILLed and restarted, or, for a bounded time, the NATS container is
//! paused or a worker SIGSTOPped. Then it reads the event log and prints the faults, the tasks
//! completed, lost and with duplicated terminal events (both must be 0), the replay verdict and
//! the recovery times; it exits 1 if an invariant failed, 2 if it could not run.
//!
//! The plan and the fault schedule (kinds, targets, gaps, pause lengths) follow from `--seed`,
//! from separate streams so that `--tasks` does not move the faults. The processes' timing does
//! not: each run with a seed hits other in-flight tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use workforce_coordinator::log::{Entry, Event, EventLog};
use workforce_coordinator::replay::{ReplayReport, replay};
use workforce_coordinator::scheduler::{Decision, Input, RunStatus, RunView, WorkerLeftReason};
use workforce_coordinator::simulate::SplitMix64;
use workforce_shared::{EventSeq, RunId, TaskId};
use workforce_tests::harness::{Cluster, WorkerSpec};

const CAPABILITIES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Each worker serves two of the capabilities, so every capability has two or more workers.
const WORKERS: usize = 4;
const CONCURRENCY: u32 = 4;
/// One attempt: sleeps the task's `ms`, fails the first attempt of a `flaky` task (a transient
/// failure the retry policy absorbs), prints its task and attempt.
const COMMAND: &str = concat!(
    r#"input=$(cat); "#,
    r#"ms=$(printf '%s' "$input" | grep -o '"ms": *[0-9]*' | head -n 1 | tr -dc 0-9); "#,
    r#"ms=${ms:-100}; sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"; "#,
    r#"if [ "$WORKFORCE_ATTEMPT" = 1 ] && printf '%s' "$input" | grep -q '"flaky": *true'; "#,
    r#"then echo "flaky: attempt 1 fails" >&2; exit 1; fi; "#,
    r#"echo "{\"task\": \"$WORKFORCE_TASK\", \"attempt\": $WORKFORCE_ATTEMPT}""#,
);
/// Attempts per task: a flaky first attempt, and attempts failed by the worker after
/// `--max-deliveries` deliveries whose workers died, must not exhaust it.
const MAX_ATTEMPTS: u32 = 6;
/// How long a check for recovery (a coordinator answering, a worker listed) may take.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
/// Lines of each process's log printed when the run fails.
const LOG_TAIL: usize = 50;

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "A long Workforce run while workers and the coordinator are SIGKILLed and NATS is \
             paused at seeded random moments; fails if a task is lost or finished twice, or the \
             log does not replay."
)]
struct Args {
    /// Seeds the plan and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Tasks in the plan.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    tasks: u32,
    /// Faults to inject, one at a time; fewer if the run ends first.
    #[arg(long, default_value_t = 12)]
    faults: u32,
    /// Seconds from submission after which a run still going counts as hung.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    deadline: u64,
    /// Keep the processes' logs and the event log even when every invariant holds.
    #[arg(long)]
    keep: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Dropping the run's future drops the cluster: the processes are killed, the container
    // removed.
    tokio::select! {
        outcome = chaos(&args) => match outcome {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("chaos: could not run: {e:#}");
                ExitCode::from(2)
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("chaos: interrupted; the cluster is stopped");
            ExitCode::from(130)
        }
    }
}

/// Every choice follows from the seed.
#[derive(Debug)]
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    /// Uniform in `[low, high]` milliseconds.
    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.0.between(low, high))
    }
}

#[derive(Debug)]
struct PlanTask {
    id: TaskId,
    capability: &'static str,
    needs: BTreeSet<usize>,
    ms: u64,
    flaky: bool,
}

/// A layered DAG: each task needs up to three tasks of earlier layers, the first of them from
/// the layer just before, so the longest chain crosses most layers.
#[derive(Debug)]
struct ChaosPlan {
    tasks: Vec<PlanTask>,
    layers: usize,
}

impl ChaosPlan {
    fn generate(rng: &mut Rng, count: usize) -> anyhow::Result<Self> {
        let layers = (count / 35).clamp(10, 20).min(count);
        let layer_of = |i: usize| i * layers / count;
        // starts[l]: the first task of layer l.
        let mut starts = vec![0; layers + 1];
        for i in (0..count).rev() {
            starts[layer_of(i)] = i;
        }
        starts[layers] = count;
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let layer = layer_of(i);
            let mut needs = BTreeSet::new();
            if layer > 0 {
                let wanted = rng.below(4);
                if wanted > 0 {
                    let previous = starts[layer - 1]..starts[layer];
                    needs.insert(previous.start + rng.below(previous.len()));
                }
                for _ in 1..wanted {
                    needs.insert(rng.below(starts[layer]));
                }
            }
            tasks.push(PlanTask {
                id: format!("l{layer:02}-t{i:04}").parse()?,
                capability: CAPABILITIES[rng.below(CAPABILITIES.len())],
                needs,
                ms: rng.0.between(400, 2_400),
                flaky: rng.below(100) < 3,
            });
        }
        Ok(Self { tasks, layers })
    }

    fn toml(&self, seed: u64) -> String {
        let mut out = format!("name = \"chaos-seed-{seed}\"\n\n[defaults]\ntimeout = \"30s\"\n");
        out.push_str(&format!(
            "retry = {{ max_attempts = {MAX_ATTEMPTS}, initial_backoff = \"200ms\", \
             max_backoff = \"2s\" }}\n"
        ));
        for task in &self.tasks {
            let needs: Vec<String> = task
                .needs
                .iter()
                .map(|&n| format!("\"{}\"", self.tasks[n].id))
                .collect();
            let flaky = if task.flaky { ", flaky = true" } else { "" };
            out.push_str(&format!(
                "\n[[tasks]]\nid = \"{}\"\ncapability = \"{}\"\n",
                task.id, task.capability
            ));
            out.push_str(&format!(
                "input = {{ ms = {}{flaky} }}\nneeds = [{}]\n",
                task.ms,
                needs.join(", ")
            ));
        }
        out
    }
}

fn worker_spec(id: &str, slot: usize) -> WorkerSpec {
    let serve = [
        CAPABILITIES[slot % CAPABILITIES.len()],
        CAPABILITIES[(slot + 1) % CAPABILITIES.len()],
    ];
    WorkerSpec::new(id, CONCURRENCY, &[(serve[0], COMMAND), (serve[1], COMMAND)])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    KillWorker,
    KillCoordinator,
    PauseNats,
    PauseWorker,
}

impl FaultKind {
    const ALL: [FaultKind; 4] = [
        FaultKind::KillWorker,
        FaultKind::KillCoordinator,
        FaultKind::PauseNats,
        FaultKind::PauseWorker,
    ];

    /// What is done, to whom: the fault's name.
    fn name(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "kill -9 worker",
            FaultKind::KillCoordinator => "kill -9 coordinator",
            FaultKind::PauseNats => "docker pause NATS",
            FaultKind::PauseWorker => "SIGSTOP worker",
        }
    }
}

/// One injected fault and what was measured while it was injected.
#[derive(Debug)]
struct Fault {
    kind: FaultKind,
    /// The worker hit, if any.
    worker: Option<String>,
    /// The replacement of a killed worker.
    replacement: Option<String>,
    /// Since the run was submitted.
    at: Duration,
    /// How long the pause lasted; kills are instant.
    held: Option<Duration>,
    /// Unix ms: when the fault began, and when it was lifted (the kill, the unpause).
    began_ms: u64,
    lifted_ms: u64,
    /// Measured live, e.g. ("answers again", 1.2s); a `None` took over [`RECOVERY_LIMIT`].
    measured: Vec<(String, Option<Duration>)>,
    /// Read from the log afterwards.
    observed: Vec<(String, Duration)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Polls `check` until it holds; how long that took, or `None` past `limit`.
async fn time_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker position: its current process's spec and how many times it was replaced.
#[derive(Debug)]
struct Slot {
    base: String,
    spec: WorkerSpec,
    replaced: u32,
}

/// Injects the faults, one at a time, into a running cluster.
#[derive(Debug)]
struct Driver<'a> {
    cluster: &'a mut Cluster,
    run: RunId,
    rng: Rng,
    slots: Vec<Slot>,
    submitted: Instant,
}

impl Driver<'_> {
    async fn finished(&self) -> bool {
        let status = self.cluster.api.status(&self.run).await;
        matches!(status, Ok(view) if view.status != RunStatus::Running)
    }

    /// Waits `gap`, or less if the run ends first; whether it ended.
    async fn wait_unless_finished(&self, gap: Duration) -> bool {
        let until = Instant::now() + gap;
        loop {
            if self.finished().await {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(500))).await;
        }
    }

    /// Injects up to `count` faults; stops early when the run ends or the deadline nears.
    async fn drive(
        &mut self,
        count: u32,
        deadline: Instant,
    ) -> (Vec<Fault>, Option<anyhow::Error>) {
        // Every kind once per round of four, in a seeded order: each is exercised, none
        // crowds out the others.
        let mut round: Vec<FaultKind> = Vec::new();
        let mut faults = Vec::new();
        for _ in 0..count {
            if round.is_empty() {
                round = FaultKind::ALL.to_vec();
                for i in (1..round.len()).rev() {
                    round.swap(i, self.rng.below(i + 1));
                }
            }
            let kind = round.pop().unwrap_or(FaultKind::KillWorker);
            let gap = self.rng.millis(1_000, 4_000);
            if Instant::now() + gap >= deadline || self.wait_unless_finished(gap).await {
                break;
            }
            match self.inject(kind).await {
                Ok(fault) => {
                    print_fault(faults.len() + 1, &fault);
                    faults.push(fault);
                }
                Err(e) => {
                    return (
                        faults,
                        Some(e.context(format!("injecting {}", kind.name()))),
                    );
                }
            }
        }
        (faults, None)
    }

    async fn inject(&mut self, kind: FaultKind) -> anyhow::Result<Fault> {
        let at = self.submitted.elapsed();
        let began_ms = now_ms();
        let mut fault = Fault {
            kind,
            worker: None,
            replacement: None,
            at,
            held: None,
            began_ms,
            lifted_ms: began_ms,
            measured: Vec::new(),
            observed: Vec::new(),
        };
        match kind {
            FaultKind::KillWorker => {
                let slot = self.rng.below(self.slots.len());
                let victim = self.slots[slot].spec.id.clone();
                self.cluster.worker(&victim).kill().await?;
                fault.lifted_ms = now_ms();
                let slot = &mut self.slots[slot];
                slot.replaced += 1;
                let id = format!("{}-r{}", slot.base, slot.replaced);
                slot.spec = WorkerSpec {
                    id: id.clone(),
                    ..slot.spec.clone()
                };
                self.cluster.add_worker(&slot.spec);
                let api = &self.cluster.api;
                let live = time_until(RECOVERY_LIMIT, || async {
                    api.workers()
                        .await
                        .is_ok_and(|ws| ws.iter().any(|w| w.worker.as_str() == id))
                })
                .await;
                fault.measured.push((format!("{id} listed"), live));
                fault.worker = Some(victim);
                fault.replacement = Some(id);
            }
            FaultKind::KillCoordinator => {
                self.cluster.coordinator.kill().await?;
                fault.lifted_ms = now_ms();
                let started = Instant::now();
                self.cluster.restart_coordinator().await?;
                fault
                    .measured
                    .push(("answers again".into(), Some(started.elapsed())));
            }
            FaultKind::PauseNats => {
                let held = self.rng.millis(1_000, 5_000);
                tokio::task::block_in_place(|| self.cluster.nats.pause())?;
                tokio::time::sleep(held).await;
                tokio::task::block_in_place(|| self.cluster.nats.unpause())?;
                fault.lifted_ms = now_ms();
                fault.held = Some(held);
                let (api, run) = (&self.cluster.api, &self.run);
                let answers =
                    time_until(RECOVERY_LIMIT, || async { api.status(run).await.is_ok() }).await;
                fault.measured.push(("coordinator answers".into(), answers));
            }
            FaultKind::PauseWorker => {
                let held = self.rng.millis(1_000, 8_000);
                let victim = self.slots[self.rng.below(self.slots.len())].spec.id.clone();
                self.cluster.worker(&victim).pause().await?;
                tokio::time::sleep(held).await;
                self.cluster.worker(&victim).resume().await?;
                fault.lifted_ms = now_ms();
                fault.held = Some(held);
                fault.worker = Some(victim);
            }
        }
        Ok(fault)
    }
}

fn print_fault(n: usize, fault: &Fault) {
    let held = fault
        .held
        .map(|d| format!(" for {}", secs(d)))
        .unwrap_or_default();
    let mut notes: Vec<String> = fault
        .measured
        .iter()
        .map(|(what, took)| match took {
            Some(d) => format!("{what} after {}", secs(*d)),
            None => format!("{what}: NOT within {}", secs(RECOVERY_LIMIT)),
        })
        .collect();
    notes.extend(
        fault
            .observed
            .iter()
            .map(|(what, d)| format!("{what} +{}", secs(*d))),
    );
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(": {}", notes.join(", "))
    };
    let worker = fault
        .worker
        .as_deref()
        .map(|w| format!(" {w}"))
        .unwrap_or_default();
    let replacement = fault
        .replacement
        .as_deref()
        .map(|r| format!(" (replaced by {r})"))
        .unwrap_or_default();
    println!(
        "  {n:>2}. +{:<7} {}{worker}{replacement}{held}{notes}",
        secs(fault.at),
        fault.kind.name(),
    );
}

/// What the log says about the run's tasks.
#[derive(Debug, Default)]
struct Tally {
    dispatches: usize,
    retries: usize,
    timeouts: usize,
    ignored: usize,
    results: usize,
    workers_lost: usize,
    starts: usize,
    dispatched: BTreeSet<TaskId>,
    terminal: BTreeMap<TaskId, u32>,
}

impl Tally {
    fn of(events: &[(EventSeq, Event)], run: &RunId) -> Self {
        let mut tally = Tally::default();
        for (_, event) in events {
            match &event.entry {
                Entry::Decision(Decision::Dispatch { run: r, task, .. }) if r == run => {
                    tally.dispatches += 1;
                    tally.dispatched.insert(task.clone());
                }
                Entry::Decision(
                    Decision::TaskCompleted { run: r, task, .. }
                    | Decision::DeadLettered { run: r, task, .. }
                    | Decision::TaskCanceled { run: r, task, .. },
                ) if r == run => *tally.terminal.entry(task.clone()).or_default() += 1,
                Entry::Decision(Decision::RetryScheduled { run: r, .. }) if r == run => {
                    tally.retries += 1;
                }
                Entry::Decision(Decision::ResultIgnored { run: r, .. }) if r == run => {
                    tally.ignored += 1;
                }
                Entry::Input(Input::ResultReceived { result }) if result.run == *run => {
                    tally.results += 1;
                }
                Entry::Input(Input::AttemptTimedOut { run: r, .. }) if r == run => {
                    tally.timeouts += 1;
                }
                Entry::Input(Input::WorkerLeft {
                    reason: WorkerLeftReason::HeartbeatsStopped,
                    ..
                }) => tally.workers_lost += 1,
                Entry::Input(Input::CoordinatorStarted { .. }) => tally.starts += 1,
                Entry::Input(_) | Entry::Decision(_) => {}
            }
        }
        tally
    }

    /// Tasks of the plan with no terminal event, dispatched ones included, and any the final
    /// view shows unfinished.
    fn lost(&self, plan: &ChaosPlan, view: Option<&RunView>) -> BTreeSet<TaskId> {
        let mut lost: BTreeSet<TaskId> = plan
            .tasks
            .iter()
            .map(|t| &t.id)
            .chain(&self.dispatched)
            .filter(|id| !self.terminal.contains_key(*id))
            .cloned()
            .collect();
        if let Some(view) = view {
            lost.extend(
                view.tasks
                    .iter()
                    .filter(|t| !t.status.is_terminal())
                    .map(|t| t.task.clone()),
            );
        }
        lost
    }

    fn duplicated(&self) -> BTreeSet<TaskId> {
        self.terminal
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn left(entry: &Entry, id: &str) -> bool {
    matches!(entry, Entry::Input(Input::WorkerLeft { worker, .. }) if worker.as_str() == id)
}

fn joined(entry: &Entry, id: &str) -> bool {
    matches!(entry, Entry::Input(Input::WorkerJoined { worker, .. }) if worker.as_str() == id)
}

/// The task a terminal decision of the run is about.
fn terminal<'a>(entry: &'a Entry, run: &RunId) -> Option<&'a TaskId> {
    match entry {
        Entry::Decision(
            Decision::TaskCompleted { run: r, task, .. }
            | Decision::DeadLettered { run: r, task, .. }
            | Decision::TaskCanceled { run: r, task, .. },
        ) if r == run => Some(task),
        Entry::Input(_) | Entry::Decision(_) => None,
    }
}

/// When the last of the run's tasks that were in flight at `at_ms` ended (unix ms).
fn in_flight_done(events: &[(EventSeq, Event)], run: &RunId, at_ms: u64) -> Option<u64> {
    let (before, after): (Vec<&Event>, Vec<&Event>) =
        events.iter().map(|(_, e)| e).partition(|e| e.at_ms < at_ms);
    let mut running: BTreeSet<&TaskId> = BTreeSet::new();
    for event in before {
        if let Entry::Decision(Decision::Dispatch { run: r, task, .. }) = &event.entry
            && r == run
        {
            running.insert(task);
        } else if let Some(task) = terminal(&event.entry, run) {
            running.remove(task);
        }
    }
    let mut last = None;
    for event in after {
        if let Some(task) = terminal(&event.entry, run)
            && running.remove(task)
        {
            last = Some(event.at_ms);
        }
    }
    last.filter(|_| running.is_empty())
}

fn completed(entry: &Entry, run: &RunId) -> bool {
    matches!(entry, Entry::Decision(Decision::TaskCompleted { run: r, .. }) if r == run)
}

/// Adds to each fault what the log shows: when the coordinator noticed a worker gone (and a
/// paused one back), when a restarted coordinator recorded its start, when the next task
/// completed after the fault was lifted.
fn observe(faults: &mut [Fault], events: &[(EventSeq, Event)], run: &RunId) {
    // How long after `from` (unix ms) the first entry that `matches` was logged.
    let first_after = |from: u64, matches: &dyn Fn(&Entry) -> bool| {
        events
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.at_ms >= from && matches(&e.entry))
            .map(|e| e.at_ms - from)
    };
    let ms = Duration::from_millis;
    for fault in faults {
        let (began, lifted) = (fault.began_ms, fault.lifted_ms);
        let mut seen = Vec::new();
        match (fault.kind, fault.worker.as_deref()) {
            (FaultKind::KillWorker, Some(worker)) => {
                if let Some(gone) = first_after(began, &|e| left(e, worker)) {
                    seen.push(("marked gone", ms(gone)));
                }
            }
            // Marked gone while it was stopped, and back once it announced itself again.
            (FaultKind::PauseWorker, Some(worker)) => {
                let gone = first_after(began, &|e| left(e, worker))
                    .filter(|gone| began + gone <= lifted + 1_000);
                if let Some(gone) = gone {
                    seen.push(("marked gone", ms(gone)));
                    if let Some(back) = first_after(began + gone, &|e| joined(e, worker)) {
                        let back = (began + gone + back).saturating_sub(lifted);
                        seen.push(("back after resume", ms(back)));
                    }
                }
            }
            (FaultKind::KillCoordinator, _) => {
                let started =
                    |e: &Entry| matches!(e, Entry::Input(Input::CoordinatorStarted { .. }));
                if let Some(d) = first_after(lifted, &started) {
                    seen.push(("start recorded", ms(d)));
                }
            }
            (FaultKind::KillWorker | FaultKind::PauseWorker | FaultKind::PauseNats, _) => {}
        }
        // Progress, after the whole cluster stalled.
        if matches!(
            fault.kind,
            FaultKind::KillCoordinator | FaultKind::PauseNats
        ) && let Some(d) = first_after(lifted, &|e| completed(e, run))
        {
            seen.push(("next completion", ms(d)));
        }
        if let Some(done) = in_flight_done(events, run, began) {
            seen.push(("tasks in flight all done", ms(done.saturating_sub(lifted))));
        }
        fault
            .observed
            .extend(seen.into_iter().map(|(what, d)| (what.to_owned(), d)));
    }
}

/// Polls the run until it ends or the deadline passes; the last view seen.
async fn wait_for_end(cluster: &Cluster, run: &RunId, deadline: Instant) -> Option<RunView> {
    let mut last = None;
    loop {
        if let Ok(view) = cluster.api.status(run).await {
            let done = view.status != RunStatus::Running;
            last = Some(view);
            if done {
                return last;
            }
        }
        if Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first lines of a long error (some carry a whole process log).
fn brief(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let lines: Vec<&str> = text.lines().take(6).collect();
    let more = if text.lines().count() > lines.len() {
        " [...]"
    } else {
        ""
    };
    format!("{}{more}", lines.join("\n    "))
}

fn print_tails(cluster: &Cluster) {
    for process in std::iter::once(&cluster.coordinator).chain(&cluster.workers) {
        let output = process.output();
        let lines: Vec<&str> = output.lines().collect();
        println!(
            "--- {} (last {} of {} lines) ---",
            process.name,
            lines.len().min(LOG_TAIL),
            lines.len()
        );
        for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
            println!("{line}");
        }
    }
}

/// Runs the whole thing; whether every invariant held.
async fn chaos(args: &Args) -> anyhow::Result<bool> {
    let began = Instant::now();
    let plan = ChaosPlan::generate(&mut Rng::new(args.seed), args.tasks as usize)?;
    let flaky = plan.tasks.iter().filter(|t| t.flaky).count();
    let slots: Vec<Slot> = (0..WORKERS)
        .map(|i| {
            let base = format!("w{}", i + 1);
            Slot {
                spec: worker_spec(&base, i),
                base,
                replaced: 0,
            }
        })
        .collect();
    println!(
        "chaos: seed {}, {} tasks in {} layers over {} ({flaky} fail their first attempt), \
         up to {} faults",
        args.seed,
        plan.tasks.len(),
        plan.layers,
        CAPABILITIES.join(", "),
        args.faults
    );
    let specs: Vec<WorkerSpec> = slots.iter().map(|s| s.spec.clone()).collect();
    for spec in &specs {
        let serves: Vec<&str> = spec.serve.iter().map(|(c, _)| c.as_str()).collect();
        println!(
            "chaos: worker {} serves {}, {} at a time",
            spec.id,
            serves.join(" and "),
            spec.concurrency
        );
    }
    let mut cluster = Cluster::start(&specs)
        .await
        .context("starting the cluster")?;
    println!(
        "chaos: NATS at {}, processes in {}",
        cluster.nats.url,
        cluster.dir.path().display()
    );
    let run = cluster
        .submit(&plan.toml(args.seed))
        .await
        .context("submitting the plan")?;
    let submitted = Instant::now();
    let deadline = submitted + Duration::from_secs(args.deadline);
    println!("chaos: submitted run {run}; injecting faults");

    let mut failures: Vec<String> = Vec::new();
    let mut driver = Driver {
        cluster: &mut cluster,
        run: run.clone(),
        rng: Rng::new(args.seed ^ 0x00c4_a05f_a017_5eed),
        slots,
        submitted,
    };
    let (mut faults, driver_error) = driver.drive(args.faults, deadline).await;
    let view = if let Some(e) = driver_error {
        failures.push(format!("the driver failed: {}", brief(&e)));
        None
    } else {
        println!("chaos: faults done; waiting for the run to end");
        wait_for_end(&cluster, &run, deadline).await
    };
    let run_time = submitted.elapsed();

    let check = cluster.stop_and_check().await;
    if let Err(e) = &check {
        failures.push(format!("the invariant check failed: {}", brief(e)));
        if cluster.coordinator.running() {
            cluster.coordinator.kill().await?;
        }
    }
    let events = match check {
        Ok(events) => Ok(events),
        Err(_) => EventLog::read(&cluster.data())
            .map(|contents| contents.events)
            .context("reading the event log"),
    };
    let (tally, replayed) = match &events {
        Ok(events) => {
            observe(&mut faults, events, &run);
            (Some(Tally::of(events, &run)), Some(replay(events, None)))
        }
        Err(e) => {
            failures.push(format!("{e:#}"));
            (None, None)
        }
    };

    println!("\n== chaos report, seed {}", args.seed);
    let mut kinds: BTreeMap<FaultKind, usize> = BTreeMap::new();
    for fault in &faults {
        *kinds.entry(fault.kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.name()))
        .collect();
    println!("faults injected: {} ({})", faults.len(), kinds.join(", "));
    println!("  (times count from when the fault was lifted; \"marked gone\" from when it began)");
    for (n, fault) in faults.iter().enumerate() {
        print_fault(n + 1, fault);
    }
    match &view {
        Some(view) => {
            let count = |s| view.tasks.iter().filter(|t| t.status == s).count();
            use workforce_coordinator::scheduler::TaskStatus;
            let reason = view
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!(
                "run:             {} after {}{reason}",
                view.status.as_str(),
                secs(run_time)
            );
            println!(
                "tasks:           {} (completed {}, failed {}, canceled {})",
                view.tasks.len(),
                count(TaskStatus::Completed),
                count(TaskStatus::Failed),
                count(TaskStatus::Canceled)
            );
            match view.status {
                RunStatus::Succeeded => {}
                RunStatus::Running => failures.push(format!(
                    "the run did not end within --deadline {}s",
                    args.deadline
                )),
                RunStatus::Failed | RunStatus::Canceled | RunStatus::Stopped => {
                    failures.push(format!("the run {}{reason}", view.status.as_str()));
                }
            }
        }
        None => {
            println!("run:             unknown: the coordinator never answered");
            failures.push("no final view of the run".into());
        }
    }
    match &tally {
        Some(tally) => {
            println!(
                "attempts:        {} dispatched, {} retries scheduled, {} timed out, {} results \
                 ({} ignored as stale or duplicate), {} workers lost by heartbeat, \
                 {} coordinator starts",
                tally.dispatches,
                tally.retries,
                tally.timeouts,
                tally.results,
                tally.ignored,
                tally.workers_lost,
                tally.starts
            );
            for (what, tasks) in [
                ("lost", tally.lost(&plan, view.as_ref())),
                ("duplicated", tally.duplicated()),
            ] {
                let some: Vec<String> = tasks.iter().take(10).map(|t| t.to_string()).collect();
                let some = if tasks.is_empty() {
                    String::new()
                } else {
                    failures.push(format!("{} tasks {what}", tasks.len()));
                    format!(
                        " ({}{})",
                        some.join(", "),
                        if tasks.len() > 10 { ", ..." } else { "" }
                    )
                };
                println!("{:<16} {}{some}", format!("{what}:"), tasks.len());
            }
        }
        None => println!("lost:            unknown\nduplicated:      unknown"),
    }
    match &replayed {
        Some(Ok(ReplayReport {
            events,
            inputs,
            decisions,
            ..
        })) => println!(
            "replay:          identical ({events} events: {inputs} inputs, {decisions} decisions)"
        ),
        Some(Err(e)) => {
            println!("replay:          DIVERGED: {e}");
            failures.push("the replay diverged".into());
        }
        None => println!("replay:          not run"),
    }
    print_recovery(&faults);
    println!(
        "wall time:       {} (cluster start to checks done)",
        secs(began.elapsed())
    );

    let passed = failures.is_empty();
    if passed {
        println!("verdict:         PASS");
    } else {
        println!("verdict:         FAIL");
        for failure in &failures {
            println!("  - {failure}");
        }
        print_tails(&cluster);
    }
    if !passed || args.keep {
        let Cluster { dir, .. } = cluster;
        println!(
            "chaos: logs and the event log kept in {}",
            dir.keep().display()
        );
    }
    Ok(passed)
}

/// The worst and mean of each recovery figure, over the faults that have it.
fn print_recovery(faults: &[Fault]) {
    let mut figures: BTreeMap<String, Vec<Option<Duration>>> = BTreeMap::new();
    for fault in faults {
        for (what, took) in &fault.measured {
            // "w3-r1 listed" and the like read as one figure.
            let what = if what.ends_with(" listed") {
                "replacement listed"
            } else {
                what
            };
            figures
                .entry(format!("{}: {what}", fault.kind.name()))
                .or_default()
                .push(*took);
        }
        for (what, took) in &fault.observed {
            figures
                .entry(format!("{}: {what}", fault.kind.name()))
                .or_default()
                .push(Some(*took));
        }
    }
    println!("recovery:");
    for (what, took) in figures {
        let done: Vec<Duration> = took.iter().flatten().copied().collect();
        let missed = took.len() - done.len();
        let worst = done.iter().max().copied().unwrap_or_default();
        let mean = done.iter().sum::<Duration>() / u32::try_from(done.len().max(1)).unwrap_or(1);
        let missed = if missed > 0 {
            format!(", {missed} not within {}", secs(RECOVERY_LIMIT))
        } else {
            String::new()
        };
        println!(
            "  {what:<46} worst {}, mean {} over {}{missed}",
            secs(worst),
            secs(mean),
            took.len()
        );
    }
}
