//! Operator requests: submit, cancel, pause and resume become inputs; status, runs and workers are answered
//! from the state once the batch they arrived in is applied. Also: minting run ids, and
//! fitting replies into the broker's max payload.

use workforce_shared::{Plan, PlanLimits, RunId, encode};

use super::{Batch, Coordinator};
use crate::api::{ApiError, ApiErrorKind, ApiResponse, Reply, Request};
use crate::scheduler::{Fate, Input, PauseScope, Scheduler};

impl Coordinator {
    pub(super) fn request(
        &mut self,
        request: Request,
        reply: Option<async_nats::Subject>,
        at_ms: u64,
        batch: &mut Batch,
    ) {
        let answer = |batch: &mut Batch, result: Result<Reply, ApiError>| {
            if let Some(reply) = reply.clone() {
                batch.replies.push((reply, ApiResponse::new(result)));
            }
        };
        let pause = matches!(request, Request::Pause { .. });
        match request {
            Request::Submit {
                source,
                format,
                params,
            } => {
                let limits = PlanLimits {
                    max_input_bytes: self.config.max_input_bytes,
                };
                // The concrete plan is what the log records: replay needs no values.
                let result = match Plan::parse_with_params(&source, format, &limits, &params) {
                    Err(e) => Err(ApiError::new(ApiErrorKind::InvalidPlan, e.to_string())),
                    Ok(plan) => new_run_id(&self.scheduler, at_ms).and_then(|run| {
                        let input = Input::RunSubmitted {
                            run: run.clone(),
                            plan,
                        };
                        match self.step(input, at_ms, batch) {
                            Fate::Rejected(r) => {
                                Err(ApiError::new(ApiErrorKind::Internal, r.to_string()))
                            }
                            Fate::Applied | Fate::Ignored(_) => Ok(Reply::Submitted { run }),
                        }
                    }),
                };
                answer(batch, result);
            }
            Request::Cancel { run, task, note } => {
                // An unknown run is answered, not recorded.
                if !self.scheduler.has_run(&run) {
                    return answer(batch, Err(not_found(&run)));
                }
                let input = Input::CancelRequested {
                    run: run.clone(),
                    task,
                    note,
                };
                let result = match self.step(input, at_ms, batch) {
                    Fate::Rejected(r) => {
                        Err(ApiError::new(ApiErrorKind::BadRequest, r.to_string()))
                    }
                    Fate::Applied | Fate::Ignored(_) => Ok(Reply::CancelRequested { run }),
                };
                answer(batch, result);
            }
            Request::Pause { scope } | Request::Resume { scope } => {
                if let PauseScope::Run { run } = &scope
                    && !self.scheduler.has_run(run)
                {
                    return answer(batch, Err(not_found(run)));
                }
                let input = if pause {
                    Input::PauseRequested {
                        scope: scope.clone(),
                    }
                } else {
                    Input::ResumeRequested {
                        scope: scope.clone(),
                    }
                };
                let result = match self.step(input, at_ms, batch) {
                    Fate::Rejected(r) => {
                        Err(ApiError::new(ApiErrorKind::BadRequest, r.to_string()))
                    }
                    Fate::Applied | Fate::Ignored(_) if pause => Ok(Reply::Paused { scope }),
                    Fate::Applied | Fate::Ignored(_) => Ok(Reply::Resumed { scope }),
                };
                answer(batch, result);
            }
            Request::Redrive {
                run,
                task,
                with_input,
                force,
            } => {
                if !self.scheduler.has_run(&run) {
                    return answer(batch, Err(not_found(&run)));
                }
                let input = Input::RedriveRequested {
                    run: run.clone(),
                    task,
                    with_input,
                    force,
                };
                let result = match self.step(input, at_ms, batch) {
                    Fate::Rejected(r) => {
                        Err(ApiError::new(ApiErrorKind::BadRequest, r.to_string()))
                    }
                    Fate::Applied | Fate::Ignored(_) => Ok(Reply::Redriven { run }),
                };
                answer(batch, result);
            }
            query @ (Request::Status { .. }
            | Request::Runs
            | Request::Workers
            | Request::DeadLetters { .. }) => {
                if let Some(reply) = reply {
                    batch.queries.push((reply, query));
                }
            }
        }
    }
}

