//! Which workers are live: heartbeats in, [`Input::WorkerJoined`] and [`Input::WorkerLeft`]
//! out, only when what the scheduler knows changes. A worker not heard from within three of
//! its heartbeat intervals (and never less than the configured worker timeout) is gone.
//!
//! Each worker process has an instance; the one known for an id is the one whose heartbeats
//! count. Another instance of the same id takes over when the known one has been silent for
//! two of its intervals (a worker restarted after a crash), or when it started earlier (of two
//! processes with one id, the later one stops: `Heartbeat::yields_to`). Otherwise it is a
//! clash: logged loudly, its heartbeats ignored, and its `draining`/`stopped` never marks the
//! known one gone.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use workforce_shared::{
    Breaker, Capability, Heartbeat, HeldAttempt, Instance, WorkerId, WorkerState,
};

use crate::scheduler::{Input, LiveWorker, WorkerLeftReason, WorkerView};

/// Longest heartbeat interval believed; a worker silent for three of these is gone.
const MAX_HEARTBEAT_MS: u64 = 60_000;

#[derive(Debug)]
struct Known {
    /// What the worker counts for: what it serves less the capabilities whose breaker is open.
    capabilities: Vec<Capability>,
    concurrency: u32,
    /// What its last heartbeat said, for `workforce workers`.
    serves: Vec<Capability>,
    breakers: Vec<Breaker>,
    /// The attempts its last heartbeat said it runs: failed over at once if it is gone.
    attempts: Vec<HeldAttempt>,
    in_flight: u32,
    state: WorkerState,
    /// When the worker counts as gone unless heard from.
    due: Instant,
    /// The process whose heartbeats count, and when it started (0: unknown).
    instance: Instance,
    started_ms: u64,
    last_seen: Instant,
    interval: Duration,
}

impl Known {
    /// Whether `hb` comes from another process than the known one (never said of senders
    /// older than instances).
    fn other_process(&self, hb: &Heartbeat) -> bool {
        self.instance != Instance(0) && hb.instance != Instance(0) && self.instance != hb.instance
    }
}

#[derive(Debug)]
pub(super) struct Liveness {
    workers: BTreeMap<WorkerId, Known>,
    worker_timeout: Duration,
}

impl Liveness {
    /// Starts from the workers a recovered log knows, each given a full timeout to be heard.
    pub(super) fn new(known: Vec<WorkerView>, worker_timeout: Duration, now: Instant) -> Self {
        let workers = known
            .into_iter()
            .map(|w| {
                let known = Known {
                    serves: w.capabilities.clone(),
                    capabilities: w.capabilities,
                    concurrency: w.concurrency,
                    breakers: Vec::new(),
                    attempts: Vec::new(),
                    in_flight: 0,
                    state: WorkerState::Ready,
                    due: now + worker_timeout,
                    instance: Instance(0),
                    started_ms: 0,
                    last_seen: now,
                    interval: Duration::ZERO,
                };
                (w.worker, known)
            })
            .collect();
        Self {
            workers,
            worker_timeout,
        }
    }

    /// The input a heartbeat leads to, if it changes what the scheduler knows.
    pub(super) fn heartbeat(&mut self, hb: Heartbeat, now: Instant) -> Option<Input> {
        if let Some(known) = self.workers.get(&hb.worker)
            && known.other_process(&hb)
            && !self.takes_over(known, &hb, now)
        {
            return None;
        }
        match hb.state {
            WorkerState::Ready => {
                // Announced as a set: order and repeats are not a change.
                let mut serves = hb.capabilities;
                serves.sort();
                serves.dedup();
                // A capability whose breaker is open counts for nothing until it closes.
                let capabilities: Vec<Capability> = serves
                    .iter()
                    .filter(|c| !hb.breakers.iter().any(|b| &b.capability == *c))
                    .cloned()
                    .collect();
                // Clamped: a worker claiming a huge interval must still expire.
                let interval = Duration::from_millis(hb.interval_ms.min(MAX_HEARTBEAT_MS));
                let due = now + (interval * 3).max(self.worker_timeout);
                let known = Known {
                    capabilities,
                    concurrency: hb.concurrency,
                    serves,
                    breakers: hb.breakers,
                    attempts: hb.attempts,
                    in_flight: hb.in_flight,
                    state: hb.state,
                    due,
                    instance: hb.instance,
                    started_ms: hb.started_ms,
                    last_seen: now,
                    interval,
                };
                let changed = self.workers.get(&hb.worker).is_none_or(|before| {
                    before.capabilities != known.capabilities
                        || before.concurrency != known.concurrency
                });
                let input = changed.then(|| {
                    info!(worker = %hb.worker, concurrency = known.concurrency, capabilities = ?known.capabilities, "worker joined");
                    Input::WorkerJoined {
                        worker: hb.worker.clone(),
                        capabilities: known.capabilities.clone(),
                        concurrency: known.concurrency,
                    }
                });
                self.workers.insert(hb.worker, known);
                input
            }
            WorkerState::Draining | WorkerState::Stopped => {
                self.workers.remove(&hb.worker)?;
                info!(worker = %hb.worker, state = ?hb.state, "worker left");
                let reason = match hb.state {
                    WorkerState::Draining => WorkerLeftReason::Draining,
                    WorkerState::Stopped | WorkerState::Ready => WorkerLeftReason::Stopped,
                };
                // A draining or stopping worker finishes or hands back its own attempts.
                Some(Input::WorkerLeft {
                    worker: hb.worker,
                    reason,
                    attempts: Vec::new(),
                })
            }
        }
    }

