//! Properties over generated plans. A structurally valid plan (a random DAG with valid ids and
//! capabilities, defaults, retry settings and durations) parses, from TOML and from JSON, into
//! exactly the plan it describes, and a parsed plan written back out parses to itself. Each
//! kind of breakage (a cycle, an unknown need, a duplicate id, a bad token) is refused with one
//! problem, naming it.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::ids::{Capability, TaskId};
use crate::plan::{
    DEFAULT_TIMEOUT_MS, Plan, PlanError, PlanFormat, PlanLimits, PlanProblem, ProblemKind,
    RetryPolicy, TaskSpec,
};

/// Retry settings as a plan may write them: each field optional.
#[derive(Clone, Debug, Default)]
struct RetryCase {
    max_attempts: Option<u32>,
    initial_backoff_ms: Option<u64>,
    multiplier: Option<f64>,
    max_backoff_ms: Option<u64>,
    jitter: Option<f64>,
}

#[derive(Clone, Debug)]
struct TaskCase {
    id: String,
    capability: String,
    input: Option<Value>,
    /// Positions of the tasks it needs; in a valid case only earlier ones, so the graph is a DAG.
    needs: Vec<usize>,
    /// A need that is no task's id.
    unknown_need: Option<String>,
    priority: Option<i32>,
    /// A timeout as written; `None` leaves the default.
    timeout: Option<String>,
    retry: Option<RetryCase>,
}

