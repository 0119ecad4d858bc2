//! The coordinator's timers: retry backoffs and attempt deadlines, by due time. A deadline is
//! disarmed when its attempt ends, so that a firing timer is always worth an input.

use std::collections::BTreeMap;

use workforce_shared::{Attempt, RunId, TaskId};

use crate::scheduler::Timer;

/// Timers by due time (the log's clock: Unix ms), then arming order.
#[derive(Debug, Default)]
pub(super) struct Timers {
    due: BTreeMap<(u64, u64), Timer>,
    armed: BTreeMap<Timer, (u64, u64)>,
    order: u64,
}

impl Timers {
    /// Arms `timer` at `due_ms`; a timer armed again moves to the new time.
    pub(super) fn arm(&mut self, due_ms: u64, timer: Timer) {
        self.disarm(&timer);
        self.order += 1;
        let key = (due_ms, self.order);
        self.armed.insert(timer.clone(), key);
        self.due.insert(key, timer);
    }

    pub(super) fn disarm(&mut self, timer: &Timer) {
        if let Some(key) = self.armed.remove(timer) {
            self.due.remove(&key);
        }
    }

    /// The attempt has its outcome: its deadline is void.
    pub(super) fn attempt_ended(&mut self, run: RunId, task: TaskId, attempt: Attempt) {
        self.disarm(&Timer::Deadline { run, task, attempt });
    }

    pub(super) fn next_due(&self) -> Option<u64> {
        self.due.keys().next().map(|(due, _)| *due)
    }

    /// Removes and returns every timer due at or before `now_ms`, earliest first.
    pub(super) fn take_due(&mut self, now_ms: u64) -> Vec<Timer> {
        let later = self.due.split_off(&(now_ms.saturating_add(1), 0));
        let fired: Vec<Timer> = std::mem::replace(&mut self.due, later)
            .into_values()
            .collect();
        for timer in &fired {
            self.armed.remove(timer);
        }
        fired
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(task: &str, attempt: u32) -> Timer {
        Timer::Deadline {
            run: "r".parse().expect("id"),
            task: task.parse().expect("id"),
            attempt: Attempt(attempt),
        }
    }

    #[test]
    fn fires_in_due_order_then_arming_order() {
        let mut timers = Timers::default();
        timers.arm(20, deadline("b", 1));
        timers.arm(10, deadline("c", 1));
        timers.arm(20, deadline("a", 1));
        assert_eq!(timers.next_due(), Some(10));
        assert_eq!(timers.take_due(9), vec![]);
        assert_eq!(
            timers.take_due(20),
            vec![deadline("c", 1), deadline("b", 1), deadline("a", 1)]
        );
        assert_eq!(timers.len(), 0);
        assert_eq!(timers.next_due(), None);
    }

    #[test]
    fn an_ended_attempt_never_times_out_and_rearming_moves_a_timer() {
        let mut timers = Timers::default();
        timers.arm(10, deadline("a", 1));
        timers.arm(10, deadline("a", 2));
        timers.attempt_ended(
            "r".parse().expect("id"),
            "a".parse().expect("id"),
            Attempt(1),
        );
        timers.arm(30, deadline("a", 2));
        assert_eq!(timers.take_due(29), vec![]);
        assert_eq!(timers.take_due(u64::MAX), vec![deadline("a", 2)]);
    }
}
