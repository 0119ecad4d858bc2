//! Declares the streams and consumers that [`Subjects`] names. The only module in this crate
//! that does I/O; the coordinator and workers both call it, so either may start first.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::ids::Capability;
use crate::subjects::Subjects;

/// How the streams are kept.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// How long results (and so outputs for downstream tasks) are kept.
    pub results_max_age: Duration,
    /// How long dead letters are kept.
    pub dead_letters_max_age: Duration,
    /// Window in which the broker drops a second publish with the same message id.
    pub duplicate_window: Duration,
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            results_max_age: Duration::from_secs(7 * 24 * 3600),
            dead_letters_max_age: Duration::from_secs(30 * 24 * 3600),
            duplicate_window: Duration::from_secs(10 * 60),
            replicas: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot create or open stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot open stream {stream} (is the coordinator's stream set-up done?): {source}")]
    OpenStream {
        stream: String,
        #[source]
        source: jetstream::context::GetStreamError,
    },
    #[error("cannot create or open consumer {consumer} on stream {stream}: {source}")]
    Consumer {
        stream: String,
        consumer: String,
        #[source]
        source: jetstream::stream::ConsumerError,
    },
}

fn stream_configs(subjects: &Subjects, settings: &StreamSettings) -> [stream::Config; 3] {
    [
        stream::Config {
            name: subjects.tasks_stream(),
            subjects: vec![subjects.all_tasks()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas,
            ..Default::default()
        },
        stream::Config {
            name: subjects.results_stream(),
            subjects: vec![subjects.all_results()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: settings.results_max_age,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas,
            ..Default::default()
        },
        stream::Config {
            name: subjects.dead_letter_stream(),
            subjects: vec![subjects.all_dead_letters()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: settings.dead_letters_max_age,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas,
            ..Default::default()
        },
    ]
}

/// Creates the tasks, results and dead-letter streams if they do not exist, leaving existing
/// ones as they are. For workers: the coordinator's settings win ([`declare_streams`]).
pub async fn ensure_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    settings: &StreamSettings,
) -> Result<(), TransportError> {
    put_streams(js, subjects, settings, false).await
}

/// Creates the streams, or updates existing ones to these settings. For the coordinator, which
/// owns them: a worker that started first created them with defaults.
pub async fn declare_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    settings: &StreamSettings,
) -> Result<(), TransportError> {
    put_streams(js, subjects, settings, true).await
}

async fn put_streams(
    js: &jetstream::Context,
    subjects: &Subjects,
    settings: &StreamSettings,
    update: bool,
) -> Result<(), TransportError> {
    for config in stream_configs(subjects, settings) {
        let name = config.name.clone();
        let put = if update {
            js.create_or_update_stream(config).await.map(drop)
        } else {
            js.get_or_create_stream(config).await.map(drop)
        };
        put.map_err(|source| TransportError::Stream {
            stream: name,
            source,
        })?;
    }
    Ok(())
}

/// The durable pull consumer that all workers of `capability` share.
pub async fn task_consumer(
    js: &jetstream::Context,
    subjects: &Subjects,
    capability: &Capability,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, TransportError> {
    let stream_name = subjects.tasks_stream();
    let name = subjects.task_consumer(capability);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: subjects.task(capability),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_ack_pending: -1,
        ..Default::default()
    };
    pull_consumer(js, stream_name, name, config).await
}

/// The coordinator's durable consumer on the results stream.
pub async fn results_consumer(
    js: &jetstream::Context,
    subjects: &Subjects,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, TransportError> {
    let stream_name = subjects.results_stream();
    let name = subjects.results_consumer();
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_ack_pending: -1,
        ..Default::default()
    };
    pull_consumer(js, stream_name, name, config).await
}

async fn pull_consumer(
    js: &jetstream::Context,
    stream_name: String,
    name: String,
    config: consumer::pull::Config,
) -> Result<consumer::PullConsumer, TransportError> {
    let fail = |source| TransportError::Consumer {
        stream: stream_name.clone(),
        consumer: name.clone(),
        source,
    };
    let stream =
        js.get_stream(&stream_name)
            .await
            .map_err(|source| TransportError::OpenStream {
                stream: stream_name.clone(),
                source,
            })?;
    stream
        .get_or_create_consumer(&name, config)
        .await
        .map_err(fail)
}
