//! The operator API: request/reply over core NATS on `<prefix>.api.<verb>`, MessagePack
//! bodies. The coordinator serves it; the `workforce` CLI is its client ([`ApiClient`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use workforce_shared::runtime::{self, ConnectError, NatsServers};
use workforce_shared::subjects::ApiVerb;
use workforce_shared::{
    CodecError, Envelope, PROTOCOL_VERSION, ParamValues, PlanFormat, RunId, Subjects, TaskId,
    decode, encode,
};

use crate::scheduler::{DeadLetterView, PauseScope, RunSummary, RunView, WorkerView};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Submit a plan. The coordinator parses and validates the source itself, substitutes
    /// `params` into it and records the concrete plan.
    Submit {
        source: String,
        format: PlanFormat,
        /// Values for the plan's parameters; absent from clients older than parameters.
        #[serde(default, skip_serializing_if = "ParamValues::is_empty")]
        params: ParamValues,
    },
    Status {
        run: RunId,
    },
    Runs,
    Workers,
    /// Cancel a run, or only `task` of it (and what waits for it, by the trigger rules), with
    /// an optional note recorded with it. Older clients send neither.
    Cancel {
        run: RunId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Stop dispatching a run's tasks, or a capability's for every run.
    Pause {
        scope: PauseScope,
    },
    /// Dispatch again what a pause held.
    Resume {
        scope: PauseScope,
    },
    /// The dead-lettered tasks, of one run or all.
    DeadLetters {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<RunId>,
    },
    /// Run a dead-lettered task again (or all of a run's), with a new input if given.
    Redrive {
        run: RunId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with_input: Option<serde_json::Value>,
        #[serde(default)]
        force: bool,
    },
}

impl Request {
    pub fn verb(&self) -> ApiVerb {
        match self {
            Request::Submit { .. } => ApiVerb::Submit,
            Request::Status { .. } => ApiVerb::Status,
            Request::Runs => ApiVerb::Runs,
            Request::Workers => ApiVerb::Workers,
            Request::Cancel { .. } => ApiVerb::Cancel,
            Request::Pause { .. } => ApiVerb::Pause,
            Request::Resume { .. } => ApiVerb::Resume,
            Request::DeadLetters { .. } => ApiVerb::DeadLetters,
            Request::Redrive { .. } => ApiVerb::Redrive,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Submitted { run: RunId },
    Status { view: Box<RunView> },
    Runs { runs: Vec<RunSummary> },
    Workers { workers: Vec<WorkerView> },
    CancelRequested { run: RunId },
    Paused { scope: PauseScope },
    Resumed { scope: PauseScope },
    DeadLetters { letters: Vec<DeadLetterView> },
    Redriven { run: RunId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    InvalidPlan,
    NotFound,
    BadRequest,
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    pub v: u16,
    pub request: Request,
}

impl Envelope for ApiRequest {
    const KIND: &'static str = "API request";
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse {
    pub v: u16,
    pub result: Result<Reply, ApiError>,
}

impl Envelope for ApiResponse {
    const KIND: &'static str = "API response";
}

impl ApiResponse {
    pub fn new(result: Result<Reply, ApiError>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            result,
        }
    }
}

/// Why an API call failed. [`is_retryable`](ClientError::is_retryable) tells a coordinator
/// that is not answering (stopped, restarting, not started yet) from a request that can never
/// succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "no coordinator is listening on {subject}; is workforce-coordinator running, with the same --prefix?"
    )]
    NoResponders { subject: String },
    #[error(
        "no coordinator answered on {subject} within {}; is workforce-coordinator running, with the same --prefix?",
        humantime::format_duration(*.timeout)
    )]
    TimedOut { subject: String, timeout: Duration },
    #[error("request on {subject} failed")]
    Request {
        subject: String,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("cannot read the coordinator's answer")]
    Codec(#[from] CodecError),
    #[error("{0}")]
    Api(ApiError),
    #[error("the coordinator sent a {got} reply to a {verb} request")]
    UnexpectedReply { verb: &'static str, got: String },
}

impl ClientError {
    /// Whether asking again later may succeed: nobody answered (the coordinator may be
    /// restarting) or the connection to NATS failed. The coordinator's own refusals (an invalid
    /// plan, an unknown run) and replies this client cannot read are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(error) => error.is_retryable(),
            Self::NoResponders { .. } | Self::TimedOut { .. } => true,
            // A plan over the server's max_payload stays too big.
            Self::Request { source, .. } => match source.kind() {
                async_nats::RequestErrorKind::InvalidSubject
                | async_nats::RequestErrorKind::MaxPayloadExceeded => false,
                async_nats::RequestErrorKind::Other
                | async_nats::RequestErrorKind::NoResponders
                | async_nats::RequestErrorKind::TimedOut => true,
            },
            Self::Codec(_) | Self::Api(_) | Self::UnexpectedReply { .. } => false,
        }
    }
}

