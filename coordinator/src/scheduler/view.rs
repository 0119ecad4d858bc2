//! Read-only views of the scheduler's state, as `status`, `runs` and `workers` show them.

use serde::{Deserialize, Serialize};
use workforce_shared::{Capability, Limits, RunId, TaskId, Trigger, Usage, WorkerId};

use super::run::{Phase, RunState};
use super::{RunOutcome, Scheduler, StopReason};

/// A task's status, in the names operators use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Ready to run, waiting for capacity or for a retry's backoff.
    Queued,
    Running,
    /// Waiting on a dependency, or no live worker serves its capability.
    Blocked,
    Completed,
    Failed,
    Canceled,
    /// Will not run: its trigger rule could no longer be met, or a branch left it out.
    Skipped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Blocked => "blocked",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
            TaskStatus::Skipped => "skipped",
        }
    }

    pub fn is_terminal(self) -> bool {
        match self {
            TaskStatus::Completed
            | TaskStatus::Failed
            | TaskStatus::Canceled
            | TaskStatus::Skipped => true,
            TaskStatus::Queued | TaskStatus::Running | TaskStatus::Blocked => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Canceled,
    /// A limit stopped it: a budget, its attempts, its deadline.
    Stopped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
            RunStatus::Stopped => "stopped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub task: TaskId,
    pub capability: Capability,
    pub priority: i32,
    pub status: TaskStatus,
    /// The current attempt (the last one, once finished).
    pub attempt: u32,
    /// Attempts dispatched so far: 0 for a task that never ran.
    #[serde(default)]
    pub started: u32,
    pub max_attempts: u32,
    /// When it runs, given how its upstream ended.
    #[serde(default)]
    pub trigger: Trigger,
    /// Times an operator redrove it after it was dead-lettered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redrives: u32,
    /// The rung of its escalation ladder it is on (0: none yet); `capability` is the rung's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rung: u32,
    /// The task that spawned it; absent for the plan's own tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskId>,
    /// What its attempts were charged, summed.
    #[serde(default, skip_serializing_if = "Usage::is_zero")]
    pub usage: Usage,
    /// Why it is blocked, queued, failed, canceled or skipped.
    pub detail: Option<String>,
    pub output: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub run: RunId,
    pub name: String,
    /// The scheduling rules the run was accepted under.
    #[serde(default)]
    pub semantics: u32,
    pub status: RunStatus,
    pub reason: Option<String>,
    /// Why it was stopped, when it was: absent for a run that ended by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// An operator paused it: nothing more of it is dispatched until it is resumed.
    #[serde(default)]
    pub paused: bool,
    /// What its attempts were charged, summed; and its attempts so far.
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub attempts: u32,
    /// Its limits (budgets, attempts, deadline, growth).
    #[serde(default)]
    pub limits: Limits,
    pub tasks: Vec<TaskView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: RunId,
    pub name: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub tasks: u32,
    pub completed: u32,
    pub failed: u32,
    pub canceled: u32,
    #[serde(default)]
    pub skipped: u32,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    pub worker: WorkerId,
    /// The capabilities it counts for now (those whose breaker is open left out).
    pub capabilities: Vec<Capability>,
    pub concurrency: u32,
    /// Results it reported that ended their attempts: completed, failed.
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
    /// Completed among its last (up to 20) such results, 0 to 1; absent before any.
    #[serde(default)]
    pub success_rate: Option<f64>,
    /// What its last heartbeat said, and how long ago it came (absent in a log replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveWorker>,
}

/// A dead-lettered task, as `workforce dlq` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterView {
    pub run: RunId,
    pub task: TaskId,
    pub capability: Capability,
    pub input: serde_json::Value,
    /// Every failed attempt, redrives included, oldest first.
    pub attempts: Vec<FailedAttempt>,
    pub redrives: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedAttempt {
    pub attempt: u32,
    pub worker: WorkerId,
    pub error: String,
    /// How long it ran, by its worker's clock; absent when no result came (a timeout, say).
    pub duration_ms: Option<u64>,
}

/// What a worker's heartbeats say: known to the coordinator's service, not to the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveWorker {
    pub state: workforce_shared::WorkerState,
    pub in_flight: u32,
    /// Every capability it serves, breakers open or not.
    pub serves: Vec<Capability>,
    pub breakers: Vec<workforce_shared::Breaker>,
    pub last_heartbeat_ms_ago: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn run_status(state: &RunState) -> (RunStatus, Option<String>) {
    match &state.outcome {
        None => (RunStatus::Running, None),
        Some(RunOutcome::Succeeded) => (RunStatus::Succeeded, None),
        Some(RunOutcome::Failed { task }) => {
            let reason = match state.index_of(task) {
                Some(index) if matches!(state.tasks[index].phase, Phase::Canceled { .. }) => {
                    match &state.tasks[index].phase {
                        Phase::Canceled { reason } => format!("task {task} {reason}"),
                        _ => format!("task {task} canceled"),
                    }
                }
                Some(index) => {
                    let failures = &state.tasks[index].failures;
                    let last = failures.last().map(|(_, cause)| cause.to_string());
                    format!(
                        "task {task} dead-lettered after {} attempt(s): {}",
                        state.tasks[index].attempt,
                        last.as_deref().unwrap_or("no error recorded")
                    )
                }
                None => format!("task {task} dead-lettered"),
            };
            (RunStatus::Failed, Some(reason))
        }
        Some(RunOutcome::Stopped { reason }) => (RunStatus::Stopped, Some(reason.to_string())),
        Some(RunOutcome::Canceled) => {
            let reason = match &state.cancel_note {
                Some(note) => format!("canceled by operator: {note}"),
                None => "canceled by operator".to_owned(),
            };
            (RunStatus::Canceled, Some(reason))
        }
    }
}

impl Scheduler {
    pub fn run_view(&self, run: &RunId) -> Option<RunView> {
        let state = self.runs.get(run)?;
        let paused = self.paused_runs.contains(&state.seq);
        let tasks = state
            .plan
            .tasks
            .iter()
            .zip(&state.tasks)
            .enumerate()
            .map(|(index, (spec, task))| {
                // The limit that holds it back, for a task ready to run.
                let blocked = (task.phase == Phase::Ready)
                    .then(|| super::budget::blocking_limit(state, index))
                    .flatten();
                let (status, detail) = match &task.phase {
                    Phase::Waiting => {
                        let needs: Vec<String> = state
                            .unfinished_upstream(index)
                            .iter()
                            .map(|t| t.to_string())
                            .collect();
                        (
                            TaskStatus::Blocked,
                            Some(format!("waiting on {}", needs.join(", "))),
                        )
                    }
                    Phase::Ready if paused => (
                        TaskStatus::Queued,
                        Some("held: the run is paused".to_owned()),
                    ),
                    Phase::Ready if self.paused_capabilities.contains(&spec.capability) => (
                        TaskStatus::Queued,
                        Some(format!("held: capability {} is paused", spec.capability)),
                    ),
                    Phase::Ready if blocked.is_some() => {
                        let why = match blocked {
                            Some(StopReason::TooManyAttempts { limit }) => {
                                format!("the run's {limit} attempts are spent")
                            }
                            Some(StopReason::BudgetExhausted { budget, limit, .. }) => format!(
                                "its estimate of {} {budget} does not fit what is left of the \
                                 run's {limit}",
                                spec.estimate.part(&budget).unwrap_or(0)
                            ),
                            _ => "a limit".to_owned(),
                        };
                        (
                            TaskStatus::Blocked,
                            Some(format!("waiting for budget: {why}")),
                        )
                    }
                    Phase::Ready if self.capacity(&spec.capability) == 0 => (
                        TaskStatus::Blocked,
                        Some(format!(
                            "no live worker serves capability {}",
                            spec.capability
                        )),
                    ),
                    Phase::Ready => (TaskStatus::Queued, Some("waiting for capacity".into())),
                    Phase::Running { .. } => (TaskStatus::Running, None),
                    Phase::BackingOff { next } => (
                        TaskStatus::Queued,
                        Some(format!(
                            "attempt {next} waits for its backoff; last error: {}",
                            task.failures
                                .last()
                                .map(|(_, cause)| cause.to_string())
                                .unwrap_or_default()
                        )),
                    ),
                    Phase::Completed { .. } => (TaskStatus::Completed, None),
                    Phase::Failed => (
                        TaskStatus::Failed,
                        task.failures.last().map(|(_, cause)| cause.to_string()),
                    ),
                    Phase::Canceled { reason } => (TaskStatus::Canceled, Some(reason.to_string())),
                    Phase::Skipped { reason } => (TaskStatus::Skipped, Some(reason.to_string())),
                };
                let output = task.phase.output().cloned();
                TaskView {
                    task: spec.id.clone(),
                    capability: spec.capability.clone(),
                    priority: spec.priority,
                    status,
                    attempt: task.attempt.0,
                    started: task.started,
                    max_attempts: spec.retry.max_attempts,
                    trigger: spec.trigger,
                    redrives: task.redrives,
                    rung: task.rung,
                    parent: task.parent.map(|p| state.plan.tasks[p].id.clone()),
                    usage: task.used,
                    detail,
                    output,
                }
            })
            .collect();
        let (status, reason) = run_status(state);
        let stop_reason = match &state.outcome {
            Some(RunOutcome::Canceled) => Some(StopReason::Canceled {
                note: state.cancel_note.clone(),
            }),
            Some(RunOutcome::Stopped { reason }) => Some(reason.clone()),
            _ => None,
        };
        Some(RunView {
            run: state.id.clone(),
            name: state.plan.name.clone(),
            semantics: state.semantics,
            status,
            reason,
            stop_reason,
            paused,
            usage: state.used,
            attempts: state.attempts,
            limits: state.plan.limits,
            tasks,
        })
    }

    /// Every run, in submission order.
    pub fn runs(&self) -> Vec<RunSummary> {
        self.run_ids
            .values()
            .filter_map(|id| self.runs.get(id))
            .map(|state| {
                let count = |f: fn(&Phase) -> bool| {
                    u32::try_from(state.tasks.iter().filter(|t| f(&t.phase)).count())
                        .unwrap_or(u32::MAX)
                };
                let (status, reason) = run_status(state);
                RunSummary {
                    run: state.id.clone(),
                    name: state.plan.name.clone(),
                    status,
                    reason,
                    tasks: u32::try_from(state.tasks.len()).unwrap_or(u32::MAX),
                    completed: count(|p| matches!(p, Phase::Completed { .. })),
                    failed: count(|p| matches!(p, Phase::Failed)),
                    canceled: count(|p| matches!(p, Phase::Canceled { .. })),
                    skipped: count(|p| matches!(p, Phase::Skipped { .. })),
                    paused: self.paused_runs.contains(&state.seq),
                    usage: state.used,
                }
            })
            .collect()
    }

    /// Dead-lettered tasks, of one run or all, in submission then task order.
    pub fn dead_letters(&self, run: Option<&RunId>) -> Vec<DeadLetterView> {
        self.run_ids
            .values()
            .filter(|id| run.is_none_or(|r| r == *id))
            .filter_map(|id| self.runs.get(id))
            .flat_map(|state| {
                (0..state.tasks.len())
                    .filter(|&i| state.tasks[i].phase == Phase::Failed)
                    .map(move |i| {
                        let (spec, task) = (&state.plan.tasks[i], &state.tasks[i]);
                        DeadLetterView {
                            run: state.id.clone(),
                            task: spec.id.clone(),
                            capability: spec.capability.clone(),
                            input: spec.input.clone(),
                            attempts: task
                                .failures
                                .iter()
                                .map(|(attempt, cause)| FailedAttempt {
                                    attempt: attempt.0,
                                    worker: cause.worker(),
                                    error: cause.to_string(),
                                    duration_ms: task.durations.get(attempt).copied(),
                                })
                                .collect(),
                            redrives: task.redrives,
                        }
                    })
            })
            .collect()
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|(id, w)| {
                let stats = self.worker_stats.get(id);
                let success_rate = stats.filter(|s| !s.recent.is_empty()).map(|s| {
                    s.recent.iter().filter(|ok| **ok).count() as f64 / s.recent.len() as f64
                });
                WorkerView {
                    worker: id.clone(),
                    capabilities: w.capabilities.clone(),
                    concurrency: w.concurrency,
                    completed: stats.map_or(0, |s| s.completed),
                    failed: stats.map_or(0, |s| s.failed),
                    success_rate,
                    live: None,
                }
            })
            .collect()
    }
}
