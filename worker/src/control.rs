//! What an attempt tells its run beside its output: tasks to [spawn](Growth::spawn) and the
//! [branch](Growth::branch) to take, and what it used ([`UsageReport`]). A Rust handler tells
//! it through its [`TaskContext`](crate::TaskContext), a command through its control file;
//! either way the worker takes both from one [`Control`] once the handler has returned. Only a
//! success carries its growth; usage counts however the attempt ended.
//!
//! Nothing here checks the growth: the coordinator validates a spawn against the run and fails
//! the attempt permanently, naming every problem, if it does not fit. A usage report is read
//! here, so that one that cannot be read fails the attempt on the worker too.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use workforce_shared::{Trigger, Usage, UsageError};

/// What an attempt asks of its run. Empty: nothing beyond its output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Growth {
    /// Tasks to add to the run, each in a plan's task shape, as given.
    pub spawn: Vec<Value>,
    /// Which of the tasks that need this one run; the others are skipped. `None`: all of them.
    pub branch: Option<Vec<String>>,
}

impl Growth {
    pub fn is_empty(&self) -> bool {
        self.spawn.is_empty() && self.branch.is_none()
    }
}

/// What an attempt reported using, so far, kept so that its result can carry it as sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum UsageReport {
    /// Nothing reported: the result has no `usage`.
    #[default]
    Nothing,
    /// One report, as its sender wrote it (a command's control file).
    AsGiven { report: Value, usage: Usage },
    /// Reports added up.
    Total(Usage),
    /// A report that cannot be read. It outweighs every other report: the attempt fails, and
    /// the report is sent as given, so the coordinator charges the task's estimate (never
    /// zero) and records what was sent.
    Unreadable { report: Value, error: UsageError },
}

impl UsageReport {
    /// A report as its sender wrote it, read.
    pub(crate) fn given(report: Value) -> Self {
        match Usage::read(&report) {
            Ok(usage) => Self::AsGiven { report, usage },
            Err(error) => Self::Unreadable { report, error },
        }
    }

    /// Both reports: added up if both can be read, else the (first) one that cannot.
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (unreadable @ Self::Unreadable { .. }, _)
            | (_, unreadable @ Self::Unreadable { .. }) => unreadable,
            (Self::Nothing, other) | (other, Self::Nothing) => other,
            (
                Self::AsGiven { usage: a, .. } | Self::Total(a),
                Self::AsGiven { usage: b, .. } | Self::Total(b),
            ) => Self::Total(a.plus(b)),
        }
    }

    /// Why it cannot be read, if it cannot.
    pub(crate) fn problem(&self) -> Option<&UsageError> {
        match self {
            Self::Unreadable { error, .. } => Some(error),
            Self::Nothing | Self::AsGiven { .. } | Self::Total(_) => None,
        }
    }

    /// As a result carries it: `None` if nothing was reported.
    pub(crate) fn to_value(&self) -> Option<Value> {
        match self {
            Self::Nothing => None,
            Self::AsGiven { report, .. } | Self::Unreadable { report, .. } => Some(report.clone()),
            Self::Total(usage) => Some(json!({
                "tokens": usage.tokens,
                "cost_cents": usage.cost_cents,
                "tool_calls": usage.tool_calls,
            })),
        }
    }
}

/// What an attempt told its run beside its output.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Reported {
    pub(crate) growth: Growth,
    pub(crate) usage: UsageReport,
}

/// One attempt's record of what it [`Reported`], shared by every clone of its context and the
/// worker. Held only for a push, never across an await.
#[derive(Clone, Default)]
pub(crate) struct Control(Arc<Mutex<Record>>);

#[derive(Default)]
struct Record {
    reported: Reported,
    /// The worker has taken the record: later requests and reports (from a task the handler
    /// left running) would be lost, so they are refused loudly.
    closed: bool,
}

