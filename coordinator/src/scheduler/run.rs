//! One run's state: its tasks (the plan's and those spawned since), the phase of each, and
//! the bookkeeping that says what each task waits for.
//!
//! A task waits for its *upstream*: the tasks it needs and, for each, everything that task
//! spawned, transitively (fan-in). The upstream grows when a task it covers spawns. Each task
//! counts how its upstream has ended so far ([`UpstreamCounts`]), which its trigger rule reads.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::Value;
use workforce_shared::{
    Attempt, Plan, RunId, TaskId, TaskSpec, UpstreamCounts, UpstreamError, UpstreamStatus, Usage,
};

use super::ready::{Level, ReadyKey};
use super::{CancelReason, FailureCause, RunOutcome, SkipReason};

/// Where a task is in its lifecycle. Matched exhaustively: a new phase must be handled
/// everywhere it matters.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Phase {
    /// Its trigger rule has not decided yet.
    Waiting,
    /// May run; waiting for capacity.
    Ready,
    Running {
        attempt: Attempt,
    },
    /// Failed retryably; `next` is dispatched when its timer fires.
    BackingOff {
        next: Attempt,
    },
    Completed {
        output: Value,
    },
    /// Dead-lettered; the task's failures say why.
    Failed,
    Canceled {
        reason: CancelReason,
    },
    /// Its trigger rule can no longer be met, or a branch did not choose it.
    Skipped {
        reason: SkipReason,
    },
}

/// How a finished task counts for the trigger rules of the tasks that wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    Completed,
    /// Dead-lettered or canceled.
    Failed,
    Skipped,
}

impl Ending {
    pub(super) fn count(self, counts: &mut UpstreamCounts) {
        counts.unfinished = counts.unfinished.saturating_sub(1);
        match self {
            Ending::Completed => counts.completed += 1,
            Ending::Failed => counts.failed += 1,
            Ending::Skipped => counts.skipped += 1,
        }
    }
}

impl Phase {
    /// The output, once completed.
    pub(super) fn output(&self) -> Option<&Value> {
        match self {
            Phase::Completed { output } => Some(output),
            _ => None,
        }
    }

    /// The phase's name, for errors.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Ready => "ready",
            Phase::Running { .. } => "running",
            Phase::BackingOff { .. } => "backing off",
            Phase::Completed { .. } => "completed",
            Phase::Failed => "failed",
            Phase::Canceled { .. } => "canceled",
            Phase::Skipped { .. } => "skipped",
        }
    }

    /// How it counts for the tasks waiting on it; `None` while it has not ended.
    pub(super) fn ending(&self) -> Option<Ending> {
        match self {
            Phase::Completed { .. } => Some(Ending::Completed),
            Phase::Failed | Phase::Canceled { .. } => Some(Ending::Failed),
            Phase::Skipped { .. } => Some(Ending::Skipped),
            Phase::Waiting | Phase::Ready | Phase::Running { .. } | Phase::BackingOff { .. } => {
                None
            }
        }
    }

    pub(super) fn is_terminal(&self) -> bool {
        self.ending().is_some()
    }
}

#[derive(Clone, Debug)]
pub(super) struct TaskState {
    pub(super) phase: Phase,
    /// The current (or next, while ready) attempt.
    pub(super) attempt: Attempt,
    /// Every failed attempt and why, in order.
    pub(super) failures: Vec<(Attempt, FailureCause)>,
    /// Attempts dispatched.
    pub(super) started: u32,
    /// How its upstream has ended so far.
    pub(super) counts: UpstreamCounts,
    /// The task that spawned it; `None` for the plan's own tasks.
    pub(super) parent: Option<usize>,
    /// Spawn depth: 0 for the plan's tasks, the parent's + 1 for spawned ones.
    pub(super) depth: u32,
    /// What its attempts were charged, summed.
    pub(super) used: Usage,
    /// Times it was redriven, and the first attempt of the latest (its retry budget counts
    /// from there).
    pub(super) redrives: u32,
    pub(super) first_attempt: Attempt,
    /// How long each attempt that reported ran, by its worker's clock.
    pub(super) durations: BTreeMap<Attempt, u64>,
    /// Rungs of its escalation ladder climbed so far.
    pub(super) rung: u32,
}

