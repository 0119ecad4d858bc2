//! Plans: a task graph in TOML or JSON, parsed and validated into a [`Plan`].
//!
//! Validation collects every problem it finds (not just the first), each naming the task and,
//! where the format allows, the line.
//!
//! A plan may declare parameters (`[params]`) that its task inputs reference as
//! `{{ params.NAME }}`; [`Plan::with_params`] makes the concrete plan a run records (see
//! [`params`]).

mod params;
mod problem;
mod shape;
mod spawn;
mod task;
mod trigger;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Usage;
use crate::ids::{Capability, TaskId};

pub use params::{
    ParamError, ParamProblem, ParamSpec, ParamValues, ValuesError, is_identifier, json_type,
};
pub use problem::{PlanProblem, ProblemKind};
use problem::{at_line, list_problems};
use shape::find_cycle;
pub use spawn::{Limits, SpawnScope, validate_spawn};
use task::{check_task, input_problems, merge_retry, parse_duration};
pub use trigger::{Trigger, UpstreamCounts, Verdict};

/// Default limit on a task's `input`, encoded as JSON.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 256 * 1024;

/// Deepest nesting of arrays and maps a task's `input` may have; well under what the wire
/// codec accepts ([`crate::codec::MAX_DEPTH`]), with room for the envelope around it.
pub const MAX_INPUT_DEPTH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanFormat {
    Toml,
    Json,
}

impl PlanFormat {
    /// By extension (`.json`, `.toml`), else by the first non-blank character.
    pub fn detect(path: &Path, source: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Self::Toml,
            _ if source.trim_start().starts_with('{') => Self::Json,
            _ => Self::Toml,
        }
    }
}

impl fmt::Display for PlanFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Toml => "TOML",
            Self::Json => "JSON",
        })
    }
}

/// Limits a plan must respect; set by the coordinator's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    pub max_input_bytes: usize,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// How a task is retried after a retryable failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, including the first. 1 means no retry.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub multiplier: f64,
    pub max_backoff_ms: u64,
    /// Fraction (0 to 1) by which a delay may be shortened, reproducibly per attempt.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_ms: 1_000,
            multiplier: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.0,
        }
    }
}

pub const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1_000;

/// What a task gets for what it leaves out: the plan's `[defaults]`, kept with the plan so that
/// tasks spawned at run time get them too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskDefaults {
    pub priority: i32,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
}

impl Default for TaskDefaults {
    fn default() -> Self {
        Self {
            priority: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry: RetryPolicy::default(),
        }
    }
}

impl TaskDefaults {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A validated task: defaults applied, names checked, dependencies known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub capability: Capability,
    pub input: Value,
    pub needs: Vec<TaskId>,
    /// Higher runs first among ready tasks.
    pub priority: i32,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    /// When the task runs, given how the tasks it waits for ended.
    #[serde(default, skip_serializing_if = "Trigger::is_default")]
    pub trigger: Trigger,
    /// The capabilities the task's spawned tasks may have; `None`: any. The simulator makes a
    /// task with this list spawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawns: Option<Vec<Capability>>,
    /// What one attempt is expected to use: reserved from the run's budgets at dispatch,
    /// settled at the result. Zero (absent): reserves nothing.
    #[serde(default, skip_serializing_if = "Usage::is_zero")]
    pub estimate: Usage,
    /// The ladder it climbs once its retries run out (or at once on a permanent failure),
    /// rung by rung, before it is dead-lettered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate: Vec<Rung>,
}

/// A rung of a task's escalation ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rung", rename_all = "snake_case")]
pub enum Rung {
    /// Run the same task on another capability, with this retry policy.
    Reroute {
        capability: Capability,
        retry: RetryPolicy,
    },
}

/// A validated plan: at least one task, unique ids, known dependencies, no cycle, every
/// parameter reference declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub name: String,
    /// Declared parameters, by name. Empty in a concrete plan ([`Plan::with_params`]), which is
    /// what a run records; absent from logs written before parameters existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamSpec>,
    /// The run's priority: among ready tasks, a run of higher priority goes first, before any
    /// task priority. Absent (0) from logs written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    pub tasks: Vec<TaskSpec>,
    /// How far the run may grow by spawning.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
    /// What spawned tasks get for what they leave out.
    #[serde(default, skip_serializing_if = "TaskDefaults::is_default")]
    pub defaults: TaskDefaults,
    /// The limit on a task's input the plan was checked against; spawned tasks are held to it.
    #[serde(
        default = "default_max_input_bytes",
        skip_serializing_if = "is_default_max_input_bytes"
    )]
    pub max_input_bytes: usize,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn default_max_input_bytes() -> usize {
    DEFAULT_MAX_INPUT_BYTES
}

