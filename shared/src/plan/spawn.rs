//! Spawning: the limits a run grows within, and the check of a spawn against the run it grows.
//!
//! A spawn is a list of tasks in the plan's own task shape, added by a task that succeeded. It
//! is checked like a plan (names, inputs, settings, duplicates, unknown needs, cycles) and
//! against the run: ids already taken, needs that would wait for the spawn itself, the
//! spawner's allowed capabilities and the run's `[limits]`. All of it or none of it applies.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::shape::find_cycle;
use super::{Plan, PlanProblem, ProblemKind, TaskFile, TaskSpec, check_task};

/// How far a run may grow and what it may use, from the plan's `[limits]` table. 0 means
/// zero, never unlimited; an absent budget is no budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Tasks in one spawn.
    pub spawn: u32,
    /// How deep spawning may nest: a plan's tasks are at depth 0, what they spawn at 1.
    pub depth: u32,
    /// Tasks in the run, its plan's own included.
    pub tasks: u32,
    /// Budgets on what the run's attempts use, as their workers report it: the run stops once
    /// its usage reaches one (used >= limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_cents: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u64>,
    /// Attempts of all the run's tasks, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Wall time from submission, in ms, after which the run stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

impl Limits {
    pub const DEFAULT_SPAWN: u32 = 10_000;
    pub const DEFAULT_DEPTH: u32 = 8;
    pub const DEFAULT_TASKS: u32 = 100_000;

    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Limits {
    /// The budget on one part of usage ([`crate::Usage::PARTS`]), if there is one.
    pub fn budget(&self, part: &str) -> Option<u64> {
        match part {
            "tokens" => self.tokens,
            "cost_cents" => self.cost_cents,
            "tool_calls" => self.tool_calls,
            _ => None,
        }
    }

    /// Whether anything bounds what the run uses (budgets or attempts).
    pub fn has_budgets(&self) -> bool {
        self.tokens.is_some()
            || self.cost_cents.is_some()
            || self.tool_calls.is_some()
            || self.attempts.is_some()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            spawn: Self::DEFAULT_SPAWN,
            depth: Self::DEFAULT_DEPTH,
            tasks: Self::DEFAULT_TASKS,
            tokens: None,
            cost_cents: None,
            tool_calls: None,
            attempts: None,
            deadline_ms: None,
        }
    }
}

/// `[limits]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsFile {
    spawn: Option<u32>,
    depth: Option<u32>,
    tasks: Option<u32>,
    tokens: Option<u64>,
    cost_cents: Option<u64>,
    tool_calls: Option<u64>,
    attempts: Option<u32>,
    deadline: Option<String>,
}

impl LimitsFile {
    /// The limits, or what is wrong with the deadline.
    pub(super) fn resolve(&self) -> Result<Limits, ProblemKind> {
        let default = Limits::default();
        let deadline_ms = self
            .deadline
            .as_deref()
            .map(|d| super::task::parse_duration("limits.deadline", d))
            .transpose()?;
        Ok(Limits {
            spawn: self.spawn.unwrap_or(default.spawn),
            depth: self.depth.unwrap_or(default.depth),
            tasks: self.tasks.unwrap_or(default.tasks),
            tokens: self.tokens,
            cost_cents: self.cost_cents,
            tool_calls: self.tool_calls,
            attempts: self.attempts,
            deadline_ms,
        })
    }
}

/// What a spawn is checked against: the run it would grow.
pub struct SpawnScope<'a> {
    /// The task spawning.
    pub spawner: &'a TaskSpec,
    /// How deep the spawned tasks would be: the spawner's depth + 1.
    pub depth: u32,
    /// How many tasks the run has now.
    pub tasks: usize,
    /// Whether the run has a task of this id.
    pub exists: &'a dyn Fn(&str) -> bool,
    /// Whether this task of the run waits for what the spawner spawns (so a spawned task
    /// needing it would wait for itself).
    pub waits_for_spawn: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for SpawnScope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnScope")
            .field("spawner", &self.spawner.id)
            .field("depth", &self.depth)
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

