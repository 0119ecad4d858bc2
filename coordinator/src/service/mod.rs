//! The coordinator service: the thin I/O layer around the [`Scheduler`].
//!
//! One owner loop holds the scheduler and the event log. Pumps ([`intake`]) feed it results,
//! heartbeats and API requests through a channel; timers and liveness add inputs of their own.
//! For each batch the loop steps every input through [`Scheduler::step`], commits the inputs
//! and decisions in one write transaction, and only then carries out the steps' effects:
//! arms timers, publishes assignments and dead letters, tells workers to stop attempts, acks
//! the results that caused them, and answers requests.
//!
//! # Layout
//! - `intake`: the pumps. `liveness`: heartbeats to worker inputs. `timers`: retries and
//!   deadlines. `ledger`: publishes owed until the broker acks them. `effects`: publishing.
//!   `requests`: the operator API. `error`: what stops the coordinator. `failpoint`: crash
//!   points for fault tests (feature `failpoints`).
//! - Recovery is [`crate::recovery`], a pure function of the log.

mod effects;
mod error;
mod failpoint;
mod intake;
mod ledger;
mod liveness;
mod requests;
mod timers;

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, debug, error, info, info_span, warn};
use workforce_shared::jetstream::{declare_streams, results_consumer};
use workforce_shared::runtime;
use workforce_shared::{EventSeq, Subjects, encode};

use crate::api::{ApiResponse, Reply, Request};
use crate::config::CoordinatorConfig;
use crate::log::{Event, EventLog};
use crate::recovery::{DeadlineRule, recover};
use crate::scheduler::{Decision, Effect, Fate, Input, SEMANTICS_VERSION, Scheduler, Timer};
use effects::Publish;
pub use error::CoordinatorError;
use failpoint::Failpoint;
use intake::Intake;
pub use intake::IntakeError;
use ledger::Ledger;
use liveness::Liveness;
use timers::Timers;

/// Bound on a plain publish (an ack, a reply, a stop request): during a broker outage the
/// client's queue fills, and the owner loop must not wait on it forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A send that failed or did not finish in time.
#[derive(Debug)]
enum SendError<E> {
    Failed(E),
    TimedOut,
}

impl<E: Display> Display for SendError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Failed(e) => e.fmt(f),
            SendError::TimedOut => write!(f, "not sent within {SEND_TIMEOUT:?}"),
        }
    }
}

async fn bounded<E>(send: impl Future<Output = Result<(), E>>) -> Result<(), SendError<E>> {
    match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(result) => result.map_err(SendError::Failed),
        Err(_) => Err(SendError::TimedOut),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a batch owes once it is committed.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<Event>,
    effects: Vec<Effect>,
    /// Results to acknowledge once committed: acked, or terminated when ignored.
    acks: Vec<(jetstream::Message, AckKind)>,
    replies: Vec<(async_nats::Subject, ApiResponse)>,
    /// Queries, answered from the state after the batch is applied.
    queries: Vec<(async_nats::Subject, Request)>,
}

#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    subjects: Subjects,
    client: async_nats::Client,
    js: jetstream::Context,
    results: PullConsumer,
    log: EventLog,
    scheduler: Scheduler,
    timers: Timers,
    liveness: Liveness,
    ledger: Ledger,
    /// Inputs the coordinator generated itself (its start, failed publishes), applied at
    /// start and on the next tick.
    deferred: Vec<Input>,
    failpoint: Failpoint,
}

