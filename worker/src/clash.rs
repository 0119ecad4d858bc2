//! Two processes started with the same `--id` would be one worker to the coordinator, and the
//! one that stops would mark the other gone. So each process listens on its own heartbeat
//! subject and answers probes on `<prefix>.workers.<id>.probe` with its heartbeat; a starting
//! process probes before it takes work. Of two processes with one id, the one that started
//! later ([`Heartbeat::yields_to`]) stops, and says why.

use async_nats::{RequestErrorKind, Subscriber};
use futures::StreamExt;
use tokio::sync::mpsc;
use workforce_shared::{Heartbeat, Subjects, WorkerState, decode, encode};

use crate::error::WorkerError;

/// How long a probe waits for a live twin's answer. No process with the id answers at once
/// (the server has no responders), so only a slow twin makes this matter.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Twin sightings queued for the run loop; more are dropped (the next heartbeat repeats them).
const SIGHTINGS: usize = 16;

/// Listening for twins: construct with [`start`](Sentry::start), probe, then hand the
/// listening loop and the sightings to the run loop.
#[derive(Debug)]
pub(crate) struct Sentry {
    me: Heartbeat,
    heartbeats: Subscriber,
    max_bytes: usize,
}

impl Sentry {
    /// Subscribes to this worker's heartbeat subject, so a twin starting at the same moment
    /// is seen by its first heartbeat.
    pub(crate) async fn start(
        client: &async_nats::Client,
        subjects: &Subjects,
        me: Heartbeat,
        max_bytes: usize,
    ) -> Result<Self, WorkerError> {
        let subject = subjects.heartbeat(&me.worker);
        let heartbeats = subscribe(client, subject).await?;
        Ok(Self {
            me,
            heartbeats,
            max_bytes,
        })
    }

    /// Asks whether a live process already serves as this worker. Done before subscribing to
    /// the probe subject, so this process does not answer itself.
    pub(crate) async fn probe(
        &self,
        client: &async_nats::Client,
        subjects: &Subjects,
    ) -> Option<Heartbeat> {
        let subject = subjects.worker_probe(&self.me.worker);
        let payload = match encode(&self.me) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, "cannot encode the probe; relying on heartbeats to find a twin");
                return None;
            }
        };
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(PROBE_TIMEOUT));
        match client.send_request(subject, request).await {
            Ok(answer) => twin_in(&answer.payload, &self.me, self.max_bytes),
            Err(error) if error.kind() == RequestErrorKind::NoResponders => None,
            Err(error) => {
                tracing::warn!(%error, "no answer to the probe for this worker id; relying on heartbeats to find a twin");
                None
            }
        }
    }

    /// Subscribes to the probe subject and returns the loop that answers probes and reports
    /// twins, and the receiver of those reports.
    pub(crate) async fn listen(
        self,
        client: async_nats::Client,
        subjects: &Subjects,
    ) -> Result<
        (
            impl Future<Output = ()> + Send + 'static,
            mpsc::Receiver<Heartbeat>,
        ),
        WorkerError,
    > {
        let probes = subscribe(&client, subjects.worker_probe(&self.me.worker)).await?;
        let (sightings, receiver) = mpsc::channel(SIGHTINGS);
        Ok((self.run(client, probes, sightings), receiver))
    }

    async fn run(
        mut self,
        client: async_nats::Client,
        mut probes: Subscriber,
        sightings: mpsc::Sender<Heartbeat>,
    ) {
        let answer = match encode(&self.me) {
            Ok(answer) => bytes::Bytes::from(answer),
            Err(error) => {
                tracing::error!(%error, "cannot encode this worker's heartbeat; not watching for twins");
                return;
            }
        };
        loop {
            let payload = tokio::select! {
                Some(message) = self.heartbeats.next() => message.payload,
                Some(message) = probes.next() => {
                    if let Some(reply) = message.reply
                        && let Err(error) = client.publish(reply, answer.clone()).await
                    {
                        tracing::warn!(%error, "cannot answer a probe for this worker id");
                    }
                    message.payload
                }
                else => return,
            };
            if let Some(twin) = twin_in(&payload, &self.me, self.max_bytes) {
                // Full: the run loop has not caught up; the twin's next heartbeat repeats it.
                let _ = sightings.try_send(twin);
            }
        }
    }
}

async fn subscribe(
    client: &async_nats::Client,
    subject: String,
) -> Result<Subscriber, WorkerError> {
    let subscriber = client
        .subscribe(subject.clone())
        .await
        .map_err(|source| WorkerError::Subscribe { subject, source })?;
    Ok(subscriber)
}

/// A heartbeat of another live process with this worker's id. One that is draining or has
/// stopped is on its way out (a rolling restart), not a rival.
fn twin_in(payload: &[u8], me: &Heartbeat, max_bytes: usize) -> Option<Heartbeat> {
    match decode::<Heartbeat>(payload, max_bytes) {
        Ok(other)
            if other.worker == me.worker
                && other.instance != me.instance
                && other.state == WorkerState::Ready =>
        {
            Some(other)
        }
        Ok(_) => None,
        Err(error) => {
            tracing::debug!(%error, "ignoring a malformed heartbeat on this worker's subject");
            None
        }
    }
}

/// The error of a process that yields to `twin`, logged loudly once.
pub(crate) fn yield_to(me: &Heartbeat, twin: &Heartbeat, at_start: bool) -> WorkerError {
    let error = WorkerError::DuplicateId {
        worker: me.worker.clone(),
        other: twin.instance,
        other_started_ms: twin.started_ms,
        at_start,
    };
    tracing::error!(
        worker_id = %me.worker,
        instance = %me.instance,
        other_instance = %twin.instance,
        "{error}"
    );
    error
}

#[cfg(test)]
mod tests {
    use workforce_shared::{Capability, Instance, PROTOCOL_VERSION, WorkerId, WorkerState};

    use super::*;

    fn heartbeat(worker: &str, instance: u64) -> Heartbeat {
        Heartbeat {
            v: PROTOCOL_VERSION,
            worker: WorkerId::new(worker).expect("worker"),
            capabilities: vec![Capability::new("c").expect("cap")],
            concurrency: 1,
            in_flight: 0,
            state: WorkerState::Ready,
            interval_ms: 1_000,
            instance: Instance(instance),
            started_ms: 5,
            breakers: Vec::new(),
            attempts: Vec::new(),
        }
    }

    #[test]
    fn only_another_process_with_the_same_id_is_a_twin() {
        let me = heartbeat("w", 1);
        let bytes = |hb: &Heartbeat| encode(hb).expect("encode");
        assert_eq!(twin_in(&bytes(&me), &me, 1 << 20), None, "its own echo");
        assert_eq!(twin_in(&bytes(&heartbeat("v", 2)), &me, 1 << 20), None);
        let twin = heartbeat("w", 2);
        assert_eq!(twin_in(&bytes(&twin), &me, 1 << 20), Some(twin.clone()));
        assert_eq!(twin_in(b"garbage", &me, 1 << 20), None);
        // A process on its way out (a rolling restart) is no rival.
        for state in [WorkerState::Draining, WorkerState::Stopped] {
            let leaving = Heartbeat {
                state,
                ..twin.clone()
            };
            assert_eq!(twin_in(&bytes(&leaving), &me, 1 << 20), None, "{state:?}");
        }
    }
}
