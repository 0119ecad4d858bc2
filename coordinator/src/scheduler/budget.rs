//! Budgets and stops: charging what an attempt used, holding tasks whose estimate the run's
//! remaining budget cannot cover, and stopping a run when a limit trips (budget, attempts,
//! deadline).
//!
//! Reserved at dispatch, settled at the result: `Dispatch` reserves the task's estimate,
//! `UsageCharged` releases it and adds what the attempt used (its report, else its
//! estimate). A task is dispatched only while `used + reserved + estimate <= limit` for every
//! budget, so a run's usage can pass a budget only by what the attempts in flight use beyond
//! their estimates.

use workforce_shared::{Attempt, RunId, TaskId, Usage};

use super::run::{Phase, RunState};
use super::{CancelReason, Decision, Input, Out, RunOutcome, Scheduler, StopReason};

impl Scheduler {
    /// What the worker reported `attempt` used, when the input is its result and the report
    /// can be read. `Err`: it cannot, and why.
    pub(super) fn reported(
        input: &Input,
        run: &RunId,
        task: &TaskId,
        attempt: Attempt,
    ) -> Result<Option<Usage>, String> {
        match input {
            Input::ResultReceived { result }
                if &result.run == run && &result.task == task && result.attempt == attempt =>
            {
                match &result.usage {
                    None => Ok(None),
                    Some(report) => Usage::read(report).map(Some).map_err(|e| e.to_string()),
                }
            }
            _ => Ok(None),
        }
    }

    /// Charges an attempt that ended: its report, else its task's estimate (rules 2 on).
    pub(super) fn charge(
        &mut self,
        input: &Input,
        run: &RunId,
        index: usize,
        attempt: Attempt,
        out: &mut Out,
    ) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        if state.semantics < 2 {
            return;
        }
        let spec = &state.plan.tasks[index];
        let reported = Self::reported(input, run, &spec.id, attempt).ok().flatten();
        if reported.is_none() && spec.estimate.is_zero() {
            return;
        }
        let decision = Decision::UsageCharged {
            run: run.clone(),
            task: spec.id.clone(),
            attempt,
            usage: reported.unwrap_or(spec.estimate),
            reported: reported.is_some(),
        };
        self.emit(input, decision, out);
    }

    /// Stops the run if its usage reached one of its budgets; whether it did.
    pub(super) fn stop_if_exhausted(&mut self, input: &Input, run: &RunId, out: &mut Out) -> bool {
        let Some(state) = self.runs.get(run) else {
            return false;
        };
        if state.outcome.is_some() {
            return true;
        }
        let exhausted = Usage::PARTS.iter().find_map(|part| {
            let limit = state.plan.limits.budget(part)?;
            let used = state.used.part(part)?;
            (used >= limit).then(|| StopReason::BudgetExhausted {
                budget: (*part).to_owned(),
                limit,
                used,
            })
        });
        match exhausted {
            Some(reason) => {
                self.stop_run(input, run, reason, out);
                true
            }
            None => false,
        }
    }

    /// Stops a run: each running attempt is told to stop, every unfinished task is canceled
    /// with the reason (no dead letters), and the run ends `stopped`.
    pub(super) fn stop_run(
        &mut self,
        input: &Input,
        run: &RunId,
        reason: StopReason,
        out: &mut Out,
    ) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        let unfinished: Vec<(usize, TaskId, Option<Attempt>)> = (0..state.tasks.len())
            .filter(|&i| !state.tasks[i].phase.is_terminal())
            .map(|i| {
                let running = match state.tasks[i].phase {
                    Phase::Running { attempt } => Some(attempt),
                    _ => None,
                };
                (i, state.plan.tasks[i].id.clone(), running)
            })
            .collect();
        for (index, task, running) in unfinished {
            if let Some(attempt) = running {
                let stop = Decision::StopAttempt {
                    run: run.clone(),
                    task: task.clone(),
                    attempt,
                };
                self.emit(input, stop, out);
            }
            let canceled = Decision::TaskCanceled {
                run: run.clone(),
                task,
                reason: CancelReason::RunStopped {
                    reason: reason.clone(),
                },
            };
            self.emit(input, canceled, out);
            if let Some(attempt) = running {
                self.charge(input, run, index, attempt, out);
            }
        }
        let finished = Decision::RunFinished {
            run: run.clone(),
            outcome: RunOutcome::Stopped { reason },
        };
        self.emit(input, finished, out);
    }

    /// The run's deadline passed: it stops, unless it has ended.
    pub(super) fn deadline_passed(&mut self, input: &Input, run: &RunId, out: &mut Out) {
        let Some(state) = self.runs.get(run) else {
            return;
        };
        if state.outcome.is_some() {
            return;
        }
        let Some(deadline_ms) = state.plan.limits.deadline_ms else {
            return;
        };
        self.stop_run(
            input,
            run,
            StopReason::DeadlineExceeded { deadline_ms },
            out,
        );
    }

    /// Runs with budgets that can go no further: nothing of them runs or waits for a retry,
    /// and every task ready to run is held because its estimate does not fit (or the run's
    /// attempts are spent). Each is stopped, naming the limit in the way.
    pub(super) fn stop_stuck_runs(&mut self, input: &Input, out: &mut Out) {
        let stuck: Vec<(RunId, StopReason)> = self
            .runs
            .values()
            .filter(|state| state.outcome.is_none() && state.plan.limits.has_budgets())
            .filter(|state| !self.paused_runs.contains(&state.seq))
            .filter_map(|state| {
                let mut ready = Vec::new();
                for (i, task) in state.tasks.iter().enumerate() {
                    match task.phase {
                        Phase::Running { .. } | Phase::BackingOff { .. } => return None,
                        Phase::Ready => ready.push(i),
                        _ => {}
                    }
                }
                let held: Vec<usize> = ready
                    .into_iter()
                    .filter(|&i| {
                        !self
                            .paused_capabilities
                            .contains(&state.plan.tasks[i].capability)
                    })
                    .collect();
                let first = *held.first()?;
                if held.iter().any(|&i| blocking_limit(state, i).is_none()) {
                    return None;
                }
                Some((state.id.clone(), blocking_limit(state, first)?))
            })
            .collect();
        for (run, reason) in stuck {
            self.stop_run(input, &run, reason, out);
        }
    }
}

/// The limit that keeps `task` from being dispatched now, if any: the run's attempts spent,
/// or a budget whose remainder (after what was used and what attempts in flight reserve)
/// cannot cover the task's estimate.
pub(super) fn blocking_limit(state: &RunState, task: usize) -> Option<StopReason> {
    let limits = &state.plan.limits;
    if let Some(limit) = limits.attempts
        && state.attempts >= limit
    {
        return Some(StopReason::TooManyAttempts { limit });
    }
    let estimate = state.plan.tasks[task].estimate;
    Usage::PARTS.iter().find_map(|part| {
        let limit = limits.budget(part)?;
        let used = state.used.part(part)?;
        let committed = used.saturating_add(state.reserved.part(part)?);
        (committed.saturating_add(estimate.part(part)?) > limit).then(|| {
            StopReason::BudgetExhausted {
                budget: (*part).to_owned(),
                limit,
                used,
            }
        })
    })
}
