//! What the scheduler reads ([`Input`]) and what it decides ([`Decision`]): the two kinds of
//! record in the event log. Both are data only: every reason is an enum with fields, and text
//! is made where it is shown (views, the CLI), never here. Errors that came from workers are
//! data too, kept as they came.
//!
//! Changing the shape of a variant breaks every log that holds it: add a variant instead (or
//! a migration in [`crate::log`]). Changing which decisions an input leads to is a change of
//! rules: bump [`SEMANTICS_VERSION`].

use std::fmt;

use serde::{Deserialize, Serialize};
use workforce_shared::{
    Attempt, Capability, HeldAttempt, Plan, RunId, TaskId, TaskResult, TaskSpec, Trigger, Usage,
    WorkerId,
};

/// The version of the scheduling rules. Every run records the version it was accepted under
/// ([`Decision::RunAccepted`]); `workforce replay` re-decides only runs of this version and
/// checks older ones by what was recorded.
///
/// - 1: the first rules.
/// - 2: a cancel stops the attempts it cancels (`StopAttempt` before each running task's
///   `TaskCanceled`). A run of rules 1 is still canceled by rules 1.
pub const SEMANTICS_VERSION: u32 = 2;

/// Everything the scheduler reacts to. Recorded in the event log before its decisions act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// An operator submitted a validated plan; the I/O layer chose the run id.
    RunSubmitted { run: RunId, plan: Plan },
    /// A worker published the result of an attempt.
    ResultReceived { result: TaskResult },
    /// The backoff before `attempt` of a task has elapsed.
    RetryDue {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// A worker announced itself, or changed what it announces.
    WorkerJoined {
        worker: WorkerId,
        capabilities: Vec<Capability>,
        concurrency: u32,
    },
    /// A worker stopped, began draining, or its heartbeats stopped.
    WorkerLeft {
        worker: WorkerId,
        reason: WorkerLeftReason,
        /// When its heartbeats stopped: the attempts its last heartbeat said it ran, failed
        /// over at once. Absent from logs written before it existed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attempts: Vec<HeldAttempt>,
    },
    /// An operator asked to cancel a run, or only `task` of it (and, by the trigger rules,
    /// what waits for it), with an optional note. `task` and `note` are absent from logs
    /// written before they existed.
    CancelRequested {
        run: RunId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A dispatched attempt ran past its timeout (plus the coordinator's grace) with no result.
    AttemptTimedOut {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The assignment of a dispatched attempt can never be published as it is.
    PublishFailed {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        failure: PublishFailure,
    },
    /// The coordinator (re)started on this log, deciding under `semantics`. Changes nothing;
    /// recorded so that the log shows every start and the rules in force after it.
    CoordinatorStarted { semantics: u32 },
    /// An operator asked to stop dispatching a run's tasks, or a capability's for every run.
    PauseRequested { scope: PauseScope },
    /// An operator asked to dispatch again what a pause held.
    ResumeRequested { scope: PauseScope },
    /// The run's `deadline` (wall time from its submission) has passed.
    RunDeadlinePassed { run: RunId },
    /// An operator asked to run a dead-lettered task again (or every one of the run's), with
    /// `with_input` as its input if given; past the redrive limit only when forced.
    RedriveRequested {
        run: RunId,
        task: Option<TaskId>,
        with_input: Option<serde_json::Value>,
        force: bool,
    },
}

/// What a pause holds: one run, or one capability for every run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PauseScope {
    Run { run: RunId },
    Capability { capability: Capability },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLeftReason {
    Stopped,
    Draining,
    HeartbeatsStopped,
}

/// Why an assignment cannot be published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PublishFailure {
    /// Encoded, it is larger than the largest message the broker or the workers accept.
    TooLarge { bytes: u64, limit: u64 },
    /// The broker refused it for its size (the client's error, as it came).
    OverMaxPayload { error: String },
    /// It could not be encoded (the codec's error, as it came).
    Unencodable { error: String },
}

/// What the scheduler decided. Decisions with effects (dispatch, retry timer, dead letter) are
/// carried out by the I/O layer only after the batch that records them is committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A run was accepted and is scheduled under rules `semantics`.
    RunAccepted {
        run: RunId,
        tasks: u32,
        semantics: u32,
    },
    /// The input could not be acted on.
    InputRejected {
        rejection: Rejection,
    },
    /// The task may run: its needs are done, or its retry's backoff has elapsed.
    TaskReady {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// Publish an assignment for this attempt; it fails if no result comes within
    /// `timeout_ms` (plus the coordinator's grace).
    Dispatch {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        capability: Capability,
        timeout_ms: u64,
    },
    TaskCompleted {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The task that just completed added these tasks to its run, checked and with the
    /// plan's defaults applied (recorded whole, so recovery never checks a spawn again).
    TasksSpawned {
        run: RunId,
        parent: TaskId,
        tasks: Vec<TaskSpec>,
    },
    /// The task will not run: its trigger rule can no longer be met, or a branch left it out.
    TaskSkipped {
        run: RunId,
        task: TaskId,
        reason: SkipReason,
    },
    /// Tell whichever worker runs this attempt to stop it: its outcome no longer counts.
    StopAttempt {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
    },
    /// The attempt failed; a [`Decision::RetryScheduled`] or [`Decision::DeadLettered`]
    /// follows.
    AttemptFailed {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        cause: FailureCause,
    },
    /// Arm a timer: after `delay_ms`, feed [`Input::RetryDue`] for `attempt`.
    RetryScheduled {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        delay_ms: u64,
    },
    /// Attempts ran out or the failure was permanent: publish a dead letter.
    DeadLettered {
        run: RunId,
        task: TaskId,
        attempts: u32,
    },
    TaskCanceled {
        run: RunId,
        task: TaskId,
        reason: CancelReason,
    },
    RunFinished {
        run: RunId,
        outcome: RunOutcome,
    },
    /// Nothing of `scope` is dispatched until it is resumed; what runs finishes.
    Paused {
        scope: PauseScope,
    },
    Resumed {
        scope: PauseScope,
    },
    /// A dead-lettered task runs again: `attempt` is its next (numbering goes on), with a fresh
    /// attempt budget; `redrives` counts its redrives so far. Its input is the request's, if it
    /// gave one.
    TaskRedriven {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        redrives: u32,
    },
    /// Its retries ran out (or it failed permanently): the task climbs to rung `rung` (1 is the
    /// first) of its `escalate` ladder and runs as `attempt` there, with a fresh attempt budget.
    TaskEscalated {
        run: RunId,
        task: TaskId,
        rung: u32,
        attempt: Attempt,
    },
    /// A task canceled or skipped because of a redriven task waits again, to be judged anew.
    TaskRestored {
        run: RunId,
        task: TaskId,
    },
    /// A finished run has work again (a redrive): it will finish anew.
    RunReopened {
        run: RunId,
    },
    /// An attempt that ended is charged to its run's budgets: what its worker reported
    /// (`reported`), or else its task's estimate. Releases the estimate reserved at dispatch.
    UsageCharged {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        usage: Usage,
        reported: bool,
    },
    /// A result that changes nothing: recorded so that the log explains every message.
    ResultIgnored {
        run: RunId,
        task: TaskId,
        attempt: Attempt,
        reason: IgnoreReason,
    },
}

/// Why an input was not acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    /// A run with this id exists already.
    RunExists {
        run: RunId,
    },
    UnknownRun {
        run: RunId,
    },
    /// The run has its outcome already.
    RunFinished {
        run: RunId,
    },
    UnknownTask {
        run: RunId,
        task: TaskId,
    },
    /// The task has its outcome already.
    TaskFinished {
        run: RunId,
        task: TaskId,
    },
    AlreadyPaused {
        scope: PauseScope,
    },
    /// A redrive that cannot be done.
    NotRedriven {
        run: RunId,
        task: Option<TaskId>,
        why: RedriveRefusal,
    },
    NotPaused {
        scope: PauseScope,
    },
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    /// The worker reported a failure, with its error as it came.
    Worker {
        worker: WorkerId,
        error: String,
        permanent: bool,
    },
    /// No result within the task's timeout (plus the coordinator's grace).
    TimedOut { timeout_ms: u64 },
    /// The assignment could not be published.
    Unpublishable { failure: PublishFailure },
    /// The attempt succeeded, but what it asked to add to the run (a spawn, a branch) is
    /// invalid: every problem, as the plan checker words it. Nothing of it was applied.
    ControlRefused { problems: Vec<String> },
    /// The worker running it was counted gone (its heartbeats stopped): the attempt is failed
    /// over at once, with no backoff.
    WorkerLost { worker: WorkerId },
    /// The worker's usage report cannot be read (the reader's words): the attempt counts as
    /// failed, and its estimate is charged.
    UsageUnreadable { error: String },
}

impl FailureCause {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            FailureCause::Worker { permanent, .. } => *permanent,
            FailureCause::TimedOut { .. } => false,
            FailureCause::Unpublishable { .. } | FailureCause::ControlRefused { .. } => true,
            FailureCause::UsageUnreadable { .. } | FailureCause::WorkerLost { .. } => false,
        }
    }

    /// The worker that reported it, or the coordinator for failures it decides itself.
    pub fn worker(&self) -> WorkerId {
        match self {
            FailureCause::Worker { worker, .. } | FailureCause::WorkerLost { worker } => {
                worker.clone()
            }
            FailureCause::TimedOut { .. }
            | FailureCause::Unpublishable { .. }
            | FailureCause::ControlRefused { .. }
            | FailureCause::UsageUnreadable { .. } => WorkerId::sanitized(COORDINATOR),
        }
    }
}