#[derive(Clone, Debug)]
struct PlanCase {
    name: Option<String>,
    priority: Option<i32>,
    timeout_ms: Option<u64>,
    retry: Option<RetryCase>,
    tasks: Vec<TaskCase>,
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn retry() -> impl Strategy<Value = RetryCase> {
    // Backoffs stay within what any merge with the defaults (1s initial, 60s max) keeps valid.
    (
        proptest::option::of(1u32..=10),
        proptest::option::of(0u64..=1_000),
        proptest::option::of((4u32..=20).prop_map(|k| f64::from(k) / 4.0)),
        proptest::option::of(60_000u64..=3_600_000),
        proptest::option::of((0u32..=8).prop_map(|k| f64::from(k) / 8.0)),
    )
        .prop_map(
            |(max_attempts, initial_backoff_ms, multiplier, max_backoff_ms, jitter)| RetryCase {
                max_attempts,
                initial_backoff_ms,
                multiplier,
                max_backoff_ms,
                jitter,
            },
        )
}

/// An input that TOML can hold too: no nulls, no floats.
fn input() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[A-Za-z0-9_ -]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn task(id: String, position: usize) -> impl Strategy<Value = TaskCase> {
    let needs = if position == 0 {
        Just(Vec::new()).boxed()
    } else {
        // Repeats allowed: the parser keeps the first of each.
        proptest::collection::vec(0..position, 0..4).boxed()
    };
    (
        token(),
        proptest::option::of(input()),
        needs,
        proptest::option::of(any::<i32>()),
        proptest::option::of((1u64..=86_400_000).prop_map(duration)),
        proptest::option::of(retry()),
    )
        .prop_map(
            move |(capability, input, needs, priority, timeout, retry)| TaskCase {
                id: id.clone(),
                capability,
                input,
                needs,
                unknown_need: None,
                priority,
                timeout,
                retry,
            },
        )
}

fn plan() -> impl Strategy<Value = PlanCase> {
    let tasks = proptest::collection::btree_set(token(), 1..12)
        .prop_flat_map(|ids| Just(ids.into_iter().collect::<Vec<_>>()).prop_shuffle())
        .prop_flat_map(|ids| {
            ids.into_iter()
                .enumerate()
                .map(|(i, id)| task(id, i))
                .collect::<Vec<_>>()
        });
    (
        proptest::option::of("\\PC{0,20}"),
        proptest::option::of(any::<i32>()),
        proptest::option::of(1u64..=86_400_000),
        proptest::option::of(retry()),
        tasks,
    )
        .prop_map(|(name, priority, timeout_ms, retry, tasks)| PlanCase {
            name,
            priority,
            timeout_ms,
            retry,
            tasks,
        })
}

fn retry_file(retry: &RetryCase) -> Value {
    let mut map = Map::new();
    if let Some(v) = retry.max_attempts {
        map.insert("max_attempts".into(), v.into());
    }
    if let Some(v) = retry.initial_backoff_ms {
        map.insert("initial_backoff".into(), duration(v).into());
    }
    if let Some(v) = retry.multiplier {
        map.insert("multiplier".into(), v.into());
    }
    if let Some(v) = retry.max_backoff_ms {
        map.insert("max_backoff".into(), duration(v).into());
    }
    if let Some(v) = retry.jitter {
        map.insert("jitter".into(), v.into());
    }
    Value::Object(map)
}

/// The case as a plan file, in the shape both formats share.
fn file(case: &PlanCase) -> Value {
    let mut defaults = Map::new();
    if let Some(v) = case.priority {
        defaults.insert("priority".into(), v.into());
    }
    if let Some(v) = case.timeout_ms {
        defaults.insert("timeout".into(), duration(v).into());
    }
    if let Some(r) = &case.retry {
        defaults.insert("retry".into(), retry_file(r));
    }
    let tasks: Vec<Value> = case
        .tasks
        .iter()
        .map(|t| {
            let mut map = Map::new();
            map.insert("id".into(), t.id.clone().into());
            map.insert("capability".into(), t.capability.clone().into());
            if let Some(input) = &t.input {
                map.insert("input".into(), input.clone());
            }
            let mut needs: Vec<Value> = t
                .needs
                .iter()
                .map(|&n| case.tasks[n].id.clone().into())
                .collect();
            needs.extend(t.unknown_need.clone().map(Value::from));
            if !needs.is_empty() {
                map.insert("needs".into(), needs.into());
            }
            if let Some(v) = t.priority {
                map.insert("priority".into(), v.into());
            }
            if let Some(v) = &t.timeout {
                map.insert("timeout".into(), v.clone().into());
            }
            if let Some(r) = &t.retry {
                map.insert("retry".into(), retry_file(r));
            }
            Value::Object(map)
        })
        .collect();
    let mut top = Map::new();
    if let Some(name) = &case.name {
        top.insert("name".into(), name.clone().into());
    }
    if !defaults.is_empty() {
        top.insert("defaults".into(), Value::Object(defaults));
    }
    top.insert("tasks".into(), tasks.into());
    Value::Object(top)
}

fn render(file: &Value, format: PlanFormat) -> String {
    match format {
        PlanFormat::Toml => toml::to_string(file).expect("a plan file renders as TOML"),
        PlanFormat::Json => serde_json::to_string_pretty(file).expect("renders as JSON"),
    }
}

fn parse(file: &Value, format: PlanFormat) -> Result<Plan, PlanError> {
    Plan::parse(&render(file, format), format, &PlanLimits::default())
}

fn merge(base: &RetryPolicy, over: Option<&RetryCase>) -> RetryPolicy {
    let Some(over) = over else {
        return base.clone();
    };
    RetryPolicy {
        max_attempts: over.max_attempts.unwrap_or(base.max_attempts),
        initial_backoff_ms: over.initial_backoff_ms.unwrap_or(base.initial_backoff_ms),
        multiplier: over.multiplier.unwrap_or(base.multiplier),
        max_backoff_ms: over.max_backoff_ms.unwrap_or(base.max_backoff_ms),
        jitter: over.jitter.unwrap_or(base.jitter),
    }
}

/// The plan a valid case describes: defaults applied field by field, repeated needs dropped.
fn expected(case: &PlanCase) -> Plan {
    let retry = merge(&RetryPolicy::default(), case.retry.as_ref());
    let timeout_ms = case.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    let tasks = case
        .tasks
        .iter()
        .map(|t| {
            let mut needs: Vec<TaskId> = Vec::new();
            for &n in &t.needs {
                let id = TaskId::new(case.tasks[n].id.as_str()).expect("generated id");
                if !needs.contains(&id) {
                    needs.push(id);
                }
            }
            TaskSpec {
                id: TaskId::new(t.id.as_str()).expect("generated id"),
                capability: Capability::new(t.capability.as_str()).expect("generated capability"),
                input: t.input.clone().unwrap_or(Value::Null),
                needs,
                priority: t.priority.or(case.priority).unwrap_or(0),
                retry: merge(&retry, t.retry.as_ref()),
                timeout_ms: t.timeout.as_ref().map_or(timeout_ms, |v| {
                    crate::plan::parse_duration("timeout", v).expect("valid")
                }),
                trigger: Default::default(),
                spawns: None,
                estimate: Default::default(),
                escalate: Vec::new(),
            }
        })
        .collect();
    Plan {
        name: case.name.clone().unwrap_or_else(|| "unnamed".to_owned()),
        params: Default::default(),
        priority: 0,
        tasks,
        limits: Default::default(),
        defaults: crate::plan::TaskDefaults {
            priority: case.priority.unwrap_or(0),
            timeout_ms,
            retry,
        },
        max_input_bytes: crate::plan::DEFAULT_MAX_INPUT_BYTES,
    }
}

/// A parsed plan written out with every field explicit.
fn written(plan: &Plan) -> Value {
    let retry = |r: &crate::plan::RetryPolicy| {
        serde_json::json!({
            "max_attempts": r.max_attempts,
            "initial_backoff": format!("{}ms", r.initial_backoff_ms),
            "multiplier": r.multiplier,
            "max_backoff": format!("{}ms", r.max_backoff_ms),
            "jitter": r.jitter,
        })
    };
    let tasks: Vec<Value> = plan
        .tasks
        .iter()
        .map(|t| {
            let mut map = Map::new();
            map.insert("id".into(), t.id.as_str().into());
            map.insert("capability".into(), t.capability.as_str().into());
            // TOML has no null: a plan without an input leaves it out.
            if !t.input.is_null() {
                map.insert("input".into(), t.input.clone());
            }
            let needs: Vec<Value> = t.needs.iter().map(|n| n.as_str().into()).collect();
            map.insert("needs".into(), needs.into());
            map.insert("priority".into(), t.priority.into());
            map.insert("timeout".into(), format!("{}ms", t.timeout_ms).into());
            map.insert("retry".into(), retry(&t.retry));
            map.insert("trigger".into(), t.trigger.name().into());
            Value::Object(map)
        })
        .collect();
    let defaults = &plan.defaults;
    serde_json::json!({
        "name": plan.name,
        "defaults": {
            "priority": defaults.priority,
            "timeout": format!("{}ms", defaults.timeout_ms),
            "retry": retry(&defaults.retry),
        },
        "limits": {
            "spawn": plan.limits.spawn,
            "depth": plan.limits.depth,
            "tasks": plan.limits.tasks,
        },
        "tasks": tasks,
    })
}

/// One thing broken in a valid case.
#[derive(Clone, Debug)]
enum Breakage {
    /// The task at `early` also needs the later task at `late`, which needs it.
    Cycle {
        early: usize,
        late: usize,
    },
    UnknownNeed {
        task: usize,
    },
    /// A copy of the task, with no needs, appended.
    DuplicateId {
        of: usize,
    },
    BadCapability {
        task: usize,
        bad: String,
    },
    BadId {
        task: usize,
        bad: String,
    },
    BadTimeout {
        task: usize,
        bad: String,
    },
}

fn bad_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a.b".to_owned()),
        Just("*".to_owned()),
        Just(">".to_owned()),
        Just("has space".to_owned()),
        Just(String::new()),
        Just("tab\there".to_owned()),
        Just("ünï".to_owned()),
        Just("x".repeat(129)),
    ]
}

