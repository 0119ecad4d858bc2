//! [`CommandHandler`]: serves a capability by running `sh -c COMMAND` once per attempt.
//!
//! The contract is documented on [`CommandHandler`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use workforce_shared::{Attempt, Capability, RunId, TaskId, UpstreamError};

use crate::capture::{Capped, Tail};
use crate::control_file::{CONTROL_ENV, ControlFile, ControlFileError};
use crate::handler::{BoxFuture, Handler, HandlerError, TaskContext};
use crate::process_group::GroupGuard;

/// Exit with this code to fail the task permanently (no retry). Any other non-zero exit code
/// is a retryable failure.
pub const PERMANENT_FAILURE_EXIT_CODE: i32 = 100;

/// How much of the end of stderr a failure message carries.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// Default limit on a command's stdout.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 512 * 1024;

/// Serves a capability by running `sh -c COMMAND` once per attempt.
///
/// The contract with the command:
/// - **stdin**: one JSON object and a newline:
///   `{"run": "...", "task": "...", "attempt": 1, "capability": "...", "input": <any>,
///   "upstream": {"<task id>": <output>, ...}}`, plus `"upstream_errors": {"<task id>":
///   {"status": "failed" | "canceled" | "skipped", "error": "..."}, ...}` when tasks it waits
///   for did not complete (only a task whose trigger rule runs it past them gets any). A
///   command need not read it.
/// - **environment**: `WORKFORCE_RUN`, `WORKFORCE_TASK`, `WORKFORCE_ATTEMPT`,
///   `WORKFORCE_CAPABILITY`, and `WORKFORCE_CONTROL` (below), on top of the worker's own
///   environment.
/// - **stdout**: the output. Parsed as JSON if it is JSON once trimmed, else kept as the trimmed
///   text (a JSON string). More than the output limit is a permanent failure.
/// - **control file**: `WORKFORCE_CONTROL` names an empty file of the attempt's own (removed
///   afterwards) where the command may ask its run to grow and report what it used: one JSON
///   object with `spawn`, an array of tasks in a plan's task shape (`{"id": ..., "capability":
///   ..., "needs": [...], ...}`), `branch`, an array of the ids of the tasks that need this one
///   that are to run (the others are skipped; without `branch` all run), and `usage`,
///   `{"tokens": N, "cost_cents": N, "tool_calls": N}` (each a whole number of at least 0, each
///   optional). All are optional and passed on as given; the coordinator checks the spawn and
///   branch and fails the attempt permanently if they do not fit. The file is read once the
///   command has exited (or was killed at its timeout); an empty (or blank) file asks and
///   reports nothing. `usage` counts however the command ended; `spawn` and `branch` only
///   after exit 0 (after a failure they are ignored, with a warning in the worker's log). A
///   file that is not such an object (not JSON, other fields, wrong types, over the output
///   limit), or a `usage` that cannot be read (negative, fractional, not a number, an unknown
///   part), fails the attempt permanently after exit 0, naming the problem; after a failure the
///   failure stands and its message says what is wrong with the file too ("...; and the
///   control file is unusable: ..."). An unreadable `usage` is sent on as written either way,
///   so the coordinator charges the task's estimate for it; an unusable file reports nothing.
/// - **exit status**: 0 succeeds; [`PERMANENT_FAILURE_EXIT_CODE`] fails for good; any other
///   status, or death by a signal, fails retryably. Failure messages end with the tail of
///   stderr.
/// - **timeout**: at the attempt's timeout the command's whole process group is killed and the
///   attempt fails retryably.
/// - **stop**: when the context's [`stop_signal`](TaskContext::stop_signal) is raised (the
///   coordinator no longer wants the attempt), the command's whole process group gets SIGTERM
///   (and SIGCONT, so a stopped member sees it), then SIGKILL once the command has ended or
///   the signal's [grace](crate::StopSignal::grace) is over, whichever is first (or at the
///   timeout, if that is sooner). The attempt fails retryably ("stopped on request: ..."); the
///   worker reports nothing for it.
/// - **process group**: the command leads its own, so a Ctrl-C aimed at the worker does not
///   reach it (the worker drains instead), and an abandoned attempt (timeout, stop, end of a
///   drain, dropped future) kills everything the command started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandHandler {
    command: String,
    workdir: Option<PathBuf>,
    max_output_bytes: usize,
}

/// What the command reads on stdin.
#[derive(Serialize)]
struct StdinTask<'a> {
    run: &'a RunId,
    task: &'a TaskId,
    attempt: Attempt,
    capability: &'a Capability,
    input: &'a Value,
    upstream: &'a BTreeMap<TaskId, Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    upstream_errors: &'a BTreeMap<TaskId, UpstreamError>,
}