#[derive(Clone, Debug)]
pub(super) struct RunState {
    pub(super) id: RunId,
    pub(super) seq: u64,
    /// The rules the run was accepted under.
    pub(super) semantics: u32,
    /// The plan, its `tasks` grown by every spawn (in the order they were added).
    pub(super) plan: Plan,
    pub(super) tasks: Vec<TaskState>,
    /// Task index by id.
    index: BTreeMap<TaskId, usize>,
    /// For each task, the tasks that need it directly, in the order they were added.
    dependents: Vec<Vec<usize>>,
    /// For each task, what it waits for: its needs and all they spawned.
    upstream: Vec<Vec<usize>>,
    /// For each task, the tasks whose upstream holds it.
    watchers: Vec<Vec<usize>>,
    /// For each task, the tasks it spawned.
    children: Vec<Vec<usize>>,
    /// Dead-lettered tasks, in the order they were.
    pub(super) dead_letters: Vec<usize>,
    pub(super) outcome: Option<RunOutcome>,
    /// The operator's note, once the run was canceled with one.
    pub(super) cancel_note: Option<String>,
    /// What its ended attempts were charged, summed.
    pub(super) used: Usage,
    /// The estimates of its attempts in flight.
    pub(super) reserved: Usage,
    /// Attempts dispatched, all tasks together.
    pub(super) attempts: u32,
    /// Its deadline has passed (it stopped then, or had already ended).
    pub(super) deadline_passed: bool,
}

impl RunState {
    pub(super) fn new(id: RunId, seq: u64, semantics: u32, plan: Plan) -> Self {
        let mut tasks = plan.tasks.clone();
        let mut state = Self {
            id,
            seq,
            semantics,
            plan: Plan {
                tasks: Vec::new(),
                ..plan
            },
            tasks: Vec::new(),
            index: BTreeMap::new(),
            dependents: Vec::new(),
            upstream: Vec::new(),
            watchers: Vec::new(),
            children: Vec::new(),
            dead_letters: Vec::new(),
            outcome: None,
            cancel_note: None,
            used: Usage::default(),
            reserved: Usage::default(),
            attempts: 0,
            deadline_passed: false,
        };
        let added = state.add_tasks(std::mem::take(&mut tasks), None);
        debug_assert_eq!(added.len(), state.tasks.len());
        state
    }

    /// Adds tasks (a plan's, or a spawn of `parent`'s) whose ids are new and whose needs are
    /// known, wiring what each waits for. Returns their indexes.
    pub(super) fn add_tasks(
        &mut self,
        specs: Vec<TaskSpec>,
        parent: Option<usize>,
    ) -> std::ops::Range<usize> {
        let first = self.tasks.len();
        let depth = parent.map_or(0, |p| self.tasks[p].depth + 1);
        for spec in specs {
            let i = self.tasks.len();
            self.index.insert(spec.id.clone(), i);
            self.plan.tasks.push(spec);
            self.tasks.push(TaskState {
                phase: Phase::Waiting,
                attempt: Attempt::FIRST,
                failures: Vec::new(),
                started: 0,
                counts: UpstreamCounts::default(),
                parent,
                depth,
                used: Usage::default(),
                redrives: 0,
                first_attempt: Attempt::FIRST,
                durations: BTreeMap::new(),
                rung: 0,
            });
            self.dependents.push(Vec::new());
            self.upstream.push(Vec::new());
            self.watchers.push(Vec::new());
            self.children.push(Vec::new());
            if let Some(p) = parent {
                self.children[p].push(i);
            }
        }
        let added = first..self.tasks.len();
        for i in added.clone() {
            let needs: Vec<usize> = self.plan.tasks[i]
                .needs
                .iter()
                .filter_map(|n| self.index.get(n).copied())
                .collect();
            for need in needs {
                self.dependents[need].push(i);
                for covered in self.spawned_from(need) {
                    self.wait(i, covered);
                }
            }
        }
        // Whatever waits for the parent's group (for an ancestor's) waits for these too.
        let mut ancestor = parent;
        while let Some(a) = ancestor {
            for d in self.dependents[a].clone() {
                for i in added.clone() {
                    self.wait(d, i);
                }
            }
            ancestor = self.tasks[a].parent;
        }
        added
    }

