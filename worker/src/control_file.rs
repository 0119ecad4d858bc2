//! A command's control file: where a command asks its run to grow. Each attempt gets an empty
//! file of its own, named by `WORKFORCE_CONTROL` and removed with its directory afterwards; the
//! worker reads it once the command has exited. The contract is on
//! [`CommandHandler`](crate::CommandHandler).
//!
//! `parse` is pure; only `ControlFile` touches the file system.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use workforce_shared::plan::json_type;

use crate::control::Growth;

/// The variable that names the control file.
pub(crate) const CONTROL_ENV: &str = "WORKFORCE_CONTROL";

/// What a control file may hold, for error messages.
const ALLOWED: &str = "`spawn` (an array of objects) and `branch` (an array of strings)";

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
            | Self::WrongType { .. } => false,
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

    /// What the command asked: nothing if it left the file empty (or removed it).
    pub(crate) async fn read(&self, limit: usize) -> Result<Growth, ControlFileError> {
        let bytes = self.contents(limit).await?;
        parse(&bytes, &self.path)
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

    /// After a failed command: what it wrote is not applied; say so if it wrote anything.
    pub(crate) async fn ignore(&self, limit: usize) {
        match self.contents(limit).await {
            Ok(bytes) if bytes.trim_ascii().is_empty() => {}
            Ok(bytes) => tracing::warn!(
                bytes = bytes.len(),
                "the command failed: its control file is ignored (spawn and branch apply only \
                 when it exits 0)"
            ),
            Err(error) => tracing::warn!(
                %error,
                "the command failed: its control file is ignored (spawn and branch apply only \
                 when it exits 0)"
            ),
        }
    }
}

/// Reads a control file's contents: empty (or only whitespace) asks nothing; otherwise one
/// JSON object with only the fields `spawn` and `branch`. The entries are passed on as given;
/// the coordinator checks them.
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Growth, ControlFileError> {
    if bytes.trim_ascii().is_empty() {
        return Ok(Growth::default());
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
        .filter(|key| !matches!(key.as_str(), "spawn" | "branch"))
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
    debug_assert!(fields.is_empty(), "every field was checked: {fields:?}");
    Ok(Growth { spawn, branch })
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

    use super::*;

    fn path() -> &'static Path {
        Path::new("/tmp/w/control.json")
    }

    fn parsed(text: &str) -> Result<Growth, ControlFileError> {
        parse(text.as_bytes(), path())
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
        let message = problem(r#"{"spawn": [], "usage": {"tokens": 3}, "zzz": 1}"#);
        assert!(
            message.contains("unknown fields `usage`, `zzz`"),
            "{message}"
        );
        assert!(
            message.contains("`spawn`") && message.contains("`branch`"),
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
    }

    #[tokio::test]
    async fn a_file_is_read_up_to_the_limit_and_removed_on_drop() {
        let file = ControlFile::create().expect("create");
        let path = file.path().to_owned();
        assert_eq!(std::fs::read(&path).expect("exists"), b"");
        assert!(file.read(100).await.expect("empty").is_empty());

        std::fs::write(&path, r#"{"branch": ["b"]}"#).expect("write");
        assert_eq!(
            file.read(100).await.expect("fits").branch,
            Some(vec!["b".into()])
        );
        let error = file.read(10).await.expect_err("over the limit");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(
            message.contains("is 17 bytes, over the limit of 10 bytes"),
            "{message}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");

        std::fs::remove_file(&path).expect("remove");
        assert!(file.read(100).await.expect("gone").is_empty());

        let dir = path.parent().expect("a directory").to_owned();
        drop(file);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
