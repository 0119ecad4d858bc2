//! The simulated world: a broker (queues per capability, deduplicated by message id),
//! workers, the coordinator's timers, and the faults. The coordinator itself is the real
//! [`Scheduler::step`], recorded like the service records it, and restarted through the real
//! [`recover`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};
use workforce_shared::{
    Assignment, Attempt, Capability, EventSeq, Outcome, Plan, RunId, TaskId, TaskResult, Trigger,
    WorkerId,
};

use super::{EventSink, FaultCounts, SimConfig, SimError, SimReport, SplitMix64};
use crate::log::{Event, LogError};
use crate::recovery::{DeadlineRule, recover};
use crate::scheduler::{
    Decision, Effect, Input, PauseScope, PublishFailure, RunOutcome, SEMANTICS_VERSION, Scheduler,
    Timer,
};

/// Chances, with faults on. Per attempt:
const P_TIMEOUT: f64 = 0.03;
const P_PERMANENT: f64 = 0.02;
const P_DUPLICATE: f64 = 0.03;
const P_UNPUBLISHABLE: f64 = 0.005;
/// That a stop request reaches the worker before its result leaves.
const P_STOP_REACHES: f64 = 0.5;
/// Whatever the faults, for tasks that declare `spawns`: that a spawned task needs an earlier
/// sibling, that it may spawn in turn (down to depth 3), and that a spawner branches.
const P_SIBLING_NEED: f64 = 0.3;
const P_SPAWN_AGAIN: f64 = 0.15;
const MAX_SIM_DEPTH: u32 = 3;
const P_BRANCH: f64 = 0.15;
/// Per happening:
const P_WORKER_LEAVES: f64 = 0.01;
const P_WORKER_JOINS: f64 = 0.005;
const P_RESTART: f64 = 0.01;
/// An operator cancels one unfinished task (and, by the trigger rules, what waits for it), or
/// the whole run.
const P_CANCEL_TASK: f64 = 0.002;
const P_CANCEL_RUN: f64 = 0.0005;
/// An operator pauses the run or one capability, and resumes it up to 30 s later.
const P_PAUSE: f64 = 0.003;
/// An operator redrives a dead-lettered task of the running run.
const P_REDRIVE: f64 = 0.01;
/// An operator redrives every dead letter of a run that finished failed, which reopens it;
/// at most `MAX_REOPENS` times a run.
const P_REDRIVE_FAILED_RUN: f64 = 0.3;
const MAX_REOPENS: u32 = 2;
/// Per attempt of a run with budgets: its worker's usage report cannot be read.
const P_BAD_USAGE: f64 = 0.01;
/// Per step: the coordinator dies after the commit, before the step's effects.
const P_CRASH_AFTER_COMMIT: f64 = 0.005;
/// Happenings before a simulation is declared stuck.
const MAX_HAPPENINGS: u64 = 5_000_000;

type Key = (TaskId, Attempt);

#[derive(Debug)]
enum Happening {
    /// A worker finishes an attempt (unless it left since, or was told to stop).
    Finished {
        worker: usize,
        generation: u64,
        assignment: Assignment,
        outcome: Outcome,
        usage: Option<serde_json::Value>,
    },
    /// The broker redelivers an assignment nobody acked.
    Redeliver(Assignment),
    /// A coordinator timer, armed in coordinator epoch `epoch`.
    Timer {
        epoch: u64,
        timer: Timer,
    },
    /// A message reaches the coordinator (a duplicate result).
    Deliver(Input),
    WorkerReturns {
        worker: usize,
    },
}

#[derive(Debug)]
struct SimWorker {
    id: WorkerId,
    alive: bool,
    /// Bumped when the worker leaves: what it was running is lost.
    generation: u64,
    running: Vec<Assignment>,
}

/// Where simulated events go: the digest, the in-memory log, and a sink if given one.
struct Recorder<'a> {
    hasher: Sha256,
    log: Vec<(EventSeq, Event)>,
    flushed: usize,
    sink: Option<EventSink<'a>>,
}

