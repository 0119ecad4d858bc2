//! One run's state: its plan, the phase of each task, and the dependency bookkeeping.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde_json::Value;
use workforce_shared::{Attempt, AttemptError, Plan, RunId, TaskId, WorkerId};

use super::{CancelReason, ReadyKey, RunOutcome};

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
    Failed {
        error: String,
    },
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
            | Phase::Failed { .. }
            | Phase::Canceled { .. } => None,
        }
    }

    pub(super) fn is_terminal(&self) -> bool {
        match self {
            Phase::Completed { .. } | Phase::Failed { .. } | Phase::Canceled { .. } => true,
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
    pub(super) errors: Vec<AttemptError>,
    /// Needs not yet completed.
    pending_needs: usize,
}

#[derive(Debug)]
pub(super) struct RunState {
    pub(super) id: RunId,
    pub(super) seq: u64,
    pub(super) plan: Plan,
    pub(super) tasks: Vec<TaskState>,
    /// Task index by id.
    index: BTreeMap<TaskId, usize>,
    /// For each task, the tasks that need it, in plan order.
    dependents: Vec<Vec<usize>>,
    /// Positions of each task's needs.
    needs: Vec<Vec<usize>>,
    /// Why the run will end failed: the first dead-lettered task.
    pub(super) failure: Option<String>,
    pub(super) outcome: Option<RunOutcome>,
}

impl RunState {
    pub(super) fn new(id: RunId, seq: u64, plan: Plan) -> Self {
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
                errors: Vec::new(),
                pending_needs: n.len(),
            })
            .collect();
        Self {
            id,
            seq,
            plan,
            tasks,
            index,
            dependents,
            needs,
            failure: None,
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

    /// Marks a task completed; returns the dependents that became ready, in plan order.
    pub(super) fn complete(&mut self, task: usize, attempt: Attempt, output: Value) -> Vec<usize> {
        self.tasks[task].phase = Phase::Completed { output };
        self.tasks[task].attempt = attempt;
        let mut unblocked = Vec::new();
        for &dependent in &self.dependents[task] {
            let state = &mut self.tasks[dependent];
            state.pending_needs = state.pending_needs.saturating_sub(1);
            if state.pending_needs == 0 && state.phase == Phase::Waiting {
                unblocked.push(dependent);
            }
        }
        unblocked
    }

    pub(super) fn record_error(
        &mut self,
        task: usize,
        attempt: Attempt,
        worker: &WorkerId,
        error: &str,
    ) {
        self.tasks[task].errors.push(AttemptError {
            attempt,
            worker: worker.clone(),
            error: error.to_owned(),
        });
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

    /// Ids of the needs of `task` that have not completed.
    pub(super) fn unfinished_needs(&self, task: usize) -> Vec<TaskId> {
        self.needs[task]
            .iter()
            .filter(|&&n| !matches!(self.tasks[n].phase, Phase::Completed { .. }))
            .map(|&n| self.plan.tasks[n].id.clone())
            .collect()
    }
}
