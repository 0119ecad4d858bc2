//! The messages on the wire. Documented field by field in `docs/PROTOCOL.md`; every struct
//! carries `v`, the protocol version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::Envelope;
use crate::ids::{Attempt, Capability, RunId, TaskId, WorkerId};

pub const PROTOCOL_VERSION: u16 = 1;

/// The newest version of [`TaskResult`]: version 2 added `spawn` and `branch` to a succeeded
/// outcome, version 3 the attempt's `usage`. A result carries the lowest version that holds it
/// ([`TaskResult::version`]), so a worker that reports nothing new stays readable by older
/// coordinators, and an older coordinator refuses (loudly) what it could not honour.
pub const RESULT_VERSION: u16 = 3;

/// The result version that added `spawn` and `branch`.
pub const SPAWN_VERSION: u16 = 2;

/// One attempt of one task, published by the coordinator to `<prefix>.tasks.<capability>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub v: u16,
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
    pub capability: Capability,
    pub input: Value,
    /// Outputs of the tasks this one waits for that completed, by task id: the tasks it needs
    /// and everything they spawned.
    pub upstream: BTreeMap<TaskId, Value>,
    /// How long the worker lets the attempt run before failing it.
    pub timeout_ms: u64,
    /// The tasks this one waits for that failed, were canceled or were skipped, with why; only
    /// a task whose trigger rule runs it past them has any. Absent when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_errors: BTreeMap<TaskId, UpstreamError>,
}

/// How an upstream task that did not complete ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamError {
    pub status: UpstreamStatus,
    /// Why, in words: its last error, or the reason it was canceled or skipped.
    pub error: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamStatus {
    Failed,
    Canceled,
    Skipped,
}

impl Envelope for Assignment {
    const KIND: &'static str = "assignment";
}

/// What became of an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        output: Value,
        /// Tasks to add to the run, each in a plan's task shape (protocol version 2).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        spawn: Vec<Value>,
        /// Which of the tasks that need this one run; the others are skipped (protocol
        /// version 2). `None`: all of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<Vec<String>>,
    },
    /// `permanent` failures are not retried.
    Failed { error: String, permanent: bool },
}

impl Outcome {
    /// Success with an output alone.
    pub fn succeeded(output: Value) -> Self {
        Outcome::Succeeded {
            output,
            spawn: Vec::new(),
            branch: None,
        }
    }

    /// Whether it spawns or branches: what version 1 cannot carry.
    pub fn grows(&self) -> bool {
        match self {
            Outcome::Succeeded { spawn, branch, .. } => !spawn.is_empty() || branch.is_some(),
            Outcome::Failed { .. } => false,
        }
    }

    /// The lowest result version that carries it.
    pub fn version(&self) -> u16 {
        if self.grows() {
            SPAWN_VERSION
        } else {
            PROTOCOL_VERSION
        }
    }
}

/// The result of one attempt, published by a worker to `<prefix>.results.<run>.<task>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub v: u16,
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
    pub worker: WorkerId,
    pub outcome: Outcome,
    /// Wall time the attempt took on the worker, for operators; the scheduler ignores it.
    pub duration_ms: u64,
    /// What the attempt used, as its handler reported it, successful or not (version 3):
    /// `{"tokens": N, "cost_cents": N, "tool_calls": N}`, each a whole number ≥ 0, each
    /// optional. Kept as sent: the coordinator reads it ([`Usage::read`]) and fails the attempt,
    /// charging its estimate, when it cannot. Absent: nothing reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

impl TaskResult {
    /// The lowest result version that carries it.
    pub fn version(&self) -> u16 {
        if self.usage.is_some() {
            RESULT_VERSION
        } else {
            self.outcome.version()
        }
    }
}

/// What an attempt used, or what a task is estimated to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub cost_cents: u64,
    #[serde(default)]
    pub tool_calls: u64,
}

/// Why a usage report cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the usage report {found} cannot be read: {problem}")]
pub struct UsageError {
    /// The report, as JSON.
    pub found: String,
    pub problem: String,
}

/// `text`, cut to its first 200 characters (with a note of how much more there was): a usage
/// report quoted in an error stays a line, however large the report.
fn shortened(text: &str) -> String {
    const KEEP: usize = 200;
    match text.char_indices().nth(KEEP) {
        Some((end, _)) => format!("{}… ({} more bytes)", &text[..end], text.len() - end),
        None => text.to_owned(),
    }
}