/// The worker id shown for failures the coordinator itself decides (timeouts, publishing).
pub const COORDINATOR: &str = "coordinator";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CancelReason {
    /// A task it needs (directly or not) was dead-lettered.
    UpstreamFailed { task: TaskId },
    /// An operator canceled the run.
    RunCanceled,
    /// An operator canceled this task, with a note.
    OperatorCanceled { note: Option<String> },
    /// The run was stopped before it could finish.
    RunStopped { reason: StopReason },
}

/// Why a redrive was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RedriveRefusal {
    /// The task was not dead-lettered (it runs, waits, completed, was canceled or skipped).
    NotDeadLettered,
    /// The run has no dead-lettered task.
    NothingToRedrive,
    /// The task was redriven `limit` times already; force it to go on.
    LimitReached { limit: u32 },
    /// The run was canceled or stopped: it is not reopened.
    RunEnded { status: String },
    /// The run's deadline has passed: it is not reopened.
    DeadlinePassed,
}

/// How many times a task is redriven before a redrive must be forced.
pub const REDRIVE_LIMIT: u32 = 3;

/// Why a run was stopped before it could finish by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// Its usage of `budget` (`tokens`, `cost_cents` or `tool_calls`) reached its limit, or
    /// what is left of it cannot cover any task that waits while nothing runs to free it.
    BudgetExhausted {
        budget: String,
        limit: u64,
        used: u64,
    },
    /// Its attempts reached `[limits] attempts` with work left.
    TooManyAttempts { limit: u32 },
    /// Its `[limits] deadline` passed.
    DeadlineExceeded { deadline_ms: u64 },
    /// An operator canceled it, with an optional note (shown, never recorded as a stop: a
    /// canceled run's outcome is `canceled`).
    Canceled { note: Option<String> },
}

