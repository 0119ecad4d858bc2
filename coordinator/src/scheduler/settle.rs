//! Growing and settling a run: checking what a success asks to add (spawn, branch), and
//! applying the trigger rules after tasks end or are added.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use workforce_shared::{
    Attempt, RunId, SpawnScope, TaskId, TaskSpec, UpstreamCounts, Verdict, validate_spawn,
};

use super::run::{Ending, Phase, RunState};
use super::{CancelReason, Decision, Input, Out, Scheduler, SkipReason};

/// What a success asks to add to its run, checked.
#[derive(Debug, Default)]
pub(super) struct Growth {
    pub(super) spawned: Vec<TaskSpec>,
    /// Tasks that need the one that succeeded, are waiting, and its branch left out.
    pub(super) unchosen: Vec<usize>,
}

/// What the trigger rules decide for a waiting task.
#[derive(Debug)]
pub(super) enum Judgement {
    Ready,
    Skip(SkipReason),
    /// Canceled because this task (dead-lettered) failed upstream.
    Cancel(TaskId),
}

/// The work of one [`Scheduler::settle`].
#[derive(Debug, Default)]
pub(super) struct Settle {
    /// Tasks to judge whatever ended: those just added.
    pub(super) fresh: Vec<usize>,
    /// Tasks that ended, for their watchers to be judged: with how they count when the state
    /// does not count them yet (decided in this settle), `None` when it does.
    pub(super) ended: VecDeque<(usize, Option<Ending>)>,
    /// What was decided, by task.
    pub(super) fates: BTreeMap<usize, Judgement>,
}

impl Settle {
    pub(super) fn fresh(tasks: impl IntoIterator<Item = usize>) -> Self {
        Self {
            fresh: tasks.into_iter().collect(),
            ..Self::default()
        }
    }
}

/// The task behind `task`'s failed upstream: the first failed or canceled task it waits for,
/// followed back to the dead letter (or the operator's cancel) that caused it.
fn root_failure(
    state: &RunState,
    fates: &BTreeMap<usize, Judgement>,
    task: usize,
) -> Option<TaskId> {
    state.upstream(task).iter().find_map(|&u| {
        if let Some(Judgement::Cancel(root)) = fates.get(&u) {
            return Some(root.clone());
        }
        match &state.tasks[u].phase {
            Phase::Failed
            | Phase::Canceled {
                reason: CancelReason::OperatorCanceled { .. },
            } => Some(state.plan.tasks[u].id.clone()),
            Phase::Canceled {
                reason: CancelReason::UpstreamFailed { task },
            } => Some(task.clone()),
            _ => None,
        }
    })
}

impl Scheduler {
    /// Checks what a succeeded attempt of task `index` asks to add: its spawn (as a plan's
    /// tasks, against the run) and its branch (tasks that need it). Every problem, or nothing.
    pub(super) fn check_growth(
        &self,
        run: &RunId,
        index: usize,
        spawn: &[Value],
        branch: Option<&[String]>,
    ) -> Result<Growth, Vec<String>> {
        let Some(state) = self.runs.get(run) else {
            return Ok(Growth::default());
        };
        let mut problems = Vec::new();
        let mut spawned = Vec::new();
        if !spawn.is_empty() {
            let waiting = state.waiting_for_spawn_of(index);
            let exists = |id: &str| state.has_task(id);
            let waits_for_spawn = |id: &str| {
                TaskId::new(id)
                    .ok()
                    .and_then(|id| state.index_of(&id))
                    .is_some_and(|i| waiting[i])
            };
            let scope = SpawnScope {
                spawner: &state.plan.tasks[index],
                depth: state.tasks[index].depth + 1,
                tasks: state.tasks.len(),
                exists: &exists,
                waits_for_spawn: &waits_for_spawn,
            };
            match validate_spawn(&state.plan, spawn, &scope) {
                Ok(tasks) => spawned = tasks,
                Err(found) => problems.extend(found.iter().map(ToString::to_string)),
            }
        }
        let mut unchosen = Vec::new();
        if let Some(chosen) = branch {
            let spawner = &state.plan.tasks[index].id;
            let dependents = state.dependents(index);
            for id in chosen {
                let known = TaskId::new(id.as_str())
                    .ok()
                    .and_then(|id| state.index_of(&id))
                    .is_some_and(|i| dependents.contains(&i));
                if !known {
                    problems.push(
                        workforce_shared::PlanProblem {
                            line: None,
                            task: None,
                            param: None,
                            kind: workforce_shared::plan::ProblemKind::NotADependent {
                                chosen: id.clone(),
                                spawner: spawner.to_string(),
                            },
                        }
                        .to_string(),
                    );
                }
            }
            unchosen = dependents
                .iter()
                .copied()
                .filter(|&d| {
                    state.tasks[d].phase == Phase::Waiting
                        && !chosen.iter().any(|c| c == state.plan.tasks[d].id.as_str())
                })
                .collect();
        }
        if problems.is_empty() {
            Ok(Growth { spawned, unchosen })
        } else {
            Err(problems)
        }
    }