impl Recorder<'_> {
    fn record(&mut self, events: Vec<Event>) -> Result<(), LogError> {
        for event in events {
            self.hasher.update(event.encode()?);
            let seq = EventSeq(self.log.len() as u64 + 1);
            self.log.push((seq, event));
        }
        if self.log.len() - self.flushed >= 4096 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if let Some(sink) = self.sink.as_mut()
            && self.flushed < self.log.len()
        {
            let batch: Vec<Event> = self.log[self.flushed..]
                .iter()
                .map(|(_, e)| e.clone())
                .collect();
            sink(&batch)?;
        }
        self.flushed = self.log.len();
        Ok(())
    }

    fn last_seq(&self) -> EventSeq {
        EventSeq(self.log.len() as u64)
    }
}

struct World<'a> {
    config: SimConfig,
    rng: SplitMix64,
    run: RunId,
    now: u64,
    order: u64,
    scheduler: Scheduler,
    recorder: Recorder<'a>,
    workers: Vec<SimWorker>,
    capabilities: Vec<Capability>,
    queue: BTreeMap<Capability, VecDeque<Assignment>>,
    /// Message ids the broker has seen: a republish is dropped.
    published: BTreeSet<Key>,
    agenda: BTreeMap<(u64, u64), Happening>,
    /// Deadlines armed in the current epoch and not yet void.
    deadlines: BTreeSet<Key>,
    /// Attempts a stop request reached.
    stopped: BTreeSet<Key>,
    epoch: u64,
    inputs: VecDeque<Input>,
    faults: FaultCounts,
    attempts: u64,
    finished_at: Option<u64>,
    /// Spawn depth of the tasks the simulated workers spawned.
    depth: BTreeMap<TaskId, u32>,
    /// Whether the plan has budgets: then every attempt reports usage.
    budgeted: bool,
    /// Times the run was reopened by a redrive.
    reopens: u32,
}