impl Usage {
    /// The names of its parts, as reports and budgets call them.
    pub const PARTS: [&'static str; 3] = ["tokens", "cost_cents", "tool_calls"];

    /// Reads a usage report: an object whose keys are among [`Usage::PARTS`], each a whole
    /// number ≥ 0. Anything else is an error that names it; nothing is taken as zero.
    pub fn read(report: &Value) -> Result<Usage, UsageError> {
        let fail = |problem: String| UsageError {
            found: shortened(&report.to_string()),
            problem,
        };
        let Value::Object(fields) = report else {
            return Err(fail("it is not an object".to_owned()));
        };
        let mut usage = Usage::default();
        for (key, value) in fields {
            let slot = match key.as_str() {
                "tokens" => &mut usage.tokens,
                "cost_cents" => &mut usage.cost_cents,
                "tool_calls" => &mut usage.tool_calls,
                other => {
                    return Err(fail(format!(
                        "unknown field {other:?}; it may have tokens, cost_cents and tool_calls"
                    )));
                }
            };
            *slot = value.as_u64().ok_or_else(|| {
                fail(format!(
                    "{key} must be a whole number of at least 0, not {}",
                    shortened(&value.to_string())
                ))
            })?;
        }
        Ok(usage)
    }

    /// Each part of both, added (saturating).
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            tokens: self.tokens.saturating_add(other.tokens),
            cost_cents: self.cost_cents.saturating_add(other.cost_cents),
            tool_calls: self.tool_calls.saturating_add(other.tool_calls),
        }
    }

    /// Each part less the other's, never below 0.
    pub fn minus(self, other: Usage) -> Usage {
        Usage {
            tokens: self.tokens.saturating_sub(other.tokens),
            cost_cents: self.cost_cents.saturating_sub(other.cost_cents),
            tool_calls: self.tool_calls.saturating_sub(other.tool_calls),
        }
    }

    /// A part by its name in [`Usage::PARTS`].
    pub fn part(&self, name: &str) -> Option<u64> {
        match name {
            "tokens" => Some(self.tokens),
            "cost_cents" => Some(self.cost_cents),
            "tool_calls" => Some(self.tool_calls),
            _ => None,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

impl Envelope for TaskResult {
    const KIND: &'static str = "result";
    const READS: &'static [u16] = &[PROTOCOL_VERSION, SPAWN_VERSION, RESULT_VERSION];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Taking tasks.
    Ready,
    /// Finishing what it has, taking nothing new.
    Draining,
    /// Gone: the last heartbeat a worker sends.
    Stopped,
}

/// One worker process, minted when it starts: two processes given the same worker id tell
/// themselves apart by it. `Instance(0)` is a sender older than the field.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instance(pub u64);

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A worker's announcement, sent on start and every heartbeat interval to
/// `<prefix>.workers.<worker>` (core NATS, not stored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u16,
    pub worker: WorkerId,
    pub capabilities: Vec<Capability>,
    /// How many tasks the worker runs at once, over all its capabilities.
    pub concurrency: u32,
    pub in_flight: u32,
    pub state: WorkerState,
    /// How often the worker promises to send a heartbeat.
    pub interval_ms: u64,
    /// The process sending it; absent (0) from older senders.
    #[serde(default)]
    pub instance: Instance,
    /// When that process started, in ms since the Unix epoch; absent (0) from older senders.
    #[serde(default)]
    pub started_ms: u64,
    /// Capabilities whose circuit breaker is open: the worker pulls none of their tasks until
    /// `until_ms`, and the coordinator counts no capacity for them meanwhile. Absent (empty)
    /// from older senders and when every breaker is closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<Breaker>,
    /// The attempts it runs now, so that the coordinator can fail them over at once if the
    /// worker is gone. Absent (empty) from older senders and when it runs nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<HeldAttempt>,
}

/// An attempt a worker runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeldAttempt {
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
}

/// An open circuit breaker: a capability a worker stopped pulling after `failures`
/// consecutive failed attempts, until `until_ms` (ms since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breaker {
    pub capability: Capability,
    pub failures: u32,
    pub until_ms: u64,
}

impl Heartbeat {
    /// Of two processes announcing the same worker id, whether this one is the one to stop:
    /// the one that started later, ties broken by the larger instance. Both sides agree.
    pub fn yields_to(&self, other: &Heartbeat) -> bool {
        (self.started_ms, self.instance) > (other.started_ms, other.instance)
    }
}

impl Envelope for Heartbeat {
    const KIND: &'static str = "heartbeat";
}

/// Sent by the coordinator on `<prefix>.control.stop` (core NATS) when an attempt timed out or an
/// operator canceled it: whichever worker runs it stops it and reports nothing; its outcome no
/// longer counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopAttempt {
    pub v: u16,
    pub run: RunId,
    pub task: TaskId,
    pub attempt: Attempt,
}

