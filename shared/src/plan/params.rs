//! Plan parameters: `[params]` declarations, `{{ params.NAME }}` references in task inputs, the
//! values an operator gives (`--param NAME=VALUE`, `--params FILE.json`), and substituting them
//! into the concrete plan that a run records.
//!
//! Only task `input`s are substituted, through objects and arrays (values, not keys). A string
//! that is exactly one reference becomes the value, whatever its JSON type; a reference inside
//! a longer string is replaced by the value's text: a string as it is, anything else as its
//! JSON. Substitution is one pass: a value that itself contains `{{ params.X }}` stays as given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Plan, PlanFormat, PlanLimits, PlanProblem, ProblemKind};

/// A declared parameter. Without a default, a value is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl ParamSpec {
    pub fn is_required(&self) -> bool {
        self.default.is_none()
    }
}

/// Values for a plan's parameters, by name. Later insertions override earlier ones, so
/// `--param` given after reading `--params FILE` wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParamValues(BTreeMap<String, Value>);

impl ParamValues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    /// Adds every value of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: ParamValues) {
        self.0.extend(other.0);
    }

    /// A `--params` file's text: one JSON object of `NAME: value`.
    pub fn from_json(text: &str) -> Result<Self, ValuesError> {
        match serde_json::from_str(text).map_err(|source| ValuesError::Json { source })? {
            Value::Object(map) => Ok(Self(map.into_iter().collect())),
            other => Err(ValuesError::NotAnObject {
                found: json_type(&other),
            }),
        }
    }

    /// One `NAME=VALUE`: VALUE is JSON when it parses as JSON (a number, `true`, `[1, 2]`,
    /// `{"a": 1}`, `"quoted"`), else the text as it is, so `repo=.` and `goal=find the bug` are
    /// strings without quotes.
    pub fn parse_assignment(text: &str) -> Result<(String, Value), ValuesError> {
        let Some((name, value)) = text.split_once('=') else {
            return Err(ValuesError::NotAssignment {
                text: text.to_owned(),
            });
        };
        let name = name.trim();
        if !is_identifier(name) {
            return Err(ValuesError::BadName {
                text: text.to_owned(),
                name: name.to_owned(),
            });
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        Ok((name.to_owned(), value))
    }
}

impl FromIterator<(String, Value)> for ParamValues {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Why parameter values given on the command line or in a file cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValuesError {
    #[error("{text:?} is not NAME=VALUE (e.g. repo=. or max_files=20)")]
    NotAssignment { text: String },
    #[error(
        "{text:?}: {name:?} is not a parameter name (letters, digits and _, not starting with a digit)"
    )]
    BadName { text: String, name: String },
    #[error("parameter values are not JSON: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("parameter values are a JSON object of NAME: value, not {found}")]
    NotAnObject { found: &'static str },
}

/// A JSON value's type, as errors name it ("a string", "an array", "null"...).
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parameter names are identifiers: ASCII letters, digits and `_`, not starting with a digit.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why values cannot be substituted into a plan; every problem is listed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}",
    super::list_problems("the parameter values do not fit the plan", problems)
)]
pub struct ParamError {
    pub problems: Vec<ParamProblem>,
}

#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ParamProblem {
    /// A required parameter (no default) was given no value.
    Missing { name: String, description: String },
    /// A value for a parameter the plan does not declare.
    Unknown { name: String, declared: Vec<String> },
    /// A task's input, once substituted, breaks a limit.
    Input(PlanProblem),
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { name, description } => {
                write!(f, "missing a value for the required parameter {name:?}")?;
                if !description.is_empty() {
                    write!(f, " ({description})")?;
                }
                write!(f, "; give one with --param {name}=VALUE")
            }
            Self::Unknown { name, declared } if declared.is_empty() => write!(
                f,
                "unknown parameter {name:?}: the plan declares no parameters"
            ),
            Self::Unknown { name, declared } => write!(
                f,
                "unknown parameter {name:?}: the plan declares {}",
                declared.join(", ")
            ),
            Self::Input(problem) => write!(f, "once substituted, {problem}"),
        }
    }
}