impl CommandHandler {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            workdir: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }

    /// Runs the command in `dir` instead of the worker's working directory.
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// An attempt whose command exits 0 fails permanently if its stdout, or its control file,
    /// is longer than `bytes` (after a failure, the control file's size is only named).
    pub fn max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn working_dir(&self) -> Option<&Path> {
        self.workdir.as_deref()
    }

    /// Runs one attempt to completion, timeout or stop. What the command asks of the run and
    /// reports using (its control file) is recorded on `task`, as a Rust handler's would be.
    pub async fn run(&self, task: &TaskContext) -> Result<Value, HandlerError> {
        if task.stop_signal().is_requested() {
            return Err(HandlerError::retryable(
                "stopped on request before the command started",
            ));
        }
        let stdin_json = stdin_json(task)?;
        let control = ControlFile::create().map_err(handler_error)?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env("WORKFORCE_RUN", task.run.as_str())
            .env("WORKFORCE_TASK", task.task.as_str())
            .env("WORKFORCE_ATTEMPT", task.attempt.to_string())
            .env("WORKFORCE_CAPABILITY", task.capability.as_str())
            .env(CONTROL_ENV, control.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: the worker's terminal signals do not reach it (the worker drains
            // instead), and a timeout can kill everything it started.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.workdir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|error| {
            HandlerError::retryable(format!(
                "cannot start `sh -c {:?}`{}: {error}",
                self.command,
                self.workdir
                    .as_ref()
                    .map(|dir| format!(" in {}", dir.display()))
                    .unwrap_or_default()
            ))
        })?;
        let mut group = GroupGuard::new(child.id());
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(HandlerError::retryable(
                "child process has no stdin, stdout or stderr pipe",
            ));
        };

        let mut out = Capped::new(self.max_output_bytes);
        let mut err = Tail::new(STDERR_TAIL_BYTES);
        let stop = task.stop_signal();
        let deadline = tokio::time::sleep(task.timeout);
        tokio::pin!(deadline);
        // Feed stdin while draining both outputs, so neither side can block on a full pipe.
        // Boxed so that dropping it ends its borrows of `out`, `err` and `child`.
        let mut io = Box::pin(async {
            let (_, read, (), status) = tokio::join!(
                feed(stdin, &stdin_json),
                out.read_from(stdout),
                err.read_from(stderr),
                child.wait(),
            );
            (read, status)
        });
        let first = tokio::select! {
            biased;
            done = &mut io => First::Exited(done),
            () = &mut deadline => First::TimedOut,
            () = stop.requested() => First::Stopped,
        };

        let verdict = match first {
            First::Exited((read, status)) => {
                drop(io);
                // Reaped: the group id may be reused from here on.
                group.disarm();
                self.judge(status, read, &out)
            }
            First::TimedOut => {
                drop(io);
                group.kill().await;
                if let Err(error) = child.kill().await {
                    tracing::debug!(%error, "child already gone after timeout");
                }
                Err(Failure::of_command(
                    format!(
                        "timed out after {}",
                        humantime::format_duration(task.timeout)
                    ),
                    false,
                ))
            }
            First::Stopped => {
                // Ask first: TERM lets the command clean up. Kill at the end of the grace, or
                // at the attempt's timeout if that comes first.
                group.terminate().await;
                let stopping = tokio::select! {
                    biased;
                    (_, status) = &mut io => Stopping::Ended(status),
                    () = tokio::time::sleep(stop.grace()) => Stopping::GraceOver,
                    () = &mut deadline => Stopping::TimedOut,
                };
                drop(io);
                // Also when the leader has gone: nothing the command started outlives a stop.
                // A member still running keeps the group id from being reused.
                group.kill().await;
                if !matches!(stopping, Stopping::Ended(_))
                    && let Err(error) = child.kill().await
                {
                    tracing::debug!(%error, "child already gone while stopping");
                }
                let message = match stopping {
                    Stopping::Ended(status) => format!(
                        "stopped on request: the command ended after SIGTERM ({})",
                        status.map_or_else(|error| error.to_string(), |s| s.to_string())
                    ),
                    Stopping::GraceOver => format!(
                        "stopped on request: the command was still running {} after SIGTERM; \
                         killed",
                        humantime::format_duration(stop.grace())
                    ),
                    Stopping::TimedOut => format!(
                        "stopped on request: the command was still running after SIGTERM at \
                         its timeout of {}; killed",
                        humantime::format_duration(task.timeout)
                    ),
                };
                // Nothing a stopped attempt reports counts: its control file is not read.
                return Err(HandlerError::retryable(with_stderr(message, &err)));
            }
        };
        // However the command ended, what it used counts; what it asked counts after exit 0.
        let settled = control.settle(self.max_output_bytes, verdict.is_ok()).await;
        task.control().report_usage(settled.usage);
        match verdict {
            Ok(output) => {
                if let Some(problem) = settled.problem {
                    return Err(handler_error(problem));
                }
                task.spawn_all(settled.growth.spawn);
                if let Some(branch) = settled.growth.branch {
                    task.branch(branch);
                }
                Ok(output)
            }
            // The command's own failure stands, and says what is wrong with its control file.
            Err(failure) => Err(failure.and(settled.problem).into_error(&err)),
        }
    }

    /// The command's own verdict once it has exited: its exit status, then its stdout.
    fn judge(
        &self,
        status: io::Result<ExitStatus>,
        read: io::Result<()>,
        out: &Capped,
    ) -> Result<Value, Failure> {
        let status = status.map_err(|error| {
            Failure::of_worker(format!("cannot wait for the command: {error}"), false)
        })?;
        if !status.success() {
            return Err(exit_failure(status));
        }
        read.map_err(|error| Failure::of_worker(format!("cannot read stdout: {error}"), false))?;
        if out.overflowed() {
            return Err(Failure::of_worker(
                format!(
                    "stdout of {} bytes exceeds the output limit of {} bytes (max_output_bytes)",
                    out.total(),
                    self.max_output_bytes
                ),
                true,
            ));
        }
        Ok(parse_output(out.kept()))
    }
}

