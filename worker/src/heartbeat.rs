//! The worker's announcements: a [`Heartbeat`] on core NATS at start, every interval, while
//! draining and a last `Stopped` one. Not stored; the coordinator only needs the latest.

use std::time::Duration;

use workforce_shared::{
    Capability, Heartbeat, PROTOCOL_VERSION, Subjects, WorkerId, WorkerState, encode,
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
}

impl Heart {
    pub(crate) fn new(
        client: async_nats::Client,
        subjects: &Subjects,
        worker: WorkerId,
        capabilities: Vec<Capability>,
        concurrency: u32,
        interval: Duration,
    ) -> Self {
        Self {
            client,
            subject: subjects.heartbeat(&worker),
            template: Heartbeat {
                v: PROTOCOL_VERSION,
                worker,
                capabilities,
                concurrency,
                in_flight: 0,
                state: WorkerState::Ready,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            },
            failing: false,
        }
    }

    pub(crate) async fn beat(&mut self, state: WorkerState, in_flight: usize) {
        let heartbeat = Heartbeat {
            state,
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
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
