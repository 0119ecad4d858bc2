//! The simulator: the real [`Scheduler`] against simulated workers in virtual time.
//!
//! No NATS, no clock, no threads. Task durations and failures come from a seeded generator,
//! so the same plan, settings and seed give the same event log, and the same digest, on every
//! machine.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use sha2::{Digest, Sha256};
use workforce_shared::{
    Attempt, Capability, Outcome, PROTOCOL_VERSION, Plan, RunId, TaskId, TaskResult, WorkerId,
};

use crate::log::{Entry, Event, LogError};
use crate::scheduler::{Decision, Input, RunSummary, Scheduler};

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
        }
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
}

/// SplitMix64: a small, fast generator that gives the same numbers on every machine. Public so
/// that test tools driving seeded faults draw from the same one.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in [low, high]; `low` when the range is empty.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.below(high - low + 1)
    }
}

/// Something that happens at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    Finished {
        worker: usize,
        task: TaskId,
        attempt: Attempt,
        failed: bool,
    },
    RetryDue {
        task: TaskId,
        attempt: Attempt,
    },
}

#[derive(Debug)]
struct SimWorker {
    id: WorkerId,
    busy: u32,
}

/// Receives simulated events in batches: an event log's append, say.
pub type EventSink<'a> = &'a mut dyn FnMut(&[Event]) -> Result<(), LogError>;

/// Where simulated events go: a digest always, and an event log if given one.
struct Recorder<'a> {
    hasher: Sha256,
    count: u64,
    buffer: Vec<Event>,
    sink: Option<EventSink<'a>>,
}

