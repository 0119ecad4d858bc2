//! One pull loop per capability. Each takes a slot from the worker-wide semaphore *before*
//! pulling and pulls exactly one message, so nothing is prefetched: a worker killed at any
//! moment holds at most `concurrency` unacknowledged assignments. A loop whose capability's
//! circuit breaker is open pulls nothing until it closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use workforce_shared::{Assignment, CodecError, decode};

use crate::backoff::Backoff;

/// How long one pull waits at the server for a message. Bounds how long a stop waits for the
/// pull in progress (which it lets finish, so a message the server sends is not lost).
const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// An assignment taken from the stream, with the slot it occupies until it is done.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) message: Message,
    pub(crate) assignment: Assignment,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// What to do with a pulled message.
#[derive(Debug)]
pub(crate) enum Intake {
    Run(Assignment),
    /// Cannot be decoded and never will be: terminate it rather than have it redelivered
    /// forever.
    Terminate(CodecError),
}

pub(crate) fn classify(payload: &[u8], max_message_bytes: usize) -> Intake {
    match decode::<Assignment>(payload, max_message_bytes) {
        Ok(assignment) => Intake::Run(assignment),
        Err(error) => Intake::Terminate(error),
    }
}

#[derive(Debug)]
pub(crate) struct Puller {
    pub(crate) consumer: PullConsumer,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) deliveries: mpsc::Sender<Delivery>,
    pub(crate) stop: watch::Receiver<bool>,
    /// True while the capability's circuit breaker is open.
    pub(crate) paused: watch::Receiver<bool>,
    pub(crate) max_message_bytes: usize,
    pub(crate) malformed: Arc<AtomicU64>,
}

impl Puller {
    /// Pulls until `stop` turns true. Errors are retried with backoff; it returns only on stop.
    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                () = raised(&mut self.stop) => return,
                () = lowered(&mut self.paused) => {}
            }
            let permit = tokio::select! {
                biased;
                () = raised(&mut self.stop) => return,
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => return,
                },
            };
            // The breaker may have opened while this loop waited for a slot.
            if *self.paused.borrow() {
                continue;
            }
            match self.pull_one().await {
                Ok(pulled) => {
                    if failing {
                        failing = false;
                        tracing::info!("pulling assignments again");
                    }
                    backoff.reset();
                    if let Some(message) = pulled {
                        self.accept(message, permit).await;
                    }
                }
                Err(error) => {
                    drop(permit);
                    let delay = backoff.next_delay();
                    if failing {
                        tracing::debug!(%error, retry_in = ?delay, "cannot pull assignments");
                    } else {
                        failing = true;
                        tracing::warn!(%error, retry_in = ?delay, "cannot pull assignments; retrying");
                    }
                    tokio::select! {
                        biased;
                        () = raised(&mut self.stop) => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn pull_one(&self) -> Result<Option<Message>, async_nats::Error> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(PULL_EXPIRES)
            .messages()
            .await?;
        batch.next().await.transpose()
    }

    async fn accept(&self, message: Message, permit: OwnedSemaphorePermit) {
        if *self.stop.borrow() {
            hand_back(&message, "the worker is stopping").await;
            return;
        }
        // A pull under way when the breaker opened: another worker may take it at once.
        if *self.paused.borrow() {
            hand_back(&message, "the capability's circuit breaker is open").await;
            return;
        }
        match classify(&message.payload, self.max_message_bytes) {
            Intake::Run(assignment) => {
                let delivery = Delivery {
                    message,
                    assignment,
                    permit,
                };
                if let Err(mpsc::error::SendError(delivery)) = self.deliveries.send(delivery).await
                {
                    hand_back(&delivery.message, "the worker is stopping").await;
                }
            }
            Intake::Terminate(error) => {
                let malformed_total = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                let stream_seq = message.info().map(|info| info.stream_sequence).ok();
                tracing::warn!(
                    %error,
                    subject = %message.subject,
                    ?stream_seq,
                    malformed_total,
                    "terminating an assignment that cannot be decoded; it will not be redelivered"
                );
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(%error, "cannot terminate the undecodable assignment");
                }
            }
        }
    }
}

/// Resolves once `flag` is true, or its sender is gone (which also means stop).
pub(crate) async fn raised(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in a caller's select.
    let _ = flag.wait_for(|raised| *raised).await.map(drop);
}

/// Resolves once `flag` is false. Never if its sender is gone while it is true: the worker is
/// then stopping, which the stop flag says.
async fn lowered(flag: &mut watch::Receiver<bool>) {
    let gone = flag.wait_for(|raised| !*raised).await.map(drop).is_err();
    if gone {
        std::future::pending::<()>().await;
    }
}

/// Gives a message back to the stream at once, for another worker (or this one, later).
pub(crate) async fn hand_back(message: &Message, why: &str) {
    match message.ack_with(AckKind::Nak(None)).await {
        Ok(()) => tracing::info!(why, "handed the assignment back"),
        Err(error) => tracing::warn!(
            %error,
            why,
            "cannot hand the assignment back; it will be redelivered after ack_wait"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use workforce_shared::{Attempt, Capability, PROTOCOL_VERSION, RunId, TaskId, encode};

    use super::*;

    fn assignment() -> Assignment {
        Assignment {
            v: PROTOCOL_VERSION,
            run: RunId::new("r1").expect("run"),
            task: TaskId::new("t1").expect("task"),
            attempt: Attempt(1),
            capability: Capability::new("echo").expect("cap"),
            input: json!("hello"),
            upstream: BTreeMap::new(),
            timeout_ms: 1_000,
            upstream_errors: Default::default(),
        }
    }

    #[test]
    fn a_valid_assignment_is_run() {
        let bytes = encode(&assignment()).expect("encode");
        match classify(&bytes, 1 << 20) {
            Intake::Run(decoded) => assert_eq!(decoded, assignment()),
            Intake::Terminate(error) => panic!("terminated a valid assignment: {error}"),
        }
    }

    #[test]
    fn garbage_is_terminated() {
        for payload in [&b"not msgpack"[..], b"", b"\xc1\xc1\xc1"] {
            assert!(
                matches!(classify(payload, 1 << 20), Intake::Terminate(_)),
                "{payload:?} was not terminated"
            );
        }
    }

    #[test]
    fn oversized_and_other_version_assignments_are_terminated() {
        let bytes = encode(&assignment()).expect("encode");
        assert!(matches!(
            classify(&bytes, 8),
            Intake::Terminate(CodecError::TooLarge { .. })
        ));
        let mut newer = assignment();
        newer.v = PROTOCOL_VERSION + 1;
        let bytes = encode(&newer).expect("encode");
        assert!(matches!(
            classify(&bytes, 1 << 20),
            Intake::Terminate(CodecError::WrongVersion { .. })
        ));
    }
}