/// Why a task was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// How its upstream ended means its trigger rule can no longer be met.
    TriggerUnmet { trigger: Trigger },
    /// A task it needs chose other tasks to run (`branch`).
    NotChosen { by: TaskId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every leaf task (one nothing waits for) completed or was skipped.
    Succeeded,
    /// A leaf task failed or was canceled because a task it waited for failed; `task` is
    /// the earliest dead-lettered task behind such a leaf.
    Failed {
        task: TaskId,
    },
    Canceled,
    /// A limit stopped it.
    Stopped {
        reason: StopReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    UnknownRun,
    UnknownTask,
    /// An attempt other than the one running (a late result of an earlier attempt).
    StaleAttempt,
    /// The task already has its outcome (a second copy of the same result).
    AlreadyFinished,
}

// Text for people, made where it is shown. Never compared by replay.

impl fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishFailure::TooLarge { bytes, limit } => write!(
                f,
                "the assignment is {bytes} bytes, over the message limit of {limit} bytes"
            ),
            PublishFailure::OverMaxPayload { error } => {
                write!(f, "the broker refused the assignment for its size: {error}")
            }
            PublishFailure::Unencodable { error } => {
                write!(f, "the assignment cannot be encoded: {error}")
            }
        }
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureCause::Worker {
                error,
                permanent: true,
                ..
            } => write!(f, "permanent failure: {error}"),
            FailureCause::Worker { error, .. } => f.write_str(error),
            FailureCause::TimedOut { timeout_ms } => {
                write!(
                    f,
                    "timed out: no result within its timeout of {timeout_ms}ms"
                )
            }
            FailureCause::Unpublishable { failure } => write!(f, "not published: {failure}"),
            FailureCause::UsageUnreadable { error } => {
                write!(f, "the attempt's usage cannot be charged: {error}")
            }
            FailureCause::WorkerLost { worker } => write!(
                f,
                "worker {worker} was lost (its heartbeats stopped) while running it; failed over"
            ),
            FailureCause::ControlRefused { problems } => {
                write!(
                    f,
                    "the coordinator refused its spawn or branch ({} problem{}): {}",
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" },
                    problems.join("; ")
                )
            }
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::RunExists { run } => write!(f, "run {run} already exists"),
            Rejection::UnknownRun { run } => write!(f, "no run {run}"),
            Rejection::RunFinished { run } => write!(f, "run {run} has already finished"),
            Rejection::UnknownTask { run, task } => write!(f, "run {run} has no task {task}"),
            Rejection::TaskFinished { run, task } => {
                write!(f, "task {task} of run {run} has already finished")
            }
            Rejection::AlreadyPaused { scope } => write!(f, "{scope} is already paused"),
            Rejection::NotRedriven { run, task, why } => {
                match task {
                    Some(task) => write!(f, "task {task} of run {run} is not redriven: ")?,
                    None => write!(f, "run {run} is not redriven: ")?,
                }
                match why {
                    RedriveRefusal::NotDeadLettered => f.write_str("it was not dead-lettered"),
                    RedriveRefusal::NothingToRedrive => {
                        f.write_str("no task of it was dead-lettered")
                    }
                    RedriveRefusal::LimitReached { limit } => write!(
                        f,
                        "it was redriven {limit} times already (the limit); pass --force to go on"
                    ),
                    RedriveRefusal::RunEnded { status } => {
                        write!(f, "the run was {status}, and is not reopened")
                    }
                    RedriveRefusal::DeadlinePassed => {
                        f.write_str("the run's deadline has passed, and it is not reopened")
                    }
                }
            }
            Rejection::NotPaused { scope } => write!(f, "{scope} is not paused"),
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::UpstreamFailed { task } => write!(f, "upstream task {task} failed"),
            CancelReason::RunCanceled => write!(f, "run canceled by operator"),
            CancelReason::RunStopped { reason } => write!(f, "run stopped: {reason}"),
            CancelReason::OperatorCanceled { note: None } => write!(f, "canceled by operator"),
            CancelReason::OperatorCanceled { note: Some(note) } => {
                write!(f, "canceled by operator: {note}")
            }
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::BudgetExhausted {
                budget,
                limit,
                used,
            } => write!(
                f,
                "budget exhausted: {budget} used {used} of its limit {limit}"
            ),
            StopReason::TooManyAttempts { limit } => {
                write!(
                    f,
                    "too many attempts: all {limit} allowed were made, with work left"
                )
            }
            StopReason::DeadlineExceeded { deadline_ms } => write!(
                f,
                "deadline exceeded: it ran past its deadline of {}",
                humantime::format_duration(std::time::Duration::from_millis(*deadline_ms))
            ),
            StopReason::Canceled { note: None } => write!(f, "canceled by operator"),
            StopReason::Canceled { note: Some(note) } => {
                write!(f, "canceled by operator: {note}")
            }
        }
    }
}

