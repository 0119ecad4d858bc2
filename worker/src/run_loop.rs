//! The loop a running worker is: the one owner of the in-flight attempts, the pull loops, the
//! circuit breakers and the heartbeat. Three phases: serve (until shutdown), drain (no intake;
//! attempts get the grace period, then are abandoned and hand their assignments back), finish
//! (last heartbeat).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tracing::Instrument;
use workforce_shared::{
    Capability, Heartbeat, HeldAttempt, Instance, StopAttempt, Subjects, WorkerState, decode,
};

use crate::attempt::{self, AttemptEnv, Reported};
use crate::breaker::{Breakers, Now};
use crate::clash;
use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::handler::Handler;
use crate::heartbeat::Heart;
use crate::intake::{Delivery, Puller, hand_back};
use crate::stop_memory::{REMEMBERED_STOPS, StopMemory};

/// After abandoning attempts at the end of a drain, how long they get to send their naks.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the final flush, so a worker cut off from NATS still exits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct RunLoop {
    client: async_nats::Client,
    env: Arc<AttemptEnv>,
    heart: Heart,
    ticks: Interval,
    attempts: JoinSet<Option<Reported>>,
    /// The attempt each task of `attempts` runs, from delivery until its result is stored or
    /// it is handed back: what heartbeats list, for the coordinator to fail over if this
    /// worker goes silent.
    held: BTreeMap<tokio::task::Id, HeldAttempt>,
    breakers: Breakers,
    /// Per capability, raised while its breaker is open: its pull loop waits.
    gates: BTreeMap<Capability, watch::Sender<bool>>,
    pullers: JoinSet<()>,
    puller_names: BTreeMap<tokio::task::Id, Capability>,
    /// Listens for twins (other processes with this worker's id).
    control: JoinSet<()>,
    /// The coordinator's stop requests; `None` once the subscription ended. Read here, not in
    /// a task of its own, so that a stop request the connection received before an
    /// assignment is seen before that assignment is run.
    stop_requests: Option<async_nats::Subscriber>,
    /// The attempts the coordinator asked to stop: one delivered later is not run.
    stopped: StopMemory,
    /// The watch for twins, ended when draining: a process on its way out answers no probes,
    /// so that its successor with the same id (a rolling restart) may start.
    sentry: tokio::task::AbortHandle,
    /// This process's announcement, to compare twins with.
    me: Heartbeat,
    twins: mpsc::Receiver<Heartbeat>,
    /// Twins already warned about (they started later and will stop).
    warned: BTreeSet<Instance>,
    deliveries: mpsc::Receiver<Delivery>,
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    malformed: Arc<AtomicU64>,
    max_message_bytes: usize,
}