    /// Whether a heartbeat from another process with the known worker's id speaks for it.
    fn takes_over(&self, known: &Known, hb: &Heartbeat, now: Instant) -> bool {
        let silent = now.saturating_duration_since(known.last_seen) > known.interval * 2;
        let known_hb = Heartbeat {
            instance: known.instance,
            started_ms: known.started_ms,
            breakers: Vec::new(),
            attempts: Vec::new(),
            ..hb.clone()
        };
        let earlier = known_hb.yields_to(hb);
        if hb.state == WorkerState::Ready && (silent || earlier) {
            if !silent {
                warn!(worker = %hb.worker, known = %known.instance, other = %hb.instance, "two worker processes announce the same id; the one that started earlier counts and the other must stop: give each worker its own --id");
            }
            return true;
        }
        warn!(worker = %hb.worker, known = %known.instance, other = %hb.instance, state = ?hb.state, "ignoring a heartbeat from a second worker process with the same id: give each worker its own --id");
        false
    }

    /// What the last heartbeat of `worker` said, and how long ago it came.
    pub(super) fn live(&self, worker: &WorkerId, now: Instant) -> Option<LiveWorker> {
        let known = self.workers.get(worker)?;
        Some(LiveWorker {
            state: known.state,
            in_flight: known.in_flight,
            serves: known.serves.clone(),
            breakers: known.breakers.clone(),
            last_heartbeat_ms_ago: u64::try_from(
                now.saturating_duration_since(known.last_seen).as_millis(),
            )
            .unwrap_or(u64::MAX),
        })
    }

