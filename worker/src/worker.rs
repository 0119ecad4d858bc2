//! [`Worker`]: construction ([`connect`](Worker::connect)) separate from running
//! ([`run`](Worker::run), which hands over to the `run_loop`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, consumer::PullConsumer};
use tracing::Instrument;
use workforce_shared::jetstream::{StreamSettings, ensure_streams, task_consumer};
use workforce_shared::runtime;
use workforce_shared::{Capability, Subjects, WorkerId, WorkerState};

use crate::clash::{self, Sentry};
use crate::config::WorkerConfig;
use crate::error::WorkerError;
use crate::handler::Handler;
use crate::heartbeat::{self, Identity};
use crate::run_loop::RunLoop;

/// A worker connected to NATS with its consumers declared, ready to [`run`](Self::run).
pub struct Worker {
    config: WorkerConfig,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    subjects: Subjects,
    handlers: BTreeMap<Capability, Arc<dyn Handler>>,
    consumers: Vec<(Capability, PullConsumer)>,
    identity: Identity,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.config.id)
            .field("capabilities", &self.handlers.keys().collect::<Vec<_>>())
            .field("concurrency", &self.config.concurrency)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Checks the configuration, connects to NATS (waiting for it if it is not up yet),
    /// declares the streams and one durable consumer per capability in `handlers`.
    pub async fn connect(
        config: WorkerConfig,
        handlers: BTreeMap<Capability, Arc<dyn Handler>>,
    ) -> Result<Self, WorkerError> {
        config.validate()?;
        if handlers.is_empty() {
            return Err(WorkerError::NoCapabilities);
        }
        let span =
            tracing::info_span!("connect", worker_id = %config.id, nats_url = %config.nats_url);
        async move {
            let name = format!("workforce-worker {}", config.id);
            let client = runtime::connect(&config.nats_url, &name).await?;
            let jetstream = jetstream::new(client.clone());
            let subjects = Subjects::new(config.prefix.clone());
            ensure_streams(&jetstream, &subjects, &StreamSettings::default()).await?;
            let mut consumers = Vec::with_capacity(handlers.len());
            for capability in handlers.keys() {
                let consumer =
                    task_consumer(&jetstream, &subjects, capability, config.ack_wait).await?;
                let actual = consumer.cached_info().config.ack_wait;
                if actual != config.ack_wait {
                    tracing::warn!(
                        %capability,
                        configured = %humantime::format_duration(config.ack_wait),
                        actual = %humantime::format_duration(actual),
                        "the consumer already exists with another ack_wait; using the shorter"
                    );
                }
                consumers.push((capability.clone(), consumer));
            }
            tracing::info!(
                capabilities = ?handlers.keys().map(Capability::as_str).collect::<Vec<_>>(),
                "connected"
            );
            Ok(Self {
                config,
                client,
                jetstream,
                subjects,
                handlers,
                consumers,
                identity: Identity::mint(),
            })
        }
        .instrument(span)
        .await
    }

    pub fn id(&self) -> &WorkerId {
        &self.config.id
    }

    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.handlers.keys()
    }

    /// Serves until `shutdown` resolves, then drains: takes nothing new, gives running
    /// attempts `grace_period` to finish, hands the rest back, announces `Stopped`.
    ///
    /// Refuses to start ([`WorkerError::DuplicateId`]) if a live process already serves as
    /// this worker id, and stops the same way if one that started earlier shows up later.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let span = tracing::info_span!("worker", worker_id = %self.config.id);
        self.serve(shutdown).instrument(span).await
    }

    async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let Self {
            config,
            client,
            jetstream,
            subjects,
            handlers,
            consumers,
            identity,
        } = self;
        let me = heartbeat::announcement(
            config.id.clone(),
            handlers.keys().cloned().collect(),
            config.concurrency,
            config.heartbeat_interval,
            identity,
        );
        // Before taking work: is this id taken?
        let sentry =
            Sentry::start(&client, &subjects, me.clone(), config.max_message_bytes).await?;
        if let Some(twin) = sentry.probe(&client, &subjects).await {
            if me.yields_to(&twin) {
                return Err(clash::yield_to(&me, &twin, true));
            }
            tracing::warn!(other_instance = %twin.instance, "another process claims this worker id; it started later and will stop");
        }
        let (sentry, twins) = sentry.listen(client.clone(), &subjects).await?;
        // Before the first heartbeat: a stop request sent once the coordinator has heard of
        // this worker reaches it.
        let stop_subject = subjects.stop();
        let stop_requests = client
            .subscribe(stop_subject.clone())
            .await
            .map_err(|source| WorkerError::Subscribe {
                subject: stop_subject,
                source,
            })?;
        let mut run = RunLoop::start(
            &config,
            client,
            jetstream,
            subjects,
            handlers,
            consumers,
            me,
            sentry,
            twins,
            stop_requests,
        );
        run.beat(WorkerState::Ready).await;
        tracing::info!(concurrency = config.concurrency, "serving");
        let mut failure = run.serve(shutdown).await;
        let drain_failure = run.drain(config.grace_period).await;
        failure = failure.or(drain_failure);
        run.finish().await;
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