/// Answers a query from the scheduler's state.
pub(super) fn query(scheduler: &Scheduler, request: Request) -> Result<Reply, ApiError> {
    match request {
        Request::Status { run } => scheduler
            .run_view(&run)
            .map(|view| Reply::Status {
                view: Box::new(view),
            })
            .ok_or_else(|| not_found(&run)),
        Request::Runs => Ok(Reply::Runs {
            runs: scheduler.runs(),
        }),
        Request::Workers => Ok(Reply::Workers {
            workers: scheduler.workers(),
        }),
        Request::DeadLetters { run } => Ok(Reply::DeadLetters {
            letters: scheduler.dead_letters(run.as_ref()),
        }),
        Request::Submit { .. }
        | Request::Cancel { .. }
        | Request::Pause { .. }
        | Request::Resume { .. }
        | Request::Redrive { .. } => Err(ApiError::new(
            ApiErrorKind::Internal,
            "a command was queued as a query",
        )),
    }
}

fn not_found(run: &RunId) -> ApiError {
    ApiError::new(ApiErrorKind::NotFound, format!("no run {run}"))
}

/// A run id from the submission time, unique in the log: `run-<base36 ms>`, bumped past any
/// run that has it.
fn new_run_id(scheduler: &Scheduler, at_ms: u64) -> Result<RunId, ApiError> {
    let mut n = at_ms;
    loop {
        let run = RunId::new(format!("run-{}", base36(n)))
            .map_err(|e| ApiError::new(ApiErrorKind::Internal, e.to_string()))?;
        if !scheduler.has_run(&run) {
            return Ok(run);
        }
        n = n.wrapping_add(1);
    }
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

/// Encodes a reply that fits the broker's max payload: a status too large for it is sent
/// without task outputs (the results stream keeps them), anything else becomes an error.
pub(super) fn encode_reply(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{RunStatus, RunView, TaskStatus, TaskView};
    use serde_json::json;
    use workforce_shared::{PlanFormat, decode};

    #[test]
    fn run_ids_are_base36_time_and_never_clash() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        let mut scheduler = Scheduler::default();
        let first = new_run_id(&scheduler, 36).expect("id");
        assert_eq!(first.as_str(), "run-10");
        let plan = Plan::parse(
            "[[tasks]]\nid = \"t\"\ncapability = \"c\"\n",
            PlanFormat::Toml,
            &PlanLimits::default(),
        )
        .expect("plan");
        scheduler.step(Input::RunSubmitted { run: first, plan });
        assert_eq!(new_run_id(&scheduler, 36).expect("id").as_str(), "run-11");
    }

    fn status(output_bytes: usize) -> ApiResponse {
        let task = TaskView {
            task: "t".parse().expect("id"),
            capability: "c".parse().expect("id"),
            priority: 0,
            status: TaskStatus::Completed,
            attempt: 1,
            started: 1,
            max_attempts: 1,
            trigger: Default::default(),
            redrives: 0,
            rung: 0,
            parent: None,
            usage: Default::default(),
            detail: None,
            output: Some(json!("x".repeat(output_bytes))),
        };
        ApiResponse::new(Ok(Reply::Status {
            view: Box::new(RunView {
                run: "r".parse().expect("id"),
                name: "n".into(),
                semantics: 1,
                status: RunStatus::Succeeded,
                reason: None,
                stop_reason: None,
                paused: false,
                usage: Default::default(),
                attempts: 0,
                limits: Default::default(),
                tasks: vec![task],
            }),
        }))
    }

    #[test]
    fn replies_fit_the_max_payload_by_dropping_outputs_then_as_an_error() {
        let small = encode_reply(status(10), 1_000).expect("encode");
        let back: ApiResponse = decode(&small, 1 << 20).expect("decode");
        assert_eq!(back, status(10));

        let slim = encode_reply(status(5_000), 1_000).expect("encode");
        let back: ApiResponse = decode(&slim, 1 << 20).expect("decode");
        match back.result {
            Ok(Reply::Status { view }) => assert_eq!(view.tasks[0].output, None),
            other => panic!("{other:?}"),
        }

        let error = encode_reply(status(5_000), 20).expect("encode");
        let back: ApiResponse = decode(&error, 1 << 20).expect("decode");
        match back.result {
            Err(e) => {
                assert_eq!(e.kind, ApiErrorKind::Internal);
                assert!(
                    e.message
                        .contains("over the broker's max payload of 20 bytes"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