    /// Workers not heard from in time, as inputs; they are forgotten.
    pub(super) fn expired(&mut self, now: Instant) -> Vec<Input> {
        let gone: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, known)| known.due <= now)
            .map(|(w, _)| w.clone())
            .collect();
        gone.into_iter()
            .map(|worker| {
                warn!(worker = %worker, "no heartbeat from worker; counting it as gone");
                let attempts = self
                    .workers
                    .remove(&worker)
                    .map(|known| known.attempts)
                    .unwrap_or_default();
                Input::WorkerLeft {
                    worker,
                    reason: WorkerLeftReason::HeartbeatsStopped,
                    attempts,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workforce_shared::PROTOCOL_VERSION;

    fn hb(worker: &str, caps: &[&str], state: WorkerState) -> Heartbeat {
        Heartbeat {
            v: PROTOCOL_VERSION,
            worker: worker.parse().expect("id"),
            capabilities: caps.iter().map(|c| c.parse().expect("id")).collect(),
            concurrency: 2,
            in_flight: 0,
            state,
            interval_ms: 1_000,
            instance: Instance(7),
            started_ms: 100,
            breakers: Vec::new(),
            attempts: Vec::new(),
        }
    }

    fn from(mut hb: Heartbeat, instance: u64, started_ms: u64) -> Heartbeat {
        hb.instance = Instance(instance);
        hb.started_ms = started_ms;
        hb
    }

    #[test]
    fn a_second_process_with_the_same_id_neither_joins_nor_marks_the_first_gone() {
        let now = Instant::now();
        let mut live = Liveness::new(Vec::new(), Duration::from_secs(10), now);
        assert!(
            live.heartbeat(hb("w", &["a"], WorkerState::Ready), now)
                .is_some()
        );
        // A twin that started later, with other capabilities: ignored while the first lives.
        let twin = from(hb("w", &["b"], WorkerState::Ready), 8, 200);
        assert_eq!(live.heartbeat(twin.clone(), now), None);
        // Its drain and stop do not mark the first gone.
        let mut leaving = twin.clone();
        leaving.state = WorkerState::Stopped;
        assert_eq!(live.heartbeat(leaving, now), None);
        assert_eq!(
            live.heartbeat(hb("w", &["a"], WorkerState::Ready), now),
            None
        );
        // A process that started earlier than the known one counts instead.
        let earlier = from(hb("w", &["c"], WorkerState::Ready), 9, 50);
        assert!(matches!(
            live.heartbeat(earlier, now),
            Some(Input::WorkerJoined { capabilities, .. }) if capabilities[0].as_str() == "c"
        ));
    }

    #[test]
    fn a_restarted_worker_takes_over_once_the_old_process_is_silent() {
        let now = Instant::now();
        let mut live = Liveness::new(Vec::new(), Duration::from_secs(10), now);
        live.heartbeat(hb("w", &["a"], WorkerState::Ready), now);
        let restarted = from(hb("w", &["a"], WorkerState::Ready), 8, 5_000);
        // Within two intervals of the old process's last heartbeat: not yet.
        assert_eq!(
            live.heartbeat(restarted.clone(), now + Duration::from_millis(1_500)),
            None
        );
        assert_eq!(
            live.workers[&"w".parse::<WorkerId>().expect("id")].instance,
            Instance(7)
        );
        // Same announcements: the takeover changes nothing the scheduler knows.
        assert_eq!(
            live.heartbeat(restarted, now + Duration::from_millis(2_500)),
            None
        );
        assert_eq!(
            live.workers[&"w".parse::<WorkerId>().expect("id")].instance,
            Instance(8)
        );
    }

    #[test]
    fn only_changes_become_inputs() {
        let now = Instant::now();
        let mut live = Liveness::new(Vec::new(), Duration::from_secs(10), now);
        let joined = live.heartbeat(hb("w", &["b", "a", "a"], WorkerState::Ready), now);
        assert!(
            matches!(&joined, Some(Input::WorkerJoined { capabilities, .. }) if capabilities.len() == 2 && capabilities[0].as_str() == "a"),
            "{joined:?}"
        );
        assert_eq!(
            live.heartbeat(hb("w", &["a", "b"], WorkerState::Ready), now),
            None
        );
        assert!(
            live.heartbeat(hb("w", &["a"], WorkerState::Ready), now)
                .is_some()
        );
        assert!(matches!(
            live.heartbeat(hb("w", &["a"], WorkerState::Draining), now),
            Some(Input::WorkerLeft {
                reason: WorkerLeftReason::Draining,
                ..
            })
        ));
        // Gone already: its last heartbeat changes nothing.
        assert_eq!(
            live.heartbeat(hb("w", &["a"], WorkerState::Stopped), now),
            None
        );
    }

    #[test]
    fn silent_workers_expire_after_the_longer_of_three_intervals_and_the_timeout() {
        let now = Instant::now();
        let recovered = vec![WorkerView {
            worker: "old".parse().expect("id"),
            capabilities: vec!["a".parse().expect("id")],
            concurrency: 1,
            completed: 0,
            failed: 0,
            success_rate: None,
            live: None,
        }];
        let mut live = Liveness::new(recovered, Duration::from_secs(10), now);
        let mut slow = hb("slow", &["a"], WorkerState::Ready);
        slow.interval_ms = 5_000;
        live.heartbeat(slow, now);
        assert!(live.expired(now + Duration::from_secs(9)).is_empty());
        let gone = live.expired(now + Duration::from_secs(10));
        assert!(
            matches!(gone.as_slice(), [Input::WorkerLeft { worker, reason: WorkerLeftReason::HeartbeatsStopped, .. }] if worker.as_str() == "old"),
            "{gone:?}"
        );
        assert_eq!(live.expired(now + Duration::from_secs(15)).len(), 1);
        assert!(live.workers.is_empty());
    }

    #[test]
    fn a_capability_whose_breaker_is_open_counts_for_nothing_until_it_closes() {
        let now = Instant::now();
        let mut live = Liveness::new(Vec::new(), Duration::from_secs(10), now);
        let all = hb("w", &["a", "b"], WorkerState::Ready);
        assert!(live.heartbeat(all.clone(), now).is_some());
        let mut tripped = all.clone();
        tripped.breakers = vec![Breaker {
            capability: "a".parse().expect("id"),
            failures: 3,
            until_ms: 99,
        }];
        assert_eq!(
            live.heartbeat(tripped, now),
            Some(Input::WorkerJoined {
                worker: "w".parse().expect("id"),
                capabilities: vec!["b".parse().expect("id")],
                concurrency: 2,
            })
        );
        let shown = live.live(&"w".parse().expect("id"), now).expect("live");
        assert_eq!(shown.serves.len(), 2, "it still serves both");
        assert_eq!(shown.breakers.len(), 1);
        // Closed again: both count.
        assert!(matches!(
            live.heartbeat(all, now),
            Some(Input::WorkerJoined { capabilities, .. }) if capabilities.len() == 2
        ));
    }
}