/// Checks `entries` (tasks in the plan's task shape, as JSON) as tasks to add to the run of
/// `plan`: the tasks, with the plan's defaults applied, or every problem found.
pub fn validate_spawn(
    plan: &Plan,
    entries: &[Value],
    scope: &SpawnScope<'_>,
) -> Result<Vec<TaskSpec>, Vec<PlanProblem>> {
    let mut problems = Vec::new();
    let mut run_problem = |kind| {
        problems.push(PlanProblem {
            line: None,
            task: None,
            param: None,
            kind,
        })
    };
    let limits = plan.limits;
    if entries.len() > limits.spawn as usize {
        run_problem(ProblemKind::OverLimit {
            limit: "spawn",
            value: entries.len(),
            max: limits.spawn,
        });
    }
    if !entries.is_empty() && scope.depth > limits.depth {
        run_problem(ProblemKind::OverLimit {
            limit: "depth",
            value: scope.depth as usize,
            max: limits.depth,
        });
    }
    let total = scope.tasks.saturating_add(entries.len());
    if !entries.is_empty() && total > limits.tasks as usize {
        run_problem(ProblemKind::OverLimit {
            limit: "tasks",
            value: total,
            max: limits.tasks,
        });
    }

    let mut files = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        match serde_json::from_value::<TaskFile>(entry.clone()) {
            Ok(file) => files.push(file),
            Err(error) => run_problem(ProblemKind::MalformedEntry {
                position,
                message: error.to_string(),
            }),
        }
    }
    let spawned: BTreeSet<&str> = files.iter().map(|t| t.id.as_str()).collect();
    let spawner = scope.spawner.id.as_str();
    let allowed = scope.spawner.spawns.as_ref();

    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(files.len());
    for t in &files {
        let mut problem = |kind| {
            problems.push(PlanProblem {
                line: None,
                task: Some(t.id.clone()),
                param: None,
                kind,
            })
        };
        if seen.insert(&t.id, ()).is_some() {
            problem(ProblemKind::DuplicateId { first_line: None });
        } else if (scope.exists)(&t.id) {
            problem(ProblemKind::IdInUse);
        }
        if let Some(allowed) = allowed
            && !allowed.iter().any(|c| c.as_str() == t.capability)
        {
            problem(ProblemKind::CapabilityNotAllowed {
                capability: t.capability.clone(),
                allowed: allowed.iter().map(ToString::to_string).collect(),
            });
        }
        let known = |dep: &str| {
            if spawned.contains(dep) {
                Ok(())
            } else if !(scope.exists)(dep) {
                Err(ProblemKind::UnknownDependency {
                    dependency: dep.to_owned(),
                })
            } else if (scope.waits_for_spawn)(dep) {
                Err(ProblemKind::NeedsOwnSpawn {
                    dependency: dep.to_owned(),
                    spawner: spawner.to_owned(),
                })
            } else {
                Ok(())
            }
        };
        let checked = check_task(t, &plan.defaults, plan.max_input_bytes, known, &mut problem);
        tasks.extend(checked);
    }
    let duplicates = problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::DuplicateId { .. }));
    if !duplicates && let Some(cycle) = find_cycle(&tasks) {
        problems.push(PlanProblem {
            line: None,
            task: cycle.first().cloned(),
            param: None,
            kind: ProblemKind::Cycle { tasks: cycle },
        });
    }
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::{PlanFormat, PlanLimits};

    fn plan(extra: &str) -> Plan {
        let source = format!(
            "{extra}\n[[tasks]]\nid = \"lead\"\ncapability = \"plan\"\nspawns = [\"analyze\"]\n\
             [[tasks]]\nid = \"join\"\ncapability = \"merge\"\nneeds = [\"lead\"]\n"
        );
        Plan::parse(&source, PlanFormat::Toml, &PlanLimits::default()).expect("plan")
    }

    fn check(plan: &Plan, entries: Value, depth: u32) -> Result<Vec<TaskSpec>, Vec<String>> {
        let entries = entries.as_array().cloned().unwrap_or_default();
        let exists = |id: &str| plan.tasks.iter().any(|t| t.id.as_str() == id);
        let waits = |id: &str| id == "lead" || id == "join";
        let scope = SpawnScope {
            spawner: &plan.tasks[0],
            depth,
            tasks: plan.tasks.len(),
            exists: &exists,
            waits_for_spawn: &waits,
        };
        validate_spawn(plan, &entries, &scope)
            .map_err(|ps| ps.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_valid_spawn_gets_the_plans_defaults_and_may_need_siblings() {
        let plan = plan("[defaults]\ntimeout = \"7s\"\npriority = 3");
        let tasks = check(
            &plan,
            json!([
                {"id": "a1", "capability": "analyze", "input": {"q": 1}},
                {"id": "a2", "capability": "analyze", "needs": ["a1"], "trigger": "all_done"},
            ]),
            1,
        )
        .expect("valid");
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].timeout_ms, 7_000);
        assert_eq!(tasks[0].priority, 3);
        assert_eq!(tasks[1].needs[0].as_str(), "a1");
        assert_eq!(tasks[1].trigger, super::super::Trigger::AllDone);
    }

    #[test]
    fn an_empty_spawn_is_valid_even_with_limits_of_zero() {
        let plan = plan("[limits]\nspawn = 0\ndepth = 0");
        assert_eq!(check(&plan, json!([]), 1).expect("valid"), vec![]);
    }

    #[test]
    fn every_problem_is_named() {
        let plan = plan("");
        let problems = check(
            &plan,
            json!([
                {"id": "join", "capability": "analyze"},
                {"id": "b", "capability": "other"},
                {"id": "c", "capability": "analyze", "needs": ["lead", "nowhere"]},
                {"id": "d", "capability": "analyze", "colour": "red"},
                {"id": "e e", "capability": "analyze"},
                {"id": "f", "capability": "analyze", "needs": ["g"]},
                {"id": "g", "capability": "analyze", "needs": ["f"]},
                {"id": "f", "capability": "analyze"},
            ]),
            1,
        )
        .expect_err("invalid");
        let all = problems.join("\n");
        for expected in [
            "task \"join\": the run already has a task with this id",
            "capability \"other\" is not one its spawner may spawn (analyze)",
            "needs \"lead\", which waits for what \"lead\" spawns",
            "needs \"nowhere\", which is not a task",
            "spawn[3] is not a task: unknown field `colour`",
            "invalid task id \"e e\"",
            "task \"f\": duplicate task id",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn a_cycle_among_spawned_tasks_is_named() {
        let plan = plan("");
        let problems = check(
            &plan,
            json!([
                {"id": "f", "capability": "analyze", "needs": ["g"]},
                {"id": "g", "capability": "analyze", "needs": ["f"]},
            ]),
            1,
        )
        .expect_err("cycle");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("dependency cycle: f -> g -> f")),
            "{problems:?}"
        );
    }

    #[test]
    fn limits_are_named_and_zero_means_zero() {
        let plan = plan("[limits]\nspawn = 1\ndepth = 2\ntasks = 3");
        let two = json!([
            {"id": "a", "capability": "analyze"},
            {"id": "b", "capability": "analyze"},
        ]);
        let problems = check(&plan, two, 3).expect_err("over limits").join("\n");
        assert!(
            problems.contains("2 is over the run's limit spawn = 1"),
            "{problems}"
        );
        assert!(
            problems.contains("3 is over the run's limit depth = 2"),
            "{problems}"
        );
        assert!(
            problems.contains("4 is over the run's limit tasks = 3"),
            "{problems}"
        );
        let zero = plan_with_zero_spawn();
        let one = json!([{"id": "a", "capability": "analyze"}]);
        let problems = check(&zero, one, 1).expect_err("zero").join("\n");
        assert!(
            problems.contains("1 is over the run's limit spawn = 0"),
            "{problems}"
        );
    }

    fn plan_with_zero_spawn() -> Plan {
        plan("[limits]\nspawn = 0")
    }
}