    /// Makes `task` wait for `on`.
    fn wait(&mut self, task: usize, on: usize) {
        self.upstream[task].push(on);
        self.watchers[on].push(task);
        let ending = self.tasks[on].phase.ending();
        let counts = &mut self.tasks[task].counts;
        counts.unfinished += 1;
        if let Some(ending) = ending {
            ending.count(counts);
        }
    }

    /// `task` and everything it spawned, transitively, in the order they were added.
    pub(super) fn spawned_from(&self, task: usize) -> Vec<usize> {
        let mut group = vec![task];
        let mut next = 0;
        while next < group.len() {
            group.extend_from_slice(&self.children[group[next]]);
            next += 1;
        }
        group.sort_unstable();
        group
    }

    /// Sets a task's terminal phase and counts it for every task waiting on it.
    pub(super) fn finish(&mut self, task: usize, phase: Phase) {
        let ending = phase.ending();
        self.tasks[task].phase = phase;
        if let Some(ending) = ending {
            for &w in &self.watchers[task] {
                ending.count(&mut self.tasks[w].counts);
            }
        }
    }

    /// Undoes [`RunState::finish`]: the task has not ended after all (a redrive, a restore),
    /// and counts as unfinished for every task waiting on it.
    pub(super) fn unfinish(&mut self, task: usize, phase: Phase) {
        let ending = self.tasks[task].phase.ending();
        self.tasks[task].phase = phase;
        if let Some(ending) = ending {
            for &w in &self.watchers[task] {
                let counts = &mut self.tasks[w].counts;
                match ending {
                    Ending::Completed => counts.completed = counts.completed.saturating_sub(1),
                    Ending::Failed => counts.failed = counts.failed.saturating_sub(1),
                    Ending::Skipped => counts.skipped = counts.skipped.saturating_sub(1),
                }
                counts.unfinished += 1;
            }
        }
    }