fn is_default_max_input_bytes(bytes: &usize) -> bool {
    *bytes == DEFAULT_MAX_INPUT_BYTES
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("{format} syntax error{}: {message}", at_line(*line))]
    Syntax {
        format: PlanFormat,
        line: Option<usize>,
        message: String,
    },
    #[error("{}", list_problems("plan is invalid", problems))]
    Invalid { problems: Vec<PlanProblem> },
    /// The plan is valid but the values given for its parameters do not fit it.
    #[error(transparent)]
    Params(#[from] ParamError),
}

// ---- The file format, as written by operators. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: Option<String>,
    priority: Option<i32>,
    #[serde(default)]
    params: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    defaults: DefaultsFile,
    #[serde(default)]
    limits: spawn::LimitsFile,
    #[serde(default)]
    tasks: Vec<TaskFile>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    priority: Option<i32>,
    timeout: Option<String>,
    retry: Option<RetryFile>,
}

#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    max_attempts: Option<u32>,
    initial_backoff: Option<String>,
    multiplier: Option<f64>,
    max_backoff: Option<String>,
    jitter: Option<f64>,
}

/// A task as written: in a plan's `[[tasks]]`, and in a spawn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    id: String,
    capability: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    needs: Vec<String>,
    priority: Option<i32>,
    timeout: Option<String>,
    retry: Option<RetryFile>,
    trigger: Option<Trigger>,
    spawns: Option<Vec<String>>,
    estimate: Option<EstimateFile>,
    #[serde(default)]
    escalate: Vec<RungFile>,
}

/// A rung as written: exactly one of `reroute`, `replan`, `human`, and for the first two an
/// optional `retry`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RungFile {
    reroute: Option<String>,
    replan: Option<String>,
    human: Option<Value>,
    retry: Option<RetryFile>,
}

/// A task's `estimate` as written: what one attempt is expected to use.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EstimateFile {
    tokens: Option<u64>,
    cost_cents: Option<u64>,
    tool_calls: Option<u64>,
}

impl Plan {
    /// Parses and validates a plan.
    pub fn parse(source: &str, format: PlanFormat, limits: &PlanLimits) -> Result<Plan, PlanError> {
        let file: PlanFile = match format {
            PlanFormat::Toml => toml::from_str(source).map_err(|e| PlanError::Syntax {
                format,
                line: e.span().map(|s| line_of_offset(source, s.start)),
                message: e.message().trim().to_owned(),
            })?,
            PlanFormat::Json => serde_json::from_str(source).map_err(|e| PlanError::Syntax {
                format,
                line: Some(e.line()),
                message: e.to_string(),
            })?,
        };
        validate(file, source, format, limits)
    }

    /// Parses and validates a plan, then substitutes `values` into it: the concrete plan.
    pub fn parse_with_params(
        source: &str,
        format: PlanFormat,
        limits: &PlanLimits,
        values: &ParamValues,
    ) -> Result<Plan, PlanError> {
        Ok(Plan::parse(source, format, limits)?.with_params(values, limits)?)
    }

    /// Reads, parses and validates a plan file.
    pub fn load(path: &Path, limits: &PlanLimits) -> Result<Plan, LoadError> {
        let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Plan::parse(&source, PlanFormat::detect(path, &source), limits).map_err(|source| {
            LoadError::Plan {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Reads, parses and validates a plan file, then substitutes `values`: the concrete plan.
    pub fn load_with_params(
        path: &Path,
        limits: &PlanLimits,
        values: &ParamValues,
    ) -> Result<Plan, LoadError> {
        Plan::load(path, limits)?
            .with_params(values, limits)
            .map_err(|source| LoadError::Plan {
                path: path.display().to_string(),
                source: source.into(),
            })
    }

    pub fn task(&self, id: &TaskId) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| &t.id == id)
    }
}

/// Why a plan file could not be loaded. Its text names the file; what went wrong is its
/// `source` (print the chain, as `{:#}` of an `anyhow::Error` does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read plan {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Plan {
        path: String,
        #[source]
        source: PlanError,
    },
}

