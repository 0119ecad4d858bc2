//! The coordinator service: the thin I/O layer around the [`Scheduler`].
//!
//! One owner loop holds the scheduler and the event log. Pumps ([`intake`]) feed it results,
//! heartbeats and API requests through a channel. For each batch the loop applies every input,
//! commits inputs and decisions in one write transaction, and only then acts: publishes
//! assignments and dead letters, arms retry timers, acks the results that caused them, and
//! answers requests.

mod effects;
mod failpoint;
mod intake;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, info_span, warn};
use workforce_shared::jetstream::{TransportError, declare_streams, results_consumer};
use workforce_shared::{
    Attempt, Outcome, PROTOCOL_VERSION, Plan, PlanLimits, RunId, Subjects, TaskId, TaskResult,
    WorkerId, WorkerState, encode,
};

use crate::api::{ApiError, ApiErrorKind, ApiResponse, Reply, Request};
use crate::config::CoordinatorConfig;
use crate::log::{Entry, Event, EventLog, LogError};
use crate::replay::{ReplayError, replay};
use crate::scheduler::{COORDINATOR, Decision, Input, Scheduler, WorkerLeftReason};
use effects::Effect;
use failpoint::Failpoint;
use intake::Intake;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "the event log does not replay with this build's scheduler, so its state cannot be rebuilt: {0}"
    )]
    Recovery(#[source] ReplayError),
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("an intake task failed: {0}")]
    Intake(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    /// A retry's backoff has elapsed.
    RetryDue,
    /// A dispatched attempt's timeout (plus grace) has elapsed.
    Deadline,
}

type Timer = (TimerKind, RunId, TaskId, Attempt);

/// Timers, by due time (Unix ms) then insertion order.
#[derive(Debug, Default)]
struct Timers {
    due: BTreeMap<(u64, u64), Timer>,
    order: u64,
}

impl Timers {
    fn insert(&mut self, due_ms: u64, timer: Timer) {
        self.order += 1;
        self.due.insert((due_ms, self.order), timer);
    }

    fn next_due(&self) -> Option<u64> {
        self.due.keys().next().map(|(due, _)| *due)
    }