impl RunLoop {
    /// Spawns one pull loop per consumer; they start pulling at once. `sentry` is the loop
    /// that reports twins on `twins`; `stop_requests` is subscribed to the coordinator's stop
    /// requests.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        config: &WorkerConfig,
        client: async_nats::Client,
        jetstream: jetstream::Context,
        subjects: Subjects,
        handlers: BTreeMap<Capability, Arc<dyn Handler>>,
        consumers: Vec<(Capability, PullConsumer)>,
        me: Heartbeat,
        sentry: impl Future<Output = ()> + Send + 'static,
        twins: mpsc::Receiver<Heartbeat>,
        stop_requests: async_nats::Subscriber,
    ) -> Self {
        let concurrency = usize::try_from(config.concurrency).unwrap_or(usize::MAX);
        // A consumer declared earlier keeps its own ack_wait; progress must beat the shortest.
        let ack_wait = consumers
            .iter()
            .map(|(_, consumer)| consumer.cached_info().config.ack_wait)
            .filter(|wait| !wait.is_zero())
            .fold(config.ack_wait, Duration::min);
        let permits = Arc::new(Semaphore::new(concurrency));
        let (stop, stop_rx) = watch::channel(false);
        let (deliveries_tx, deliveries) = mpsc::channel(concurrency);
        let malformed = Arc::new(AtomicU64::new(0));

        let mut pullers = JoinSet::new();
        let mut puller_names = BTreeMap::new();
        let mut gates = BTreeMap::new();
        for (capability, consumer) in consumers {
            let span = tracing::info_span!("intake", capability = %capability);
            let (gate, paused) = watch::channel(false);
            gates.insert(capability.clone(), gate);
            let puller = Puller {
                consumer,
                permits: permits.clone(),
                deliveries: deliveries_tx.clone(),
                stop: stop_rx.clone(),
                paused,
                max_message_bytes: config.max_message_bytes,
                malformed: malformed.clone(),
            };
            let handle = pullers.spawn(puller.run().instrument(span));
            puller_names.insert(handle.id(), capability);
        }

        let heart = Heart::new(client.clone(), &subjects, me.clone());
        let mut ticks = tokio::time::interval_at(
            Instant::now() + config.heartbeat_interval,
            config.heartbeat_interval,
        );
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (stops, _) = broadcast::channel(256);
        let mut control = JoinSet::new();
        let sentry = control.spawn(sentry.instrument(tracing::info_span!("twins")));
        let env = Arc::new(AttemptEnv {
            client: client.clone(),
            jetstream,
            subjects,
            worker: config.id.clone(),
            handlers,
            progress_every: (ack_wait / 3).max(Duration::from_millis(1)),
            max_message_bytes: config.max_message_bytes,
            max_deliveries: config.max_deliveries,
            stops,
            stop_grace: config.stop_grace,
        });
        Self {
            client,
            env,
            heart,
            ticks,
            attempts: JoinSet::new(),
            held: BTreeMap::new(),
            breakers: Breakers::new(config.breaker_failures, config.breaker_cooldown),
            gates,
            pullers,
            puller_names,
            control,
            stop_requests: Some(stop_requests),
            stopped: StopMemory::new(REMEMBERED_STOPS),
            sentry,
            me,
            twins,
            warned: BTreeSet::new(),
            deliveries,
            stop,
            abandon: watch::channel(false).0,
            malformed,
            max_message_bytes: config.max_message_bytes,
        }
    }

    pub(crate) async fn beat(&mut self, state: WorkerState) {
        let breakers = self.breakers.open(Instant::now());
        let mut held: Vec<HeldAttempt> = self.held.values().cloned().collect();
        held.sort();
        held.dedup();
        self.heart
            .beat(state, self.attempts.len(), breakers, held)
            .await;
    }

    /// Runs deliveries until `shutdown` resolves. `Some` if a pull loop died (a bug).
    pub(crate) async fn serve(
        &mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Option<WorkerError> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutdown requested");
                    return None;
                }
                Some(delivery) = self.deliveries.recv() => self.spawn_attempt(delivery),
                Some(joined) = self.attempts.join_next_with_id(), if !self.attempts.is_empty() => {
                    if let Some(reported) = self.attempt_end(joined) {
                        self.count(reported).await;
                    }
                }
                () = sleep_until_some(self.breakers.next_close()) => self.close_breakers().await,
                Some(joined) = self.pullers.join_next_with_id(), if !self.pullers.is_empty() => {
                    return Some(puller_failure(joined, &self.puller_names));
                }
                _ = self.ticks.tick() => self.beat(WorkerState::Ready).await,
                Some(twin) = self.twins.recv() => {
                    if let Some(error) = self.twin(&twin) {
                        return Some(error);
                    }
                }
                request = next_stop(&mut self.stop_requests) => self.stop_request(request),
                Some(joined) = self.control.join_next(), if !self.control.is_empty() => {
                    // Only the watch for twins is lost.
                    tracing::error!(?joined, "the watch for twins ended");
                }
            }
        }
    }

    /// Counts a stored result against its capability's breaker. One that opens stops the
    /// capability's pull loop, and the coordinator hears of it at once.
    async fn count(&mut self, reported: Reported) {
        let Reported {
            capability,
            verdict,
        } = reported;
        let now = Now::read();
        let Some(opened) = self.breakers.record(&capability, verdict, now) else {
            return;
        };
        tracing::warn!(
            %capability,
            failures = opened.failures,
            cooldown = %humantime::format_duration(self.breakers.cooldown()),
            "circuit breaker open: consecutive failed attempts; pulling none of this \
             capability's tasks until the cool-down is over"
        );
        self.sync_gates(now.at);
        self.beat(WorkerState::Ready).await;
    }

    /// Closes the breakers whose cool-down is over: their pull loops resume.
    async fn close_breakers(&mut self) {
        let now = Instant::now();
        let closed = self.breakers.close_due(now);
        if closed.is_empty() {
            return;
        }
        for capability in &closed {
            tracing::info!(
                %capability,
                "circuit breaker closed: the cool-down is over; pulling this capability's \
                 tasks again"
            );
        }
        self.sync_gates(now);
        self.beat(WorkerState::Ready).await;
    }

    /// Pauses the pull loops whose breaker is open at `now`, resumes the others.
    fn sync_gates(&self, now: Instant) {
        for (capability, gate) in &self.gates {
            let open = self.breakers.is_open(capability, now);
            gate.send_if_modified(|paused| std::mem::replace(paused, open) != open);
        }
    }

    /// Another process with this worker's id: `Some` if this one is to stop. It then sends no
    /// more heartbeats, which would speak for the other one.
    fn twin(&mut self, twin: &Heartbeat) -> Option<WorkerError> {
        if self.me.yields_to(twin) {
            self.heart.silence();
            return Some(clash::yield_to(&self.me, twin, false));
        }
        if self.warned.insert(twin.instance) {
            tracing::warn!(
                other_instance = %twin.instance,
                "another process claims this worker id; it started later and will stop"
            );
        }
        None
    }

    /// Runs a delivery, unless the coordinator asked to stop its attempt before it came.
    fn spawn_attempt(&mut self, delivery: Delivery) {
        let a = &delivery.assignment;
        let span = tracing::info_span!(
            "attempt",
            run_id = %a.run,
            task_id = %a.task,
            attempt = %a.attempt,
            capability = %a.capability,
        );
        self.take_pending_stops();
        if self.was_stopped(&delivery) {
            self.attempts
                .spawn(attempt::decline_stopped(delivery).instrument(span));
            return;
        }
        let held = attempt_of(&delivery);
        // Subscribed before this loop reads another stop request, so the attempt misses none.
        let stops = self.env.stops.subscribe();
        let work = attempt::run(self.env.clone(), delivery, self.abandon.subscribe(), stops);
        let handle = self.attempts.spawn(work.instrument(span));
        self.held.insert(handle.id(), held);
    }

    fn was_stopped(&self, delivery: &Delivery) -> bool {
        self.stopped.contains(&attempt_of(delivery))
    }

    /// Takes the stop requests already received, without waiting.
    fn take_pending_stops(&mut self) {
        while let Some(requests) = self.stop_requests.as_mut() {
            match requests.next().now_or_never() {
                Some(request) => self.stop_request(request),
                None => return,
            }
        }
    }

    /// Remembers a stop request and passes it to the running attempts. `None`: the
    /// subscription ended.
    fn stop_request(&mut self, request: Option<async_nats::Message>) {
        let Some(message) = request else {
            // Attempts still end by their own timeouts; only the coordinator's early stops are
            // lost.
            tracing::error!("the subscription to stop requests ended");
            self.stop_requests = None;
            return;
        };
        match decode::<StopAttempt>(&message.payload, self.max_message_bytes) {
            Ok(stop) => {
                self.stopped.remember(HeldAttempt {
                    run: stop.run.clone(),
                    task: stop.task.clone(),
                    attempt: stop.attempt,
                });
                // No receiver means no attempt is running: nothing to stop now.
                drop(self.env.stops.send(stop));
            }
            Err(error) => tracing::warn!(%error, "ignoring a malformed stop request"),
        }
    }

    /// An attempt's task ended: it no longer holds its attempt. What it reported, if it
    /// stored a result.
    fn attempt_end(
        &mut self,
        joined: Result<(tokio::task::Id, Option<Reported>), JoinError>,
    ) -> Option<Reported> {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        self.held.remove(&id);
        attempt_end(joined.map(|(_, reported)| reported))
    }

    /// Stops intake and waits for the attempts, abandoning those still running after `grace`
    /// (they hand their assignments back). `Some` if a pull loop panicked.
    pub(crate) async fn drain(&mut self, grace: Duration) -> Option<WorkerError> {
        self.stop.send_replace(true);
        self.sentry.abort();
        self.beat(WorkerState::Draining).await;
        tracing::info!(
            in_flight = self.attempts.len(),
            grace_period = %humantime::format_duration(grace),
            "draining"
        );
        let mut failure = None;
        let grace_deadline = Instant::now() + grace;
        let mut hand_back_deadline = None;
        while !(self.attempts.is_empty() && self.pullers.is_empty()) {
            tokio::select! {
                // A pull that was under way when intake stopped.
                Some(delivery) = self.deliveries.recv() => {
                    self.take_pending_stops();
                    if self.was_stopped(&delivery) {
                        attempt::decline_stopped(delivery).await;
                    } else {
                        hand_back(&delivery.message, "the worker is stopping").await;
                    }
                }
                // Attempts still running may be asked to stop.
                request = next_stop(&mut self.stop_requests) => self.stop_request(request),
                // Not counted: intake has stopped, so no breaker needs to open.
                Some(joined) = self.attempts.join_next_with_id(), if !self.attempts.is_empty() => {
                    self.attempt_end(joined);
                }
                Some(joined) = self.pullers.join_next_with_id(), if !self.pullers.is_empty() => {
                    if let Err(error) = joined {
                        failure.get_or_insert(puller_failure(Err(error), &self.puller_names));
                    }
                }
                _ = self.ticks.tick() => self.beat(WorkerState::Draining).await,
                () = tokio::time::sleep_until(grace_deadline), if hand_back_deadline.is_none() => {
                    tracing::warn!(
                        in_flight = self.attempts.len(),
                        "grace period over; stopping the remaining attempts and handing them back"
                    );
                    self.abandon.send_replace(true);
                    hand_back_deadline = Some(Instant::now() + HAND_BACK_TIMEOUT);
                }
                () = sleep_until_some(hand_back_deadline) => {
                    tracing::error!(
                        in_flight = self.attempts.len(),
                        "attempts did not stop in time; aborting them (JetStream redelivers \
                         their assignments after ack_wait)"
                    );
                    self.attempts.abort_all();
                    self.pullers.abort_all();
                    while self.attempts.join_next().await.is_some() {}
                    self.held.clear();
                    while self.pullers.join_next().await.is_some() {}
                }
            }
        }
        // The pull loops are gone, so nothing more arrives: hand back what is still queued.
        while let Ok(delivery) = self.deliveries.try_recv() {
            hand_back(&delivery.message, "the worker is stopping").await;
        }
        failure
    }

    /// Announces `Stopped` and flushes, so the announcement and the last acks are sent.
    pub(crate) async fn finish(mut self) {
        self.control.abort_all();
        while self.control.join_next().await.is_some() {}
        self.heart
            .beat(WorkerState::Stopped, 0, Vec::new(), Vec::new())
            .await;
        match tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot flush the NATS connection at exit"),
            Err(_) => tracing::warn!("timed out flushing the NATS connection at exit"),
        }
        tracing::info!(
            malformed_assignments = self.malformed.load(Ordering::Relaxed),
            "stopped"
        );
    }
}