impl Plan {
    /// The concrete plan: every reference in the task inputs replaced by its value (given, else
    /// the default), and no parameters left declared. A plan without parameters given no values
    /// comes back as it is.
    pub fn with_params(
        &self,
        values: &ParamValues,
        limits: &PlanLimits,
    ) -> Result<Plan, ParamError> {
        let mut problems = Vec::new();
        let mut resolved = BTreeMap::new();
        for (name, spec) in &self.params {
            match values.get(name).or(spec.default.as_ref()) {
                Some(value) => {
                    resolved.insert(name.as_str(), value);
                }
                None => problems.push(ParamProblem::Missing {
                    name: name.clone(),
                    description: spec.description.clone(),
                }),
            }
        }
        for (name, _) in values.iter() {
            if !self.params.contains_key(name) {
                problems.push(ParamProblem::Unknown {
                    name: name.clone(),
                    declared: self.params.keys().cloned().collect(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(ParamError { problems });
        }
        let mut plan = self.clone();
        plan.params.clear();
        for task in &mut plan.tasks {
            substitute(&mut task.input, &resolved);
            let mut problem = |kind| {
                problems.push(ParamProblem::Input(PlanProblem {
                    line: None,
                    task: Some(task.id.to_string()),
                    param: None,
                    kind,
                }))
            };
            for kind in super::input_problems(&task.input, limits.max_input_bytes) {
                problem(kind);
            }
        }
        if !problems.is_empty() {
            return Err(ParamError { problems });
        }
        Ok(plan)
    }
}

/// A piece of a string in a task input.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// `{{ params.NAME }}`, with NAME.
    Reference(&'a str),
    /// Starts like a reference (`{{ params.`) but is not one.
    Malformed(&'a str),
}

/// Splits `s` at `{{ params.NAME }}` references (spaces inside the braces optional). Other
/// `{{ … }}` text is left alone.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut text_start = 0;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        let at = offset + open;
        let inner = &s[at + 2..];
        let body = inner.trim_start_matches([' ', '\t']);
        let Some(after) = body.strip_prefix("params.") else {
            offset = at + 2;
            rest = &s[offset..];
            continue;
        };
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let tail = after[name_len..].trim_start_matches([' ', '\t']);
        if text_start < at {
            out.push(Piece::Text(&s[text_start..at]));
        }
        let end = if tail.starts_with("}}") && is_identifier(name) {
            out.push(Piece::Reference(name));
            s.len() - tail.len() + 2
        } else {
            let end = inner.find("}}").map_or(s.len(), |e| at + 2 + e + 2);
            out.push(Piece::Malformed(&s[at..end]));
            end
        };
        text_start = end;
        offset = end;
        rest = &s[offset..];
    }
    if text_start < s.len() {
        out.push(Piece::Text(&s[text_start..]));
    }
    out
}

/// The problems of the references in one task's input: undeclared names and malformed
/// references, each once, in order of first appearance.
pub(super) fn check_references(input: &Value, declared: &BTreeSet<&str>) -> Vec<ProblemKind> {
    let mut problems = Vec::new();
    let mut stack = vec![input];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(map) => stack.extend(map.values().rev()),
            Value::String(s) => {
                for piece in pieces(s) {
                    let kind = match piece {
                        Piece::Text(_) => continue,
                        Piece::Reference(name) if declared.contains(name) => continue,
                        Piece::Reference(name) => ProblemKind::UndeclaredParam {
                            name: name.to_owned(),
                        },
                        Piece::Malformed(text) => ProblemKind::MalformedParamReference {
                            text: text.to_owned(),
                        },
                    };
                    if !problems.contains(&kind) {
                        problems.push(kind);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    problems
}

/// Replaces references in place. Iterative: no recursion on input from outside; a substituted
/// value is not visited again.
fn substitute(input: &mut Value, values: &BTreeMap<&str, &Value>) {
    let mut stack = vec![input];
    while let Some(value) = stack.pop() {
        let replacement = match value {
            Value::Array(items) => {
                stack.extend(items.iter_mut());
                continue;
            }
            Value::Object(map) => {
                stack.extend(map.values_mut());
                continue;
            }
            Value::String(s) => substitute_str(s, values),
            Value::Null | Value::Bool(_) | Value::Number(_) => continue,
        };
        if let Some(replacement) = replacement {
            *value = replacement;
        }
    }
}

/// The string with its references replaced, or None when it has none.
fn substitute_str(s: &str, values: &BTreeMap<&str, &Value>) -> Option<Value> {
    let pieces = pieces(s);
    if !pieces.iter().any(|p| matches!(p, Piece::Reference(_))) {
        return None;
    }
    if let [Piece::Reference(name)] = pieces.as_slice() {
        return values.get(name).map(|v| (*v).clone());
    }
    let mut out = String::with_capacity(s.len());
    for piece in pieces {
        match piece {
            Piece::Text(text) | Piece::Malformed(text) => out.push_str(text),
            Piece::Reference(name) => match values.get(name) {
                Some(Value::String(text)) => out.push_str(text),
                Some(other) => out.push_str(&other.to_string()),
                // Validation refuses undeclared references; keep the text if one slips by.
                None => out.push_str(&format!("{{{{ params.{name} }}}}")),
            },
        }
    }
    Some(Value::String(out))
}

/// A problem for each declared name that is not an identifier.
pub(super) fn check_names(
    params: &BTreeMap<String, ParamSpec>,
    source: &str,
    format: PlanFormat,
) -> Vec<PlanProblem> {
    params
        .keys()
        .filter(|name| !is_identifier(name))
        .map(|name| PlanProblem {
            line: param_line(source, format, name),
            task: None,
            param: Some(name.clone()),
            kind: ProblemKind::InvalidParamName,
        })
        .collect()
}

/// The line declaring parameter `name`, where it can be found.
fn param_line(source: &str, format: PlanFormat, name: &str) -> Option<usize> {
    let mut in_params = false;
    for (n, line) in source.lines().enumerate() {
        let line = line.trim_start();
        match format {
            PlanFormat::Toml => {
                if line.starts_with('[') {
                    let header = line.trim_end();
                    if header == format!("[params.{name}]") {
                        return Some(n + 1);
                    }
                    in_params = header == "[params]";
                } else if in_params
                    && [name.to_owned(), format!("\"{name}\""), format!("'{name}'")]
                        .iter()
                        .any(|key| {
                            line.strip_prefix(key.as_str())
                                .is_some_and(|rest| rest.trim_start().starts_with('='))
                        })
                {
                    return Some(n + 1);
                }
            }
            PlanFormat::Json => {
                in_params |= line.contains("\"params\"");
                if in_params && line.contains(&format!("{name:?}")) {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
