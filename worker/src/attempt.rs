//! One attempt, from delivery to acknowledgement:
//! run the handler → store the result (broker-acknowledged, deduplicated by message id) →
//! acknowledge the assignment. The message is kept alive with progress acks throughout; if the
//! worker abandons the attempt (end of a drain) the message is handed back instead. If the
//! coordinator asks to stop the attempt, the handler is given its stop grace to stop, nothing
//! is reported and the message is terminated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, AckKind, Message};
use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use workforce_shared::{
    Attempt, Capability, Outcome, PROTOCOL_VERSION, RunId, StopAttempt, Subjects, TaskId,
    TaskResult, WorkerId,
};

use crate::backoff::Backoff;
use crate::breaker::Verdict;
use crate::handler::{Handler, TaskContext};
use crate::intake::{Delivery, hand_back, raised};
use crate::outcome::{Finished, invoke, seal};
use crate::stop::{StopRequester, StopSignal};

/// Bound on sending one progress ack: a stalled client must not stall the attempt.
const PROGRESS_SEND_TIMEOUT: Duration = Duration::from_secs(1);
const ACK_TRIES: u32 = 3;

/// How long past its stop grace a stopped handler may run before the worker drops it. Gives a
/// handler that honours the grace (like `CommandHandler`) the time to finish killing.
const STOP_SLACK: Duration = Duration::from_secs(1);

/// Room left in a message for the headers of a result.
const HEADER_ROOM: usize = 1024;

/// What every attempt needs, shared by all of them.
pub(crate) struct AttemptEnv {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) worker: WorkerId,
    pub(crate) handlers: BTreeMap<Capability, Arc<dyn Handler>>,
    /// A third of ack_wait.
    pub(crate) progress_every: Duration,
    pub(crate) max_deliveries: u32,
    /// Stop requests from the coordinator, for attempts it no longer counts (it timed them
    /// out, say).
    pub(crate) stops: broadcast::Sender<StopAttempt>,
    /// How long a handler has to stop once a stop is requested.
    pub(crate) stop_grace: Duration,
    pub(crate) max_message_bytes: usize,
}