fn line_of_offset(source: &str, offset: usize) -> usize {
    source
        .get(..offset)
        .map_or(0, |s| s.bytes().filter(|b| *b == b'\n').count())
        + 1
}

/// The line where the `index`-th task (with this id) starts, where it can be found.
fn task_line(source: &str, format: PlanFormat, index: usize, id: &str) -> Option<usize> {
    match format {
        PlanFormat::Toml => source
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with("[[tasks]]"))
            .nth(index)
            .map(|(n, _)| n + 1),
        PlanFormat::Json => {
            let quoted = format!("{id:?}");
            source
                .lines()
                .position(|l| l.contains("\"id\"") && l.contains(&quoted))
                .map(|n| n + 1)
        }
    }
}

fn validate(
    file: PlanFile,
    source: &str,
    format: PlanFormat,
    limits: &PlanLimits,
) -> Result<Plan, PlanError> {
    let mut problems = Vec::new();
    let mut plan_problem = |kind| {
        problems.push(PlanProblem {
            line: None,
            task: None,
            param: None,
            kind,
        })
    };

    let retry =
        merge_retry(&RetryPolicy::default(), file.defaults.retry.as_ref()).unwrap_or_else(|kind| {
            plan_problem(kind);
            RetryPolicy::default()
        });
    let timeout_ms = match &file.defaults.timeout {
        Some(v) => parse_duration("defaults.timeout", v).unwrap_or_else(|kind| {
            plan_problem(kind);
            DEFAULT_TIMEOUT_MS
        }),
        None => DEFAULT_TIMEOUT_MS,
    };
    let defaults = TaskDefaults {
        priority: file.defaults.priority.unwrap_or(0),
        timeout_ms,
        retry,
    };
    let run_limits = file.limits.resolve().unwrap_or_else(|kind| {
        plan_problem(kind);
        Limits::default()
    });
    if file.tasks.is_empty() {
        plan_problem(ProblemKind::Empty);
    }
    if file.tasks.len() > run_limits.tasks as usize {
        plan_problem(ProblemKind::OverLimit {
            limit: "tasks",
            value: file.tasks.len(),
            max: run_limits.tasks,
        });
    }
    problems.extend(params::check_names(&file.params, source, format));
    let declared: BTreeSet<&str> = file.params.keys().map(String::as_str).collect();

    let lines: Vec<Option<usize>> = file
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task_line(source, format, i, &t.id))
        .collect();
    let ids: BTreeSet<&str> = file.tasks.iter().map(|t| t.id.as_str()).collect();

    // First occurrence of each id, by position.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(file.tasks.len());
    for (i, t) in file.tasks.iter().enumerate() {
        let mut problem = |kind| {
            problems.push(PlanProblem {
                line: lines[i],
                task: Some(t.id.clone()),
                param: None,
                kind,
            })
        };
        if let Some(&first) = index.get(t.id.as_str()) {
            problem(ProblemKind::DuplicateId {
                first_line: lines[first],
            });
        } else {
            index.insert(&t.id, i);
        }
        for kind in params::check_references(&t.input, &declared) {
            problem(kind);
        }
        let known = |dep: &str| {
            if ids.contains(dep) {
                Ok(())
            } else {
                Err(ProblemKind::UnknownDependency {
                    dependency: dep.to_owned(),
                })
            }
        };
        let checked = check_task(t, &defaults, limits.max_input_bytes, known, &mut problem);
        tasks.extend(checked);
    }

    // Cycles among the tasks that are valid; duplicate ids would make edges ambiguous.
    let duplicates = problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::DuplicateId { .. }));
    if !duplicates && let Some(cycle) = find_cycle(&tasks) {
        let first = cycle[0].clone();
        let at = index.get(first.as_str()).copied();
        problems.push(PlanProblem {
            line: at.and_then(|i| lines[i]),
            task: Some(first),
            param: None,
            kind: ProblemKind::Cycle { tasks: cycle },
        });
    }
    if !problems.is_empty() {
        return Err(PlanError::Invalid { problems });
    }
    Ok(Plan {
        name: file.name.unwrap_or_else(|| "unnamed".to_owned()),
        params: file.params,
        priority: file.priority.unwrap_or(0),
        tasks,
        limits: run_limits,
        defaults,
        max_input_bytes: limits.max_input_bytes,
    })
}

#[cfg(test)]
mod tests;
