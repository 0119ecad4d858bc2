//! [`StopMemory`]: the attempts the coordinator asked to stop, remembered whether or not this
//! worker ran them then. An attempt the coordinator failed over (its worker went silent) is
//! stopped at once, but its assignment stays unacknowledged in the broker and is redelivered
//! after ack_wait: the worker it reaches must not run it again.

use std::collections::{BTreeSet, VecDeque};

use workforce_shared::HeldAttempt;

/// How many stop requests a worker remembers by default.
pub(crate) const REMEMBERED_STOPS: usize = 10_000;

/// The last `capacity` distinct stopped attempts; the oldest is forgotten first.
#[derive(Debug)]
pub(crate) struct StopMemory {
    capacity: usize,
    /// Oldest first; the same attempts as `known`.
    order: VecDeque<HeldAttempt>,
    known: BTreeSet<HeldAttempt>,
}

impl StopMemory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::new(),
            known: BTreeSet::new(),
        }
    }

    /// Remembers a stopped attempt. A repeat (stop requests are resent) keeps its place.
    pub(crate) fn remember(&mut self, attempt: HeldAttempt) {
        if self.capacity == 0 || self.known.contains(&attempt) {
            return;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.known.insert(attempt.clone());
        self.order.push_back(attempt);
    }

    pub(crate) fn contains(&self, attempt: &HeldAttempt) -> bool {
        self.known.contains(attempt)
    }
}

#[cfg(test)]
mod tests {
    use workforce_shared::{Attempt, RunId, TaskId};

    use super::*;

    fn held(task: &str, attempt: u32) -> HeldAttempt {
        HeldAttempt {
            run: RunId::new("r1").expect("run"),
            task: TaskId::new(task).expect("task"),
            attempt: Attempt(attempt),
        }
    }

    #[test]
    fn remembers_the_last_stops_and_forgets_the_oldest_first() {
        let mut memory = StopMemory::new(3);
        for attempt in 1..=3 {
            memory.remember(held("t", attempt));
        }
        // A repeat neither grows the memory nor refreshes the attempt's place.
        memory.remember(held("t", 1));
        assert!((1..=3).all(|attempt| memory.contains(&held("t", attempt))));
        memory.remember(held("t", 4));
        assert!(!memory.contains(&held("t", 1)), "the oldest is forgotten");
        assert!((2..=4).all(|attempt| memory.contains(&held("t", attempt))));
        assert!(!memory.contains(&held("u", 2)), "another task's attempt 2");
        memory.remember(held("u", 1));
        memory.remember(held("u", 2));
        assert!(!memory.contains(&held("t", 2)) && !memory.contains(&held("t", 3)));
        assert!(memory.contains(&held("t", 4)) && memory.contains(&held("u", 2)));
        assert_eq!((memory.order.len(), memory.known.len()), (3, 3));
    }

    #[test]
    fn a_memory_of_nothing_remembers_nothing() {
        let mut memory = StopMemory::new(0);
        memory.remember(held("t", 1));
        assert!(!memory.contains(&held("t", 1)));
    }
}