impl Envelope for StopAttempt {
    const KIND: &'static str = "stop request";
}

/// One failed attempt, as the dead-letter stream keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: Attempt,
    pub worker: WorkerId,
    pub error: String,
}

/// A task whose attempts ran out, published by the coordinator to `<prefix>.dlq.<run>.<task>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub v: u16,
    pub run: RunId,
    pub task: TaskId,
    pub last_assignment: Assignment,
    pub errors: Vec<AttemptError>,
}

impl Envelope for DeadLetter {
    const KIND: &'static str = "dead letter";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CodecError, decode, encode};
    use serde_json::json;

    fn assignment() -> Assignment {
        Assignment {
            v: PROTOCOL_VERSION,
            run: RunId::new("r1").expect("run"),
            task: TaskId::new("review").expect("task"),
            attempt: Attempt(2),
            capability: Capability::new("security").expect("cap"),
            input: json!({"paths": ["src"], "depth": 3, "deep": {"x": null}}),
            upstream: BTreeMap::from([(TaskId::new("plan").expect("task"), json!("text"))]),
            timeout_ms: 60_000,
            upstream_errors: BTreeMap::from([(
                TaskId::new("lint").expect("task"),
                UpstreamError {
                    status: UpstreamStatus::Skipped,
                    error: "not chosen".into(),
                },
            )]),
        }
    }

    fn result(outcome: Outcome) -> TaskResult {
        TaskResult {
            v: PROTOCOL_VERSION,
            run: RunId::new("r1").expect("run"),
            task: TaskId::new("review").expect("task"),
            attempt: Attempt(1),
            worker: WorkerId::new("w1").expect("worker"),
            outcome,
            duration_ms: 12,
            usage: None,
        }
    }

    #[test]
    fn assignment_round_trips() {
        let a = assignment();
        let bytes = encode(&a).expect("encode");
        assert_eq!(decode::<Assignment>(&bytes, 1 << 20).expect("decode"), a);
    }

    #[test]
    fn results_round_trip_both_outcomes() {
        for outcome in [
            Outcome::succeeded(json!({"findings": [1, 2]})),
            Outcome::Succeeded {
                output: json!(null),
                spawn: vec![json!({"id": "a", "capability": "c"})],
                branch: Some(vec!["b".into()]),
            },
            Outcome::Failed {
                error: "boom".into(),
                permanent: true,
            },
        ] {
            let r = result(outcome);
            let bytes = encode(&r).expect("encode");
            assert_eq!(decode::<TaskResult>(&bytes, 1 << 20).expect("decode"), r);
        }
    }

    #[test]
    fn encodes_named_fields() {
        let bytes = encode(&assignment()).expect("encode");
        let as_json: Value = rmp_serde::from_slice(&bytes).expect("generic decode");
        assert_eq!(as_json["task"], json!("review"));
        assert_eq!(as_json["v"], json!(PROTOCOL_VERSION));
        let r = encode(&result(Outcome::Failed {
            error: "e".into(),
            permanent: false,
        }))
        .expect("encode");
        let as_json: Value = rmp_serde::from_slice(&r).expect("generic decode");
        assert_eq!(as_json["outcome"]["status"], json!("failed"));
    }

    #[test]
    fn rejects_oversized_messages() {
        let bytes = encode(&assignment()).expect("encode");
        match decode::<Assignment>(&bytes, 10) {
            Err(CodecError::TooLarge {
                bytes: n, limit, ..
            }) => {
                assert_eq!((n, limit), (bytes.len(), 10))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn rejects_other_versions() {
        let mut a = assignment();
        a.v = 99;
        let bytes = encode(&a).expect("encode");
        match decode::<Assignment>(&bytes, 1 << 20) {
            Err(CodecError::WrongVersion { found: 99, .. }) => {}
            other => panic!("expected WrongVersion, got {other:?}"),
        }
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(
            decode::<TaskResult>(b"not msgpack at all", 1 << 20),
            Err(CodecError::Malformed { .. })
        ));
        let bytes = encode(&assignment()).expect("encode");
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode::<Assignment>(&bytes[..cut], 1 << 20).is_err());
        }
    }

    #[test]
    fn rejects_invalid_names_inside_envelopes() {
        let mut generic: Value =
            rmp_serde::from_slice(&encode(&assignment()).expect("encode")).expect("generic");
        generic["capability"] = json!("a.b");
        let bytes = rmp_serde::to_vec_named(&generic).expect("encode");
        let err = decode::<Assignment>(&bytes, 1 << 20).expect_err("invalid capability");
        assert!(err.to_string().contains("capability"), "{err}");
    }

