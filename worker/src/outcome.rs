//! Turning a handler's work into an [`Outcome`] and a result into bytes that fit a message.
//! No NATS here, so all of it is tested without a broker.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use workforce_shared::{CodecError, Outcome, TaskResult, Usage, encode};

use crate::control::Reported;
use crate::handler::{Handler, TaskContext};

/// How long past its timeout a handler may run before the worker abandons it. Gives a handler
/// that honours the timeout (like `CommandHandler`) the chance to report it with details.
pub(crate) const TIMEOUT_SLACK: Duration = Duration::from_secs(1);

/// How much of an oversized error message a result keeps.
const ERROR_KEEP_BYTES: usize = 4096;

/// How an attempt ended: its outcome, and what it reported using, as its result carries it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    pub(crate) usage: Option<Value>,
}

/// Runs `handler` on `task` within the task's timeout; a panic or a timeout is a retryable
/// failure, never an escape. A success carries what the handler asked of the run; a failure
/// drops it. Either carries what the handler reported using until it ended.
pub(crate) async fn invoke(handler: &dyn Handler, task: TaskContext) -> Finished {
    let timeout = task.timeout;
    let control = task.control().clone();
    // `async move` so that a panic in `handle` itself, before its future exists, is caught too.
    let work = AssertUnwindSafe(async move { handler.handle(task).await }).catch_unwind();
    let finished = tokio::time::timeout(timeout.saturating_add(TIMEOUT_SLACK), work).await;
    let Reported { growth, usage } = control.close();
    let failure = match finished {
        Ok(Ok(Ok(output))) => match usage.problem() {
            None => {
                return Finished {
                    outcome: Outcome::Succeeded {
                        output,
                        spawn: growth.spawn,
                        branch: growth.branch,
                    },
                    usage: usage.to_value(),
                };
            }
            // Budgets fail closed: a success whose usage cannot be read is no success. (A
            // `CommandHandler` fails such an attempt itself; a handler around one may not.)
            Some(problem) => Outcome::Failed {
                error: problem.to_string(),
                permanent: true,
            },
        },
        Ok(Ok(Err(error))) => Outcome::Failed {
            error: error.message().to_owned(),
            permanent: error.is_permanent(),
        },
        Ok(Err(panic)) => Outcome::Failed {
            error: format!("handler panicked: {}", panic_message(panic.as_ref())),
            permanent: false,
        },
        Err(_elapsed) => Outcome::Failed {
            error: format!("timed out after {}", humantime::format_duration(timeout)),
            permanent: false,
        },
    };
    if !growth.is_empty() {
        // A retry asks again; only a success grows the run.
        tracing::debug!(
            spawn = growth.spawn.len(),
            branch = growth.branch.is_some(),
            "the attempt failed: dropping what it asked of the run"
        );
    }
    Finished {
        outcome: failure,
        usage: usage.to_value(),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// Encodes `result`, shrinking it in place if it exceeds `limit`: an oversized success (output
/// or spawn) becomes a permanent failure saying so, an oversized error message is cut. A result is
/// never dropped, keeps its usage report (one too large to send, which cannot be read anyway,
/// becomes a note saying so), and always carries the lowest version that holds what is left of
/// it.
pub(crate) fn seal(result: &mut TaskResult, limit: usize) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(result)?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    let error = match &result.outcome {
        Outcome::Succeeded { spawn, .. } if !spawn.is_empty() => {
            let tasks = spawn.len();
            let mut without = result.clone();
            if let Outcome::Succeeded { spawn, .. } = &mut without.outcome {
                spawn.clear();
            }
            let spawn_bytes = bytes.len().saturating_sub(encode(&without)?.len());
            format!(
                "spawn too large for one message: the result is {} bytes, {spawn_bytes} of them \
                 the spawn of {tasks} tasks, over the message limit of {limit} bytes \
                 (max_message_bytes); spawn fewer tasks per attempt, and keep large inputs \
                 and outputs elsewhere and pass a reference",
                bytes.len()
            )
        }
        Outcome::Succeeded { .. } => format!(
            "output too large: the result is {} bytes, over the message limit of {limit} \
             bytes (max_message_bytes); write large outputs elsewhere and return a reference",
            bytes.len()
        ),
        Outcome::Failed { error, .. } => cut(error, ERROR_KEEP_BYTES.min(limit / 2)),
    };
    let permanent = match &result.outcome {
        Outcome::Succeeded { .. } => true,
        Outcome::Failed { permanent, .. } => *permanent,
    };
    result.outcome = Outcome::Failed { error, permanent };
    result.v = result.version();
    let bytes = encode(result)?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    // Only a report that cannot be read can be this large (one that can is three numbers), and
    // it has failed the attempt already. A note in its place cannot be read either, so the
    // coordinator still charges the task's estimate.
    if let Some(report) = &mut result.usage
        && Usage::read(report).is_err()
    {
        let report_bytes = report.to_string().len();
        *report = Value::String(format!(
            "omitted: a usage report of {report_bytes} bytes of JSON, too large for one message"
        ));
    }
    encode(result)
}

/// The first `keep` bytes of `text` (on a char boundary) and a note of how much was cut.
fn cut(text: &str, keep: usize) -> String {
    let mut end = keep.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use workforce_shared::{
        Attempt, Capability, PROTOCOL_VERSION, RESULT_VERSION, RunId, SPAWN_VERSION, TaskId,
        WorkerId, decode,
    };

    use super::*;
    use crate::control::{SpawnTask, UsageReport};
    use crate::handler::{HandlerError, handler_fn};

    fn task(timeout: Duration) -> TaskContext {
        TaskContext::new(
            RunId::new("r1").expect("run"),
            TaskId::new("t1").expect("task"),
            Attempt(1),
            Capability::new("c").expect("cap"),
            json!({"n": 1}),
            timeout,
        )
    }

    fn result(outcome: Outcome) -> TaskResult {
        TaskResult {
            v: PROTOCOL_VERSION,
            run: RunId::new("r1").expect("run"),
            task: TaskId::new("t1").expect("task"),
            attempt: Attempt(1),
            worker: WorkerId::new("w").expect("worker"),
            outcome,
            duration_ms: 5,
            usage: None,
        }
    }

    #[tokio::test]
    async fn maps_outputs_and_errors() {
        let ok = handler_fn(|t: TaskContext| async move { Ok(t.input) });
        assert_eq!(
            invoke(&ok, task(Duration::from_secs(5))).await.outcome,
            Outcome::succeeded(json!({"n": 1}))
        );
        let permanent =
            handler_fn(|_| async { Err::<Value, _>(HandlerError::permanent("bad input")) });
        assert_eq!(
            invoke(&permanent, task(Duration::from_secs(5)))
                .await
                .outcome,
            Outcome::Failed {
                error: "bad input".into(),
                permanent: true
            }
        );
    }

    #[tokio::test]
    async fn a_success_carries_what_the_handler_asked_of_the_run() {
        let grows = handler_fn(|t: TaskContext| async move {
            t.spawn(SpawnTask::new("part-1", "c").input(json!(1)));
            t.spawn_all([json!({"id": "part-2", "capability": "c"})]);
            t.branch(["next"]);
            Ok(json!("planned"))
        });
        let outcome = invoke(&grows, task(Duration::from_secs(5))).await.outcome;
        assert_eq!(
            outcome,
            Outcome::Succeeded {
                output: json!("planned"),
                spawn: vec![
                    json!({"id": "part-1", "capability": "c", "input": 1}),
                    json!({"id": "part-2", "capability": "c"}),
                ],
                branch: Some(vec!["next".into()]),
            }
        );
        assert_eq!(outcome.version(), SPAWN_VERSION);
        let plain = handler_fn(|_| async { Ok(json!(1)) });
        assert_eq!(
            invoke(&plain, task(Duration::from_secs(5)))
                .await
                .outcome
                .version(),
            PROTOCOL_VERSION
        );
    }

    #[tokio::test]
    async fn a_failure_drops_what_the_handler_asked() {
        let fails = handler_fn(|t: TaskContext| async move {
            t.spawn(json!({"id": "a", "capability": "c"}));
            t.branch(Vec::<String>::new());
            Err::<Value, _>(HandlerError::retryable("flaky"))
        });
        assert_eq!(
            invoke(&fails, task(Duration::from_secs(5))).await.outcome,
            Outcome::Failed {
                error: "flaky".into(),
                permanent: false
            }
        );
    }

    #[tokio::test]
    async fn what_is_asked_after_the_handler_returned_is_ignored() {
        let (keep, mut kept) = tokio::sync::mpsc::unbounded_channel();
        let leaks = handler_fn(move |t: TaskContext| {
            let keep = keep.clone();
            async move {
                let _ = keep.send(t.clone());
                Ok(json!(null))
            }
        });
        let outcome = invoke(&leaks, task(Duration::from_secs(5))).await.outcome;
        let late = kept.recv().await.expect("the context");
        late.spawn(json!({"id": "late", "capability": "c"}));
        assert_eq!(outcome, Outcome::succeeded(json!(null)));
        assert!(late.growth().is_empty());
    }

    #[tokio::test]
    async fn a_panic_is_a_retryable_failure() {
        let boom = handler_fn(|_| async { panic!("boom") });
        match invoke(&boom, task(Duration::from_secs(5))).await.outcome {
            Outcome::Failed { error, permanent } => {
                assert_eq!(error, "handler panicked: boom");
                assert!(!permanent);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_past_its_timeout_is_abandoned() {
        let stuck = handler_fn(|_| futures::future::pending());
        match invoke(&stuck, task(Duration::from_secs(3))).await.outcome {
            Outcome::Failed { error, permanent } => {
                assert_eq!(error, "timed out after 3s");
                assert!(!permanent);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    fn spent(tokens: u64) -> Usage {
        Usage {
            tokens,
            ..Usage::default()
        }
    }

    #[tokio::test]
    async fn usage_is_reported_with_a_success_and_a_failure_alike() {
        for succeeds in [true, false] {
            let spends = handler_fn(move |t: TaskContext| async move {
                t.report_usage(spent(100));
                t.report_usage(Usage {
                    cost_cents: 7,
                    ..spent(20)
                });
                if succeeds {
                    Ok(json!("done"))
                } else {
                    Err(HandlerError::permanent("refused"))
                }
            });
            let finished = invoke(&spends, task(Duration::from_secs(5))).await;
            assert_eq!(
                finished.usage,
                Some(json!({"tokens": 120, "cost_cents": 7, "tool_calls": 0}))
            );
            assert_eq!(
                matches!(finished.outcome, Outcome::Succeeded { .. }),
                succeeds
            );
        }
        let silent = handler_fn(|_| async { Ok(json!(1)) });
        assert_eq!(
            invoke(&silent, task(Duration::from_secs(5))).await.usage,
            None,
            "nothing reported: no usage"
        );
        let zero = handler_fn(|t: TaskContext| async move {
            t.report_usage(Usage::default());
            Ok(json!(1))
        });
        assert_eq!(
            invoke(&zero, task(Duration::from_secs(5))).await.usage,
            Some(json!({"tokens": 0, "cost_cents": 0, "tool_calls": 0})),
            "a report of zero is a report, not the absence of one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_panics_or_is_abandoned_still_reports_what_it_reported() {
        let boom = handler_fn(|t: TaskContext| async move {
            t.report_usage(spent(3));
            panic!("boom")
        });
        let finished = invoke(&boom, task(Duration::from_secs(5))).await;
        assert!(matches!(finished.outcome, Outcome::Failed { .. }));
        assert_eq!(finished.usage.expect("usage")["tokens"], json!(3));

        let stuck = handler_fn(|t: TaskContext| async move {
            t.report_usage(spent(4));
            futures::future::pending::<Result<Value, HandlerError>>().await
        });
        let finished = invoke(&stuck, task(Duration::from_secs(3))).await;
        match &finished.outcome {
            Outcome::Failed { error, .. } => assert_eq!(error, "timed out after 3s"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(finished.usage.expect("usage")["tokens"], json!(4));
    }

    #[tokio::test]
    async fn usage_reported_after_the_handler_returned_is_ignored() {
        let (keep, mut kept) = tokio::sync::mpsc::unbounded_channel();
        let leaks = handler_fn(move |t: TaskContext| {
            let keep = keep.clone();
            async move {
                let _ = keep.send(t.clone());
                Ok(json!(null))
            }
        });
        let finished = invoke(&leaks, task(Duration::from_secs(5))).await;
        let late = kept.recv().await.expect("the context");
        late.report_usage(spent(9));
        assert_eq!(finished.usage, None);
        assert_eq!(late.usage(), None);
    }

    #[tokio::test]
    async fn a_success_with_an_unreadable_usage_report_fails_permanently_and_keeps_it() {
        // A handler around a command that ignored the command's failure.
        let ignores = handler_fn(|t: TaskContext| async move {
            t.control()
                .report_usage(UsageReport::given(json!({"tokens": -5})));
            t.spawn(json!({"id": "a", "capability": "c"}));
            Ok(json!("fine"))
        });
        let finished = invoke(&ignores, task(Duration::from_secs(5))).await;
        match finished.outcome {
            Outcome::Failed { error, permanent } => {
                assert!(permanent);
                assert!(error.contains("the usage report"), "{error}");
                assert!(error.contains("not -5"), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(finished.usage, Some(json!({"tokens": -5})));
    }

    #[test]
    fn small_results_are_sealed_unchanged() {
        let r = result(Outcome::succeeded(json!("fine")));
        let bytes = seal(&mut r.clone(), 1 << 20).expect("seal");
        assert_eq!(decode::<TaskResult>(&bytes, 1 << 20).expect("decode"), r);
    }

    #[test]
    fn an_oversized_output_becomes_a_permanent_failure_naming_sizes() {
        let mut r = result(Outcome::succeeded(json!("x".repeat(10_000))));
        let full = encode(&r).expect("encode").len();
        let bytes = seal(&mut r, 2_000).expect("seal");
        assert!(bytes.len() <= 2_000);
        let sealed = decode::<TaskResult>(&bytes, 2_000).expect("decode");
        assert_eq!(sealed, r, "sealed in place: the result is what was encoded");
        match sealed.outcome {
            Outcome::Failed { error, permanent } => {
                assert!(permanent);
                assert!(error.contains("limit of 2000 bytes"), "{error}");
                assert!(error.contains(&format!("is {full} bytes")), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_oversized_spawn_says_so_with_sizes_and_the_failure_is_version_1() {
        let spawn: Vec<Value> = (0..100)
            .map(
                |i| json!({"id": format!("part-{i}"), "capability": "c", "input": "y".repeat(100)}),
            )
            .collect();
        let mut r = result(Outcome::Succeeded {
            output: json!("small"),
            spawn,
            branch: Some(vec!["next".into()]),
        });
        r.v = r.outcome.version();
        assert_eq!(r.v, SPAWN_VERSION);
        let full = encode(&r).expect("encode").len();
        let bytes = seal(&mut r, 2_000).expect("seal");
        let sealed = decode::<TaskResult>(&bytes, 2_000).expect("decode");
        assert_eq!(sealed.v, PROTOCOL_VERSION, "a failure needs no version 2");
        match sealed.outcome {
            Outcome::Failed { error, permanent } => {
                assert!(permanent);
                assert!(
                    error.starts_with("spawn too large for one message"),
                    "{error}"
                );
                assert!(
                    error.contains(&format!("the result is {full} bytes")),
                    "{error}"
                );
                assert!(error.contains("the spawn of 100 tasks"), "{error}");
                assert!(error.contains("limit of 2000 bytes"), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_result_that_fits_keeps_its_spawn_and_version() {
        let mut r = result(Outcome::Succeeded {
            output: json!(1),
            spawn: vec![json!({"id": "a", "capability": "c"})],
            branch: None,
        });
        r.v = r.outcome.version();
        let bytes = seal(&mut r.clone(), 1 << 20).expect("seal");
        assert_eq!(decode::<TaskResult>(&bytes, 1 << 20).expect("decode"), r);
    }

    #[test]
    fn sealing_keeps_the_usage_and_the_version_that_holds_it() {
        let report = json!({"tokens": 120, "cost_cents": 7});
        let mut r = result(Outcome::Succeeded {
            output: json!("x".repeat(10_000)),
            spawn: vec![json!({"id": "a", "capability": "c"})],
            branch: None,
        });
        r.usage = Some(report.clone());
        r.v = r.version();
        assert_eq!(r.v, RESULT_VERSION);
        let small = seal(&mut r.clone(), 1 << 20).expect("seal");
        assert_eq!(decode::<TaskResult>(&small, 1 << 20).expect("decode"), r);

        let bytes = seal(&mut r, 2_000).expect("seal");
        let sealed = decode::<TaskResult>(&bytes, 2_000).expect("decode");
        assert!(matches!(
            sealed.outcome,
            Outcome::Failed {
                permanent: true,
                ..
            }
        ));
        assert_eq!(sealed.usage, Some(report), "the usage survives the seal");
        assert_eq!(sealed.v, RESULT_VERSION, "usage needs version 3");
    }

    #[test]
    fn an_unreadable_usage_report_too_large_to_send_is_replaced_by_a_note() {
        let mut r = result(Outcome::Failed {
            error: "the usage report cannot be read".into(),
            permanent: true,
        });
        r.usage = Some(json!({"notes": "n".repeat(10_000)}));
        r.v = r.version();
        let bytes = seal(&mut r, 2_000).expect("seal");
        assert!(bytes.len() <= 2_000);
        let sealed = decode::<TaskResult>(&bytes, 2_000).expect("decode");
        let note = sealed.usage.expect("still a report");
        let note = note.as_str().expect("a note");
        assert!(
            note.starts_with("omitted: a usage report of 10012 bytes"),
            "{note}"
        );
        assert!(Usage::read(&json!(note)).is_err(), "still unreadable");
        assert_eq!(sealed.v, RESULT_VERSION);
    }

    #[test]
    fn an_oversized_error_is_cut_and_keeps_its_kind() {
        let mut r = result(Outcome::Failed {
            error: "é".repeat(50_000),
            permanent: false,
        });
        let bytes = seal(&mut r, 8_000).expect("seal");
        let sealed = decode::<TaskResult>(&bytes, 8_000).expect("decode");
        match sealed.outcome {
            Outcome::Failed { error, permanent } => {
                assert!(!permanent);
                assert!(error.ends_with("more bytes cut)"), "{error}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