/// Why an attempt failed, before its message is finished.
struct Failure {
    message: String,
    permanent: bool,
    /// Whether the message ends with the tail of the command's stderr.
    with_stderr: bool,
}

impl Failure {
    /// A failure of the command itself: its message ends with its stderr.
    fn of_command(message: String, permanent: bool) -> Self {
        Self {
            message,
            permanent,
            with_stderr: true,
        }
    }

    /// A failure found by the worker (reading stdout, say).
    fn of_worker(message: String, permanent: bool) -> Self {
        Self {
            message,
            permanent,
            with_stderr: false,
        }
    }

    /// The same failure, its message saying what is wrong with the control file too.
    fn and(mut self, problem: Option<ControlFileError>) -> Self {
        if let Some(problem) = problem {
            self.message = format!(
                "{}; and the control file is unusable: {problem}",
                self.message
            );
        }
        self
    }

    fn into_error(self, stderr: &Tail) -> HandlerError {
        let message = if self.with_stderr {
            with_stderr(self.message, stderr)
        } else {
            self.message
        };
        if self.permanent {
            HandlerError::permanent(message)
        } else {
            HandlerError::retryable(message)
        }
    }
}

/// What ended the wait for the command first.
enum First<T> {
    Exited(T),
    TimedOut,
    Stopped,
}

/// What ended the wait for a command asked to stop.
enum Stopping {
    Ended(io::Result<ExitStatus>),
    GraceOver,
    TimedOut,
}

impl Handler for CommandHandler {
    fn handle(&self, task: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move { self.run(&task).await })
    }
}

fn stdin_json(task: &TaskContext) -> Result<Vec<u8>, HandlerError> {
    let mut bytes = serde_json::to_vec(&StdinTask {
        run: &task.run,
        task: &task.task,
        attempt: task.attempt,
        capability: &task.capability,
        input: &task.input,
        upstream: &task.upstream,
        upstream_errors: &task.upstream_errors,
    })
    .map_err(|error| HandlerError::permanent(format!("cannot encode the task as JSON: {error}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn handler_error(error: ControlFileError) -> HandlerError {
    if error.is_retryable() {
        HandlerError::retryable(error.to_string())
    } else {
        HandlerError::permanent(error.to_string())
    }
}

/// Writes the task and closes stdin. A command that exits without reading it is fine.
async fn feed(mut stdin: ChildStdin, bytes: &[u8]) {
    match stdin.write_all(bytes).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => tracing::debug!(%error, "cannot write the task to stdin"),
    }
    // Dropping `stdin` closes it, so the command sees end of input.
}

/// JSON if stdout is JSON once trimmed, else the trimmed text.
fn parse_output(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn exit_failure(status: ExitStatus) -> Failure {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(PERMANENT_FAILURE_EXIT_CODE), _) => Failure::of_command(
            format!("command exited with status {PERMANENT_FAILURE_EXIT_CODE} (permanent failure)"),
            true,
        ),
        (Some(code), _) => Failure::of_command(format!("command exited with status {code}"), false),
        (None, Some(signal)) => {
            Failure::of_command(format!("command was killed by signal {signal}"), false)
        }
        (None, None) => Failure::of_command(format!("command failed: {status}"), false),
    }
}

fn with_stderr(message: String, stderr: &Tail) -> String {
    let tail = stderr.text();
    if tail.is_empty() {
        format!("{message} (stderr was empty)")
    } else {
        format!("{message}; stderr: {tail}")
    }
}
