//! One task as written (in a plan's `[[tasks]]` or in a spawn), checked and completed with
//! the defaults: names, input limits, durations, retry settings, needs.

use std::time::Duration;

use serde_json::Value;

use super::shape::depth_of;
use super::{
    Capability, MAX_INPUT_DEPTH, ProblemKind, RetryFile, RetryPolicy, Rung, TaskDefaults, TaskFile,
    TaskId, TaskSpec,
};
use crate::envelope::Usage;

/// What is wrong with a task's input against the limits: too large, or nested too deep.
pub(super) fn input_problems(input: &Value, max_input_bytes: usize) -> Vec<ProblemKind> {
    let mut problems = Vec::new();
    let bytes = serde_json::to_vec(input).map_or(0, |v| v.len());
    if bytes > max_input_bytes {
        problems.push(ProblemKind::InputTooLarge {
            bytes,
            limit: max_input_bytes,
        });
    }
    let depth = depth_of(input);
    if depth > MAX_INPUT_DEPTH {
        problems.push(ProblemKind::InputTooDeep {
            depth,
            limit: MAX_INPUT_DEPTH,
        });
    }
    problems
}

pub(super) fn parse_duration(field: &str, value: &str) -> Result<u64, ProblemKind> {
    let invalid = |message: String| ProblemKind::InvalidSetting {
        field: field.to_owned(),
        message,
    };
    let d: Duration = humantime::parse_duration(value).map_err(|e| {
        invalid(format!(
            "{value:?} is not a duration like \"500ms\", \"2s\" or \"5m\" ({e})"
        ))
    })?;
    u64::try_from(d.as_millis()).map_err(|_| invalid(format!("{value:?} is too long")))
}

pub(super) fn merge_retry(
    base: &RetryPolicy,
    over: Option<&RetryFile>,
) -> Result<RetryPolicy, ProblemKind> {
    let Some(over) = over else {
        return Ok(base.clone());
    };
    let invalid = |field: &str, message: &str| ProblemKind::InvalidSetting {
        field: format!("retry.{field}"),
        message: message.to_owned(),
    };
    let policy = RetryPolicy {
        max_attempts: over.max_attempts.unwrap_or(base.max_attempts),
        initial_backoff_ms: match &over.initial_backoff {
            Some(v) => parse_duration("retry.initial_backoff", v)?,
            None => base.initial_backoff_ms,
        },
        multiplier: over.multiplier.unwrap_or(base.multiplier),
        max_backoff_ms: match &over.max_backoff {
            Some(v) => parse_duration("retry.max_backoff", v)?,
            None => base.max_backoff_ms,
        },
        jitter: over.jitter.unwrap_or(base.jitter),
    };
    if policy.max_attempts == 0 {
        return Err(invalid(
            "max_attempts",
            "must be at least 1 (1 means no retry)",
        ));
    }
    if !(policy.multiplier.is_finite() && policy.multiplier >= 1.0) {
        return Err(invalid("multiplier", "must be a number of at least 1.0"));
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        return Err(invalid("jitter", "must be between 0.0 and 1.0"));
    }
    if policy.max_backoff_ms < policy.initial_backoff_ms {
        return Err(invalid(
            "max_backoff",
            "must not be shorter than initial_backoff",
        ));
    }
    Ok(policy)
}

/// Checks one task as written (in a plan or a spawn) and applies `defaults`: the task, or
/// `None` with its problems reported. `known` says whether a task it needs may be needed.
pub(super) fn check_task(
    t: &TaskFile,
    defaults: &TaskDefaults,
    max_input_bytes: usize,
    known: impl Fn(&str) -> Result<(), ProblemKind>,
    problem: &mut impl FnMut(ProblemKind),
) -> Option<TaskSpec> {
    let id = TaskId::new(t.id.as_str()).map_err(|e| problem(ProblemKind::InvalidName(e)));
    let capability =
        Capability::new(t.capability.as_str()).map_err(|e| problem(ProblemKind::InvalidName(e)));
    for kind in input_problems(&t.input, max_input_bytes) {
        problem(kind);
    }
    let retry = merge_retry(&defaults.retry, t.retry.as_ref()).map_err(&mut *problem);
    let timeout_ms = match &t.timeout {
        Some(v) => parse_duration("timeout", v).map_err(&mut *problem),
        None => Ok(defaults.timeout_ms),
    };
    if timeout_ms == Ok(0) {
        problem(ProblemKind::InvalidSetting {
            field: "timeout".into(),
            message: "must be longer than 0".into(),
        });
    }
    let mut needs = Vec::with_capacity(t.needs.len());
    for dep in &t.needs {
        if *dep == t.id {
            problem(ProblemKind::SelfDependency);
        } else if let Err(kind) = known(dep) {
            problem(kind);
        } else if let Ok(dep) = TaskId::new(dep.as_str())
            && !needs.contains(&dep)
        {
            needs.push(dep);
        }
    }
    let spawns = t.spawns.as_ref().map(|list| {
        list.iter()
            .filter_map(|c| {
                Capability::new(c.as_str())
                    .map_err(|e| problem(ProblemKind::InvalidName(e)))
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    let escalate = ladder(t, retry.as_ref().ok(), problem);
    let (Ok(id), Ok(capability), Ok(retry), Ok(timeout_ms)) = (id, capability, retry, timeout_ms)
    else {
        return None;
    };
    Some(TaskSpec {
        id,
        capability,
        input: t.input.clone(),
        needs,
        priority: t.priority.unwrap_or(defaults.priority),
        retry,
        timeout_ms,
        trigger: t.trigger.unwrap_or_default(),
        spawns,
        escalate,
        estimate: t.estimate.map_or_else(Usage::default, |e| Usage {
            tokens: e.tokens.unwrap_or(0),
            cost_cents: e.cost_cents.unwrap_or(0),
            tool_calls: e.tool_calls.unwrap_or(0),
        }),
    })
}

/// A task's `escalate` ladder: each rung checked, a reroute's retry defaulting to the task's.
fn ladder(
    t: &TaskFile,
    retry: Option<&RetryPolicy>,
    problem: &mut impl FnMut(ProblemKind),
) -> Vec<Rung> {
    let base = retry.cloned().unwrap_or_default();
    let mut rungs = Vec::with_capacity(t.escalate.len());
    for (at, rung) in t.escalate.iter().enumerate() {
        let field = format!("escalate[{at}]");
        let invalid = |message: &str| ProblemKind::InvalidSetting {
            field: field.clone(),
            message: message.to_owned(),
        };
        let kinds = [
            rung.reroute.is_some(),
            rung.replan.is_some(),
            rung.human.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            problem(invalid(
                "a rung has exactly one of reroute, replan or human",
            ));
            continue;
        }
        let Some(capability) = &rung.reroute else {
            problem(invalid(
                "only reroute rungs are built so far; replan and human rungs come in a later release",
            ));
            continue;
        };
        let capability = match Capability::new(capability.as_str()) {
            Ok(c) => c,
            Err(e) => {
                problem(ProblemKind::InvalidName(e));
                continue;
            }
        };
        match merge_retry(&base, rung.retry.as_ref()) {
            Ok(retry) => rungs.push(Rung::Reroute { capability, retry }),
            Err(kind) => problem(kind),
        }
    }
    rungs
}