impl fmt::Display for PauseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseScope::Run { run } => write!(f, "run {run}"),
            PauseScope::Capability { capability } => write!(f, "capability {capability}"),
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TriggerUnmet { trigger } => write!(
                f,
                "its trigger rule {trigger} can no longer be met by how its upstream ended"
            ),
            SkipReason::NotChosen { by } => write!(f, "not chosen by the branch of task {by}"),
        }
    }
}

impl Input {
    /// The variant's name as the log writes it, for reports and coverage checks.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::RunSubmitted { .. } => Self::KINDS[0],
            Input::ResultReceived { .. } => Self::KINDS[1],
            Input::RetryDue { .. } => Self::KINDS[2],
            Input::WorkerJoined { .. } => Self::KINDS[3],
            Input::WorkerLeft { .. } => Self::KINDS[4],
            Input::CancelRequested { .. } => Self::KINDS[5],
            Input::AttemptTimedOut { .. } => Self::KINDS[6],
            Input::PublishFailed { .. } => Self::KINDS[7],
            Input::CoordinatorStarted { .. } => Self::KINDS[8],
            Input::PauseRequested { .. } => Self::KINDS[9],
            Input::ResumeRequested { .. } => Self::KINDS[10],
            Input::RunDeadlinePassed { .. } => Self::KINDS[11],
            Input::RedriveRequested { .. } => Self::KINDS[12],
        }
    }

    /// Every variant's name, for checks that each appears somewhere. `kind` indexes it, so a
    /// new variant needs a new name here (an index past the end does not compile).
    pub const KINDS: [&'static str; 13] = [
        "run_submitted",
        "result_received",
        "retry_due",
        "worker_joined",
        "worker_left",
        "cancel_requested",
        "attempt_timed_out",
        "publish_failed",
        "coordinator_started",
        "pause_requested",
        "resume_requested",
        "run_deadline_passed",
        "redrive_requested",
    ];
}