    fn take_due(&mut self, now_ms: u64) -> Vec<Timer> {
        let later = self.due.split_off(&(now_ms + 1, 0));
        std::mem::replace(&mut self.due, later)
            .into_values()
            .collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Longest heartbeat interval believed; a worker silent for three of these is gone.
const MAX_HEARTBEAT_MS: u64 = 60_000;

/// Bound on a plain publish (an ack, a reply, a stop request): during a broker outage the
/// client's queue fills, and the owner loop must not wait on it forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<E: std::fmt::Display>(
    send: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not sent within {SEND_TIMEOUT:?}")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// What a batch owes once it is committed.
#[derive(Debug, Default)]
struct Pending {
    events: Vec<Event>,
    effects: Vec<Effect>,
    /// Results to acknowledge once committed: acked, or terminated when the log rejected them.
    acks: Vec<(jetstream::Message, AckKind)>,
    replies: Vec<(async_nats::Subject, ApiResponse)>,
    /// Queries, answered from the state after the batch is applied.
    queries: Vec<(async_nats::Subject, Request)>,
    timers: Vec<(u64, Timer)>,
    /// Attempts to tell workers to stop (best effort: a worker's own timeout is the backstop).
    stops: Vec<workforce_shared::StopAttempt>,
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
    /// When each live worker is next due to be heard from.
    liveness: BTreeMap<WorkerId, Instant>,
    /// Publishes that failed for now, retried on every tick.
    owed: Vec<Effect>,
    /// Inputs the coordinator generated itself (its start, failures of unpublishable
    /// assignments), applied at start and on the next tick.
    deferred: Vec<Input>,
    failpoint: Failpoint,
}

impl Coordinator {
    /// Opens the event log (failing fast if another process holds it), rebuilds the state by
    /// replaying it, connects to NATS and declares the streams.
    pub async fn open(config: CoordinatorConfig) -> Result<Self, CoordinatorError> {
        config.validate()?;
        let log = tokio::task::block_in_place(|| EventLog::open(&config.data))?;
        let events = tokio::task::block_in_place(|| log.read_all())?;
        let effects_done = log.effects_done()?;
        let report = replay(&events, None).map_err(CoordinatorError::Recovery)?;
        let scheduler = report.scheduler;
        info!(
            data = %config.data.display(),
            events = events.len(),
            runs = scheduler.runs().len(),
            "event log replayed"
        );

        // Timers of tasks still backing off, and dead letters that may not have been published.
        let backing_off: BTreeSet<(RunId, TaskId, Attempt)> =
            scheduler.backing_off().into_iter().collect();
        let running: BTreeSet<(RunId, TaskId, Attempt)> = scheduler.running().into_iter().collect();
        let restart_floor = now_ms()
            .saturating_add(millis(config.results_ack_wait))
            .saturating_add(millis(config.attempt_grace));
        let mut timers = Timers::default();
        let mut owed = Vec::new();
        for (seq, event) in &events {
            match &event.entry {
                Entry::Decision(Decision::RetryScheduled {
                    run,
                    task,
                    attempt,
                    delay_ms,
                }) => {
                    let key = (run.clone(), task.clone(), *attempt);
                    if backing_off.contains(&key) {
                        timers.insert(
                            event.at_ms.saturating_add(*delay_ms),
                            (TimerKind::RetryDue, key.0, key.1, key.2),
                        );
                    }
                }
                Entry::Decision(Decision::Dispatch {
                    run, task, attempt, ..
                }) => {
                    let key = (run.clone(), task.clone(), *attempt);
                    if running.contains(&key) {
                        // A result stored while the coordinator was down comes back within
                        // the results ack wait: read it before timing the attempt out.
                        let due = Self::deadline(&config, &scheduler, event.at_ms, run, task)
                            .max(restart_floor);
                        timers.insert(due, (TimerKind::Deadline, key.0, key.1, key.2));
                        // Published already if its effects were marked done; the broker's
                        // dedupe window may be over, so do not publish it again.
                        if *seq > effects_done
                            && let Some(a) = scheduler.assignment(run, task, *attempt)
                        {
                            owed.push(Effect::Assign(a));
                        }
                    }
                }
                Entry::Decision(Decision::DeadLettered { run, task, .. })
                    if *seq > effects_done =>
                {
                    if let Some(letter) = scheduler.dead_letter(run, task) {
                        owed.push(Effect::DeadLetter(letter));
                    }
                }
                Entry::Input(_) | Entry::Decision(_) => {}
            }
        }

        let client = async_nats::ConnectOptions::new()
            .name("workforce-coordinator")
            .retry_on_initial_connect()
            .connect(&config.nats_url)
            .await
            .map_err(|e| CoordinatorError::Connect {
                url: config.nats_url.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let subjects = Subjects::new(config.prefix.clone());
        declare_streams(&js, &subjects, &config.stream_settings()).await?;
        let results = results_consumer(&js, &subjects, config.results_ack_wait).await?;
        let deadline = Instant::now() + config.worker_timeout;
        let liveness = scheduler
            .known_workers()
            .map(|w| (w.clone(), deadline))
            .collect();
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
            owed,
            deferred: vec![Input::CoordinatorStarted],
            failpoint: Failpoint::from_env(),
        })
    }

    /// When the coordinator gives up on an attempt dispatched at `at_ms`.
    fn deadline(
        config: &CoordinatorConfig,
        scheduler: &Scheduler,
        at_ms: u64,
        run: &RunId,
        task: &TaskId,
    ) -> u64 {
        let timeout = scheduler.timeout_ms(run, task).unwrap_or(0);
        at_ms
            .saturating_add(timeout)
            .saturating_add(millis(config.attempt_grace))
    }

    /// Serves until `shutdown` resolves: stops intake, lets the current batch finish, flushes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), CoordinatorError> {
        let span = info_span!("coordinator", prefix = %self.subjects.prefix());
        let _enter = span.enter();
        let (tx, mut rx) = mpsc::channel(4096);
        let mut pumps = JoinSet::new();
        let limit = self.config.max_message_bytes;
        pumps.spawn(intake::results(
            self.results.clone(),
            self.subjects.clone(),
            tx.clone(),
            limit,
        ));
        pumps.spawn(intake::heartbeats(
            self.client.clone(),
            self.subjects.clone(),
            tx.clone(),
            limit,
        ));
        pumps.spawn(intake::api(
            self.client.clone(),
            self.subjects.clone(),
            tx,
            limit,
        ));
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
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                Some(ended) = pumps.join_next() => {
                    let why = match ended {
                        Ok(Ok(())) => "an intake stream ended".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("an intake task panicked or was aborted: {e}"),
                    };
                    break Err(CoordinatorError::Intake(why));
                }
                item = rx.recv() => {
                    let Some(first) = item else { break Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < self.config.max_batch {
                        match rx.try_recv() {
                            Ok(item) => batch.push(item),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.process(batch, Vec::new()).await {
                        break Err(e);
                    }
                }
                () = sleep_until_opt(timer) => {
                    let inputs = self
                        .timers
                        .take_due(now_ms())
                        .into_iter()
                        .filter_map(|(kind, run, task, attempt)| match kind {
                            TimerKind::RetryDue => Some(Input::RetryDue { run, task, attempt }),
                            // Only worth recording while that attempt still runs.
                            TimerKind::Deadline => self
                                .scheduler
                                .is_running(&run, &task, attempt)
                                .then_some(Input::AttemptTimedOut { run, task, attempt }),
                        })
                        .collect();
                    if let Err(e) = self.process(Vec::new(), inputs).await {
                        break Err(e);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let mut inputs = std::mem::take(&mut self.deferred);
                    let expired: Vec<WorkerId> = self
                        .liveness
                        .iter()
                        .filter(|(_, due)| **due <= now)
                        .map(|(w, _)| w.clone())
                        .collect();
                    for worker in expired {
                        warn!(worker = %worker, "no heartbeat from worker; counting it as gone");
                        self.liveness.remove(&worker);
                        inputs.push(Input::WorkerLeft { worker, reason: WorkerLeftReason::HeartbeatsStopped });
                    }
                    if !inputs.is_empty()
                        && let Err(e) = self.process(Vec::new(), inputs).await
                    {
                        break Err(e);
                    }
                    if let Err(e) = self.settle_owed().await {
                        break Err(e);
                    }
                }
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

    /// Applies a batch, commits it, then carries out what it decided.
    async fn process(
        &mut self,
        items: Vec<Intake>,
        inputs: Vec<Input>,
    ) -> Result<(), CoordinatorError> {
        let at_ms = now_ms();
        let mut pending = Pending::default();
        for input in inputs {
            self.apply(input, at_ms, &mut pending);
        }
        for item in items {
            match item {
                Intake::Result { result, message } => {
                    let at = self.apply(Input::ResultReceived { result }, at_ms, &mut pending);
                    // A result the scheduler ignored (unknown, stale, duplicate) is terminated:
                    // recorded once, never redelivered.
                    let ignored = matches!(
                        pending.events.get(at + 1).map(|e| &e.entry),
                        Some(Entry::Decision(Decision::ResultIgnored { .. }))
                    );
                    let kind = if ignored { AckKind::Term } else { AckKind::Ack };
                    pending.acks.push((message, kind));
                }
                Intake::Heartbeat(hb) => {
                    if let Some(input) = self.heartbeat(hb) {
                        self.apply(input, at_ms, &mut pending);
                    }
                }
                Intake::Api { request, reply } => self.request(request, reply, at_ms, &mut pending),
            }
        }
        if !pending.events.is_empty() {
            self.failpoint.check(failpoint::BEFORE_COMMIT);
            let events = std::mem::take(&mut pending.events);
            let log = &mut self.log;
            let first = tokio::task::block_in_place(|| log.append(&events))?;
            debug!(first = %first, count = events.len(), "batch committed");
            self.failpoint.check(failpoint::AFTER_COMMIT);
        }
        // Committed: now act.
        for (due, timer) in pending.timers {
            self.timers.insert(due, timer);
        }
        self.owed.append(&mut pending.effects);
        self.settle_owed().await?;
        for stop in pending.stops {
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
        if !pending.acks.is_empty() {
            self.failpoint.check(failpoint::AFTER_PUBLISH);
        }
        for (message, kind) in pending.acks {
            if let Err(e) = bounded(message.ack_with(kind)).await {
                warn!(error = %e, "could not ack a result; the broker will redeliver it and it will be ignored as a duplicate");
            }
        }
        for (reply, request) in pending.queries {
            let response = ApiResponse::new(self.query(request));
            pending.replies.push((reply, response));
        }
        let max_payload = self.client.server_info().max_payload;
        for (reply, response) in pending.replies {
            match encode_reply(response, max_payload) {
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

    /// Applies one input and records it, its decisions and what they owe. Returns the
    /// position of the input's event in the batch.
    fn apply(&mut self, input: Input, at_ms: u64, pending: &mut Pending) -> usize {
        let decisions = self.scheduler.apply(&input);
        let position = pending.events.len();
        pending.events.push(Event {
            at_ms,
            entry: Entry::Input(input),
        });
        for decision in decisions {
            match &decision {
                Decision::Dispatch {
                    run, task, attempt, ..
                } => {
                    debug!(run_id = %run, task_id = %task, attempt = %attempt, "dispatch");
                    if let Some(a) = self.scheduler.assignment(run, task, *attempt) {
                        pending.effects.push(Effect::Assign(a));
                    }
                    let due = Self::deadline(&self.config, &self.scheduler, at_ms, run, task);
                    pending.timers.push((
                        due,
                        (TimerKind::Deadline, run.clone(), task.clone(), *attempt),
                    ));
                }
                Decision::StopAttempt { run, task, attempt } => {
                    warn!(run_id = %run, task_id = %task, attempt = %attempt, "attempt timed out; telling workers to stop it");
                    pending.stops.push(workforce_shared::StopAttempt {
                        v: PROTOCOL_VERSION,
                        run: run.clone(),
                        task: task.clone(),
                        attempt: *attempt,
                    });
                }
                Decision::RetryScheduled {
                    run,
                    task,
                    attempt,
                    delay_ms,
                } => {
                    info!(run_id = %run, task_id = %task, attempt = %attempt, delay_ms, "retry scheduled");
                    pending.timers.push((
                        at_ms.saturating_add(*delay_ms),
                        (TimerKind::RetryDue, run.clone(), task.clone(), *attempt),
                    ));
                }
                Decision::DeadLettered {
                    run, task, error, ..
                } => {
                    warn!(run_id = %run, task_id = %task, error = %error, "task dead-lettered");
                    if let Some(letter) = self.scheduler.dead_letter(run, task) {
                        pending.effects.push(Effect::DeadLetter(letter));
                    }
                }
                Decision::RunAccepted { run, tasks } => info!(run_id = %run, tasks, "run accepted"),
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
                Decision::InputRejected { reason } => warn!(reason = %reason, "input rejected"),
                Decision::TaskCompleted { .. } | Decision::TaskCanceled { .. } => {}
            }
            pending.events.push(Event {
                at_ms,
                entry: Entry::Decision(decision),
            });
        }
        position
    }

    /// Turns a heartbeat into an input when it changes what the scheduler knows.
    fn heartbeat(&mut self, hb: workforce_shared::Heartbeat) -> Option<Input> {
        let known = self.scheduler.known_workers().any(|w| *w == hb.worker);
        match hb.state {
            WorkerState::Ready => {
                // Announced as a set: order and repeats are not a change.
                let mut capabilities = hb.capabilities;
                capabilities.sort();
                capabilities.dedup();
                // Clamped: a worker claiming a huge interval must still expire.
                let grace =
                    Duration::from_millis(hb.interval_ms.min(MAX_HEARTBEAT_MS).saturating_mul(3))
                        .max(self.config.worker_timeout);
                self.liveness
                    .insert(hb.worker.clone(), Instant::now() + grace);
                if self
                    .scheduler
                    .worker_matches(&hb.worker, &capabilities, hb.concurrency)
                {
                    return None;
                }
                info!(worker = %hb.worker, concurrency = hb.concurrency, capabilities = ?capabilities, "worker joined");
                Some(Input::WorkerJoined {
                    worker: hb.worker,
                    capabilities,
                    concurrency: hb.concurrency,
                })
            }
            WorkerState::Draining | WorkerState::Stopped => {
                self.liveness.remove(&hb.worker);
                if !known {
                    return None;
                }
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

    fn request(
        &mut self,
        request: Request,
        reply: Option<async_nats::Subject>,
        at_ms: u64,
        pending: &mut Pending,
    ) {
        let answer = |pending: &mut Pending, result: Result<Reply, ApiError>| {
            if let Some(reply) = reply.clone() {
                pending.replies.push((reply, ApiResponse::new(result)));
            }
        };
        match request {
            Request::Submit { source, format } => {
                let limits = PlanLimits {
                    max_input_bytes: self.config.max_input_bytes,
                };
                match Plan::parse(&source, format, &limits) {
                    Err(e) => answer(
                        pending,
                        Err(ApiError::new(ApiErrorKind::InvalidPlan, e.to_string())),
                    ),
                    Ok(plan) => match self.new_run_id(at_ms) {
                        Ok(run) => {
                            self.apply(
                                Input::RunSubmitted {
                                    run: run.clone(),
                                    plan,
                                },
                                at_ms,
                                pending,
                            );
                            answer(pending, Ok(Reply::Submitted { run }));
                        }
                        Err(e) => answer(pending, Err(e)),
                    },
                }
            }
            Request::Cancel { run } => {
                if !self.scheduler.has_run(&run) {
                    return answer(pending, Err(not_found(&run)));
                }
                let at = self.apply(Input::CancelRequested { run: run.clone() }, at_ms, pending);
                match pending.events.get(at + 1).map(|e| &e.entry) {
                    Some(Entry::Decision(Decision::InputRejected { reason })) => answer(
                        pending,
                        Err(ApiError::new(ApiErrorKind::BadRequest, reason.clone())),
                    ),
                    _ => answer(pending, Ok(Reply::CancelRequested { run })),
                }
            }
            query @ (Request::Status { .. } | Request::Runs | Request::Workers) => {
                if let Some(reply) = reply {
                    pending.queries.push((reply, query));
                }
            }
        }
    }

    fn query(&self, request: Request) -> Result<Reply, ApiError> {
        match request {
            Request::Status { run } => self
                .scheduler
                .run_view(&run)
                .map(|view| Reply::Status { view })
                .ok_or_else(|| not_found(&run)),
            Request::Runs => Ok(Reply::Runs {
                runs: self.scheduler.runs(),
            }),
            Request::Workers => Ok(Reply::Workers {
                workers: self.scheduler.workers(),
            }),
            Request::Submit { .. } | Request::Cancel { .. } => Err(ApiError::new(
                ApiErrorKind::Internal,
                "a command was queued as a query",
            )),
        }
    }

    fn new_run_id(&self, at_ms: u64) -> Result<RunId, ApiError> {
        let mut n = at_ms;
        loop {
            let run = RunId::new(format!("run-{}", base36(n)))
                .map_err(|e| ApiError::new(ApiErrorKind::Internal, e.to_string()))?;
            if !self.scheduler.has_run(&run) {
                return Ok(run);
            }
            n += 1;
        }
    }

    /// Publishes what is owed. What cannot be published fails its task (an input of its own,
    /// recorded like any other); what fails for now stays owed.
    async fn settle_owed(&mut self) -> Result<(), CoordinatorError> {
        if self.owed.is_empty() {
            return Ok(());
        }
        // An assignment whose attempt timed out or was canceled meanwhile is owed no more.
        let owed: Vec<Effect> = std::mem::take(&mut self.owed)
            .into_iter()
            .filter(|effect| match effect {
                Effect::Assign(a) => self.scheduler.is_running(&a.run, &a.task, a.attempt),
                Effect::DeadLetter(_) => true,
            })
            .collect();
        // Workers decode assignments up to their own limit, like this one's.
        let limit = self
            .client
            .server_info()
            .max_payload
            .min(self.config.max_message_bytes);
        let outcome = effects::publish(&self.js, &self.subjects, limit, owed).await;
        self.owed = outcome.retry;
        for bad in outcome.unpublishable {
            match bad.effect {
                Effect::Assign(a) => {
                    error!(reason = %bad.reason, "cannot publish an assignment; failing its task");
                    self.deferred.push(Input::ResultReceived {
                        result: TaskResult {
                            v: PROTOCOL_VERSION,
                            run: a.run,
                            task: a.task,
                            attempt: a.attempt,
                            worker: WorkerId::sanitized(COORDINATOR),
                            outcome: Outcome::Failed {
                                error: bad.reason,
                                permanent: true,
                            },
                            duration_ms: 0,
                        },
                    });
                }
                // Too large with the task's data: send it without, once. The log keeps all.
                Effect::DeadLetter(mut letter)
                    if !letter.last_assignment.upstream.is_empty()
                        || !letter
                            .last_assignment
                            .input
                            .as_str()
                            .is_some_and(|s| s.starts_with("omitted: ")) =>
                {
                    warn!(reason = %bad.reason, "dead letter too large; sending it without the task's input and upstream outputs");
                    letter.last_assignment.upstream.clear();
                    letter.last_assignment.input = serde_json::Value::String(format!(
                        "omitted: {}; the coordinator's event log keeps it",
                        bad.reason
                    ));
                    self.owed.push(Effect::DeadLetter(letter));
                }
                Effect::DeadLetter(letter) => error!(
                    run_id = %letter.run,
                    task_id = %letter.task,
                    reason = %bad.reason,
                    "cannot publish a dead letter; the event log keeps the task's history"
                ),
            }
        }
        // Failures of unpublishable assignments are not committed yet: not done either.
        if self.owed.is_empty() && self.deferred.is_empty() {
            let log = &mut self.log;
            let last = workforce_shared::EventSeq(log.len());
            tokio::task::block_in_place(|| log.mark_effects_done(last))?;
        }
        Ok(())
    }
}

/// Encodes a reply that fits the broker's max payload: a status too large for it is sent
/// without task outputs (the results stream keeps them), anything else becomes an error.
fn encode_reply(
    response: ApiResponse,
    max_payload: usize,
) -> Result<Vec<u8>, workforce_shared::CodecError> {
    let bytes = encode(&response)?;
    if bytes.len() <= max_payload {
        return Ok(bytes);
    }
    let size = bytes.len();
    let slimmed = match response.result {
        Ok(Reply::Status { mut view }) => {
            for task in &mut view.tasks {
                task.output = None;
            }
            encode(&ApiResponse::new(Ok(Reply::Status { view })))?
        }
        _ => Vec::new(),
    };
    if !slimmed.is_empty() && slimmed.len() <= max_payload {
        return Ok(slimmed);
    }
    encode(&ApiResponse::new(Err(ApiError::new(
        ApiErrorKind::Internal,
        format!("the reply is {size} bytes, over the broker's max payload of {max_payload} bytes"),
    ))))
}

fn not_found(run: &RunId) -> ApiError {
    ApiError::new(ApiErrorKind::NotFound, format!("no run {run}"))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