/// A cheap handle that sends API requests to the coordinator.
#[derive(Clone, Debug)]
pub struct ApiClient {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
}

/// Responses can hold a whole run's outputs.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

impl ApiClient {
    /// Connects to one of `servers`, giving up after `timeout`; every request then waits up to
    /// `timeout` for its answer.
    pub async fn connect(
        servers: &NatsServers,
        subjects: Subjects,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let client = runtime::connect_once(servers, "workforce-cli", timeout).await?;
        Ok(Self::new(client, subjects, timeout))
    }

    pub fn new(client: async_nats::Client, subjects: Subjects, timeout: Duration) -> Self {
        Self {
            client,
            subjects,
            timeout,
        }
    }

    pub async fn call(&self, request: Request) -> Result<Reply, ClientError> {
        let subject = self.subjects.api(request.verb());
        let body = encode(&ApiRequest {
            v: PROTOCOL_VERSION,
            request,
        })?;
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(self.timeout));
        let message = self
            .client
            .send_request(subject.clone(), request)
            .await
            .map_err(|source| match source.kind() {
                async_nats::RequestErrorKind::NoResponders => ClientError::NoResponders { subject },
                async_nats::RequestErrorKind::TimedOut => ClientError::TimedOut {
                    subject,
                    timeout: self.timeout,
                },
                async_nats::RequestErrorKind::InvalidSubject
                | async_nats::RequestErrorKind::MaxPayloadExceeded
                | async_nats::RequestErrorKind::Other => ClientError::Request { subject, source },
            })?;
        let response: ApiResponse = decode(&message.payload, MAX_RESPONSE_BYTES)?;
        response.result.map_err(ClientError::Api)
    }

    pub async fn submit(
        &self,
        source: String,
        format: PlanFormat,
        params: ParamValues,
    ) -> Result<RunId, ClientError> {
        let request = Request::Submit {
            source,
            format,
            params,
        };
        match self.call(request).await? {
            Reply::Submitted { run } => Ok(run),
            other => Err(unexpected("submit", &other)),
        }
    }

    pub async fn status(&self, run: &RunId) -> Result<RunView, ClientError> {
        match self.call(Request::Status { run: run.clone() }).await? {
            Reply::Status { view } => Ok(*view),
            other => Err(unexpected("status", &other)),
        }
    }

    pub async fn runs(&self) -> Result<Vec<RunSummary>, ClientError> {
        match self.call(Request::Runs).await? {
            Reply::Runs { runs } => Ok(runs),
            other => Err(unexpected("runs", &other)),
        }
    }

    pub async fn workers(&self) -> Result<Vec<WorkerView>, ClientError> {
        match self.call(Request::Workers).await? {
            Reply::Workers { workers } => Ok(workers),
            other => Err(unexpected("workers", &other)),
        }
    }

    /// Cancels the run, or only `task` of it, recording `note`.
    pub async fn cancel(
        &self,
        run: &RunId,
        task: Option<&TaskId>,
        note: Option<&str>,
    ) -> Result<(), ClientError> {
        let request = Request::Cancel {
            run: run.clone(),
            task: task.cloned(),
            note: note.map(str::to_owned),
        };
        match self.call(request).await? {
            Reply::CancelRequested { .. } => Ok(()),
            other => Err(unexpected("cancel", &other)),
        }
    }

    /// The dead-lettered tasks, of `run` or of every run.
    pub async fn dead_letters(
        &self,
        run: Option<&RunId>,
    ) -> Result<Vec<DeadLetterView>, ClientError> {
        match self
            .call(Request::DeadLetters { run: run.cloned() })
            .await?
        {
            Reply::DeadLetters { letters } => Ok(letters),
            other => Err(unexpected("dead_letters", &other)),
        }
    }

    /// Redrives `task` of `run` (or every dead letter of it), with `with_input` if given.
    pub async fn redrive(
        &self,
        run: &RunId,
        task: Option<&TaskId>,
        with_input: Option<serde_json::Value>,
        force: bool,
    ) -> Result<(), ClientError> {
        let request = Request::Redrive {
            run: run.clone(),
            task: task.cloned(),
            with_input,
            force,
        };
        match self.call(request).await? {
            Reply::Redriven { .. } => Ok(()),
            other => Err(unexpected("redrive", &other)),
        }
    }

    /// Pauses (`pause`) or resumes dispatch of `scope`.
    pub async fn pause(&self, scope: PauseScope, pause: bool) -> Result<(), ClientError> {
        let request = if pause {
            Request::Pause { scope }
        } else {
            Request::Resume { scope }
        };
        match self.call(request).await? {
            Reply::Paused { .. } if pause => Ok(()),
            Reply::Resumed { .. } if !pause => Ok(()),
            other => Err(unexpected(if pause { "pause" } else { "resume" }, &other)),
        }
    }
}

