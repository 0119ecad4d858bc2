//! One run's state: its plan, the phase of each task, and the dependency bookkeeping.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::Value;
use workforce_shared::{Attempt, Plan, RunId, TaskId};

use super::{CancelReason, FailureCause, ReadyKey, RunOutcome};

/// Where a task is in its lifecycle. Matched exhaustively: a new phase must be handled
/// everywhere it matters.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Phase {
    /// Some task it needs has not completed.
    Waiting,
    /// Dependencies done; waiting for capacity.
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
}

impl Phase {
    /// The output, once completed.
    pub(super) fn output(&self) -> Option<&Value> {
        match self {
            Phase::Completed { output } => Some(output),
            Phase::Waiting
            | Phase::Ready
            | Phase::Running { .. }
            | Phase::BackingOff { .. }
            | Phase::Failed
            | Phase::Canceled { .. } => None,
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
        }
    }

    pub(super) fn is_terminal(&self) -> bool {
        match self {
            Phase::Completed { .. } | Phase::Failed | Phase::Canceled { .. } => true,
            Phase::Waiting | Phase::Ready | Phase::Running { .. } | Phase::BackingOff { .. } => {
                false
            }
        }
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
    /// Needs not yet completed.
    pub(super) pending_needs: usize,
}

#[derive(Clone, Debug)]
pub(super) struct RunState {
    pub(super) id: RunId,
    pub(super) seq: u64,
    /// The rules the run was accepted under.
    pub(super) semantics: u32,
    pub(super) plan: Plan,
    pub(super) tasks: Vec<TaskState>,
    /// Task index by id.
    index: BTreeMap<TaskId, usize>,
    /// For each task, the tasks that need it, in plan order.
    dependents: Vec<Vec<usize>>,
    /// Positions of each task's needs.
    needs: Vec<Vec<usize>>,
    /// Why the run will end failed: the first dead-lettered task.
    pub(super) first_failed: Option<usize>,
    pub(super) outcome: Option<RunOutcome>,
}

impl RunState {
    pub(super) fn new(id: RunId, seq: u64, semantics: u32, plan: Plan) -> Self {
        let index: BTreeMap<TaskId, usize> = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let needs: Vec<Vec<usize>> = plan
            .tasks
            .iter()
            .map(|t| {
                t.needs
                    .iter()
                    .filter_map(|n| index.get(n).copied())
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); plan.tasks.len()];
        for (task, its_needs) in needs.iter().enumerate() {
            for &need in its_needs {
                dependents[need].push(task);
            }
        }
        let tasks = needs
            .iter()
            .map(|n| TaskState {
                phase: Phase::Waiting,
                attempt: Attempt::FIRST,
                failures: Vec::new(),
                started: 0,
                pending_needs: n.len(),
            })
            .collect();
        Self {
            id,
            seq,
            semantics,
            plan,
            tasks,
            index,
            dependents,
            needs,
            first_failed: None,
            outcome: None,
        }
    }

    pub(super) fn index_of(&self, task: &TaskId) -> Option<usize> {
        self.index.get(task).copied()
    }

    pub(super) fn initially_ready(&self) -> impl Iterator<Item = usize> + '_ {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.pending_needs == 0)
            .map(|(i, _)| i)
    }

    pub(super) fn ready_key(&self, task: usize) -> ReadyKey {
        ReadyKey {
            priority: Reverse(self.plan.tasks[task].priority),
            run_seq: self.seq,
            task,
        }
    }

    /// Marks a task completed: each task that needs it has one need fewer to wait for.
    pub(super) fn complete(&mut self, task: usize, attempt: Attempt, output: Value) {
        self.tasks[task].phase = Phase::Completed { output };
        self.tasks[task].attempt = attempt;
        for &dependent in &self.dependents[task] {
            let state = &mut self.tasks[dependent];
            state.pending_needs = state.pending_needs.saturating_sub(1);
        }
    }

    /// The tasks that need `task` and wait for nothing more, in plan order.
    pub(super) fn unblocked_by(&self, task: usize) -> impl Iterator<Item = TaskId> + '_ {
        self.dependents[task]
            .iter()
            .filter(|&&d| self.tasks[d].pending_needs == 0 && self.tasks[d].phase == Phase::Waiting)
            .map(|&d| self.plan.tasks[d].id.clone())
    }

    /// Every task that needs `task`, directly or not, in plan order.
    pub(super) fn transitive_dependents(&self, task: usize) -> Vec<usize> {
        let mut seen = vec![false; self.tasks.len()];
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            for &d in &self.dependents[t] {
                if !seen[d] {
                    seen[d] = true;
                    stack.push(d);
                }
            }
        }
        seen.iter()
            .enumerate()
            .filter(|(_, s)| **s)
            .map(|(i, _)| i)
            .collect()
    }

    /// Outputs of the tasks `task` needs, by id (all completed when it is dispatched).
    pub(super) fn upstream_outputs(&self, task: usize) -> BTreeMap<TaskId, Value> {
        self.needs[task]
            .iter()
            .filter_map(|&n| {
                let output = self.tasks[n].phase.output()?;
                Some((self.plan.tasks[n].id.clone(), output.clone()))
            })
            .collect()
    }

    /// How the tasks `task` waits for that did not complete ended, by id.
    pub(super) fn upstream_errors(
        &self,
        _task: usize,
    ) -> BTreeMap<TaskId, workforce_shared::UpstreamError> {
        BTreeMap::new()
    }

    /// Ids of the needs of `task` that have not completed.
    pub(super) fn unfinished_needs(&self, task: usize) -> Vec<TaskId> {
        self.needs[task]
            .iter()
            .filter(|&&n| !matches!(self.tasks[n].phase, Phase::Completed { .. }))
            .map(|&n| self.plan.tasks[n].id.clone())
            .collect()
    }
}