    /// Applies the trigger rules after tasks ended (or were added): every waiting task whose
    /// rule now decides becomes ready, skipped or canceled, and those that end in turn decide
    /// for the tasks waiting on them, until nothing more is decided. The decisions are emitted
    /// in task order, once all are known.
    pub(super) fn settle(&mut self, input: &Input, run: &RunId, mut settle: Settle, out: &mut Out) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        // What the tasks decided here add to the counts the state holds.
        let mut added: BTreeMap<usize, UpstreamCounts> = BTreeMap::new();
        let verdict = |task: usize, added: &BTreeMap<usize, UpstreamCounts>| {
            let mut counts = state.tasks[task].counts;
            if let Some(more) = added.get(&task) {
                counts.completed += more.completed;
                counts.failed += more.failed;
                counts.skipped += more.skipped;
                counts.unfinished = counts
                    .unfinished
                    .saturating_sub(more.completed + more.failed + more.skipped);
            }
            state.plan.tasks[task].trigger.verdict(counts)
        };
        let mut candidates: Vec<usize> = std::mem::take(&mut settle.fresh);
        loop {
            for task in candidates.drain(..) {
                if settle.fates.contains_key(&task) || state.tasks[task].phase != Phase::Waiting {
                    continue;
                }
                let fate = match verdict(task, &added) {
                    Verdict::Wait => continue,
                    Verdict::Run => Judgement::Ready,
                    Verdict::Skip => Judgement::Skip(SkipReason::TriggerUnmet {
                        trigger: state.plan.tasks[task].trigger,
                    }),
                    Verdict::Cancel => match root_failure(state, &settle.fates, task) {
                        Some(root) => Judgement::Cancel(root),
                        None => continue,
                    },
                };
                let ending = match fate {
                    Judgement::Ready => None,
                    Judgement::Skip(_) => Some(Ending::Skipped),
                    Judgement::Cancel(_) => Some(Ending::Failed),
                };
                settle.fates.insert(task, fate);
                if let Some(ending) = ending {
                    settle.ended.push_back((task, Some(ending)));
                }
            }
            let Some((ended, ending)) = settle.ended.pop_front() else {
                break;
            };
            for &w in state.watchers(ended) {
                if let Some(ending) = ending {
                    ending.count(added.entry(w).or_default());
                }
                candidates.push(w);
            }
        }
        let fates = std::mem::take(&mut settle.fates);
        for (task, fate) in fates {
            let Some(id) = self
                .runs
                .get(run)
                .map(|state| state.plan.tasks[task].id.clone())
            else {
                return;
            };
            let decision = match fate {
                Judgement::Ready => Decision::TaskReady {
                    run: run.clone(),
                    task: id,
                    attempt: Attempt::FIRST,
                },
                Judgement::Skip(reason) => Decision::TaskSkipped {
                    run: run.clone(),
                    task: id,
                    reason,
                },
                Judgement::Cancel(root) => Decision::TaskCanceled {
                    run: run.clone(),
                    task: id,
                    reason: CancelReason::UpstreamFailed { task: root },
                },
            };
            self.emit(input, decision, out);
        }
    }
}
