//! What can be wrong with a plan: each problem names its kind, the task or parameter it
//! concerns and, where the format allows, the line.

use std::fmt;

use crate::ids::NameError;

pub(super) fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// `heading (N problems):` and one indented line per problem.
pub(super) fn list_problems<T: std::fmt::Display>(heading: &str, problems: &[T]) -> String {
    let mut out = format!(
        "{heading} ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// One thing wrong with a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanProblem {
    pub line: Option<usize>,
    /// The task it concerns, as written in the plan.
    pub task: Option<String>,
    /// The parameter it concerns, as written in the plan.
    pub param: Option<String>,
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProblemKind {
    Empty,
    DuplicateId {
        first_line: Option<usize>,
    },
    UnknownDependency {
        dependency: String,
    },
    SelfDependency,
    Cycle {
        tasks: Vec<String>,
    },
    InvalidName(NameError),
    InputTooLarge {
        bytes: usize,
        limit: usize,
    },
    InputTooDeep {
        depth: usize,
        limit: usize,
    },
    InvalidSetting {
        field: String,
        message: String,
    },
    /// A parameter's name is not an identifier.
    InvalidParamName,
    /// An input references a parameter the plan does not declare.
    UndeclaredParam {
        name: String,
    },
    /// Text that starts like a reference (`{{ params.`) but is not `{{ params.NAME }}`.
    MalformedParamReference {
        text: String,
    },
    /// Over one of the run's `[limits]`.
    OverLimit {
        limit: &'static str,
        value: usize,
        max: u32,
    },
    /// A spawned task's id is taken by a task already in the run.
    IdInUse,
    /// A spawned task needs a task that waits for what is being spawned: it would wait for
    /// itself.
    NeedsOwnSpawn {
        dependency: String,
        spawner: String,
    },
    /// A spawned task's capability is not among those its spawner may spawn.
    CapabilityNotAllowed {
        capability: String,
        allowed: Vec<String>,
    },
    /// A spawn entry that is not a task (its position in the spawn, and why).
    MalformedEntry {
        position: usize,
        message: String,
    },
    /// A branch names a task that does not need the task choosing.
    NotADependent {
        chosen: String,
        spawner: String,
    },
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(task) = &self.task {
            write!(f, "task {task:?}: ")?;
        }
        if let Some(param) = &self.param {
            write!(f, "parameter {param:?}: ")?;
        }
        match &self.kind {
            ProblemKind::Empty => write!(f, "the plan has no tasks"),
            ProblemKind::DuplicateId { first_line } => {
                write!(
                    f,
                    "duplicate task id (first defined{})",
                    at_line(*first_line)
                )
            }
            ProblemKind::UnknownDependency { dependency } => {
                write!(f, "needs {dependency:?}, which is not a task in this plan")
            }
            ProblemKind::SelfDependency => write!(f, "needs itself"),
            ProblemKind::Cycle { tasks } => {
                write!(f, "dependency cycle: {}", tasks.join(" -> "))
            }
            ProblemKind::InvalidName(e) => write!(f, "{e}"),
            ProblemKind::InputTooLarge { bytes, limit } => write!(
                f,
                "input is {bytes} bytes as JSON, over the limit of {limit} bytes; pass large data by reference (a path or URL)"
            ),
            ProblemKind::InputTooDeep { depth, limit } => write!(
                f,
                "input nests {depth} levels deep, over the limit of {limit}"
            ),
            ProblemKind::InvalidSetting { field, message } => write!(f, "{field}: {message}"),
            ProblemKind::InvalidParamName => write!(
                f,
                "not a parameter name: use letters, digits and _, not starting with a digit"
            ),
            ProblemKind::UndeclaredParam { name } => write!(
                f,
                "input references {{{{ params.{name} }}}}, which is not declared in [params]"
            ),
            ProblemKind::MalformedParamReference { text } => write!(
                f,
                "input has {text:?}, which is not a parameter reference like {{{{ params.NAME }}}}"
            ),
            ProblemKind::OverLimit { limit, value, max } => write!(
                f,
                "{value} is over the run's limit {limit} = {max} (set in the plan's [limits])"
            ),
            ProblemKind::IdInUse => write!(f, "the run already has a task with this id"),
            ProblemKind::NeedsOwnSpawn {
                dependency,
                spawner,
            } => write!(
                f,
                "needs {dependency:?}, which waits for what {spawner:?} spawns: it would wait for itself"
            ),
            ProblemKind::CapabilityNotAllowed {
                capability,
                allowed,
            } => write!(
                f,
                "capability {capability:?} is not one its spawner may spawn ({})",
                allowed.join(", ")
            ),
            ProblemKind::MalformedEntry { position, message } => {
                write!(f, "spawn[{position}] is not a task: {message}")
            }
            ProblemKind::NotADependent { chosen, spawner } => write!(
                f,
                "branch chooses {chosen:?}, which is not a task that needs {spawner:?}"
            ),
        }
    }
}
