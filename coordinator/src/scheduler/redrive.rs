//! Redrive: a dead-lettered task runs again, with a fresh attempt budget (its attempt numbers
//! go on, so no message id repeats), and what was canceled or skipped because of it waits
//! again, to be judged anew by its trigger rule. A finished run reopens and finishes anew.

use workforce_shared::{RunId, TaskId};

use super::events::{REDRIVE_LIMIT, RedriveRefusal};
use super::run::Phase;
use super::settle::Settle;
use super::{
    CancelReason, Decision, Fate, Input, Out, Rejection, RunOutcome, Scheduler, SkipReason,
};

impl Scheduler {
    /// Redrives `task` of the run, or every dead-lettered task of it: all of them or none.
    pub(super) fn redrive(
        &mut self,
        input: &Input,
        run: &RunId,
        task: Option<&TaskId>,
        force: bool,
        out: &mut Out,
    ) {
        let refuse = |why| Rejection::NotRedriven {
            run: run.clone(),
            task: task.cloned(),
            why,
        };
        let Some(state) = self.runs.get(run) else {
            let rejection = Rejection::UnknownRun { run: run.clone() };
            out.fate = Fate::Rejected(rejection.clone());
            self.emit(input, Decision::InputRejected { rejection }, out);
            return;
        };
        let targets: Result<Vec<usize>, Rejection> = match &state.outcome {
            _ if state.deadline_passed => Err(refuse(RedriveRefusal::DeadlinePassed)),
            Some(RunOutcome::Canceled) => Err(refuse(RedriveRefusal::RunEnded {
                status: "canceled".into(),
            })),
            Some(RunOutcome::Stopped { .. }) => Err(refuse(RedriveRefusal::RunEnded {
                status: "stopped".into(),
            })),
            _ => match task {
                Some(task) => match state.index_of(task) {
                    None => Err(Rejection::UnknownTask {
                        run: run.clone(),
                        task: task.clone(),
                    }),
                    Some(i) if state.tasks[i].phase != Phase::Failed => {
                        Err(refuse(RedriveRefusal::NotDeadLettered))
                    }
                    Some(i) => Ok(vec![i]),
                },
                None => {
                    let all: Vec<usize> = (0..state.tasks.len())
                        .filter(|&i| state.tasks[i].phase == Phase::Failed)
                        .collect();
                    if all.is_empty() {
                        Err(refuse(RedriveRefusal::NothingToRedrive))
                    } else {
                        Ok(all)
                    }
                }
            },
        };
        let targets = targets.and_then(|targets| {
            let over = targets
                .iter()
                .any(|&i| state.tasks[i].redrives >= REDRIVE_LIMIT);
            if over && !force {
                Err(refuse(RedriveRefusal::LimitReached {
                    limit: REDRIVE_LIMIT,
                }))
            } else {
                Ok(targets)
            }
        });
        let targets = match targets {
            Ok(targets) => targets,
            Err(rejection) => {
                out.fate = Fate::Rejected(rejection.clone());
                self.emit(input, Decision::InputRejected { rejection }, out);
                return;
            }
        };
        // What the redriven tasks' failures canceled or skipped, downstream of them.
        let redriven: Vec<(TaskId, workforce_shared::Attempt, u32)> = targets
            .iter()
            .map(|&i| {
                let t = &state.tasks[i];
                (
                    state.plan.tasks[i].id.clone(),
                    t.attempt.next(),
                    t.redrives + 1,
                )
            })
            .collect();
        let mut restored: Vec<usize> = targets
            .iter()
            .flat_map(|&i| state.downstream(i))
            .filter(|&d| {
                matches!(
                    state.tasks[d].phase,
                    Phase::Canceled {
                        reason: CancelReason::UpstreamFailed { .. }
                    } | Phase::Skipped {
                        reason: SkipReason::TriggerUnmet { .. }
                    }
                )
            })
            .collect();
        restored.sort_unstable();
        restored.dedup();
        let restored_ids: Vec<TaskId> = restored
            .iter()
            .map(|&d| state.plan.tasks[d].id.clone())
            .collect();
        if state.outcome.is_some() {
            self.emit(input, Decision::RunReopened { run: run.clone() }, out);
        }
        for (task, attempt, redrives) in redriven {
            let decision = Decision::TaskRedriven {
                run: run.clone(),
                task,
                attempt,
                redrives,
            };
            self.emit(input, decision, out);
        }
        for task in restored_ids {
            let decision = Decision::TaskRestored {
                run: run.clone(),
                task,
            };
            self.emit(input, decision, out);
        }
        self.settle(input, run, Settle::fresh(restored), out);
    }
}
