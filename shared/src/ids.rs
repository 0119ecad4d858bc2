//! Ids and names. Every string id is a validated NATS subject token, parsed once, so that no
//! later code can build a subject or message id from an unsafe string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted name, in bytes. Keeps subjects and message ids well under NATS limits.
pub const MAX_NAME_LEN: usize = 128;

/// A name that is not a safe NATS subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

fn check_token(kind: &'static str, value: &str) -> Result<(), NameError> {
    let fail = |reason: String| NameError {
        kind,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(fail(format!("is longer than {MAX_NAME_LEN} bytes")));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        let shown = match bad {
            ' ' => "a space".to_owned(),
            c if c.is_whitespace() || c.is_control() => format!("{c:?}"),
            c => format!("'{c}'"),
        };
        return Err(fail(format!(
            "contains {shown}; use only ASCII letters, digits, '-' and '_' (it becomes a NATS subject token)"
        )));
    }
    Ok(())
}

macro_rules! token {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check_token($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(value: &str) -> Result<Self, NameError> {
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

token!(
    /// A run: one submission of a plan. Assigned by the coordinator.
    RunId,
    "run id"
);
token!(
    /// A task's id, unique within its plan.
    TaskId,
    "task id"
);
token!(
    /// A worker process's id, unique among live workers.
    WorkerId,
    "worker id"
);
token!(
    /// What a task needs and a worker serves; also the last token of the task's subject.
    Capability,
    "capability"
);

impl WorkerId {
    /// Turns any string (a host name, say) into a valid worker id by replacing what a subject
    /// token cannot hold with '-'.
    pub fn sanitized(raw: &str) -> Self {
        let mut cleaned: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_NAME_LEN)
            .collect();
        if cleaned.is_empty() {
            cleaned.push_str("worker");
        }
        Self(cleaned)
    }
}

/// The attempt number of a task, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(pub u32);

impl Attempt {
    pub const FIRST: Attempt = Attempt(1);

    pub fn next(self) -> Attempt {
        Attempt(self.0.saturating_add(1))
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The position of an event in the coordinator's log. Strictly increasing, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventSeq(pub u64);

impl fmt::Display for EventSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_tokens() {
        assert!(Capability::new("code-review_2").is_ok());
    }

    #[test]
    fn rejects_subject_metacharacters() {
        for bad in ["a.b", "*", ">", "has space", "", "tab\there", "ünï"] {
            let err = Capability::new(bad).expect_err(bad);
            assert_eq!(err.kind, "capability");
            assert_eq!(err.value, bad);
        }
        let err = Capability::new("a.b").expect_err("dot");
        assert!(err.to_string().contains("contains '.'"), "{err}");
        let err = Capability::new("has space").expect_err("space");
        assert!(err.to_string().contains("a space"), "{err}");
    }

    #[test]
    fn rejects_overlong_names() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(TaskId::new(long).is_err());
        assert!(TaskId::new("x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn deserializing_validates() {
        let ok: Result<TaskId, _> = serde_json::from_str("\"fine\"");
        assert!(ok.is_ok());
        let bad: Result<TaskId, _> = serde_json::from_str("\"a.b\"");
        assert!(bad.is_err());
    }

    #[test]
    fn sanitized_worker_ids_are_valid() {
        let id = WorkerId::sanitized("host.example.com:42");
        assert_eq!(id.as_str(), "host-example-com-42");
        assert!(WorkerId::new(id.as_str()).is_ok());
        assert_eq!(WorkerId::sanitized("").as_str(), "worker");
    }
}
