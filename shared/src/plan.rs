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
mod trigger;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{Capability, TaskId};

pub use params::{ParamError, ParamProblem, ParamSpec, ParamValues, ValuesError, is_identifier};
pub use problem::{PlanProblem, ProblemKind};
use problem::{at_line, list_problems};
use shape::{depth_of, find_cycle};
pub use spawn::{Limits, SpawnScope, validate_spawn};
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read plan {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Plan {
        path: String,
        #[source]
        source: PlanError,
    },
}

/// What is wrong with a task's input against the limits: too large, or nested too deep.
fn input_problems(input: &Value, max_input_bytes: usize) -> Vec<ProblemKind> {
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

fn parse_duration(field: &str, value: &str) -> Result<u64, ProblemKind> {
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

fn merge_retry(base: &RetryPolicy, over: Option<&RetryFile>) -> Result<RetryPolicy, ProblemKind> {
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
    let run_limits = file.limits.resolve();
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
        tasks,
        limits: run_limits,
        defaults,
        max_input_bytes: limits.max_input_bytes,
    })
}

/// Checks one task as written (in a plan or a spawn) and applies `defaults`: the task, or
/// `None` with its problems reported. `known` says whether a task it needs may be needed.
fn check_task(
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
    })
}

#[cfg(test)]
mod tests;
