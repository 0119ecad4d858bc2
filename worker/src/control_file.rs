//! A command's control file: where a command asks its run to grow and reports what it used.
//! Each attempt gets an empty file of its own, named by `WORKFORCE_CONTROL` and removed with its
//! directory afterwards; the worker reads it once the command has ended, however it ended. The
//! contract is on [`CommandHandler`](crate::CommandHandler).
//!
//! `parse` and `settle` are pure; only `ControlFile` touches the file system.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use workforce_shared::UsageError;
use workforce_shared::plan::json_type;

use crate::control::{Growth, UsageReport};

/// The variable that names the control file.
pub(crate) const CONTROL_ENV: &str = "WORKFORCE_CONTROL";

/// What a control file may hold, for error messages.
const ALLOWED: &str = "`spawn` (an array of objects), `branch` (an array of strings) and \
                       `usage` (an object of `tokens`, `cost_cents` and `tool_calls`)";

/// Why a control file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlFileError {
    #[error("cannot create a control file for the command (WORKFORCE_CONTROL): {0}")]
    Create(#[source] io::Error),
    #[error("cannot read the control file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the control file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "the control file {} is {bytes} bytes, over the limit of {limit} bytes \
         (max_output_bytes); spawn fewer tasks per attempt",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: usize,
    },
    #[error("the control file {} is not JSON: {source}", path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the control file {} must hold one JSON object, not {found}; it may have {ALLOWED}",
        path.display()
    )]
    NotAnObject { path: PathBuf, found: &'static str },
    #[error(
        "the control file {} has unknown fields {}; it may have only {ALLOWED}",
        path.display(),
        quoted(fields)
    )]
    UnknownFields { path: PathBuf, fields: Vec<String> },
    #[error(
        "in the control file {}, `{field}` must be {expected}, not {found}",
        path.display()
    )]
    WrongType {
        path: PathBuf,
        /// The field, with an index into its array if an element is wrong (`spawn[2]`).
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("in the control file {}, {source}", path.display())]
    Usage {
        path: PathBuf,
        #[source]
        source: UsageError,
    },
}

impl ControlFileError {
    /// Whether another attempt could succeed: the file system may recover; what the command
    /// wrote will not change.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Create(_) | Self::Read { .. } => true,
            Self::NotAFile { .. }
            | Self::TooLarge { .. }
            | Self::NotJson { .. }
            | Self::NotAnObject { .. }
            | Self::UnknownFields { .. }
            | Self::WrongType { .. }
            | Self::Usage { .. } => false,
        }
    }
}