fn unexpected(verb: &'static str, reply: &Reply) -> ClientError {
    let got = match reply {
        Reply::Submitted { .. } => "submitted",
        Reply::Status { .. } => "status",
        Reply::Runs { .. } => "runs",
        Reply::Workers { .. } => "workers",
        Reply::CancelRequested { .. } => "cancel",
        Reply::Paused { .. } => "pause",
        Reply::Resumed { .. } => "resume",
        Reply::DeadLetters { .. } => "dead_letters",
        Reply::Redriven { .. } => "redrive",
    };
    ClientError::UnexpectedReply {
        verb,
        got: got.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn submit(params: ParamValues) -> ApiRequest {
        ApiRequest {
            v: PROTOCOL_VERSION,
            request: Request::Submit {
                source: "[[tasks]]".into(),
                format: PlanFormat::Toml,
                params,
            },
        }
    }

    /// A submit without values is encoded as clients older than parameters encoded it, and
    /// what they send decodes with no values.
    #[test]
    fn submit_params_are_wire_compatible() {
        #[derive(Serialize, Deserialize)]
        #[serde(tag = "request", rename_all = "snake_case")]
        enum OldRequest {
            Submit { source: String, format: PlanFormat },
        }
        #[derive(Serialize, Deserialize)]
        struct OldApiRequest {
            v: u16,
            request: OldRequest,
        }
        impl Envelope for OldApiRequest {
            const KIND: &'static str = "API request";
        }
        let old = encode(&OldApiRequest {
            v: PROTOCOL_VERSION,
            request: OldRequest::Submit {
                source: "[[tasks]]".into(),
                format: PlanFormat::Toml,
            },
        })
        .expect("encode");
        let decoded: ApiRequest = decode(&old, 1 << 20).expect("decode");
        assert_eq!(decoded, submit(ParamValues::new()));
        assert_eq!(encode(&submit(ParamValues::new())).expect("encode"), old);

        let mut params = ParamValues::new();
        params.insert("repo", json!("."));
        params.insert("focus", json!(["a", { "b": 1 }]));
        let bytes = encode(&submit(params.clone())).expect("encode");
        let decoded: ApiRequest = decode(&bytes, 1 << 20).expect("decode");
        assert_eq!(decoded, submit(params));
    }
}
