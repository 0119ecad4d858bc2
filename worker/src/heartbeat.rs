//! The worker's announcements: a [`Heartbeat`] on core NATS at start, every interval, while
//! draining and a last `Stopped` one. Not stored; the coordinator only needs the latest.

use std::time::Duration;

use workforce_shared::{
    Breaker, Capability, Heartbeat, HeldAttempt, Instance, PROTOCOL_VERSION, Subjects, WorkerId,
    WorkerState, encode,
};

/// A publish waits for room in the client's queue; while NATS is away that queue can fill,
/// and the run loop must not stall on an announcement.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Heart {
    client: async_nats::Client,
    subject: String,
    template: Heartbeat,
    failing: bool,
    /// Another process has this worker's id and this one is stopping for it: announcing
    /// `Draining` or `Stopped` would tell the coordinator that the other one left.
    silenced: bool,
}

/// Who this process is, as its heartbeats say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) instance: Instance,
    pub(crate) started_ms: u64,
}

impl Identity {
    /// A fresh instance: std's per-process random hash keys mixed with the time and the pid,
    /// so two workers in one process (tests) differ too.
    pub(crate) fn mint() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(now.as_nanos());
        hasher.write_u32(std::process::id());
        Self {
            // Never 0, which stands for a sender older than the field.
            instance: Instance(hasher.finish().max(1)),
            started_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Heart {
    /// Sends `template` with the state and load of the moment.
    pub(crate) fn new(
        client: async_nats::Client,
        subjects: &Subjects,
        template: Heartbeat,
    ) -> Self {
        Self {
            client,
            subject: subjects.heartbeat(&template.worker),
            template,
            failing: false,
            silenced: false,
        }
    }

    /// No more heartbeats from this process.
    pub(crate) fn silence(&mut self) {
        self.silenced = true;
    }

    /// Announces `state`, `in_flight` attempts, the circuit `breakers` open now and the
    /// `attempts` held now (sorted, each once).
    pub(crate) async fn beat(
        &mut self,
        state: WorkerState,
        in_flight: usize,
        breakers: Vec<Breaker>,
        attempts: Vec<HeldAttempt>,
    ) {
        if self.silenced {
            return;
        }
        let heartbeat = Heartbeat {
            state,
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
            breakers,
            attempts,
            ..self.template.clone()
        };
        let result = match encode(&heartbeat) {
            Ok(payload) => {
                let publish = self.client.publish(self.subject.clone(), payload.into());
                match tokio::time::timeout(SEND_TIMEOUT, publish).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("the NATS client's send queue is full".to_owned()),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        // Log a failing streak once, not every interval.
        match (result, self.failing) {
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!("heartbeats are being sent again");
            }
            (Ok(()), false) => {}
            (Err(error), false) => {
                self.failing = true;
                tracing::warn!(%error, ?state, "cannot send heartbeat; will keep trying");
            }
            (Err(error), true) => tracing::debug!(%error, ?state, "cannot send heartbeat"),
        }
    }
}

/// This process's heartbeat as a `Ready` worker with nothing in flight and no breaker open:
/// what it answers to a probe, and the template of every heartbeat.
pub(crate) fn announcement(
    worker: WorkerId,
    capabilities: Vec<Capability>,
    concurrency: u32,
    interval: Duration,
    identity: Identity,
) -> Heartbeat {
    Heartbeat {
        v: PROTOCOL_VERSION,
        worker,
        capabilities,
        concurrency,
        in_flight: 0,
        state: WorkerState::Ready,
        interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        instance: identity.instance,
        started_ms: identity.started_ms,
        breakers: Vec::new(),
        attempts: Vec::new(),
    }
}