fn breakage(tasks: usize) -> BoxedStrategy<Breakage> {
    let any_task = 0..tasks;
    let mut options = vec![
        any_task
            .clone()
            .prop_map(|task| Breakage::UnknownNeed { task })
            .boxed(),
        any_task
            .clone()
            .prop_map(|of| Breakage::DuplicateId { of })
            .boxed(),
        (any_task.clone(), bad_token())
            .prop_map(|(task, bad)| Breakage::BadCapability { task, bad })
            .boxed(),
        (any_task.clone(), bad_token())
            .prop_map(|(task, bad)| Breakage::BadId { task, bad })
            .boxed(),
        (
            any_task,
            prop_oneof![
                Just("soon"),
                Just("5 parsecs"),
                Just("1.5.3s"),
                Just("-1s"),
                Just("")
            ],
        )
            .prop_map(|(task, bad)| Breakage::BadTimeout {
                task,
                bad: bad.to_owned(),
            })
            .boxed(),
    ];
    if tasks >= 2 {
        options.push(
            (0..tasks - 1)
                .prop_flat_map(move |early| (Just(early), early + 1..tasks))
                .prop_map(|(early, late)| Breakage::Cycle { early, late })
                .boxed(),
        );
    }
    proptest::strategy::Union::new(options).boxed()
}

fn break_it(case: &mut PlanCase, breakage: &Breakage) {
    match breakage {
        Breakage::Cycle { early, late } => {
            case.tasks[*early].needs.push(*late);
            case.tasks[*late].needs.push(*early);
        }
        Breakage::UnknownNeed { task } => {
            // Longer than every id, so no task's.
            let longest = case.tasks.iter().map(|t| t.id.len()).max().unwrap_or(0);
            case.tasks[*task].unknown_need = Some("g".repeat(longest + 1));
        }
        Breakage::DuplicateId { of } => {
            let copy = TaskCase {
                needs: Vec::new(),
                ..case.tasks[*of].clone()
            };
            case.tasks.push(copy);
        }
        Breakage::BadCapability { task, bad } => case.tasks[*task].capability = bad.clone(),
        Breakage::BadId { task, bad } => case.tasks[*task].id = bad.clone(),
        Breakage::BadTimeout { task, bad } => case.tasks[*task].timeout = Some(bad.clone()),
    }
}

/// The one problem the broken plan must be refused with.
fn only_problem(result: Result<Plan, PlanError>) -> Result<PlanProblem, TestCaseError> {
    match result {
        Err(PlanError::Invalid { mut problems }) if problems.len() == 1 => Ok(problems.remove(0)),
        other => Err(TestCaseError::fail(format!(
            "expected exactly one problem, got {other:?}"
        ))),
    }
}

