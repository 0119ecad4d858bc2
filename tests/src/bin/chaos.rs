//! `chaos`: a long run under injected faults, outside the default suite (`just chaos`).
//!
//! Submits a seeded plan of hundreds of tasks over several capabilities to a real cluster (NATS
//! in a container, the coordinator and workers as child processes, see the harness). While it
//! runs, at seeded random moments, one fault at a time: a worker is SIGKILLed and replaced, the
//! coordinator is SIGKILLed and restarted, the NATS container is paused, or a worker is
//! SIGSTOPped, each for a bounded time. Then it checks the log and prints the faults, the
//! tasks completed, lost and with duplicated terminal events (both must be 0), the replay
//! verdict and the recovery times, and exits 1 if any invariant failed (2 if it could not run).
//!
//! The plan and the fault schedule follow from `--seed` (separate streams, so `--tasks` does
//! not move the faults). The processes' timing does not: the same seed hits other in-flight
//! tasks on every run.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use workforce_coordinator::log::{Entry, Event, EventLog};
use workforce_coordinator::replay::{ReplayReport, replay};
use workforce_coordinator::scheduler::{Decision, Input, RunStatus, RunView, WorkerLeftReason};
use workforce_shared::{EventSeq, RunId, TaskId};
use workforce_tests::harness::{Cluster, WorkerSpec};

const CAPABILITIES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Each worker serves two of the capabilities, so every capability has two or more workers.
const WORKERS: usize = 4;
const CONCURRENCY: u32 = 4;
/// One attempt: sleeps the task's `ms`, fails the first attempt of a `flaky` task (a transient
/// failure the retry policy absorbs), prints its task and attempt.
const COMMAND: &str = r#"input=$(cat); ms=$(printf '%s' "$input" | grep -o '"ms": *[0-9]*' | head -n 1 | tr -dc 0-9); ms=${ms:-100}; sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"; if [ "$WORKFORCE_ATTEMPT" = 1 ] && printf '%s' "$input" | grep -q '"flaky": *true'; then echo "flaky: attempt 1 fails" >&2; exit 1; fi; echo "{\"task\": \"$WORKFORCE_TASK\", \"attempt\": $WORKFORCE_ATTEMPT}""#;
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