impl Decision {
    /// The variant's name as the log writes it, for reports and coverage checks.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::RunAccepted { .. } => Self::KINDS[0],
            Decision::InputRejected { .. } => Self::KINDS[1],
            Decision::TaskReady { .. } => Self::KINDS[2],
            Decision::Dispatch { .. } => Self::KINDS[3],
            Decision::TaskCompleted { .. } => Self::KINDS[4],
            Decision::StopAttempt { .. } => Self::KINDS[5],
            Decision::AttemptFailed { .. } => Self::KINDS[6],
            Decision::RetryScheduled { .. } => Self::KINDS[7],
            Decision::DeadLettered { .. } => Self::KINDS[8],
            Decision::TaskCanceled { .. } => Self::KINDS[9],
            Decision::RunFinished { .. } => Self::KINDS[10],
            Decision::ResultIgnored { .. } => Self::KINDS[11],
            Decision::TasksSpawned { .. } => Self::KINDS[12],
            Decision::TaskSkipped { .. } => Self::KINDS[13],
            Decision::Paused { .. } => Self::KINDS[14],
            Decision::Resumed { .. } => Self::KINDS[15],
            Decision::UsageCharged { .. } => Self::KINDS[16],
            Decision::TaskRedriven { .. } => Self::KINDS[17],
            Decision::TaskRestored { .. } => Self::KINDS[18],
            Decision::RunReopened { .. } => Self::KINDS[19],
            Decision::TaskEscalated { .. } => Self::KINDS[20],
        }
    }

    /// Every variant's name, for checks that each appears somewhere. `kind` indexes it, so a
    /// new variant needs a new name here (an index past the end does not compile).
    pub const KINDS: [&'static str; 21] = [
        "run_accepted",
        "input_rejected",
        "task_ready",
        "dispatch",
        "task_completed",
        "stop_attempt",
        "attempt_failed",
        "retry_scheduled",
        "dead_lettered",
        "task_canceled",
        "run_finished",
        "result_ignored",
        "tasks_spawned",
        "task_skipped",
        "paused",
        "resumed",
        "usage_charged",
        "task_redriven",
        "task_restored",
        "run_reopened",
        "task_escalated",
    ];

    /// The run the decision is about, if any.
    pub fn run(&self) -> Option<&RunId> {
        match self {
            Decision::RunAccepted { run, .. }
            | Decision::TaskReady { run, .. }
            | Decision::Dispatch { run, .. }
            | Decision::TaskCompleted { run, .. }
            | Decision::StopAttempt { run, .. }
            | Decision::AttemptFailed { run, .. }
            | Decision::RetryScheduled { run, .. }
            | Decision::DeadLettered { run, .. }
            | Decision::TaskCanceled { run, .. }
            | Decision::RunFinished { run, .. }
            | Decision::ResultIgnored { run, .. }
            | Decision::TasksSpawned { run, .. }
            | Decision::TaskSkipped { run, .. }
            | Decision::UsageCharged { run, .. }
            | Decision::TaskRedriven { run, .. }
            | Decision::TaskRestored { run, .. }
            | Decision::TaskEscalated { run, .. }
            | Decision::RunReopened { run } => Some(run),
            Decision::Paused { scope } | Decision::Resumed { scope } => match scope {
                PauseScope::Run { run } => Some(run),
                PauseScope::Capability { .. } => None,
            },
            Decision::InputRejected { .. } => None,
        }
    }
}