    /// The tasks waiting, directly or not, on `task`, in task order.
    pub(super) fn downstream(&self, task: usize) -> Vec<usize> {
        let mut seen = vec![false; self.tasks.len()];
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            for &w in &self.watchers[t] {
                if !seen[w] {
                    seen[w] = true;
                    stack.push(w);
                }
            }
        }
        (0..seen.len()).filter(|&i| seen[i]).collect()
    }

    pub(super) fn index_of(&self, task: &TaskId) -> Option<usize> {
        self.index.get(task).copied()
    }

    pub(super) fn has_task(&self, task: &str) -> bool {
        TaskId::new(task).is_ok_and(|id| self.index.contains_key(&id))
    }

    pub(super) fn ready_key(&self, task: usize) -> ReadyKey {
        ReadyKey {
            level: Level {
                run_priority: Reverse(self.plan.priority),
                priority: Reverse(self.plan.tasks[task].priority),
            },
            run_seq: self.seq,
            task,
        }
    }

    pub(super) fn dependents(&self, task: usize) -> &[usize] {
        &self.dependents[task]
    }

    pub(super) fn watchers(&self, task: usize) -> &[usize] {
        &self.watchers[task]
    }

    pub(super) fn upstream(&self, task: usize) -> &[usize] {
        &self.upstream[task]
    }

    /// The tasks a spawn of `task` must not need: those that would wait for the spawn. They
    /// are `task`, its ancestors, whatever waits for any of those (transitively), and the
    /// ancestors of all of these (needing a task means waiting for what it spawned).
    pub(super) fn waiting_for_spawn_of(&self, task: usize) -> Vec<bool> {
        let mut marked = vec![false; self.tasks.len()];
        let mut stack = Vec::new();
        let mut ancestor = Some(task);
        while let Some(a) = ancestor {
            marked[a] = true;
            stack.extend_from_slice(&self.dependents[a]);
            ancestor = self.tasks[a].parent;
        }
        while let Some(t) = stack.pop() {
            if !marked[t] {
                marked[t] = true;
                stack.extend_from_slice(&self.watchers[t]);
            }
        }
        for t in 0..marked.len() {
            if marked[t] {
                let mut ancestor = self.tasks[t].parent;
                while let Some(a) = ancestor {
                    if marked[a] {
                        break;
                    }
                    marked[a] = true;
                    ancestor = self.tasks[a].parent;
                }
            }
        }
        marked
    }

    /// Outputs of the completed tasks of `task`'s upstream, by id.
    pub(super) fn upstream_outputs(&self, task: usize) -> BTreeMap<TaskId, Value> {
        self.upstream[task]
            .iter()
            .filter_map(|&n| {
                let output = self.tasks[n].phase.output()?;
                Some((self.plan.tasks[n].id.clone(), output.clone()))
            })
            .collect()
    }

    /// How the tasks of `task`'s upstream that ended without completing ended, by id.
    pub(super) fn upstream_errors(&self, task: usize) -> BTreeMap<TaskId, UpstreamError> {
        self.upstream[task]
            .iter()
            .filter_map(|&n| {
                let state = &self.tasks[n];
                let (status, error) = match &state.phase {
                    Phase::Failed => (
                        UpstreamStatus::Failed,
                        state
                            .failures
                            .last()
                            .map(|(_, cause)| cause.to_string())
                            .unwrap_or_default(),
                    ),
                    Phase::Canceled { reason } => (UpstreamStatus::Canceled, reason.to_string()),
                    Phase::Skipped { reason } => (UpstreamStatus::Skipped, reason.to_string()),
                    _ => return None,
                };
                Some((
                    self.plan.tasks[n].id.clone(),
                    UpstreamError { status, error },
                ))
            })
            .collect()
    }

    /// Ids of `task`'s upstream tasks that have not ended.
    pub(super) fn unfinished_upstream(&self, task: usize) -> Vec<TaskId> {
        self.upstream[task]
            .iter()
            .filter(|&&n| !self.tasks[n].phase.is_terminal())
            .map(|&n| self.plan.tasks[n].id.clone())
            .collect()
    }

    /// Why the run ends failed, once every task has ended: among the causes of the leaves
    /// (tasks nothing waits for) that did not end completed or skipped, the earliest dead
    /// letter, else the first task an operator canceled. `None`: every leaf completed or was
    /// skipped, and the run succeeded.
    pub(super) fn failure(&self) -> Option<TaskId> {
        let rank = |task: usize| {
            self.dead_letters
                .iter()
                .position(|&d| d == task)
                .unwrap_or(usize::MAX)
        };
        let mut cause: Option<usize> = None;
        for (leaf, state) in self.tasks.iter().enumerate() {
            if !self.watchers[leaf].is_empty() {
                continue;
            }
            let root = match &state.phase {
                Phase::Failed
                | Phase::Canceled {
                    reason: CancelReason::OperatorCanceled { .. },
                } => leaf,
                Phase::Canceled {
                    reason: CancelReason::UpstreamFailed { task },
                } => match self.index_of(task) {
                    Some(root) => root,
                    None => continue,
                },
                _ => continue,
            };
            if cause.is_none_or(|c| rank(root) < rank(c)) {
                cause = Some(root);
            }
        }
        cause.map(|c| self.plan.tasks[c].id.clone())
    }
}