impl std::fmt::Debug for AttemptEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptEnv")
            .field("worker", &self.worker)
            .field("capabilities", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What an attempt reported: its result is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reported {
    pub(crate) capability: Capability,
    /// Of the outcome as stored (sealing can turn a success too large to send into a failure).
    pub(crate) verdict: Verdict,
}

/// Runs one delivery to its end. `abandon` turning true means: stop now, hand the message back.
/// `Some` if a result was stored; `None` if the attempt was stopped or handed back.
pub(crate) async fn run(
    env: Arc<AttemptEnv>,
    delivery: Delivery,
    abandon: watch::Receiver<bool>,
    stops: broadcast::Receiver<StopAttempt>,
) -> Option<Reported> {
    let Delivery {
        message,
        assignment,
        permit,
    } = delivery;
    let mut abandon = abandon;
    let (run, task, attempt) = (
        assignment.run.clone(),
        assignment.task.clone(),
        assignment.attempt,
    );
    let capability = assignment.capability.clone();
    let started = Instant::now();
    tracing::info!(timeout_ms = assignment.timeout_ms, "attempt started");

    let delivered = message.info().map_or(1, |info| info.delivered);
    let stopped = stop_requested(stops, run.clone(), task.clone(), attempt);
    let finished = match env.handlers.get(&assignment.capability).cloned() {
        // Earlier deliveries never produced a result: the workers running it died or stalled.
        // Running it again would likely kill this one too.
        Some(_) if delivered > i64::from(env.max_deliveries) => Some(unrun(Outcome::Failed {
            error: format!(
                "attempt {attempt} was delivered {delivered} times without a result: the workers \
                 that ran it died or stalled (a poison task?); not running it again"
            ),
            permanent: false,
        })),
        Some(handler) => {
            let (requester, signal) = StopSignal::channel(env.stop_grace);
            let context = TaskContext::from(assignment).with_stop_signal(signal.clone());
            let work = run_until_stopped(handler, context, stopped, requester);
            match keep_alive(&message, env.progress_every, &mut abandon, work).await {
                Some(Some(finished)) => Some(finished),
                Some(None) => {
                    tracing::info!("stopped at the coordinator's request; reporting nothing");
                    terminate(&message).await;
                    return None;
                }
                // Abandoned at the end of a drain while stopping: handing it back would only
                // run it again for nothing.
                None if signal.is_requested() => {
                    terminate(&message).await;
                    return None;
                }
                None => None,
            }
        }
        // The coordinator sent a capability to a subject this worker consumes but has no
        // handler for: no retry on this worker can help.
        None => Some(unrun(Outcome::Failed {
            error: format!(
                "worker {} has no handler for capability {}",
                env.worker, assignment.capability
            ),
            permanent: true,
        })),
    };
    let Some(Finished { outcome, usage }) = finished else {
        hand_back(&message, "the worker stopped before the attempt finished").await;
        return None;
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let reported = usage.as_ref().map(tracing::field::display);
    match &outcome {
        Outcome::Succeeded { .. } => {
            tracing::info!(duration_ms, usage = reported, "attempt succeeded")
        }
        Outcome::Failed { error, permanent } => {
            tracing::info!(duration_ms, permanent, %error, usage = reported, "attempt failed")
        }
    }

    let mut result = TaskResult {
        v: PROTOCOL_VERSION,
        run: run.clone(),
        task: task.clone(),
        attempt,
        worker: env.worker.clone(),
        outcome,
        duration_ms,
        usage,
    };
    // The lowest version that holds it: a coordinator that reads only older versions still
    // reads a result that reports no usage (and neither spawns nor branches).
    result.v = result.version();
    // A result the server would refuse could never be stored: fit it to the server's limit too.
    let limit = env
        .max_message_bytes
        .min(env.client.max_payload().saturating_sub(HEADER_ROOM));
    let payload = match seal(&mut result, limit) {
        Ok(payload) => Bytes::from(payload),
        Err(error) => {
            tracing::error!(%error, "cannot encode the result");
            hand_back(&message, "the result could not be encoded").await;
            return None;
        }
    };
    let verdict = Verdict::of(&result.outcome);
    let subject = env.subjects.result(&run, &task);
    let msg_id = env.subjects.result_msg_id(&run, &task, attempt);
    let store = store_result(&env.jetstream, subject, msg_id, payload);
    if keep_alive(&message, env.progress_every, &mut abandon, store)
        .await
        .is_none()
    {
        hand_back(&message, "the worker stopped before the result was stored").await;
        return None;
    }
    acknowledge(&message).await;
    drop(permit);
    Some(Reported {
        capability,
        verdict,
    })
}

/// Declines a delivery whose attempt the coordinator asked to stop before it came (it failed
/// the attempt over, and this is its old assignment, redelivered): not run, nothing stored,
/// the assignment terminated.
pub(crate) async fn decline_stopped(delivery: Delivery) -> Option<Reported> {
    let Delivery {
        message,
        assignment,
        permit,
    } = delivery;
    tracing::info!(
        "attempt {} of task {} was stopped by the coordinator (superseded); not running it",
        assignment.attempt,
        assignment.task
    );
    terminate(&message).await;
    drop(permit);
    None
}

/// How an attempt the worker did not run ended: nothing used.
fn unrun(outcome: Outcome) -> Finished {
    Finished {
        outcome,
        usage: None,
    }
}

/// Runs the handler until it returns, or until `stopped`: then raises the handler's stop
/// signal and waits out its grace (and a little) for it to return, and drops it if it has not.
/// `None` if stopped: the coordinator no longer counts the attempt, so what it returns (and
/// reports using) is discarded.
async fn run_until_stopped(
    handler: Arc<dyn Handler>,
    task: TaskContext,
    stopped: impl Future<Output = ()>,
    requester: StopRequester,
) -> Option<Finished> {
    let grace = task.stop_signal().grace();
    let invoked = invoke(handler.as_ref(), task);
    tokio::pin!(invoked);
    tokio::select! {
        biased;
        finished = &mut invoked => return Some(finished),
        () = stopped => {}
    }
    requester.request();
    let stopping = tokio::time::timeout(grace.saturating_add(STOP_SLACK), invoked);
    if stopping.await.is_err() {
        tracing::warn!(
            stop_grace = %humantime::format_duration(grace),
            "the handler did not stop within its stop grace; dropped it"
        );
    }
    None
}

/// Terminates a stopped attempt's assignment: the coordinator has settled the attempt, so no
/// worker is to run it again.
async fn terminate(message: &Message) {
    if let Err(error) = message.ack_with(AckKind::Term).await {
        tracing::warn!(%error, "cannot terminate the stopped assignment");
    }
}

/// Resolves when the coordinator asks to stop this attempt.
async fn stop_requested(
    mut stops: broadcast::Receiver<StopAttempt>,
    run: RunId,
    task: TaskId,
    attempt: Attempt,
) {
    loop {
        match stops.recv().await {
            Ok(stop) if stop.run == run && stop.task == task && stop.attempt == attempt => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Drives `work` while sending progress acks every `every`, so JetStream does not redeliver
/// a message that is still being worked on. `None` if abandoned first.
async fn keep_alive<F: Future>(
    message: &Message,
    every: Duration,
    abandon: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return Some(output),
            () = raised(abandon) => return None,
            _ = ticks.tick() => {
                let progress = message.ack_with(AckKind::Progress);
                match tokio::time::timeout(PROGRESS_SEND_TIMEOUT, progress).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "cannot send a progress ack"),
                    Err(_) => tracing::debug!("timed out sending a progress ack"),
                }
            }
        }
    }
}

/// Publishes the result until the stream has stored it. The message id makes retries (and a
/// rerun of the same attempt elsewhere) store it once.
async fn store_result(js: &jetstream::Context, subject: String, msg_id: String, payload: Bytes) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut failures: u32 = 0;
    loop {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, msg_id.as_str());
        let error = match js
            .publish_with_headers(subject.clone(), headers, payload.clone())
            .await
        {
            Ok(stored) => match stored.await {
                Ok(ack) => {
                    if failures > 0 {
                        tracing::info!(failures, "result stored after retries");
                    }
                    tracing::debug!(
                        stream_seq = ack.sequence,
                        duplicate = ack.duplicate,
                        "result stored"
                    );
                    return;
                }
                Err(error) => error.to_string(),
            },
            Err(error) => error.to_string(),
        };
        failures += 1;
        let delay = backoff.next_delay();
        tracing::warn!(%error, failures, retry_in = ?delay, %subject, "cannot store the result; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Acknowledges the assignment, waiting for the server to confirm. If that keeps failing the
/// assignment is redelivered after ack_wait; its rerun's result is deduplicated by message id.
async fn acknowledge(message: &Message) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    for tries in 1..=ACK_TRIES {
        match message.double_ack().await {
            Ok(()) => return,
            Err(error) if tries == ACK_TRIES => tracing::warn!(
                %error,
                "cannot acknowledge the assignment (its result is stored); it will be \
                 redelivered after ack_wait and the repeated result deduplicated"
            ),
            Err(error) => {
                tracing::debug!(%error, tries, "cannot acknowledge the assignment; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