impl Control {
    fn record(&self) -> MutexGuard<'_, Record> {
        // A panic while holding the lock leaves a whole Vec push or none: the record is sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` unless the attempt has ended.
    fn update(&self, what: &str, change: impl FnOnce(&mut Reported)) {
        let mut record = self.record();
        if record.closed {
            tracing::warn!(
                what,
                "a handler asked to {what} after its attempt ended; ignored (ask before \
                 returning)"
            );
            return;
        }
        change(&mut record.reported);
    }

    pub(crate) fn spawn(&self, entries: impl IntoIterator<Item = Value>) {
        let entries: Vec<Value> = entries.into_iter().collect();
        // Spawning nothing asks nothing, even late.
        if !entries.is_empty() {
            self.update("spawn", |reported| reported.growth.spawn.extend(entries));
        }
    }

    pub(crate) fn branch(&self, ids: impl IntoIterator<Item = String>) {
        self.update("branch", |reported| {
            reported
                .growth
                .branch
                .get_or_insert_with(Vec::new)
                .extend(ids)
        });
    }

    /// Adds `report` to what was reported before.
    pub(crate) fn report_usage(&self, report: UsageReport) {
        // Reporting nothing reports nothing, even late.
        if report != UsageReport::Nothing {
            self.update("report usage", |reported| {
                reported.usage = std::mem::take(&mut reported.usage).and(report);
            });
        }
    }

    /// What has been asked so far.
    pub(crate) fn growth(&self) -> Growth {
        self.record().reported.growth.clone()
    }

    /// What has been reported used so far.
    pub(crate) fn usage(&self) -> UsageReport {
        self.record().reported.usage.clone()
    }

    /// Ends the record: takes what was reported and refuses anything reported later.
    pub(crate) fn close(&self) -> Reported {
        let mut record = self.record();
        record.closed = true;
        std::mem::take(&mut record.reported)
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = self.record();
        f.debug_struct("Control")
            .field("growth", &record.reported.growth)
            .field("usage", &record.reported.usage)
            .field("closed", &record.closed)
            .finish()
    }
}

/// Equal when they report the same.
impl PartialEq for Control {
    fn eq(&self, other: &Self) -> bool {
        // The same record: locking it twice would deadlock.
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        // One lock at a time: two comparisons in opposite orders must not deadlock.
        let mine = self.record().reported.clone();
        mine == other.record().reported
    }
}

/// A task to spawn, built in the plan's task shape: what
/// [`TaskContext::spawn`](crate::TaskContext::spawn) takes. Only `id` and `capability` are
/// required; what is left out takes the plan's `[defaults]`. The coordinator checks it.
///
/// ```
/// use serde_json::json;
/// use workforce_shared::Trigger;
/// use workforce_worker::SpawnTask;
///
/// let task = SpawnTask::new("summarize", "llm")
///     .input(json!({"style": "short"}))
///     .needs(["part-1", "part-2"])
///     .trigger(Trigger::AllDone);
/// assert_eq!(
///     serde_json::Value::from(task),
///     json!({"id": "summarize", "capability": "llm", "input": {"style": "short"},
///            "needs": ["part-1", "part-2"], "trigger": "all_done"}),
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnTask(Map<String, Value>);

impl SpawnTask {
    pub fn new(id: impl Into<String>, capability: impl Into<String>) -> Self {
        let mut fields = Map::new();
        fields.insert("id".into(), Value::String(id.into()));
        fields.insert("capability".into(), Value::String(capability.into()));
        Self(fields)
    }

    fn set(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.into(), value);
        self
    }

    pub fn input(self, input: impl Into<Value>) -> Self {
        self.set("input", input.into())
    }

    /// The tasks it waits for: the run's tasks or others in the same spawn.
    pub fn needs(self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.set("needs", strings(ids))
    }

    pub fn priority(self, priority: i32) -> Self {
        self.set("priority", Value::from(priority))
    }

    /// Written the way a plan writes it ("5m").
    pub fn timeout(self, timeout: Duration) -> Self {
        let text = humantime::format_duration(timeout).to_string();
        self.set("timeout", Value::String(text))
    }

    /// The plan's `retry` table as JSON, e.g. `{"max_attempts": 5, "initial_backoff": "2s"}`.
    pub fn retry(self, retry: Value) -> Self {
        self.set("retry", retry)
    }

    pub fn trigger(self, trigger: Trigger) -> Self {
        self.set("trigger", Value::String(trigger.name().to_owned()))
    }

    /// The capabilities the tasks it spawns may have.
    pub fn spawns(self, capabilities: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.set("spawns", strings(capabilities))
    }
}

