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
        }
    }
}