/// Checks that `problem` names `breakage` in `case` (as broken).
fn names_the_breakage(
    case: &PlanCase,
    breakage: &Breakage,
    problem: &PlanProblem,
) -> Result<(), TestCaseError> {
    let text = problem.to_string();
    let id = |i: usize| case.tasks[i].id.clone();
    match breakage {
        Breakage::Cycle { early, late } => {
            let ProblemKind::Cycle { tasks } = &problem.kind else {
                return Err(TestCaseError::fail(format!("not a cycle: {text}")));
            };
            prop_assert!(tasks.len() >= 3 && tasks.first() == tasks.last(), "{text}");
            prop_assert!(
                tasks.contains(&id(*early)) && tasks.contains(&id(*late)),
                "{text}"
            );
            // Each step is a real need.
            for step in tasks.windows(2) {
                let from = case
                    .tasks
                    .iter()
                    .find(|t| t.id == step[0])
                    .expect("on the cycle");
                prop_assert!(
                    from.needs.iter().any(|&n| case.tasks[n].id == step[1]),
                    "{} does not need {}: {text}",
                    step[0],
                    step[1]
                );
            }
            let named = format!("dependency cycle: {}", tasks.join(" -> "));
            prop_assert!(text.contains(&named), "{text}");
        }
        Breakage::UnknownNeed { task } => {
            let ghost = case.tasks[*task].unknown_need.clone().expect("broken");
            prop_assert_eq!(problem.task.clone(), Some(id(*task)));
            prop_assert_eq!(
                &problem.kind,
                &ProblemKind::UnknownDependency {
                    dependency: ghost.clone()
                }
            );
            prop_assert!(
                text.contains(&format!(
                    "needs {ghost:?}, which is not a task in this plan"
                )),
                "{text}"
            );
        }
        Breakage::DuplicateId { of } => {
            prop_assert_eq!(problem.task.clone(), Some(id(*of)));
            let ProblemKind::DuplicateId { first_line } = problem.kind else {
                return Err(TestCaseError::fail(format!("not a duplicate: {text}")));
            };
            prop_assert!(first_line.is_some() && problem.line.is_some(), "{text}");
            prop_assert!(
                text.contains("duplicate task id (first defined at line"),
                "{text}"
            );
        }
        Breakage::BadCapability { task, bad } | Breakage::BadId { task, bad } => {
            let what = match breakage {
                Breakage::BadId { .. } => "task id",
                _ => "capability",
            };
            let ProblemKind::InvalidName(e) = &problem.kind else {
                return Err(TestCaseError::fail(format!("not a bad name: {text}")));
            };
            prop_assert_eq!(e.kind, what);
            prop_assert_eq!(&e.value, bad);
            prop_assert_eq!(problem.task.clone(), Some(id(*task)));
            prop_assert!(text.contains(&format!("invalid {what} {bad:?}")), "{text}");
        }
        Breakage::BadTimeout { task, bad } => {
            prop_assert_eq!(problem.task.clone(), Some(id(*task)));
            let ProblemKind::InvalidSetting { field, .. } = &problem.kind else {
                return Err(TestCaseError::fail(format!("not a bad setting: {text}")));
            };
            prop_assert_eq!(field, "timeout");
            prop_assert!(
                text.contains(&format!("timeout: {bad:?} is not a duration")),
                "{text}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_valid_plan_parses_to_what_it_says_in_both_formats(case in plan()) {
        let file = file(&case);
        let want = expected(&case);
        for format in [PlanFormat::Toml, PlanFormat::Json] {
            let got = parse(&file, format)
                .map_err(|e| TestCaseError::fail(format!("{format}: {e}\n{}", render(&file, format))))?;
            prop_assert_eq!(&got, &want, "{}", format);
        }
    }

    #[test]
    fn a_parsed_plan_written_out_parses_to_itself(case in plan()) {
        let plan = expected(&case);
        let file = written(&plan);
        for format in [PlanFormat::Toml, PlanFormat::Json] {
            let again = parse(&file, format)
                .map_err(|e| TestCaseError::fail(format!("{format}: {e}\n{}", render(&file, format))))?;
            prop_assert_eq!(&again, &plan, "{}", format);
        }
    }

    #[test]
    fn a_broken_plan_is_refused_with_a_problem_naming_the_breakage(
        (mut case, breakage) in plan().prop_flat_map(|case| {
            let tasks = case.tasks.len();
            (Just(case), breakage(tasks))
        })
    ) {
        break_it(&mut case, &breakage);
        let file = file(&case);
        for format in [PlanFormat::Toml, PlanFormat::Json] {
            let problem = only_problem(parse(&file, format))?;
            names_the_breakage(&case, &breakage, &problem)?;
        }
    }
}