impl From<SpawnTask> for Value {
    fn from(task: SpawnTask) -> Self {
        Value::Object(task.0)
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|item| Value::String(item.into()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_record_and_close_takes_it() {
        let control = Control::default();
        let clone = control.clone();
        clone.spawn([json!({"id": "a"})]);
        control.branch(["x".to_owned()]);
        control.branch(["y".to_owned()]);
        assert_eq!(
            control.growth(),
            Growth {
                spawn: vec![json!({"id": "a"})],
                branch: Some(vec!["x".into(), "y".into()]),
            }
        );
        assert_eq!(control, clone);
        let taken = control.close();
        assert_eq!(taken.growth.spawn.len(), 1);
        // After the attempt ended nothing more is recorded.
        clone.spawn([json!({"id": "late"})]);
        clone.branch(Vec::new());
        assert!(control.growth().is_empty());
    }

    #[test]
    fn an_empty_branch_runs_none_and_differs_from_no_branch() {
        let control = Control::default();
        control.branch(Vec::new());
        let growth = control.close().growth;
        assert_eq!(growth.branch, Some(Vec::new()));
        assert!(!growth.is_empty());
    }

    fn usage(tokens: u64, cost_cents: u64, tool_calls: u64) -> Usage {
        Usage {
            tokens,
            cost_cents,
            tool_calls,
        }
    }

    #[test]
    fn usage_reports_add_up_and_one_report_is_kept_as_given() {
        let control = Control::default();
        assert_eq!(control.usage().to_value(), None);
        control.report_usage(UsageReport::given(json!({"tokens": 5})));
        assert_eq!(control.usage().to_value(), Some(json!({"tokens": 5})));
        control.report_usage(UsageReport::Total(usage(1, 2, 3)));
        control.report_usage(UsageReport::Nothing);
        assert_eq!(control.usage(), UsageReport::Total(usage(6, 2, 3)));
        assert_eq!(
            control.close().usage.to_value(),
            Some(json!({"tokens": 6, "cost_cents": 2, "tool_calls": 3}))
        );
        // After the attempt ended nothing more is recorded.
        control.report_usage(UsageReport::Total(usage(1, 0, 0)));
        assert_eq!(control.usage(), UsageReport::Nothing);
    }

    #[test]
    fn an_unreadable_report_outweighs_every_other_and_is_kept_as_given() {
        let control = Control::default();
        control.report_usage(UsageReport::Total(usage(1, 0, 0)));
        control.report_usage(UsageReport::given(json!({"tokens": -1})));
        control.report_usage(UsageReport::Total(usage(1, 0, 0)));
        control.report_usage(UsageReport::given(json!("second")));
        let reported = control.close().usage;
        assert_eq!(reported.to_value(), Some(json!({"tokens": -1})));
        let problem = reported.problem().expect("unreadable").to_string();
        assert!(problem.contains("not -1"), "{problem}");
    }

    #[test]
    fn spawn_task_writes_the_plan_task_shape() {
        let task = SpawnTask::new("t", "c")
            .input(json!([1]))
            .needs(["a"])
            .priority(-2)
            .timeout(Duration::from_secs(330))
            .retry(json!({"max_attempts": 5}))
            .trigger(Trigger::AllDone)
            .spawns(["c", "d"]);
        assert_eq!(
            Value::from(task),
            json!({
                "id": "t", "capability": "c", "input": [1], "needs": ["a"], "priority": -2,
                "timeout": "5m 30s", "retry": {"max_attempts": 5}, "trigger": "all_done",
                "spawns": ["c", "d"],
            })
        );
    }
}
