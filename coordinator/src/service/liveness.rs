//! Which workers are live: heartbeats in, [`Input::WorkerJoined`] and [`Input::WorkerLeft`]
//! out, only when what the scheduler knows changes. A worker not heard from within three of
//! its heartbeat intervals (and never less than the configured worker timeout) is gone.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use workforce_shared::{Capability, Heartbeat, WorkerId, WorkerState};

use crate::scheduler::{Input, WorkerLeftReason, WorkerView};

/// Longest heartbeat interval believed; a worker silent for three of these is gone.
const MAX_HEARTBEAT_MS: u64 = 60_000;

#[derive(Debug)]
struct Known {
    capabilities: Vec<Capability>,
    concurrency: u32,
    /// When the worker counts as gone unless heard from.
    due: Instant,
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
                    capabilities: w.capabilities,
                    concurrency: w.concurrency,
                    due: now + worker_timeout,
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
        match hb.state {
            WorkerState::Ready => {
                // Announced as a set: order and repeats are not a change.
                let mut capabilities = hb.capabilities;
                capabilities.sort();
                capabilities.dedup();
                // Clamped: a worker claiming a huge interval must still expire.
                let grace =
                    Duration::from_millis(hb.interval_ms.min(MAX_HEARTBEAT_MS).saturating_mul(3))
                        .max(self.worker_timeout);
                let due = now + grace;
                if let Some(known) = self.workers.get_mut(&hb.worker)
                    && known.capabilities == capabilities
                    && known.concurrency == hb.concurrency
                {
                    known.due = due;
                    return None;
                }
                info!(worker = %hb.worker, concurrency = hb.concurrency, capabilities = ?capabilities, "worker joined");
                self.workers.insert(
                    hb.worker.clone(),
                    Known {
                        capabilities: capabilities.clone(),
                        concurrency: hb.concurrency,
                        due,
                    },
                );
                Some(Input::WorkerJoined {
                    worker: hb.worker,
                    capabilities,
                    concurrency: hb.concurrency,
                })
            }
            WorkerState::Draining | WorkerState::Stopped => {
                self.workers.remove(&hb.worker)?;
                info!(worker = %hb.worker, state = ?hb.state, "worker left");
                let reason = match hb.state {
                    WorkerState::Draining => WorkerLeftReason::Draining,
                    WorkerState::Stopped | WorkerState::Ready => WorkerLeftReason::Stopped,
                };
                Some(Input::WorkerLeft {
                    worker: hb.worker,
                    reason,
                })
            }
        }
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
                self.workers.remove(&worker);
                Input::WorkerLeft {
                    worker,
                    reason: WorkerLeftReason::HeartbeatsStopped,
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
        }
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
        }];
        let mut live = Liveness::new(recovered, Duration::from_secs(10), now);
        let mut slow = hb("slow", &["a"], WorkerState::Ready);
        slow.interval_ms = 5_000;
        live.heartbeat(slow, now);
        assert!(live.expired(now + Duration::from_secs(9)).is_empty());
        let gone = live.expired(now + Duration::from_secs(10));
        assert!(
            matches!(gone.as_slice(), [Input::WorkerLeft { worker, reason: WorkerLeftReason::HeartbeatsStopped }] if worker.as_str() == "old"),
            "{gone:?}"
        );
        assert_eq!(live.expired(now + Duration::from_secs(15)).len(), 1);
        assert!(live.workers.is_empty());
    }
}
