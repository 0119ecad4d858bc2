//! The owed-effects ledger: publishes that committed decisions owe and that have not been
//! acknowledged by the broker yet. An assignment whose attempt has ended is owed no more; what
//! can never be published becomes an input of its own ([`Input::PublishFailed`]) or, for a
//! dead letter too large with the task's data, a slimmer dead letter.

use tracing::{error, warn};
use workforce_shared::{Attempt, RunId, TaskId};

use super::effects::{Publish, Published};
use crate::scheduler::Input;

#[derive(Debug, Default)]
pub(super) struct Ledger {
    owed: Vec<Publish>,
}

/// Marks a dead letter's input as left out, so that it is slimmed only once.
const OMITTED: &str = "omitted: ";

impl Ledger {
    pub(super) fn owe(&mut self, publish: Publish) {
        self.owed.push(publish);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.owed.len()
    }

    /// The attempt has its outcome: its assignment, if still unpublished, is owed no more.
    pub(super) fn attempt_ended(&mut self, run: &RunId, task: &TaskId, attempt: Attempt) {
        self.owed.retain(|p| match p {
            Publish::Assign(a) => !(&a.run == run && &a.task == task && a.attempt == attempt),
            Publish::DeadLetter(_) => true,
        });
    }

    /// Everything owed, to publish now.
    pub(super) fn take(&mut self) -> Vec<Publish> {
        std::mem::take(&mut self.owed)
    }

    /// Takes back what a publish round left: retries stay owed, a dead letter too large is
    /// owed again without the task's data, and each unpublishable assignment becomes an input.
    pub(super) fn settle(&mut self, published: Published) -> Vec<Input> {
        self.owed.extend(published.retry);
        let mut inputs = Vec::new();
        for bad in published.unpublishable {
            match bad.publish {
                Publish::Assign(a) => {
                    error!(run_id = %a.run, task_id = %a.task, attempt = %a.attempt, reason = %bad.failure, "cannot publish an assignment; failing its attempt");
                    inputs.push(Input::PublishFailed {
                        run: a.run,
                        task: a.task,
                        attempt: a.attempt,
                        failure: bad.failure,
                    });
                }
                Publish::DeadLetter(mut letter)
                    if !letter.last_assignment.upstream.is_empty()
                        || !letter
                            .last_assignment
                            .input
                            .as_str()
                            .is_some_and(|s| s.starts_with(OMITTED)) =>
                {
                    warn!(run_id = %letter.run, task_id = %letter.task, reason = %bad.failure, "dead letter too large; sending it without the task's input and upstream outputs");
                    letter.last_assignment.upstream.clear();
                    letter.last_assignment.input = serde_json::Value::String(format!(
                        "{OMITTED}{}; the coordinator's event log keeps it",
                        bad.failure
                    ));
                    self.owed.push(Publish::DeadLetter(letter));
                }
                Publish::DeadLetter(letter) => error!(
                    run_id = %letter.run,
                    task_id = %letter.task,
                    reason = %bad.failure,
                    "cannot publish a dead letter; the event log keeps the task's history"
                ),
            }
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::scheduler::PublishFailure;
    use crate::service::effects::Unpublishable;
    use serde_json::json;
    use workforce_shared::{Assignment, DeadLetter, PROTOCOL_VERSION};

    fn assignment(task: &str, attempt: u32) -> Assignment {
        Assignment {
            v: PROTOCOL_VERSION,
            run: "r".parse().expect("id"),
            task: task.parse().expect("id"),
            attempt: Attempt(attempt),
            capability: "c".parse().expect("id"),
            input: json!({"big": "x"}),
            upstream: BTreeMap::from([("up".parse().expect("id"), json!(1))]),
            timeout_ms: 1,
            upstream_errors: Default::default(),
        }
    }

    fn too_large() -> PublishFailure {
        PublishFailure::TooLarge {
            bytes: 10,
            limit: 5,
        }
    }

    #[test]
    fn ended_attempts_are_owed_no_more() {
        let mut ledger = Ledger::default();
        ledger.owe(Publish::Assign(assignment("a", 1)));
        ledger.owe(Publish::Assign(assignment("a", 2)));
        ledger.attempt_ended(
            &"r".parse().expect("id"),
            &"a".parse().expect("id"),
            Attempt(1),
        );
        assert_eq!(ledger.take(), vec![Publish::Assign(assignment("a", 2))]);
        assert!(ledger.is_empty());
    }

    #[test]
    fn unpublishable_assignments_become_inputs_and_big_letters_slim_once() {
        let mut ledger = Ledger::default();
        let letter = DeadLetter {
            v: PROTOCOL_VERSION,
            run: "r".parse().expect("id"),
            task: "b".parse().expect("id"),
            last_assignment: assignment("b", 3),
            errors: Vec::new(),
        };
        let inputs = ledger.settle(Published {
            retry: vec![Publish::Assign(assignment("c", 1))],
            unpublishable: vec![
                Unpublishable {
                    publish: Publish::Assign(assignment("a", 1)),
                    failure: too_large(),
                },
                Unpublishable {
                    publish: Publish::DeadLetter(letter),
                    failure: too_large(),
                },
            ],
        });
        assert_eq!(
            inputs,
            vec![Input::PublishFailed {
                run: "r".parse().expect("id"),
                task: "a".parse().expect("id"),
                attempt: Attempt(1),
                failure: too_large(),
            }]
        );
        let owed = ledger.take();
        assert_eq!(owed.len(), 2, "{owed:?}");
        let Publish::DeadLetter(slim) = owed[1].clone() else {
            panic!("{owed:?}");
        };
        assert!(slim.last_assignment.upstream.is_empty());
        assert!(
            slim.last_assignment
                .input
                .as_str()
                .is_some_and(|s| s.starts_with(OMITTED))
        );
        // Still too large without its data: given up on, not slimmed forever.
        let inputs = ledger.settle(Published {
            retry: Vec::new(),
            unpublishable: vec![Unpublishable {
                publish: Publish::DeadLetter(slim),
                failure: too_large(),
            }],
        });
        assert!(inputs.is_empty());
        assert!(ledger.is_empty());
    }
}