pub(super) fn run(
    plan: &Plan,
    config: &SimConfig,
    sink: Option<EventSink<'_>>,
) -> Result<SimReport, SimError> {
    let run = RunId::new(format!("sim-{}", config.seed))?;
    // The workers serve every capability of the plan and of what its tasks may spawn.
    let capabilities: Vec<Capability> = plan
        .tasks
        .iter()
        .flat_map(|t| {
            let rungs = t.escalate.iter().map(|rung| match rung {
                workforce_shared::Rung::Reroute { capability, .. } => capability,
            });
            std::iter::once(&t.capability)
                .chain(t.spawns.iter().flatten())
                .chain(rungs)
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut world = World {
        config: config.clone(),
        rng: SplitMix64::new(config.seed),
        run: run.clone(),
        now: 0,
        order: 0,
        scheduler: Scheduler::default(),
        recorder: Recorder {
            hasher: Sha256::new(),
            log: Vec::new(),
            flushed: 0,
            sink,
        },
        workers: Vec::new(),
        capabilities,
        queue: BTreeMap::new(),
        published: BTreeSet::new(),
        agenda: BTreeMap::new(),
        deadlines: BTreeSet::new(),
        stopped: BTreeSet::new(),
        epoch: 0,
        inputs: VecDeque::new(),
        faults: FaultCounts::default(),
        attempts: 0,
        finished_at: None,
        depth: BTreeMap::new(),
        budgeted: plan.limits.has_budgets(),
        reopens: 0,
    };
    world.inputs.push_back(Input::CoordinatorStarted {
        semantics: SEMANTICS_VERSION,
    });
    for _ in 0..config.workers {
        world.add_worker();
    }
    world.inputs.push_back(Input::RunSubmitted {
        run: run.clone(),
        plan: plan.clone(),
    });
    world.go()?;
    world.recorder.flush()?;
    let digest = world
        .recorder
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(SimReport {
        summary: world.scheduler.runs().into_iter().find(|s| s.run == run),
        run,
        events: world.recorder.log.len() as u64,
        digest,
        virtual_ms: world.finished_at.unwrap_or(world.now),
        attempts: world.attempts,
        faults: world.faults,
        log: world.recorder.log,
    })
}

impl World<'_> {
    fn go(&mut self) -> Result<(), SimError> {
        let mut happenings = 0u64;
        loop {
            while let Some(input) = self.inputs.pop_front() {
                self.apply(input)?;
            }
            self.pull();
            if self.finished_at.is_some() || happenings >= MAX_HAPPENINGS {
                return Ok(());
            }
            let Some(((at, _), happening)) = self.agenda.pop_first() else {
                return Ok(());
            };
            happenings += 1;
            self.now = self.now.max(at);
            self.happen(happening);
            if self.config.faults {
                self.maybe_fault()?;
            }
        }
    }

    fn at(&mut self, delay: u64, happening: Happening) {
        self.order += 1;
        self.agenda
            .insert((self.now.saturating_add(delay), self.order), happening);
    }

    fn roll(&mut self, chance: f64) -> bool {
        self.config.faults && self.rng.unit() < chance
    }

    /// One step of the coordinator: decide, record (the commit), then act.
    fn apply(&mut self, input: Input) -> Result<(), SimError> {
        let before = self.recorder.last_seq();
        let step = self.scheduler.step(input);
        let finished = step.decisions.iter().find_map(|d| match d {
            Decision::RunFinished { run, outcome } if *run == self.run => Some(outcome.clone()),
            _ => None,
        });
        match finished {
            // Now and then an operator redrives a failed run's dead letters: it reopens.
            Some(RunOutcome::Failed { .. })
                if self.reopens < MAX_REOPENS && self.roll(P_REDRIVE_FAILED_RUN) =>
            {
                self.reopens += 1;
                self.faults.redrives += 1;
                self.inputs.push_back(Input::RedriveRequested {
                    run: self.run.clone(),
                    task: None,
                    with_input: None,
                    force: false,
                });
            }
            Some(_) => self.finished_at = Some(self.now),
            None => {}
        }
        // A redrive queued before the run finished may reopen it: it goes on.
        if step
            .decisions
            .iter()
            .any(|d| matches!(d, Decision::RunReopened { run } if *run == self.run))
        {
            self.finished_at = None;
        }
        self.recorder
            .record(Event::of_step(self.now, step.input, step.decisions))?;
        if self.roll(P_CRASH_AFTER_COMMIT) {
            // Committed, nothing carried out: recovery must owe this step's effects.
            return self.restart(before);
        }
        for effect in step.effects {
            self.carry_out(effect, true);
        }
        Ok(())
    }

    fn carry_out(&mut self, effect: Effect, arm_deadline: bool) {
        match effect {
            Effect::Assign(assignment) => {
                let key = (assignment.task.clone(), assignment.attempt);
                if arm_deadline {
                    self.deadlines.insert(key.clone());
                    let timer = Timer::Deadline {
                        run: assignment.run.clone(),
                        task: assignment.task.clone(),
                        attempt: assignment.attempt,
                    };
                    let due = assignment.timeout_ms.saturating_add(self.config.grace_ms);
                    let epoch = self.epoch;
                    self.at(due, Happening::Timer { epoch, timer });
                }
                if self.roll(P_UNPUBLISHABLE) {
                    self.faults.unpublishable += 1;
                    self.inputs.push_back(Input::PublishFailed {
                        run: assignment.run,
                        task: assignment.task,
                        attempt: assignment.attempt,
                        failure: PublishFailure::TooLarge {
                            bytes: 2 << 20,
                            limit: 1 << 20,
                        },
                    });
                    return;
                }
                if self.published.insert(key) {
                    self.queue
                        .entry(assignment.capability.clone())
                        .or_default()
                        .push_back(assignment);
                }
            }
            Effect::AttemptEnded { task, attempt, .. } => {
                self.deadlines.remove(&(task, attempt));
            }
            Effect::ArmRetry {
                run,
                task,
                attempt,
                delay_ms,
            } => {
                let epoch = self.epoch;
                let timer = Timer::RetryDue { run, task, attempt };
                self.at(delay_ms, Happening::Timer { epoch, timer });
            }
            Effect::ArmRunDeadline { run, delay_ms } => {
                let epoch = self.epoch;
                let timer = Timer::RunDeadline { run };
                self.at(delay_ms, Happening::Timer { epoch, timer });
            }
            Effect::Stop(stop) => {
                if !self.config.faults || self.rng.unit() < P_STOP_REACHES {
                    self.stopped.insert((stop.task, stop.attempt));
                }
            }
            Effect::DeadLetter(_) => {}
        }
    }

    /// Idle workers take queued assignments, lowest worker first.
    fn pull(&mut self) {
        for index in 0..self.workers.len() {
            while self.workers[index].alive
                && (self.workers[index].running.len() as u64) < u64::from(self.config.concurrency)
            {
                let Some(assignment) = self.queue.values_mut().find_map(VecDeque::pop_front) else {
                    return;
                };
                self.start(index, assignment);
            }
        }
    }

    fn start(&mut self, worker: usize, assignment: Assignment) {
        self.attempts += 1;
        let mut duration = self
            .rng
            .between(self.config.min_task_ms, self.config.max_task_ms);
        let failed = self.rng.unit() < self.config.fail_rate;
        if self.roll(P_TIMEOUT) {
            self.faults.timeouts += 1;
            let late = self.rng.between(1, 10_000);
            duration = assignment
                .timeout_ms
                .saturating_add(self.config.grace_ms)
                .saturating_add(late);
        }
        let outcome = if self.roll(P_PERMANENT) {
            self.faults.permanent_failures += 1;
            Outcome::Failed {
                error: format!(
                    "simulated permanent failure of attempt {}",
                    assignment.attempt
                ),
                permanent: true,
            }
        } else if failed {
            Outcome::Failed {
                error: format!("simulated failure of attempt {}", assignment.attempt),
                permanent: false,
            }
        } else {
            let (spawn, branch) = self.growth(&assignment);
            Outcome::Succeeded {
                output: serde_json::json!({
                    "task": assignment.task.as_str(),
                    "attempt": assignment.attempt.0,
                }),
                spawn,
                branch,
            }
        };
        let usage = self.usage(&assignment);
        let generation = self.workers[worker].generation;
        self.workers[worker].running.push(assignment.clone());
        self.at(
            duration,
            Happening::Finished {
                worker,
                generation,
                assignment,
                outcome,
                usage,
            },
        );
    }

    /// What the attempt reports it used: for a run with budgets or a task with an estimate,
    /// something around the estimate (up to twice it; up to 500 tokens, 20 cents and 4 tool
    /// calls without one), now and then a report that cannot be read.
    fn usage(&mut self, assignment: &Assignment) -> Option<serde_json::Value> {
        let estimate = self
            .scheduler
            .task_spec(&assignment.run, &assignment.task)
            .map(|spec| spec.estimate)?;
        if !self.budgeted && estimate.is_zero() {
            return None;
        }
        if self.roll(P_BAD_USAGE) {
            self.faults.bad_usage += 1;
            return Some(serde_json::json!({ "tokens": -1 }));
        }
        let mut around = |estimate: u64, otherwise: u64| {
            let high = if estimate == 0 {
                otherwise
            } else {
                estimate * 2
            };
            self.rng.between(0, high)
        };
        Some(serde_json::json!({
            "tokens": around(estimate.tokens, 500),
            "cost_cents": around(estimate.cost_cents, 20),
            "tool_calls": around(estimate.tool_calls, 4),
        }))
    }

    /// What a successful attempt adds to its run: a task that declares `spawns` spawns 1, 4 or
    /// 10 tasks of those capabilities (some needing earlier siblings, under any trigger rule,
    /// some spawning in turn) and sometimes branches among the tasks that need it.
    fn growth(&mut self, assignment: &Assignment) -> (Vec<serde_json::Value>, Option<Vec<String>>) {
        let capabilities = match self
            .scheduler
            .task_spec(&assignment.run, &assignment.task)
            .and_then(|spec| spec.spawns.clone())
        {
            Some(c) if !c.is_empty() => c,
            _ => return (Vec::new(), None),
        };
        let depth = self.depth.get(&assignment.task).copied().unwrap_or(0) + 1;
        let n = [1, 4, 10][self.rng.below(3) as usize];
        let mut spawn = Vec::with_capacity(n);
        for k in 1..=n {
            let id = format!("{}-{k}", assignment.task);
            let capability = &capabilities[self.rng.below(capabilities.len() as u64) as usize];
            let mut task = serde_json::json!({
                "id": id,
                "capability": capability.as_str(),
                "input": { "k": k },
            });
            if k > 1 && self.roll_always(P_SIBLING_NEED) {
                let sibling = self.rng.between(1, k as u64 - 1);
                let trigger = Trigger::ALL[self.rng.below(Trigger::ALL.len() as u64) as usize];
                task["needs"] = serde_json::json!([format!("{}-{sibling}", assignment.task)]);
                task["trigger"] = serde_json::json!(trigger.name());
            }
            if depth < MAX_SIM_DEPTH && self.roll_always(P_SPAWN_AGAIN) {
                let names: Vec<&str> = capabilities.iter().map(|c| c.as_str()).collect();
                task["spawns"] = serde_json::json!(names);
            }
            if let Ok(id) = TaskId::new(id) {
                self.depth.insert(id, depth);
            }
            spawn.push(task);
        }
        let dependents = self
            .scheduler
            .dependents_of(&assignment.run, &assignment.task);
        let branch = (!dependents.is_empty() && self.roll_always(P_BRANCH)).then(|| {
            dependents
                .iter()
                .filter(|_| self.rng.unit() < 0.5)
                .map(ToString::to_string)
                .collect()
        });
        (spawn, branch)
    }

    /// A chance drawn whether or not faults are on.
    fn roll_always(&mut self, chance: f64) -> bool {
        self.rng.unit() < chance
    }

    fn happen(&mut self, happening: Happening) {
        match happening {
            Happening::Finished {
                worker,
                generation,
                assignment,
                outcome,
                usage,
            } => {
                if self.workers[worker].generation != generation {
                    return; // it left; the broker redelivers
                }
                let key = (assignment.task.clone(), assignment.attempt);
                let running = &mut self.workers[worker].running;
                if let Some(at) = running
                    .iter()
                    .position(|a| a.task == assignment.task && a.attempt == assignment.attempt)
                {
                    running.remove(at);
                }
                if self.stopped.remove(&key) {
                    return; // stopped: no result
                }
                let mut result = TaskResult {
                    v: 0,
                    run: assignment.run,
                    task: assignment.task,
                    attempt: assignment.attempt,
                    worker: self.workers[worker].id.clone(),
                    outcome,
                    duration_ms: 0,
                    usage,
                };
                result.v = result.version();
                let result = Input::ResultReceived { result };
                if self.roll(P_DUPLICATE) {
                    // The ack was lost: the broker delivers the stored result again.
                    self.faults.duplicate_results += 1;
                    let later = self.rng.between(1, self.config.ack_wait_ms);
                    self.at(later, Happening::Deliver(result.clone()));
                }
                self.inputs.push_back(result);
            }
            Happening::Redeliver(assignment) => {
                self.queue
                    .entry(assignment.capability.clone())
                    .or_default()
                    .push_front(assignment);
            }
            Happening::Timer { epoch, timer } => {
                if epoch != self.epoch {
                    return; // armed by a coordinator that has since restarted
                }
                if let Timer::Deadline { task, attempt, .. } = &timer
                    && !self.deadlines.remove(&(task.clone(), *attempt))
                {
                    return; // void: the attempt ended
                }
                self.inputs.push_back(timer.into_input());
            }
            Happening::Deliver(input) => self.inputs.push_back(input),
            Happening::WorkerReturns { worker } => {
                self.workers[worker].alive = true;
                let joined = self.joined(worker);
                self.inputs.push_back(joined);
            }
        }
    }

    fn joined(&self, worker: usize) -> Input {
        Input::WorkerJoined {
            worker: self.workers[worker].id.clone(),
            capabilities: self.capabilities.clone(),
            concurrency: self.config.concurrency,
        }
    }

    fn add_worker(&mut self) {
        let n = self.workers.len() + 1;
        self.workers.push(SimWorker {
            id: WorkerId::sanitized(&format!("sim-worker-{n}")),
            alive: true,
            generation: 0,
            running: Vec::new(),
        });
        let joined = self.joined(n - 1);
        self.inputs.push_back(joined);
    }

    fn maybe_fault(&mut self) -> Result<(), SimError> {
        if self.rng.unit() < P_WORKER_LEAVES {
            let alive: Vec<usize> = (0..self.workers.len())
                .filter(|&w| self.workers[w].alive)
                .collect();
            if !alive.is_empty() {
                let worker = alive[self.rng.below(alive.len() as u64) as usize];
                self.faults.workers_left += 1;
                let w = &mut self.workers[worker];
                w.alive = false;
                w.generation += 1;
                let lost = std::mem::take(&mut w.running);
                let id = w.id.clone();
                // Its last heartbeat listed what it ran: failed over at once.
                let mut attempts: Vec<workforce_shared::HeldAttempt> = lost
                    .iter()
                    .map(|a| workforce_shared::HeldAttempt {
                        run: a.run.clone(),
                        task: a.task.clone(),
                        attempt: a.attempt,
                    })
                    .collect();
                attempts.sort();
                self.inputs.push_back(Input::WorkerLeft {
                    worker: id,
                    reason: crate::scheduler::WorkerLeftReason::HeartbeatsStopped,
                    attempts,
                });
                for assignment in lost {
                    let wait = self.config.ack_wait_ms;
                    self.at(wait, Happening::Redeliver(assignment));
                }
                let back = self.rng.between(1_000, 20_000);
                self.at(back, Happening::WorkerReturns { worker });
            }
        }
        if self.rng.unit() < P_WORKER_JOINS && self.workers.len() < 2 * self.config.workers as usize
        {
            self.faults.workers_joined += 1;
            self.add_worker();
        }
        if self.rng.unit() < P_RESTART {
            // Between steps: every effect so far was carried out.
            let done = self.recorder.last_seq();
            self.restart(done)?;
        }
        if self.rng.unit() < P_CANCEL_TASK {
            let unfinished: Vec<TaskId> = self
                .scheduler
                .run_view(&self.run)
                .map(|view| {
                    view.tasks
                        .into_iter()
                        .filter(|t| !t.status.is_terminal())
                        .map(|t| t.task)
                        .collect()
                })
                .unwrap_or_default();
            if !unfinished.is_empty() {
                let task = unfinished[self.rng.below(unfinished.len() as u64) as usize].clone();
                self.faults.tasks_canceled += 1;
                self.inputs.push_back(Input::CancelRequested {
                    run: self.run.clone(),
                    task: Some(task),
                    note: Some("simulated operator".into()),
                });
            }
        }
        if self.rng.unit() < P_PAUSE {
            let scope = if self.rng.unit() < 0.5 {
                PauseScope::Run {
                    run: self.run.clone(),
                }
            } else {
                let at = self.rng.below(self.capabilities.len() as u64) as usize;
                PauseScope::Capability {
                    capability: self.capabilities[at].clone(),
                }
            };
            if !self.scheduler.is_paused(&scope) {
                self.faults.pauses += 1;
                self.inputs.push_back(Input::PauseRequested {
                    scope: scope.clone(),
                });
                let later = self.rng.between(1, 30_000);
                self.at(later, Happening::Deliver(Input::ResumeRequested { scope }));
            }
        }
        if self.rng.unit() < P_REDRIVE {
            let dead: Vec<TaskId> = self
                .scheduler
                .run_view(&self.run)
                .map(|view| {
                    view.tasks
                        .into_iter()
                        .filter(|t| t.status == crate::scheduler::TaskStatus::Failed)
                        .map(|t| t.task)
                        .collect()
                })
                .unwrap_or_default();
            if !dead.is_empty() {
                let task = dead[self.rng.below(dead.len() as u64) as usize].clone();
                self.faults.redrives += 1;
                self.inputs.push_back(Input::RedriveRequested {
                    run: self.run.clone(),
                    task: Some(task),
                    with_input: None,
                    force: false,
                });
            }
        }
        if self.rng.unit() < P_CANCEL_RUN && self.finished_at.is_none() {
            self.faults.runs_canceled += 1;
            self.inputs.push_back(Input::CancelRequested {
                run: self.run.clone(),
                task: None,
                note: None,
            });
        }
        Ok(())
    }

    /// The coordinator dies and starts again on the log recorded so far: its timers are gone,
    /// and it recovers state, timers and owed publishes from the log.
    fn restart(&mut self, effects_done: EventSeq) -> Result<(), SimError> {
        self.faults.coordinator_restarts += 1;
        let rule = DeadlineRule {
            grace_ms: self.config.grace_ms,
            floor_ms: self
                .now
                .saturating_add(self.config.ack_wait_ms)
                .saturating_add(self.config.grace_ms),
        };
        let recovered = recover(&self.recorder.log, effects_done, rule)?;
        self.scheduler = recovered.scheduler;
        self.epoch += 1;
        self.deadlines.clear();
        for (due, timer) in recovered.timers {
            if let Timer::Deadline { task, attempt, .. } = &timer {
                self.deadlines.insert((task.clone(), *attempt));
            }
            let epoch = self.epoch;
            let delay = due.saturating_sub(self.now);
            self.at(delay, Happening::Timer { epoch, timer });
        }
        for effect in recovered.owed {
            self.carry_out(effect, false);
        }
        self.inputs.push_front(Input::CoordinatorStarted {
            semantics: SEMANTICS_VERSION,
        });
        Ok(())
    }
}