impl Coordinator {
    /// Opens the event log (failing fast if another process holds it), recovers the state
    /// from it, connects to NATS and declares the streams.
    pub async fn open(config: CoordinatorConfig) -> Result<Self, CoordinatorError> {
        config.validate()?;
        let log = tokio::task::block_in_place(|| EventLog::open(&config.data))?;
        let contents = tokio::task::block_in_place(|| log.contents())?;
        let grace_ms = millis(config.attempt_grace);
        // Deadlines get their floor once connected (below): recovery itself does not wait.
        let rule = DeadlineRule {
            grace_ms,
            floor_ms: 0,
        };
        let recovered = recover(&contents.events, contents.effects_done, rule)?;
        let scheduler = recovered.scheduler;
        let mut ledger = Ledger::default();
        for effect in recovered.owed {
            match effect {
                Effect::Assign(a) => ledger.owe(Publish::Assign(a)),
                Effect::DeadLetter(d) => ledger.owe(Publish::DeadLetter(d)),
                Effect::AttemptEnded { .. }
                | Effect::ArmRetry { .. }
                | Effect::ArmRunDeadline { .. }
                | Effect::Stop(_) => {}
            }
        }
        info!(
            data = %config.data.display(),
            events = contents.events.len(),
            runs = scheduler.runs().len(),
            timers = recovered.timers.len(),
            owed = ledger.len(),
            semantics = SEMANTICS_VERSION,
            "event log recovered"
        );

        let servers = config.nats_servers()?;
        let client = runtime::connect(&servers, "workforce-coordinator").await?;
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(config.prefix.clone());
        declare_streams(&js, &subjects, &config.stream_settings()).await?;
        let results = results_consumer(&js, &subjects, config.results_ack_wait).await?;
        // A result stored while the coordinator was down comes back within the results ack
        // wait from now, when the broker is reachable again: read it before timing the
        // attempt out. Counted from here, not from the start, which may have waited for NATS.
        let floor_ms = now_ms()
            .saturating_add(millis(config.results_ack_wait))
            .saturating_add(grace_ms);
        let mut timers = Timers::default();
        for (due, timer) in recovered.timers {
            let due = match timer {
                Timer::Deadline { .. } => due.max(floor_ms),
                Timer::RetryDue { .. } | Timer::RunDeadline { .. } => due,
            };
            timers.arm(due, timer);
        }
        let liveness = Liveness::new(scheduler.workers(), config.worker_timeout, Instant::now());
        Ok(Self {
            config,
            subjects,
            client,
            js,
            results,
            log,
            scheduler,
            timers,
            liveness,
            ledger,
            deferred: vec![Input::CoordinatorStarted {
                semantics: SEMANTICS_VERSION,
            }],
            failpoint: Failpoint::from_env(),
        })
    }