/// One attempt's control file, empty at first. Dropping it removes it and its directory.
#[derive(Debug)]
pub(crate) struct ControlFile {
    // Held for its removal on drop.
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ControlFile {
    pub(crate) fn create() -> Result<Self, ControlFileError> {
        // A directory of its own, so a command may also replace the file (write, then rename).
        let dir = tempfile::Builder::new()
            .prefix("workforce-control-")
            .tempdir()
            .map_err(ControlFileError::Create)?;
        let path = dir.path().join("control.json");
        std::fs::File::create(&path).map_err(ControlFileError::Create)?;
        Ok(Self { _dir: dir, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What the command left in the file once it has ended; `succeeded`: it exited 0 (and its
    /// stdout was sound).
    pub(crate) async fn settle(&self, limit: usize, succeeded: bool) -> Settled {
        settle(self.contents(limit).await, &self.path, succeeded)
    }

    /// The file's bytes, at most `limit` of them; empty if the file is gone.
    async fn contents(&self, limit: usize) -> Result<Vec<u8>, ControlFileError> {
        let path = &self.path;
        let read_error = |source| ControlFileError::Read {
            path: path.clone(),
            source,
        };
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(read_error(error)),
        };
        let metadata = file.metadata().await.map_err(read_error)?;
        // A FIFO or a device could block the read forever or never end.
        if !metadata.is_file() {
            return Err(ControlFileError::NotAFile { path: path.clone() });
        }
        let too_large = |bytes| ControlFileError::TooLarge {
            path: path.clone(),
            bytes,
            limit,
        };
        if metadata.len() > limit as u64 {
            return Err(too_large(metadata.len()));
        }
        let mut bytes = Vec::new();
        // One byte more than the limit tells a file that grew since from one that fits.
        file.take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(read_error)?;
        if bytes.len() > limit {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }
}

/// What a command wrote to its control file.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Written {
    pub(crate) growth: Growth,
    /// Its usage report as written, not yet read: any JSON value but null.
    pub(crate) usage: Option<Value>,
}

/// What a control file comes to once its command has ended.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// What it asks of the run: empty unless the command exited 0 and the file is sound.
    pub(crate) growth: Growth,
    /// Its usage report, after any exit, kept as written even if it cannot be read (so the
    /// coordinator charges the task's estimate and records what was sent). Nothing if the file
    /// itself is unusable.
    pub(crate) usage: UsageReport,
    /// What is wrong with the file, its usage report included: after exit 0 the attempt fails
    /// with it; after a failure, the failure's message gains it.
    pub(crate) problem: Option<ControlFileError>,
}

/// Settles a control file's `contents` once its command has ended: its usage report counts
/// however the command ended; its growth only if the attempt otherwise succeeded (`succeeded`:
/// exit 0, stdout sound).
pub(crate) fn settle(
    contents: Result<Vec<u8>, ControlFileError>,
    path: &Path,
    succeeded: bool,
) -> Settled {
    let written = match contents.and_then(|bytes| parse(&bytes, path)) {
        Ok(written) => written,
        Err(problem) => {
            return Settled {
                problem: Some(problem),
                ..Settled::default()
            };
        }
    };
    let usage = written
        .usage
        .map_or(UsageReport::Nothing, UsageReport::given);
    let problem = usage.problem().map(|source| ControlFileError::Usage {
        path: path.to_owned(),
        source: source.clone(),
    });
    let growth = if succeeded && problem.is_none() {
        written.growth
    } else {
        if !succeeded && !written.growth.is_empty() {
            tracing::warn!(
                spawn = written.growth.spawn.len(),
                branch = written.growth.branch.is_some(),
                "the attempt failed: the spawn and branch in its control file are ignored \
                 (only a success grows the run)"
            );
        }
        Growth::default()
    };
    Settled {
        growth,
        usage,
        problem,
    }
}

/// Reads a control file's contents: empty (or only whitespace) asks and reports nothing;
/// otherwise one JSON object with only the fields `spawn`, `branch` and `usage`. The entries and
/// the report are passed on as given: the coordinator checks the entries, `settle` reads the
/// report.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Written, ControlFileError> {
    if bytes.trim_ascii().is_empty() {
        return Ok(Written::default());
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|source| ControlFileError::NotJson {
            path: path.to_owned(),
            source,
        })?;
    let Value::Object(mut fields) = value else {
        return Err(ControlFileError::NotAnObject {
            path: path.to_owned(),
            found: json_type(&value),
        });
    };
    let unknown: Vec<String> = fields
        .keys()
        .filter(|key| !matches!(key.as_str(), "spawn" | "branch" | "usage"))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ControlFileError::UnknownFields {
            path: path.to_owned(),
            fields: unknown,
        });
    }
    let wrong = |field: String, expected, found| ControlFileError::WrongType {
        path: path.to_owned(),
        field,
        expected,
        found,
    };
    let spawn = match fields.remove("spawn") {
        None => Vec::new(),
        Some(Value::Array(entries)) => {
            if let Some((at, entry)) = entries.iter().enumerate().find(|(_, e)| !e.is_object()) {
                return Err(wrong(format!("spawn[{at}]"), "an object", json_type(entry)));
            }
            entries
        }
        Some(other) => {
            return Err(wrong(
                "spawn".into(),
                "an array of objects",
                json_type(&other),
            ));
        }
    };
    let branch = match fields.remove("branch") {
        None => None,
        Some(Value::Array(ids)) => Some(
            ids.into_iter()
                .enumerate()
                .map(|(at, id)| match id {
                    Value::String(id) => Ok(id),
                    other => Err(wrong(
                        format!("branch[{at}]"),
                        "a string",
                        json_type(&other),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(wrong(
                "branch".into(),
                "an array of strings",
                json_type(&other),
            ));
        }
    };
    let usage = match fields.remove("usage") {
        // Null would reach the coordinator as no report at all, which is not what was written.
        Some(Value::Null) => return Err(wrong("usage".into(), "an object", "null")),
        usage => usage,
    };
    debug_assert!(fields.is_empty(), "every field was checked: {fields:?}");
    Ok(Written {
        growth: Growth { spawn, branch },
        usage,
    })
}

fn quoted(fields: &[String]) -> String {
    fields
        .iter()
        .map(|field| format!("`{field}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use workforce_shared::Usage;

    use super::*;

    fn path() -> &'static Path {
        Path::new("/tmp/w/control.json")
    }

    fn parsed(text: &str) -> Result<Growth, ControlFileError> {
        parse(text.as_bytes(), path()).map(|written| written.growth)
    }

    fn settled(text: &str, succeeded: bool) -> Settled {
        settle(Ok(text.as_bytes().to_vec()), path(), succeeded)
    }

    fn problem(text: &str) -> String {
        let error = parsed(text).expect_err("refused");
        assert!(!error.is_retryable(), "{error}");
        let message = error.to_string();
        assert!(message.contains("/tmp/w/control.json"), "{message}");
        message
    }

    #[test]
    fn spawn_and_branch_are_passed_on_as_given() {
        let growth = parsed(
            r#"{"spawn": [{"id": "a", "capability": "c", "whatever": [1]}, {}],
                "branch": ["x", "not a task id!"]}"#,
        )
        .expect("valid");
        assert_eq!(
            growth,
            Growth {
                spawn: vec![
                    json!({"id": "a", "capability": "c", "whatever": [1]}),
                    json!({})
                ],
                branch: Some(vec!["x".into(), "not a task id!".into()]),
            }
        );
    }

    #[test]
    fn either_field_alone_and_empty_lists() {
        assert_eq!(
            parsed(r#"{"branch": []}"#).expect("valid"),
            Growth {
                spawn: Vec::new(),
                branch: Some(Vec::new())
            }
        );
        let growth = parsed(r#"{"spawn": []}"#).expect("valid");
        assert!(growth.is_empty());
        assert!(parsed("{}").expect("valid").is_empty());
    }

    #[test]
    fn an_empty_or_blank_file_asks_nothing() {
        assert!(parsed("").expect("empty").is_empty());
        assert!(parsed(" \n\t\r\n").expect("blank").is_empty());
    }

    #[test]
    fn unknown_fields_are_named_all_of_them() {
        let message = problem(r#"{"spawn": [], "usage": {"tokens": 3}, "cost": 1, "zzz": 1}"#);
        assert!(
            message.contains("unknown fields `cost`, `zzz`"),
            "{message}"
        );
        assert!(
            message.contains("`spawn`")
                && message.contains("`branch`")
                && message.contains("`usage`"),
            "{message}"
        );
    }

    #[test]
    fn malformed_json_is_refused_with_where() {
        let message = problem("{\"spawn\": [\n");
        assert!(message.contains("not JSON"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        let message = problem("{\"branch\": [\"a\"]} trailing");
        assert!(message.contains("not JSON"), "{message}");
        assert!(problem("\u{feff}{}").contains("not JSON"));
    }

    #[test]
    fn other_json_than_an_object_is_refused() {
        assert!(problem(r#"[{"id": "a"}]"#).contains("one JSON object, not an array"));
        assert!(problem("null").contains("not null"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert!(
            problem(r#"{"spawn": {"id": "a"}}"#)
                .contains("`spawn` must be an array of objects, not an object")
        );
        assert!(
            problem(r#"{"spawn": [{"id": "a"}, "b"]}"#)
                .contains("`spawn[1]` must be an object, not a string")
        );
        assert!(
            problem(r#"{"branch": "a"}"#)
                .contains("`branch` must be an array of strings, not a string")
        );
        assert!(
            problem(r#"{"branch": ["a", 2]}"#)
                .contains("`branch[1]` must be a string, not a number")
        );
        assert!(problem(r#"{"branch": null}"#).contains("not null"));
        assert!(problem(r#"{"usage": null}"#).contains("`usage` must be an object, not null"));
    }

    #[test]
    fn usage_counts_after_exit_0_with_its_spawn_and_branch() {
        let text = r#"{"spawn": [{"id": "a", "capability": "c"}], "branch": ["b"],
                       "usage": {"tokens": 120, "tool_calls": 3}}"#;
        let settled = settled(text, true);
        assert!(settled.problem.is_none(), "{:?}", settled.problem);
        assert_eq!(
            settled.usage,
            UsageReport::AsGiven {
                report: json!({"tokens": 120, "tool_calls": 3}),
                usage: Usage {
                    tokens: 120,
                    cost_cents: 0,
                    tool_calls: 3
                },
            }
        );
        assert_eq!(
            settled.growth,
            Growth {
                spawn: vec![json!({"id": "a", "capability": "c"})],
                branch: Some(vec!["b".into()]),
            }
        );
    }

    #[test]
    fn usage_counts_after_a_failure_and_spawn_and_branch_do_not() {
        let settled = settled(
            r#"{"spawn": [{"id": "a", "capability": "c"}], "usage": {"cost_cents": 7}}"#,
            false,
        );
        assert!(settled.problem.is_none(), "{:?}", settled.problem);
        assert_eq!(settled.usage.to_value(), Some(json!({"cost_cents": 7})));
        assert!(settled.growth.is_empty());
    }

    #[test]
    fn a_report_of_nothing_is_still_a_report_and_no_usage_field_is_none() {
        assert_eq!(
            settled(r#"{"usage": {}}"#, true).usage.to_value(),
            Some(json!({}))
        );
        for text in ["", "{}", r#"{"branch": []}"#] {
            for succeeded in [true, false] {
                let settled = settled(text, succeeded);
                assert_eq!(settled.usage, UsageReport::Nothing, "{text}");
                assert!(settled.problem.is_none(), "{text}");
            }
        }
    }

    #[test]
    fn an_unreadable_usage_is_a_problem_named_and_kept_as_written() {
        for (report, named) in [
            (
                json!({"tokens": -5}),
                "tokens must be a whole number of at least 0, not -5",
            ),
            (json!({"tokens": "5"}), "not \"5\""),
            (json!({"tokens": 1.5}), "not 1.5"),
            (json!({"dollars": 2}), "unknown field \"dollars\""),
            (json!("lots"), "it is not an object"),
            (json!([1]), "it is not an object"),
        ] {
            let text = json!({"branch": ["b"], "usage": report}).to_string();
            for succeeded in [true, false] {
                let settled = settled(&text, succeeded);
                let problem = settled.problem.expect("a problem");
                assert!(!problem.is_retryable());
                let message = problem.to_string();
                assert!(
                    message.contains("in the control file /tmp/w/control.json"),
                    "{message}"
                );
                assert!(message.contains(named), "{message}");
                assert_eq!(settled.usage.to_value(), Some(report.clone()));
                assert!(settled.usage.problem().is_some());
                assert!(
                    settled.growth.is_empty(),
                    "an attempt that fails grows nothing"
                );
            }
        }
    }

    #[test]
    fn an_unusable_file_reports_no_usage_after_any_exit() {
        for text in [
            r#"{"usage": {"tokens": 5}, "zzz": 1}"#,
            r#"{"usage": {"tokens": 5}, "branch": "b"}"#,
            r#"{"usage": {"tokens": 5}"#,
        ] {
            for succeeded in [true, false] {
                let settled = settled(text, succeeded);
                assert!(settled.problem.is_some(), "{text}");
                assert_eq!(settled.usage, UsageReport::Nothing, "{text}");
                assert!(settled.growth.is_empty());
            }
        }
        let unreadable = settle(
            Err(ControlFileError::NotAFile {
                path: path().to_owned(),
            }),
            path(),
            false,
        );
        assert!(matches!(
            unreadable.problem,
            Some(ControlFileError::NotAFile { .. })
        ));
        assert_eq!(unreadable.usage, UsageReport::Nothing);
    }

    #[tokio::test]
    async fn a_file_is_read_up_to_the_limit_and_removed_on_drop() {
        let file = ControlFile::create().expect("create");
        let path = file.path().to_owned();
        assert_eq!(std::fs::read(&path).expect("exists"), b"");
        let empty = file.settle(100, true).await;
        assert!(empty.growth.is_empty() && empty.problem.is_none());

        std::fs::write(&path, r#"{"branch": ["b"]}"#).expect("write");
        assert_eq!(
            file.settle(100, true).await.growth.branch,
            Some(vec!["b".into()])
        );
        let error = file.settle(10, true).await.problem.expect("over the limit");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains("is 17 bytes, over the limit of 10 bytes"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");

        std::fs::remove_file(&path).expect("remove");
        let gone = file.settle(100, true).await;
        assert!(gone.growth.is_empty() && gone.problem.is_none());

        let dir = path.parent().expect("a directory").to_owned();
        drop(file);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
