//! The tasks of one capability that may run, in dispatch order: the run's priority first, then
//! the task's, then round-robin among the runs at that level, then plan order within a run.
//!
//! Round-robin is kept by a cursor, the last run dispatched from at this capability: the next
//! dispatch takes the first run after it (in submission order, wrapping around) that has a
//! task at the best level. So a small run submitted beside a large one of equal priority gets
//! every other slot at once instead of waiting for the large one to drain.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Where a ready task stands: what `ReadyQueue` orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReadyKey {
    pub(super) level: Level,
    pub(super) run_seq: u64,
    pub(super) task: usize,
}

/// Higher run priority first, then higher task priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Level {
    pub(super) run_priority: Reverse<i32>,
    pub(super) priority: Reverse<i32>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct ReadyQueue {
    /// Ready tasks by level, then run (submission order), then plan order.
    levels: BTreeMap<Level, BTreeMap<u64, BTreeSet<usize>>>,
    /// The run this capability last dispatched from.
    cursor: Option<u64>,
}

impl ReadyQueue {
    pub(super) fn insert(&mut self, key: ReadyKey) {
        self.levels
            .entry(key.level)
            .or_default()
            .entry(key.run_seq)
            .or_default()
            .insert(key.task);
    }

    pub(super) fn remove(&mut self, key: &ReadyKey) {
        let Some(runs) = self.levels.get_mut(&key.level) else {
            return;
        };
        if let Some(tasks) = runs.get_mut(&key.run_seq) {
            tasks.remove(&key.task);
            if tasks.is_empty() {
                runs.remove(&key.run_seq);
            }
        }
        if runs.is_empty() {
            self.levels.remove(&key.level);
        }
    }

    /// A dispatch from `run_seq`: the round-robin moves past it.
    pub(super) fn served(&mut self, run_seq: u64) {
        self.cursor = Some(run_seq);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The next task to dispatch, skipping tasks that may not be dispatched now (`held`, given
    /// the run's sequence and the task).
    pub(super) fn next(&self, held: impl Fn(u64, usize) -> bool) -> Option<ReadyKey> {
        for (level, runs) in &self.levels {
            // The runs after the cursor, then from the first up to it.
            let (after, wrapped) = match self.cursor {
                Some(last) => (
                    runs.range((Bound::Excluded(last), Bound::Unbounded)),
                    runs.range(..=last),
                ),
                None => (runs.range(..), runs.range(..0)),
            };
            let found = after.chain(wrapped).find_map(|(&run_seq, tasks)| {
                let task = tasks.iter().copied().find(|&task| !held(run_seq, task))?;
                Some((run_seq, task))
            });
            if let Some((run_seq, task)) = found {
                return Some(ReadyKey {
                    level: *level,
                    run_seq,
                    task,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(run_priority: i32, priority: i32, run_seq: u64, task: usize) -> ReadyKey {
        ReadyKey {
            level: Level {
                run_priority: Reverse(run_priority),
                priority: Reverse(priority),
            },
            run_seq,
            task,
        }
    }

    /// Takes `n` tasks as dispatch would: next, remove, serve.
    fn take(
        queue: &mut ReadyQueue,
        n: usize,
        held: impl Fn(u64, usize) -> bool,
    ) -> Vec<(u64, usize)> {
        let mut taken = Vec::new();
        for _ in 0..n {
            let Some(next) = queue.next(&held) else { break };
            queue.remove(&next);
            queue.served(next.run_seq);
            taken.push((next.run_seq, next.task));
        }
        taken
    }

    #[test]
    fn runs_of_equal_priority_take_turns_in_plan_order() {
        let mut queue = ReadyQueue::default();
        for task in 0..5 {
            queue.insert(key(0, 0, 0, task));
        }
        for task in 0..2 {
            queue.insert(key(0, 0, 1, task));
        }
        let taken = take(&mut queue, 6, |_, _| false);
        assert_eq!(taken, [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn run_priority_comes_before_task_priority_and_both_before_turns() {
        let mut queue = ReadyQueue::default();
        queue.insert(key(0, 9, 0, 0));
        queue.insert(key(1, 0, 1, 0));
        queue.insert(key(1, 5, 2, 0));
        queue.insert(key(1, 5, 2, 1));
        let taken = take(&mut queue, 4, |_, _| false);
        assert_eq!(taken, [(2, 0), (2, 1), (1, 0), (0, 0)]);
    }

    #[test]
    fn held_runs_are_passed_over_and_keep_their_tasks() {
        let mut queue = ReadyQueue::default();
        queue.insert(key(0, 0, 0, 0));
        queue.insert(key(0, 0, 1, 0));
        assert_eq!(take(&mut queue, 2, |run, _| run == 0), [(1, 0)]);
        assert!(!queue.is_empty());
        assert_eq!(take(&mut queue, 2, |_, _| false), [(0, 0)]);
        assert!(queue.is_empty());
    }
}