impl Recorder<'_> {
    fn record(&mut self, event: Event) -> Result<(), LogError> {
        self.hasher.update(event.encode()?);
        self.count += 1;
        if self.sink.is_some() {
            self.buffer.push(event);
            if self.buffer.len() >= 4096 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if let Some(sink) = self.sink.as_mut()
            && !self.buffer.is_empty()
        {
            sink(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

/// Runs `plan` to the end in virtual time. Every event goes to `sink` (an event log's append,
/// say) in batches, and into the digest.
pub fn simulate(
    plan: &Plan,
    config: &SimConfig,
    sink: Option<EventSink<'_>>,
) -> Result<SimReport, LogError> {
    let run =
        RunId::new(format!("sim-{}", config.seed)).map_err(|e| LogError::Encode(e.to_string()))?;
    let capabilities: Vec<Capability> = plan
        .tasks
        .iter()
        .map(|t| t.capability.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = SplitMix64::new(config.seed);
    let mut scheduler = Scheduler::default();
    let mut recorder = Recorder {
        hasher: Sha256::new(),
        count: 0,
        buffer: Vec::new(),
        sink,
    };
    let mut workers: Vec<SimWorker> = (1..=config.workers)
        .map(|n| SimWorker {
            id: WorkerId::sanitized(&format!("sim-worker-{n}")),
            busy: 0,
        })
        .collect();
    // Assignments the broker holds because every worker is busy (capacity is counted per
    // capability, workers serve all of them).
    let mut broker: BTreeMap<Capability, VecDeque<(TaskId, Attempt)>> = BTreeMap::new();
    let mut agenda: BinaryHeap<Reverse<(u64, u64, Happening)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut now = 0u64;
    let mut attempts = 0u64;
    let mut finished_at = None;

    let mut inputs: VecDeque<Input> = workers
        .iter()
        .map(|w| Input::WorkerJoined {
            worker: w.id.clone(),
            capabilities: capabilities.clone(),
            concurrency: config.concurrency,
        })
        .collect();
    inputs.push_back(Input::RunSubmitted {
        run: run.clone(),
        plan: plan.clone(),
    });

    loop {
        while let Some(input) = inputs.pop_front() {
            let decisions = scheduler.apply(&input);
            recorder.record(Event {
                at_ms: now,
                entry: Entry::Input(input),
            })?;
            for decision in decisions {
                match &decision {
                    Decision::Dispatch {
                        task,
                        attempt,
                        capability,
                        ..
                    } => broker
                        .entry(capability.clone())
                        .or_default()
                        .push_back((task.clone(), *attempt)),
                    Decision::RetryScheduled {
                        task,
                        attempt,
                        delay_ms,
                        ..
                    } => {
                        order += 1;
                        agenda.push(Reverse((
                            now + delay_ms,
                            order,
                            Happening::RetryDue {
                                task: task.clone(),
                                attempt: *attempt,
                            },
                        )));
                    }
                    Decision::RunFinished { .. } => finished_at = Some(now),
                    Decision::RunAccepted { .. }
                    | Decision::InputRejected { .. }
                    | Decision::TaskCompleted { .. }
                    | Decision::DeadLettered { .. }
                    | Decision::TaskCanceled { .. }
                    | Decision::ResultIgnored { .. }
                    | Decision::StopAttempt { .. } => {}
                }
                recorder.record(Event {
                    at_ms: now,
                    entry: Entry::Decision(decision),
                })?;
            }
        }
        // Idle workers take queued assignments, lowest worker first.
        for (index, worker) in workers.iter_mut().enumerate() {
            while worker.busy < config.concurrency {
                let Some((task, attempt)) = broker.values_mut().find_map(|q| q.pop_front()) else {
                    break;
                };
                worker.busy += 1;
                attempts += 1;
                let duration = rng.between(config.min_task_ms, config.max_task_ms);
                let failed = rng.unit() < config.fail_rate;
                order += 1;
                agenda.push(Reverse((
                    now + duration,
                    order,
                    Happening::Finished {
                        worker: index,
                        task,
                        attempt,
                        failed,
                    },
                )));
            }
        }
        if finished_at.is_some() {
            break;
        }
        let Some(Reverse((at, _, happening))) = agenda.pop() else {
            break;
        };
        now = at;
        match happening {
            Happening::Finished {
                worker,
                task,
                attempt,
                failed,
            } => {
                workers[worker].busy -= 1;
                let outcome = if failed {
                    Outcome::Failed {
                        error: format!("simulated failure of attempt {attempt}"),
                        permanent: false,
                    }
                } else {
                    Outcome::Succeeded {
                        output: serde_json::json!({ "task": task.as_str(), "attempt": attempt.0 }),
                    }
                };
                inputs.push_back(Input::ResultReceived {
                    result: TaskResult {
                        v: PROTOCOL_VERSION,
                        run: run.clone(),
                        task,
                        attempt,
                        worker: workers[worker].id.clone(),
                        outcome,
                        duration_ms: 0,
                    },
                });
            }
            Happening::RetryDue { task, attempt } => inputs.push_back(Input::RetryDue {
                run: run.clone(),
                task,
                attempt,
            }),
        }
    }
    recorder.flush()?;
    let digest = recorder
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(SimReport {
        summary: scheduler.runs().into_iter().find(|s| s.run == run),
        run,
        events: recorder.count,
        digest,
        virtual_ms: finished_at.unwrap_or(now),
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EventLog;
    use crate::replay::replay;
    use crate::scheduler::RunStatus;
    use workforce_shared::{PlanFormat, PlanLimits};

    fn fan_plan(width: usize) -> Plan {
        let mut src = String::from("[[tasks]]\nid = \"root\"\ncapability = \"plan\"\n");
        for i in 0..width {
            src.push_str(&format!(
                "[[tasks]]\nid = \"w{i}\"\ncapability = \"{}\"\nneeds = [\"root\"]\nretry = {{ max_attempts = 6, initial_backoff = \"1s\" }}\n",
                if i % 2 == 0 { "even" } else { "odd" }
            ));
        }
        let all: Vec<String> = (0..width).map(|i| format!("\"w{i}\"")).collect();
        src.push_str(&format!(
            "[[tasks]]\nid = \"merge\"\ncapability = \"plan\"\nneeds = [{}]\n",
            all.join(", ")
        ));
        Plan::parse(&src, PlanFormat::Toml, &PlanLimits::default()).expect("plan")
    }

    #[test]
    fn the_same_seed_gives_the_same_digest() {
        let plan = fan_plan(20);
        let config = SimConfig {
            seed: 42,
            fail_rate: 0.2,
            ..SimConfig::default()
        };
        let a = simulate(&plan, &config, None).expect("sim");
        let b = simulate(&plan, &config, None).expect("sim");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.events, b.events);
        assert!(a.attempts > 22, "some attempts failed and were retried");
        let other = simulate(&plan, &SimConfig { seed: 43, ..config }, None).expect("sim");
        assert_ne!(a.digest, other.digest);
    }

    #[test]
    fn a_simulated_log_replays_identically() {
        let plan = fan_plan(8);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path()).expect("log");
        let config = SimConfig {
            fail_rate: 0.3,
            ..SimConfig::default()
        };
        let report = {
            let mut sink = |events: &[Event]| log.append(events).map(|_| ());
            simulate(&plan, &config, Some(&mut sink)).expect("sim")
        };
        let summary = report.summary.expect("summary");
        assert!(matches!(
            summary.status,
            RunStatus::Succeeded | RunStatus::Failed
        ));
        let events = log.read_all().expect("read");
        assert_eq!(events.len() as u64, report.events);
        let replayed = replay(&events, Some(&report.run)).expect("replay");
        assert_eq!(replayed.runs[0], summary);
    }

    #[test]
    fn a_run_with_no_failures_completes_every_task_once() {
        let plan = fan_plan(10);
        let report = simulate(&plan, &SimConfig::default(), None).expect("sim");
        let summary = report.summary.expect("summary");
        assert_eq!(summary.status, RunStatus::Succeeded);
        assert_eq!(summary.completed, 12);
        assert_eq!(report.attempts, 12);
    }
}