/// SplitMix64: every choice follows from the seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `[lo, hi]` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
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
                ms: 300 + rng.next() % 1_701,
                flaky: rng.below(100) < 3,
            });
        }
        Ok(Self { tasks, layers })
    }

    fn toml(&self, seed: u64) -> String {
        let mut out = format!(
            "name = \"chaos-seed-{seed}\"\n\n[defaults]\ntimeout = \"30s\"\n\
             retry = {{ max_attempts = {MAX_ATTEMPTS}, initial_backoff = \"200ms\", max_backoff = \"2s\" }}\n"
        );
        for task in &self.tasks {
            let needs: Vec<String> = task
                .needs
                .iter()
                .map(|&n| format!("\"{}\"", self.tasks[n].id))
                .collect();
            let flaky = if task.flaky { ", flaky = true" } else { "" };
            out.push_str(&format!(
                "\n[[tasks]]\nid = \"{}\"\ncapability = \"{}\"\ninput = {{ ms = {}{flaky} }}\nneeds = [{}]\n",
                task.id,
                task.capability,
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

    fn name(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "kill -9 worker",
            FaultKind::KillCoordinator => "kill -9 coordinator",
            FaultKind::PauseNats => "pause NATS",
            FaultKind::PauseWorker => "SIGSTOP worker",
        }
    }

    /// The `n`th fault: the first four are every kind once, in a seeded order; then worker
    /// kills are likeliest.
    fn draw(rng: &mut Rng, n: usize, first: &[FaultKind; 4]) -> Self {
        if let Some(kind) = first.get(n) {
            return *kind;
        }
        match rng.below(10) {
            0..4 => FaultKind::KillWorker,
            4..6 => FaultKind::KillCoordinator,
            6..8 => FaultKind::PauseNats,
            _ => FaultKind::PauseWorker,
        }
    }
}

/// One injected fault and what was measured while it was injected.
#[derive(Debug)]
struct Fault {
    kind: FaultKind,
    target: String,
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
        matches!(self.cluster.api.status(&self.run).await, Ok(view) if view.status != RunStatus::Running)
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
        let mut first = FaultKind::ALL;
        for i in (1..first.len()).rev() {
            first.swap(i, self.rng.below(i + 1));
        }
        let mut faults = Vec::new();
        for n in 0..count as usize {
            let gap = self.rng.millis(1_000, 4_000);
            if Instant::now() + gap >= deadline || self.wait_unless_finished(gap).await {
                break;
            }
            let kind = FaultKind::draw(&mut self.rng, n, &first);
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
            target: String::new(),
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
                fault.target = format!("{victim} (replaced by {id})");
            }
            FaultKind::KillCoordinator => {
                self.cluster.coordinator.kill().await?;
                fault.lifted_ms = now_ms();
                let started = Instant::now();
                self.cluster.restart_coordinator().await?;
                fault
                    .measured
                    .push(("answers again".into(), Some(started.elapsed())));
                fault.target = "coordinator".into();
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
                fault.target = "NATS".into();
            }
            FaultKind::PauseWorker => {
                let held = self.rng.millis(1_000, 8_000);
                let victim = self.slots[self.rng.below(self.slots.len())].spec.id.clone();
                self.cluster.worker(&victim).pause().await?;
                tokio::time::sleep(held).await;
                self.cluster.worker(&victim).resume().await?;
                fault.lifted_ms = now_ms();
                fault.held = Some(held);
                fault.target = victim;
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
    println!(
        "  {n:>2}. +{:<7} {} {}{held}{notes}",
        secs(fault.at),
        fault.kind.name(),
        fault.target
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
                Entry::Input(Input::CoordinatorStarted) => tally.starts += 1,
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

/// Adds to each fault what the log shows: when the coordinator noticed a lost worker, when
/// the next task completed after the fault was lifted.
fn observe(faults: &mut [Fault], events: &[(EventSeq, Event)], run: &RunId) {
    let first_after = |from: u64, matches: &dyn Fn(&Entry) -> bool| {
        events
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.at_ms >= from && matches(&e.entry))
            .map(|e| Duration::from_millis(e.at_ms - from))
    };
    for fault in faults {
        let worker = fault
            .target
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        let left = |e: &Entry| matches!(e, Entry::Input(Input::WorkerLeft { worker: w, .. }) if w.as_str() == worker);
        match fault.kind {
            FaultKind::KillWorker => {
                if let Some(d) = first_after(fault.began_ms, &left) {
                    fault.observed.push(("marked lost".into(), d));
                }
            }
            FaultKind::PauseWorker => {
                if let Some(d) = first_after(fault.began_ms, &left)
                    .filter(|d| fault.began_ms + d.as_millis() as u64 <= fault.lifted_ms + 1_000)
                {
                    fault.observed.push(("marked lost".into(), d));
                }
            }
            FaultKind::KillCoordinator | FaultKind::PauseNats => {}
        }
        let completed = |e: &Entry| matches!(e, Entry::Decision(Decision::TaskCompleted { run: r, .. }) if r == run);
        if let Some(d) = first_after(fault.lifted_ms, &completed) {
            fault.observed.push(("next completion".into(), d));
        }
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
    let plan = ChaosPlan::generate(&mut Rng(args.seed), args.tasks as usize)?;
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
        "chaos: seed {}, {} tasks in {} layers over {} ({flaky} fail their first attempt), up to {} faults",
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
        rng: Rng(args.seed ^ 0x00c4_a05f_a017_5eed),
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
        Err(_) => EventLog::open_existing(&cluster.data())
            .and_then(|log| log.read_all())
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
            if view.status != RunStatus::Succeeded {
                failures.push(format!("the run {}{reason}", view.status.as_str()));
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
                 ({} ignored as stale or duplicate), {} workers lost by heartbeat, {} coordinator starts",
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

    if failures.is_empty() {
        println!("verdict:         PASS");
        return Ok(true);
    }
    println!("verdict:         FAIL");
    for failure in &failures {
        println!("  - {failure}");
    }
    print_tails(&cluster);
    let Cluster { dir, .. } = cluster;
    println!(
        "chaos: logs and the event log kept in {}",
        dir.keep().display()
    );
    Ok(false)
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
            "  {what:<40} worst {}, mean {} over {}{missed}",
            secs(worst),
            secs(mean),
            took.len()
        );
    }
}