    /// Serves until `shutdown` resolves: stops intake, lets the current batch finish, flushes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), CoordinatorError> {
        let span = info_span!("coordinator", prefix = %self.subjects.prefix());
        self.serve(shutdown).instrument(span).await
    }

    async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), CoordinatorError> {
        let (tx, mut rx) = mpsc::channel(4096);
        let mut pumps = JoinSet::new();
        let limit = self.config.max_message_bytes;
        let (client, subjects) = (&self.client, &self.subjects);
        pumps.spawn(intake::results(
            self.results.clone(),
            subjects.clone(),
            tx.clone(),
            limit,
        ));
        pumps.spawn(intake::heartbeats(
            client.clone(),
            subjects.clone(),
            tx.clone(),
            limit,
        ));
        pumps.spawn(intake::api(client.clone(), subjects.clone(), tx, limit));
        info!(nats = %self.config.nats_url, "coordinator running");
        let started = std::mem::take(&mut self.deferred);
        self.process(Vec::new(), started).await?;

        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let result = loop {
            let timer = self
                .timers
                .next_due()
                .map(|due| Instant::now() + Duration::from_millis(due.saturating_sub(now_ms())));
            let round = tokio::select! {
                () = &mut shutdown => break Ok(()),
                Some(ended) = pumps.join_next() => break Err(match ended {
                    Ok(Ok(())) => CoordinatorError::IntakeEnded,
                    Ok(Err(e)) => e.into(),
                    Err(e) => e.into(),
                }),
                item = rx.recv() => {
                    let Some(first) = item else { break Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < self.config.max_batch {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    self.process(batch, Vec::new()).await
                }
                () = sleep_until_opt(timer) => {
                    let inputs = self
                        .timers
                        .take_due(now_ms())
                        .into_iter()
                        .map(Timer::into_input)
                        .collect();
                    self.process(Vec::new(), inputs).await
                }
                _ = tick.tick() => self.tick().await,
            };
            if let Err(e) = round {
                break Err(e);
            }
        };
        pumps.abort_all();
        while pumps.join_next().await.is_some() {}
        if let Err(e) = bounded(self.client.flush()).await {
            warn!(error = %e, "could not flush the NATS connection");
        }
        match &result {
            Ok(()) => info!("coordinator stopped"),
            Err(e) => error!(error = %e, "coordinator stopped on an error"),
        }
        result
    }

    /// Every half second: inputs the coordinator owes itself, workers gone silent, and
    /// publishes that failed for now.
    async fn tick(&mut self) -> Result<(), CoordinatorError> {
        let mut inputs = std::mem::take(&mut self.deferred);
        inputs.extend(self.liveness.expired(Instant::now()));
        if !inputs.is_empty() {
            self.process(Vec::new(), inputs).await?;
        }
        self.settle_owed().await
    }

    /// Steps one input: the decisions and effects join the batch, the fate is returned.
    fn step(&mut self, input: Input, at_ms: u64, batch: &mut Batch) -> Fate {
        let step = self.scheduler.step(input);
        for decision in &step.decisions {
            trace(decision);
        }
        batch
            .events
            .extend(Event::of_step(at_ms, step.input, step.decisions));
        batch.effects.extend(step.effects);
        step.fate
    }

    /// Steps a batch, commits it, then carries out what it decided.
    async fn process(
        &mut self,
        items: Vec<Intake>,
        inputs: Vec<Input>,
    ) -> Result<(), CoordinatorError> {
        let at_ms = now_ms();
        let mut batch = Batch::default();
        for input in inputs {
            self.step(input, at_ms, &mut batch);
        }
        for item in items {
            match item {
                Intake::Result { result, message } => {
                    // A result the scheduler ignored (unknown, stale, duplicate) is
                    // terminated: recorded once, never redelivered.
                    let kind = match self.step(Input::ResultReceived { result }, at_ms, &mut batch)
                    {
                        Fate::Ignored(_) => AckKind::Term,
                        Fate::Applied | Fate::Rejected(_) => AckKind::Ack,
                    };
                    batch.acks.push((message, kind));
                }
                Intake::Heartbeat(hb) => {
                    if let Some(input) = self.liveness.heartbeat(hb, Instant::now()) {
                        self.step(input, at_ms, &mut batch);
                    }
                }
                Intake::Api { request, reply } => self.request(request, reply, at_ms, &mut batch),
            }
        }
        if !batch.events.is_empty() {
            self.failpoint.check(failpoint::BEFORE_COMMIT);
            let events = std::mem::take(&mut batch.events);
            let log = &mut self.log;
            let first = tokio::task::block_in_place(|| log.append(&events))?;
            debug!(first = %first, count = events.len(), "batch committed");
            self.failpoint.check(failpoint::AFTER_COMMIT);
        }
        // Committed: now act.
        let mut stops = Vec::new();
        let grace_ms = millis(self.config.attempt_grace);
        for effect in batch.effects {
            match effect {
                Effect::Assign(a) => {
                    let due = at_ms.saturating_add(a.timeout_ms).saturating_add(grace_ms);
                    let (run, task, attempt) = (a.run.clone(), a.task.clone(), a.attempt);
                    self.timers.arm(due, Timer::Deadline { run, task, attempt });
                    self.ledger.owe(Publish::Assign(a));
                }
                Effect::AttemptEnded { run, task, attempt } => {
                    self.ledger.attempt_ended(&run, &task, attempt);
                    self.timers.attempt_ended(run, task, attempt);
                }
                Effect::ArmRetry {
                    run,
                    task,
                    attempt,
                    delay_ms,
                } => {
                    let due = at_ms.saturating_add(delay_ms);
                    self.timers.arm(due, Timer::RetryDue { run, task, attempt });
                }
                Effect::ArmRunDeadline { run, delay_ms } => {
                    self.timers
                        .arm(at_ms.saturating_add(delay_ms), Timer::RunDeadline { run });
                }
                Effect::Stop(stop) => stops.push(stop),
                Effect::DeadLetter(letter) => self.ledger.owe(Publish::DeadLetter(letter)),
            }
        }
        self.settle_owed().await?;
        for stop in stops {
            match encode(&stop) {
                Ok(bytes) => {
                    let sent = self.client.publish(self.subjects.stop(), bytes.into());
                    if let Err(e) = bounded(sent).await {
                        warn!(error = %e, "could not tell workers to stop a timed-out attempt");
                    }
                }
                Err(e) => warn!(error = %e, "could not encode a stop request"),
            }
        }
        if !batch.acks.is_empty() {
            self.failpoint.check(failpoint::AFTER_PUBLISH);
        }
        for (message, kind) in batch.acks {
            if let Err(e) = bounded(message.ack_with(kind)).await {
                warn!(error = %e, "could not ack a result; the broker will redeliver it and it will be ignored as a duplicate");
            }
        }
        let now = Instant::now();
        for (reply, request) in batch.queries {
            let mut result = requests::query(&self.scheduler, request);
            // What heartbeats say is the service's to add, not the log's.
            if let Ok(Reply::Workers { workers }) = &mut result {
                for view in workers.iter_mut() {
                    view.live = self.liveness.live(&view.worker, now);
                }
            }
            batch.replies.push((reply, ApiResponse::new(result)));
        }
        let max_payload = self.client.server_info().max_payload;
        for (reply, response) in batch.replies {
            match requests::encode_reply(response, max_payload) {
                Ok(bytes) => {
                    if let Err(e) = bounded(self.client.publish(reply, bytes.into())).await {
                        warn!(error = %e, "could not answer an API request");
                    }
                }
                Err(e) => warn!(error = %e, "could not encode an API response"),
            }
        }
        Ok(())
    }

    /// Publishes what is owed. What can never be published becomes an input of its own,
    /// recorded on the next tick; what fails for now stays owed.
    async fn settle_owed(&mut self) -> Result<(), CoordinatorError> {
        if self.ledger.is_empty() {
            return Ok(());
        }
        // Workers decode assignments up to their own limit, like this one's.
        let limit = self
            .client
            .server_info()
            .max_payload
            .min(self.config.max_message_bytes);
        let published = effects::publish(&self.js, &self.subjects, limit, self.ledger.take()).await;
        let failed = self.ledger.settle(published);
        self.deferred.extend(failed);
        // Failures of unpublishable assignments are not committed yet: not done either.
        if self.ledger.is_empty() && self.deferred.is_empty() {
            let log = &mut self.log;
            let last = EventSeq(log.len());
            tokio::task::block_in_place(|| log.mark_effects_done(last))?;
        }
        Ok(())
    }
}

/// Logs a decision where operators look: what failed, what was dispatched, how runs end.
fn trace(decision: &Decision) {
    match decision {
        Decision::Dispatch {
            run, task, attempt, ..
        } => debug!(run_id = %run, task_id = %task, attempt = %attempt, "dispatch"),
        Decision::StopAttempt { run, task, attempt } => {
            warn!(run_id = %run, task_id = %task, attempt = %attempt, "attempt timed out; telling workers to stop it")
        }
        Decision::AttemptFailed {
            run,
            task,
            attempt,
            cause,
        } => {
            info!(run_id = %run, task_id = %task, attempt = %attempt, cause = %cause, "attempt failed")
        }
        Decision::RetryScheduled {
            run,
            task,
            attempt,
            delay_ms,
        } => info!(run_id = %run, task_id = %task, attempt = %attempt, delay_ms, "retry scheduled"),
        Decision::DeadLettered {
            run,
            task,
            attempts,
        } => warn!(run_id = %run, task_id = %task, attempts, "task dead-lettered"),
        Decision::RunAccepted {
            run,
            tasks,
            semantics,
        } => info!(run_id = %run, tasks, semantics, "run accepted"),
        Decision::RunFinished { run, outcome } => {
            info!(run_id = %run, outcome = ?outcome, "run finished")
        }
        Decision::ResultIgnored {
            run,
            task,
            attempt,
            reason,
        } => {
            info!(run_id = %run, task_id = %task, attempt = %attempt, reason = ?reason, "result ignored")
        }
        Decision::InputRejected { rejection } => warn!(rejection = %rejection, "input rejected"),
        Decision::UsageCharged {
            run,
            task,
            attempt,
            usage,
            reported,
        } => {
            debug!(run_id = %run, task_id = %task, attempt = %attempt, ?usage, reported, "usage charged")
        }
        Decision::TaskRedriven {
            run,
            task,
            attempt,
            redrives,
        } => info!(run_id = %run, task_id = %task, attempt = %attempt, redrives, "task redriven"),
        Decision::TaskEscalated {
            run,
            task,
            rung,
            attempt,
        } => warn!(run_id = %run, task_id = %task, rung, attempt = %attempt, "task escalated"),
        Decision::TaskRestored { run, task } => {
            info!(run_id = %run, task_id = %task, "task restored by a redrive")
        }
        Decision::RunReopened { run } => info!(run_id = %run, "run reopened by a redrive"),
        Decision::Paused { scope } => info!(scope = %scope, "paused"),
        Decision::Resumed { scope } => info!(scope = %scope, "resumed"),
        Decision::TasksSpawned { run, parent, tasks } => {
            info!(run_id = %run, task_id = %parent, spawned = tasks.len(), "tasks spawned")
        }
        Decision::TaskSkipped { run, task, reason } => {
            info!(run_id = %run, task_id = %task, reason = %reason, "task skipped")
        }
        Decision::TaskReady { .. }
        | Decision::TaskCompleted { .. }
        | Decision::TaskCanceled { .. } => {}
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
