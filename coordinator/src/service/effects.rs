//! Publishing assignments and dead letters with message ids, so that a republish after a
//! failure or a restart is dropped by the broker.

use std::future::IntoFuture;

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::future::join_all;
use tracing::warn;
use workforce_shared::codec::HEADER_ROOM;
use workforce_shared::{Assignment, CodecError, DeadLetter, Subjects, encode};

use crate::scheduler::PublishFailure;

/// A publish the coordinator owes the broker.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Publish {
    Assign(Assignment),
    DeadLetter(DeadLetter),
}

impl Publish {
    pub(super) fn describe(&self) -> String {
        match self {
            Publish::Assign(a) => format!("assignment {}/{} attempt {}", a.run, a.task, a.attempt),
            Publish::DeadLetter(d) => format!("dead letter {}/{}", d.run, d.task),
        }
    }

    /// Subject, message id and payload.
    fn wire(&self, subjects: &Subjects) -> Result<(String, String, Vec<u8>), CodecError> {
        Ok(match self {
            Publish::Assign(a) => (
                subjects.task(&a.capability),
                subjects.assignment_msg_id(&a.run, &a.task, a.attempt),
                encode(a)?,
            ),
            Publish::DeadLetter(d) => (
                subjects.dead_letter(&d.run, &d.task),
                subjects.dead_letter_msg_id(&d.run, &d.task, d.last_assignment.attempt),
                encode(d)?,
            ),
        })
    }
}

/// A publish that can never succeed as it is.
#[derive(Debug)]
pub(super) struct Unpublishable {
    pub(super) publish: Publish,
    pub(super) failure: PublishFailure,
}

#[derive(Debug, Default)]
pub(super) struct Published {
    /// Failed for now (broker unreachable, say); retry later with the same message id.
    pub(super) retry: Vec<Publish>,
    pub(super) unpublishable: Vec<Unpublishable>,
}

/// Publishes each of `publishes`, pipelined: all are sent, then all acks are awaited together
/// (each bounded by the JetStream context's timeout). `limit` is the largest payload any
/// reader accepts.
pub(super) async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    limit: usize,
    publishes: Vec<Publish>,
) -> Published {
    let mut outcome = Published::default();
    let mut pending = Vec::with_capacity(publishes.len());
    for publish in publishes {
        let (subject, msg_id, bytes) = match publish.wire(subjects) {
            Ok(w) => w,
            Err(e) => {
                let failure = PublishFailure::Unencodable {
                    error: e.to_string(),
                };
                outcome
                    .unpublishable
                    .push(Unpublishable { publish, failure });
                continue;
            }
        };
        let room = limit.saturating_sub(HEADER_ROOM);
        if bytes.len() > room {
            let failure = PublishFailure::TooLarge {
                bytes: bytes.len() as u64,
                limit: room as u64,
            };
            outcome
                .unpublishable
                .push(Unpublishable { publish, failure });
            continue;
        }
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        match js
            .publish_with_headers(subject, headers, bytes.into())
            .await
        {
            Ok(ack) => pending.push((publish, ack)),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded =>
            {
                let failure = PublishFailure::OverMaxPayload {
                    error: e.to_string(),
                };
                outcome
                    .unpublishable
                    .push(Unpublishable { publish, failure });
            }
            Err(e) => {
                warn!(publish = %publish.describe(), error = %e, "publish failed; will retry");
                outcome.retry.push(publish);
            }
        }
    }
    let (publishes, acks): (Vec<Publish>, Vec<_>) = pending.into_iter().unzip();
    for (publish, acked) in publishes
        .into_iter()
        .zip(join_all(acks.into_iter().map(IntoFuture::into_future)).await)
    {
        if let Err(e) = acked {
            warn!(publish = %publish.describe(), error = %e, "publish not acknowledged; will retry");
            outcome.retry.push(publish);
        }
    }
    outcome
}
