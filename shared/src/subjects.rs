//! Every subject, stream, consumer and message-id string Workforce uses is built here, and
//! nowhere else. A [`Prefix`] lets several deployments share one NATS.
//!
//! | what | subject |
//! |---|---|
//! | assignments (stream `<P>_TASKS`, work queue) | `<prefix>.tasks.<capability>` |
//! | results (stream `<P>_RESULTS`) | `<prefix>.results.<run>.<task>` |
//! | dead letters (stream `<P>_DLQ`) | `<prefix>.dlq.<run>.<task>` |
//! | worker heartbeats (core NATS) | `<prefix>.workers.<worker>` |
//! | is this worker id taken? (core NATS request/reply) | `<prefix>.workers.<worker>.probe` |
//! | operator API (core NATS request/reply) | `<prefix>.api.<verb>` |
//! | stop a timed-out attempt (core NATS) | `<prefix>.control.stop` |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{Attempt, Capability, NameError, RunId, TaskId, WorkerId};

/// The first tokens of every subject: one or more NATS tokens joined by '.'.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(String);

impl Prefix {
    /// Tokens of lower-case ASCII letters, digits and '-', joined by '.'. Narrower than other
    /// names so that stream names (the prefix upper-cased, '.' as '_') stay distinct.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        for token in value.split('.') {
            // The general token rule first, for its precise messages; report the whole prefix.
            let fail = |reason: String| NameError {
                kind: "subject prefix",
                value: value.clone(),
                reason: format!("token {token:?} {reason}"),
            };
            Capability::new(token).map_err(|e| fail(e.reason))?;
            if let Some(bad) = token
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            {
                return Err(fail(format!(
                    "contains '{bad}'; a prefix uses only lower-case letters, digits and '-'"
                )));
            }
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Self("workforce".to_owned())
    }
}

impl TryFrom<String> for Prefix {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::new(value)
    }
}

impl From<Prefix> for String {
    fn from(value: Prefix) -> String {
        value.0
    }
}

impl FromStr for Prefix {
    type Err = NameError;
    fn from_str(value: &str) -> Result<Self, NameError> {
        Self::new(value)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The operator API's verbs, one subject each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVerb {
    Submit,
    Status,
    Runs,
    Workers,
    Cancel,
    Pause,
    Resume,
    DeadLetters,
    Redrive,
}

impl ApiVerb {
    pub const ALL: [ApiVerb; 9] = [
        ApiVerb::Submit,
        ApiVerb::Status,
        ApiVerb::Runs,
        ApiVerb::Workers,
        ApiVerb::Cancel,
        ApiVerb::Pause,
        ApiVerb::Resume,
        ApiVerb::DeadLetters,
        ApiVerb::Redrive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVerb::Submit => "submit",
            ApiVerb::Status => "status",
            ApiVerb::Runs => "runs",
            ApiVerb::Workers => "workers",
            ApiVerb::Cancel => "cancel",
            ApiVerb::Pause => "pause",
            ApiVerb::Resume => "resume",
            ApiVerb::DeadLetters => "dead_letters",
            ApiVerb::Redrive => "redrive",
        }
    }
}

/// Builds names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Subjects {
    prefix: Prefix,
}

impl Subjects {
    pub fn new(prefix: Prefix) -> Self {
        Self { prefix }
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    fn stream(&self, suffix: &str) -> String {
        // Stream names may not hold '.'; they are upper case by convention.
        format!(
            "{}_{suffix}",
            self.prefix.0.replace('.', "_").to_uppercase()
        )
    }

    pub fn tasks_stream(&self) -> String {
        self.stream("TASKS")
    }

    pub fn results_stream(&self) -> String {
        self.stream("RESULTS")
    }

    pub fn dead_letter_stream(&self) -> String {
        self.stream("DLQ")
    }

    /// Everything the tasks stream holds.
    pub fn all_tasks(&self) -> String {
        format!("{}.tasks.>", self.prefix)
    }

    pub fn task(&self, capability: &Capability) -> String {
        format!("{}.tasks.{capability}", self.prefix)
    }

    pub fn all_results(&self) -> String {
        format!("{}.results.>", self.prefix)
    }

    pub fn result(&self, run: &RunId, task: &TaskId) -> String {
        format!("{}.results.{run}.{task}", self.prefix)
    }

    pub fn all_dead_letters(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    pub fn dead_letter(&self, run: &RunId, task: &TaskId) -> String {
        format!("{}.dlq.{run}.{task}", self.prefix)
    }

    pub fn all_heartbeats(&self) -> String {
        format!("{}.workers.*", self.prefix)
    }

    pub fn heartbeat(&self, worker: &WorkerId) -> String {
        format!("{}.workers.{worker}", self.prefix)
    }

    /// A starting worker asks here whether a live process already has its id; that process
    /// answers with its heartbeat. One token deeper than heartbeats, so `all_heartbeats`
    /// does not match it.
    pub fn worker_probe(&self, worker: &WorkerId) -> String {
        format!("{}.workers.{worker}.probe", self.prefix)
    }

    /// Where the coordinator tells workers to stop a timed-out attempt (core NATS).
    pub fn stop(&self) -> String {
        format!("{}.control.stop", self.prefix)
    }

    /// Every API verb's subject, for the coordinator's subscription.
    pub fn all_api(&self) -> String {
        format!("{}.api.*", self.prefix)
    }

    pub fn api(&self, verb: ApiVerb) -> String {
        format!("{}.api.{}", self.prefix, verb.as_str())
    }

    /// The durable pull consumer all workers of a capability share.
    pub fn task_consumer(&self, capability: &Capability) -> String {
        format!("tasks-{capability}")
    }

    /// The coordinator's durable consumer on the results stream.
    pub fn results_consumer(&self) -> String {
        "coordinator".to_owned()
    }

    /// Message id of an assignment: the broker drops a second publish of the same attempt.
    pub fn assignment_msg_id(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> String {
        format!("{run}.{task}.{attempt}")
    }

    /// Message id of a result: a redelivered attempt that ran twice stores one result.
    pub fn result_msg_id(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> String {
        format!("{run}.{task}.{attempt}.result")
    }

    /// Message id of a dead letter, by the task's last attempt: a redriven task that is
    /// dead-lettered again (its attempts numbered on) gets a dead letter of its own.
    pub fn dead_letter_msg_id(&self, run: &RunId, task: &TaskId, attempt: Attempt) -> String {
        format!("{run}.{task}.{attempt}.dlq")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(prefix: &str) -> Subjects {
        Subjects::new(Prefix::new(prefix).expect("valid prefix"))
    }

    #[test]
    fn builds_prefixed_names() {
        let s = subjects("acme.prod");
        let cap = Capability::new("review").expect("cap");
        let run = RunId::new("r1").expect("run");
        let task = TaskId::new("t1").expect("task");
        assert_eq!(s.task(&cap), "acme.prod.tasks.review");
        assert_eq!(s.result(&run, &task), "acme.prod.results.r1.t1");
        assert_eq!(s.tasks_stream(), "ACME_PROD_TASKS");
        assert_eq!(s.api(ApiVerb::Submit), "acme.prod.api.submit");
        assert_eq!(s.assignment_msg_id(&run, &task, Attempt(2)), "r1.t1.2");
    }

    #[test]
    fn rejects_bad_prefixes() {
        for bad in ["", "a..b", "a.>", "a b", ".a", "a_b", "Acme"] {
            assert!(Prefix::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