/// The next stop request; `Some(None)` when the subscription ends, never once it has.
async fn next_stop(requests: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match requests {
        Some(requests) => requests.next().await,
        None => std::future::pending().await,
    }
}

/// The attempt a delivery carries.
fn attempt_of(delivery: &Delivery) -> HeldAttempt {
    let a = &delivery.assignment;
    HeldAttempt {
        run: a.run.clone(),
        task: a.task.clone(),
        attempt: a.attempt,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What the attempt reported, if it ended normally and stored a result.
fn attempt_end(joined: Result<Option<Reported>, JoinError>) -> Option<Reported> {
    match joined {
        Ok(reported) => reported,
        // Handler panics are caught inside the attempt; this is a panic in the worker's own
        // code. The assignment stays unacked, so JetStream redelivers it after ack_wait.
        Err(error) if error.is_panic() => {
            tracing::error!(%error, "attempt task panicked; its assignment will be redelivered");
            None
        }
        Err(error) => {
            tracing::debug!(%error, "attempt task cancelled");
            None
        }
    }
}

fn puller_failure(
    joined: Result<(tokio::task::Id, ()), JoinError>,
    names: &BTreeMap<tokio::task::Id, Capability>,
) -> WorkerError {
    let (id, reason) = match joined {
        Ok((id, ())) => (id, "it returned".to_owned()),
        Err(error) => (error.id(), error.to_string()),
    };
    let capability = names
        .get(&id)
        .map_or_else(|| "?".to_owned(), Capability::to_string);
    tracing::error!(%capability, %reason, "pull loop stopped unexpectedly; draining");
    WorkerError::Intake { capability, reason }
}
