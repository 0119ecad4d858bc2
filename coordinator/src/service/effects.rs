//! Side effects of committed decisions: publishing assignments and dead letters with message
//! ids, so that a republish after a failure or a restart is dropped by the broker.

use async_nats::HeaderMap;
use async_nats::jetstream;
use std::future::IntoFuture;

use futures::future::join_all;
use tracing::warn;
use workforce_shared::{Assignment, DeadLetter, Subjects, encode};

/// A publish the coordinator owes the broker.
#[derive(Clone, Debug)]
pub(super) enum Effect {
    Assign(Assignment),
    DeadLetter(DeadLetter),
}

impl Effect {
    fn describe(&self) -> String {
        match self {
            Effect::Assign(a) => format!("assignment {}/{} attempt {}", a.run, a.task, a.attempt),
            Effect::DeadLetter(d) => format!("dead letter {}/{}", d.run, d.task),
        }
    }

    fn wire(&self, subjects: &Subjects) -> Result<(String, String, Vec<u8>), String> {
        let encoded = match self {
            Effect::Assign(a) => encode(a).map(|bytes| {
                (
                    subjects.task(&a.capability),
                    subjects.assignment_msg_id(&a.run, &a.task, a.attempt),
                    bytes,
                )
            }),
            Effect::DeadLetter(d) => encode(d).map(|bytes| {
                (
                    subjects.dead_letter(&d.run, &d.task),
                    subjects.dead_letter_msg_id(&d.run, &d.task),
                    bytes,
                )
            }),
        };
        encoded.map_err(|e| e.to_string())
    }
}

/// Why a publish can never succeed as it is.
#[derive(Debug)]
pub(super) struct Unpublishable {
    pub(super) effect: Effect,
    pub(super) reason: String,
}

#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Failed for now (broker unreachable, say); retry later with the same message id.
    pub(super) retry: Vec<Effect>,
    pub(super) unpublishable: Vec<Unpublishable>,
}

/// Room left in a message for its headers (the message id).
const HEADER_ROOM: usize = 1024;

/// Publishes every effect, pipelined: all are sent, then all acks are awaited together (each
/// bounded by the JetStream context's timeout). `limit` is the largest payload any reader
/// accepts.
pub(super) async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    limit: usize,
    effects: Vec<Effect>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut pending = Vec::with_capacity(effects.len());
    for effect in effects {
        let (subject, msg_id, bytes) = match effect.wire(subjects) {
            Ok(w) => w,
            Err(reason) => {
                outcome.unpublishable.push(Unpublishable { effect, reason });
                continue;
            }
        };
        if bytes.len() + HEADER_ROOM > limit {
            let reason = format!(
                "{} is {} bytes, over the message limit of {} bytes",
                effect.describe(),
                bytes.len(),
                limit.saturating_sub(HEADER_ROOM)
            );
            outcome.unpublishable.push(Unpublishable { effect, reason });
            continue;
        }
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        match js
            .publish_with_headers(subject, headers, bytes.into())
            .await
        {
            Ok(ack) => pending.push((effect, ack)),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded =>
            {
                let reason = format!(
                    "{} is over the broker's max payload: {e}",
                    effect.describe()
                );
                outcome.unpublishable.push(Unpublishable { effect, reason });
            }
            Err(e) => {
                warn!(effect = %effect.describe(), error = %e, "publish failed; will retry");
                outcome.retry.push(effect);
            }
        }
    }
    let (effects, acks): (Vec<Effect>, Vec<_>) = pending.into_iter().unzip();
    for (effect, acked) in effects
        .into_iter()
        .zip(join_all(acks.into_iter().map(IntoFuture::into_future)).await)
    {
        if let Err(e) = acked {
            warn!(effect = %effect.describe(), error = %e, "publish not acknowledged; will retry");
            outcome.retry.push(effect);
        }
    }
    outcome
}
