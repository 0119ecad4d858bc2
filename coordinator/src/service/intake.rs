//! The pumps that feed the coordinator's single owner loop: results from JetStream, worker
//! heartbeats and API requests from core NATS. Each decodes and checks what it receives; what
//! fails is logged once and terminated (results) or answered with an error (requests), never
//! passed on and never redelivered forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use workforce_shared::{Heartbeat, RESULT_VERSION, Subjects, TaskResult, decode, encode};

use crate::api::{ApiError, ApiErrorKind, ApiRequest, ApiResponse, Request};

/// Messages rejected so far, over every subject: logged with each rejection.
static REJECTED: AtomicU64 = AtomicU64::new(0);

fn rejected() -> u64 {
    REJECTED.fetch_add(1, Ordering::Relaxed) + 1
}

/// One thing for the owner loop to act on.
// Results dominate the channel; boxing them would add an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Intake {
    /// A decoded result; the message is acked only after the batch holding it is committed.
    Result {
        result: TaskResult,
        message: jetstream::Message,
    },
    Heartbeat(Heartbeat),
    Api {
        request: Request,
        reply: Option<async_nats::Subject>,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// Pulls results. Reopens the message stream if it ends (the broker restarted, say).
pub(super) async fn results(
    consumer: PullConsumer,
    subjects: Subjects,
    tx: mpsc::Sender<Intake>,
    max_bytes: usize,
) -> Result<(), IntakeError> {
    let mut reopened = false;
    loop {
        if reopened {
            // The stream ended (the broker restarted, say): do not spin while it comes back.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        reopened = true;
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot pull results; retrying");
                continue;
            }
        };
        while let Some(next) = messages.next().await {
            let message = match next {
                Ok(m) => m,
                Err(e) => {
                    debug!(error = %e, "results pull interrupted");
                    continue;
                }
            };
            let problem = match accept_result(
                &message.payload,
                message.subject.as_str(),
                &subjects,
                max_bytes,
            ) {
                Ok(result) => {
                    if tx.send(Intake::Result { result, message }).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                Err(problem) => problem,
            };
            warn!(subject = %message.subject, problem = %problem, rejected_total = rejected(), "rejecting message on the results stream");
            if let Err(e) = message.ack_with(AckKind::Term).await {
                warn!(error = %e, "could not terminate a rejected result");
            }
        }
    }
}

/// A result as it arrived on `subject`, or what is wrong with it: undecodable, misaddressed, or
/// a version 1 result carrying what only version 2 may.
fn accept_result(
    payload: &[u8],
    subject: &str,
    subjects: &Subjects,
    max_bytes: usize,
) -> Result<TaskResult, String> {
    let result = decode::<TaskResult>(payload, max_bytes).map_err(|e| e.to_string())?;
    if subject != subjects.result(&result.run, &result.task) {
        return Err(format!(
            "result for run {} task {} arrived on the wrong subject",
            result.run, result.task
        ));
    }
    // A field newer than the version it came with: refused, not half read.
    if result.v < result.version() {
        let what = if result.usage.is_some() && result.v < RESULT_VERSION {
            "usage, which needs protocol version 3"
        } else {
            "spawn or branch, which need protocol version 2"
        };
        return Err(format!("a version {} result carries {what}", result.v));
    }
    Ok(result)
}

async fn subscribe(
    client: &async_nats::Client,
    subject: String,
) -> Result<async_nats::Subscriber, IntakeError> {
    client
        .subscribe(subject.clone())
        .await
        .map_err(|source| IntakeError::Subscribe { subject, source })
}

pub(super) async fn heartbeats(
    client: async_nats::Client,
    subjects: Subjects,
    tx: mpsc::Sender<Intake>,
    max_bytes: usize,
) -> Result<(), IntakeError> {
    let mut sub = subscribe(&client, subjects.all_heartbeats()).await?;
    while let Some(message) = sub.next().await {
        match decode::<Heartbeat>(&message.payload, max_bytes) {
            Ok(hb) if message.subject.as_str() == subjects.heartbeat(&hb.worker) => {
                if tx.send(Intake::Heartbeat(hb)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(hb) => {
                warn!(subject = %message.subject, worker = %hb.worker, rejected_total = rejected(), "ignoring a heartbeat on another worker's subject")
            }
            Err(e) => {
                warn!(subject = %message.subject, problem = %e, rejected_total = rejected(), "ignoring a malformed heartbeat")
            }
        }
    }
    Ok(())
}

pub(super) async fn api(
    client: async_nats::Client,
    subjects: Subjects,
    tx: mpsc::Sender<Intake>,
    max_bytes: usize,
) -> Result<(), IntakeError> {
    let mut sub = subscribe(&client, subjects.all_api()).await?;
    while let Some(message) = sub.next().await {
        match decode::<ApiRequest>(&message.payload, max_bytes) {
            Ok(ApiRequest { request, .. })
                if message.subject.as_str() == subjects.api(request.verb()) =>
            {
                let reply = message.reply.clone();
                if tx.send(Intake::Api { request, reply }).await.is_err() {
                    return Ok(());
                }
            }
            decoded => {
                let problem = match decoded {
                    Ok(_) => "request sent on another verb's subject".to_owned(),
                    Err(e) => e.to_string(),
                };
                warn!(subject = %message.subject, problem = %problem, rejected_total = rejected(), "rejecting an API request");
                if let Some(reply) = message.reply {
                    let response =
                        ApiResponse::new(Err(ApiError::new(ApiErrorKind::BadRequest, problem)));
                    if let Ok(bytes) = encode(&response)
                        && let Err(e) = client.publish(reply, bytes.into()).await
                    {
                        warn!(error = %e, "could not answer a rejected API request");
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use workforce_shared::{
        Attempt, Outcome, PROTOCOL_VERSION, Prefix, RunId, SPAWN_VERSION, TaskId, WorkerId, encode,
    };

    use super::*;

    fn subjects() -> Subjects {
        Subjects::new(Prefix::new("intake").expect("prefix"))
    }

    fn result(v: u16, outcome: Outcome) -> TaskResult {
        TaskResult {
            v,
            run: RunId::new("r1").expect("run"),
            task: TaskId::new("t1").expect("task"),
            attempt: Attempt(1),
            worker: WorkerId::new("w1").expect("worker"),
            outcome,
            duration_ms: 3,
            usage: None,
        }
    }

    fn accept(result: &TaskResult) -> Result<TaskResult, String> {
        let subjects = subjects();
        let subject = subjects.result(&result.run, &result.task);
        accept_result(
            &encode(result).expect("encode"),
            &subject,
            &subjects,
            1 << 20,
        )
    }

    fn grows() -> Outcome {
        Outcome::Succeeded {
            output: json!(null),
            spawn: vec![json!({"id": "a", "capability": "c"})],
            branch: None,
        }
    }

    #[test]
    fn versions_1_2_and_3_are_read() {
        let plain = result(PROTOCOL_VERSION, Outcome::succeeded(json!(1)));
        assert_eq!(accept(&plain), Ok(plain));
        let v2 = result(SPAWN_VERSION, grows());
        assert_eq!(accept(&v2), Ok(v2));
        let mut v3 = result(RESULT_VERSION, Outcome::succeeded(json!(1)));
        v3.usage = Some(json!({"tokens": 5}));
        assert_eq!(accept(&v3), Ok(v3));
    }

    #[test]
    fn usage_in_a_result_older_than_version_3_is_refused() {
        for v in [PROTOCOL_VERSION, SPAWN_VERSION] {
            let mut r = result(v, grows());
            r.usage = Some(json!({"tokens": 5}));
            assert_eq!(
                accept(&r),
                Err(format!(
                    "a version {v} result carries usage, which needs protocol version 3"
                ))
            );
        }
    }

    #[test]
    fn a_version_1_result_that_grows_is_refused() {
        let branches = Outcome::Succeeded {
            output: json!(null),
            spawn: Vec::new(),
            branch: Some(Vec::new()),
        };
        for outcome in [grows(), branches] {
            assert_eq!(
                accept(&result(PROTOCOL_VERSION, outcome)),
                Err(
                    "a version 1 result carries spawn or branch, which need protocol version 2"
                        .to_owned()
                )
            );
        }
    }

    #[test]
    fn a_result_on_another_subject_is_refused() {
        let r = result(PROTOCOL_VERSION, Outcome::succeeded(json!(1)));
        let subjects = subjects();
        let other = subjects.result(&r.run, &TaskId::new("t2").expect("task"));
        let problem = accept_result(&encode(&r).expect("encode"), &other, &subjects, 1 << 20)
            .expect_err("misaddressed");
        assert!(problem.contains("wrong subject"), "{problem}");
    }
}