    #[test]
    fn deeply_nested_input_is_refused_not_a_stack_overflow() {
        // Hand-built MessagePack: an assignment whose `input` is 5000 nested one-element arrays.
        let mut generic: Value =
            rmp_serde::from_slice(&encode(&assignment()).expect("encode")).expect("generic");
        generic["input"] = json!(null);
        let mut bytes = rmp_serde::to_vec_named(&generic).expect("encode");
        let marker = rmp_serde::to_vec(&json!(null)).expect("nil");
        let at = bytes
            .windows(6)
            .position(|w| w == b"\xa5input")
            .expect("input key")
            + 6;
        assert_eq!(bytes[at], marker[0]);
        let mut nested = vec![0x91u8; 5000];
        nested.push(0xc0);
        bytes.splice(at..at + 1, nested);
        match decode::<Assignment>(&bytes, 1 << 20) {
            Err(CodecError::Malformed { .. }) => {}
            other => panic!("expected a depth error, got {other:?}"),
        }
    }

    fn heartbeat(instance: u64, started_ms: u64) -> Heartbeat {
        Heartbeat {
            v: PROTOCOL_VERSION,
            worker: WorkerId::new("w1").expect("worker"),
            capabilities: vec![Capability::new("c").expect("cap")],
            concurrency: 2,
            in_flight: 0,
            state: WorkerState::Ready,
            interval_ms: 2_000,
            instance: Instance(instance),
            started_ms,
            breakers: Vec::new(),
            attempts: Vec::new(),
        }
    }

    #[test]
    fn heartbeats_without_an_instance_still_decode() {
        let mut generic: Value =
            rmp_serde::from_slice(&encode(&heartbeat(7, 9)).expect("encode")).expect("generic");
        let map = generic.as_object_mut().expect("a map");
        map.remove("instance");
        map.remove("started_ms");
        let bytes = rmp_serde::to_vec_named(&generic).expect("encode");
        let old = decode::<Heartbeat>(&bytes, 1 << 20).expect("an older heartbeat decodes");
        assert_eq!((old.instance, old.started_ms), (Instance(0), 0));
    }

    #[test]
    fn the_later_process_yields_and_both_sides_agree() {
        let (early, late) = (heartbeat(9, 100), heartbeat(1, 200));
        assert!(late.yields_to(&early) && !early.yields_to(&late));
        let (a, b) = (heartbeat(1, 100), heartbeat(2, 100));
        assert!(
            b.yields_to(&a) && !a.yields_to(&b),
            "same start: the larger instance yields"
        );
        assert!(!a.yields_to(&a.clone()));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode::<Assignment>(&bytes, 1 << 20);
            let _ = decode::<TaskResult>(&bytes, 1 << 20);
            let _ = decode::<Heartbeat>(&bytes, 1 << 20);
        }
    }

    #[test]
    fn a_usage_report_is_read_whole_or_refused_naming_the_problem() {
        assert_eq!(
            Usage::read(&json!({"tokens": 120, "tool_calls": 3})),
            Ok(Usage {
                tokens: 120,
                cost_cents: 0,
                tool_calls: 3
            })
        );
        for (report, problem) in [
            (
                json!({"tokens": -5}),
                "tokens must be a whole number of at least 0, not -5",
            ),
            (
                json!({"tokens": "5"}),
                "tokens must be a whole number of at least 0, not \"5\"",
            ),
            (json!({"tokens": 1.5}), "not 1.5"),
            (json!({"dollars": 2}), "unknown field \"dollars\""),
            (json!([1]), "it is not an object"),
        ] {
            let error = Usage::read(&report).expect_err("unreadable");
            assert!(error.to_string().contains(problem), "{error}");
        }
    }

    #[test]
    fn a_result_carries_the_lowest_version_that_holds_it() {
        let mut r = result(Outcome::succeeded(json!(1)));
        assert_eq!(r.version(), PROTOCOL_VERSION);
        r.outcome = Outcome::Succeeded {
            output: json!(1),
            spawn: Vec::new(),
            branch: Some(Vec::new()),
        };
        assert_eq!(r.version(), SPAWN_VERSION);
        r.usage = Some(json!({"tokens": 1}));
        assert_eq!(r.version(), RESULT_VERSION);
    }

    #[test]
    fn a_huge_unreadable_report_is_quoted_short() {
        let huge = json!({ "tokens": "x".repeat(100_000) });
        let error = Usage::read(&huge).expect_err("unreadable");
        assert!(error.to_string().len() < 700, "{}", error.to_string().len());
        assert!(error.found.contains("more bytes)"), "{}", error.found);
    }
}
