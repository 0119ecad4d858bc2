use super::*;

fn parse_toml(source: &str) -> Result<Plan, PlanError> {
    Plan::parse(source, PlanFormat::Toml, &PlanLimits::default())
}

fn problems(result: Result<Plan, PlanError>) -> Vec<PlanProblem> {
    match result {
        Err(PlanError::Invalid { problems }) => problems,
        other => panic!("expected invalid plan, got {other:?}"),
    }
}

const GOOD: &str = r#"
name = "review"

[defaults]
priority = 1
timeout = "30s"
[defaults.retry]
max_attempts = 4
initial_backoff = "200ms"

[[tasks]]
id = "plan"
capability = "planner"
input = { repo = "." }

[[tasks]]
id = "security"
capability = "analyze"
needs = ["plan"]
priority = 5
retry = { max_attempts = 2, multiplier = 3.0 }

[[tasks]]
id = "merge"
capability = "synthesize"
needs = ["security", "plan"]
timeout = "2m"
"#;

#[test]
fn parses_a_good_plan_and_applies_defaults() {
    let plan = parse_toml(GOOD).expect("valid plan");
    assert_eq!(plan.name, "review");
    assert_eq!(plan.tasks.len(), 3);
    let plan_task = &plan.tasks[0];
    assert_eq!(plan_task.priority, 1);
    assert_eq!(plan_task.timeout_ms, 30_000);
    assert_eq!(plan_task.retry.max_attempts, 4);
    assert_eq!(plan_task.retry.initial_backoff_ms, 200);
    assert_eq!(plan_task.input["repo"], serde_json::json!("."));
    let security = &plan.tasks[1];
    assert_eq!(security.priority, 5);
    assert_eq!(security.retry.max_attempts, 2);
    assert_eq!(security.retry.multiplier, 3.0);
    assert_eq!(
        security.retry.initial_backoff_ms, 200,
        "inherits defaults field by field"
    );
    assert_eq!(plan.tasks[2].timeout_ms, 120_000);
    assert_eq!(plan.tasks[2].needs.len(), 2);
}

#[test]
fn json_and_toml_give_the_same_plan() {
    let json = r#"{
      "name": "review",
      "defaults": {"priority": 1, "timeout": "30s", "retry": {"max_attempts": 4, "initial_backoff": "200ms"}},
      "tasks": [
        {"id": "plan", "capability": "planner", "input": {"repo": "."}},
        {"id": "security", "capability": "analyze", "needs": ["plan"], "priority": 5,
         "retry": {"max_attempts": 2, "multiplier": 3.0}},
        {"id": "merge", "capability": "synthesize", "needs": ["security", "plan"], "timeout": "2m"}
      ]
    }"#;
    let from_json = Plan::parse(json, PlanFormat::Json, &PlanLimits::default()).expect("json");
    assert_eq!(from_json, parse_toml(GOOD).expect("toml"));
}

#[test]
fn rejects_an_empty_plan() {
    let p = problems(parse_toml("name = \"x\"\n"));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, ProblemKind::Empty);
    assert!(p[0].to_string().contains("no tasks"));
}

#[test]
fn rejects_duplicate_ids_with_both_lines() {
    let src =
        "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n";
    let p = problems(parse_toml(src));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(5));
    assert_eq!(
        p[0].kind,
        ProblemKind::DuplicateId {
            first_line: Some(1)
        }
    );
    assert_eq!(
        p[0].to_string(),
        "line 5: task \"a\": duplicate task id (first defined at line 1)"
    );
}

#[test]
fn rejects_unknown_and_self_dependencies() {
    let src = "[[tasks]]\nid = \"a\"\ncapability = \"c\"\nneeds = [\"ghost\", \"a\"]\n";
    let p = problems(parse_toml(src));
    let kinds: Vec<_> = p.iter().map(|p| p.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            ProblemKind::UnknownDependency {
                dependency: "ghost".into()
            },
            ProblemKind::SelfDependency
        ]
    );
    assert!(
        p[0].to_string()
            .starts_with("line 1: task \"a\": needs \"ghost\"")
    );
}

#[test]
fn names_every_task_on_a_cycle() {
    let src = r#"
[[tasks]]
id = "start"
capability = "c"

[[tasks]]
id = "a"
capability = "c"
needs = ["start", "c"]

[[tasks]]
id = "b"
capability = "c"
needs = ["a"]

[[tasks]]
id = "c"
capability = "c"
needs = ["b"]
"#;
    let p = problems(parse_toml(src));
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].kind,
        ProblemKind::Cycle {
            tasks: vec!["a".into(), "c".into(), "b".into(), "a".into()]
        }
    );
    assert_eq!(p[0].line, Some(6));
    assert!(
        p[0].to_string()
            .contains("dependency cycle: a -> c -> b -> a")
    );
}

#[test]
fn rejects_capabilities_that_are_not_subject_tokens() {
    for bad in ["a.b", "*", ">", "has space"] {
        let src = format!("[[tasks]]\nid = \"t\"\ncapability = \"{bad}\"\n");
        let p = problems(parse_toml(&src));
        assert_eq!(p.len(), 1, "{bad}");
        match &p[0].kind {
            ProblemKind::InvalidName(e) => assert_eq!(e.value, bad),
            other => panic!("{bad}: {other:?}"),
        }
        assert!(p[0].to_string().contains("invalid capability"), "{}", p[0]);
    }
}

#[test]
fn rejects_inputs_over_the_limit() {
    let src = format!(
        "[[tasks]]\nid = \"t\"\ncapability = \"c\"\ninput = \"{}\"\n",
        "x".repeat(100)
    );
    let limits = PlanLimits {
        max_input_bytes: 64,
    };
    let p = problems(Plan::parse(&src, PlanFormat::Toml, &limits));
    assert_eq!(
        p[0].kind,
        ProblemKind::InputTooLarge {
            bytes: 102,
            limit: 64
        }
    );
}

#[test]
fn rejects_bad_settings() {
    let src = "[[tasks]]\nid = \"t\"\ncapability = \"c\"\ntimeout = \"soon\"\nretry = { max_attempts = 0 }\n";
    let p = problems(parse_toml(src));
    let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(p.len(), 2, "{text:?}");
    assert!(
        text.iter().any(|t| t.contains("retry.max_attempts")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("\"soon\" is not a duration")),
        "{text:?}"
    );
}

#[test]
fn reports_syntax_errors_with_lines() {
    match parse_toml("[[tasks]]\nid = \"a\"\ncapability = \n") {
        Err(PlanError::Syntax { line, format, .. }) => {
            assert_eq!(format, PlanFormat::Toml);
            assert_eq!(line, Some(3));
        }
        other => panic!("{other:?}"),
    }
    match Plan::parse(
        "{\n \"tasks\": [\n  {\"id\": }\n]}",
        PlanFormat::Json,
        &PlanLimits::default(),
    ) {
        Err(PlanError::Syntax { line, .. }) => assert_eq!(line, Some(3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_unknown_fields_by_name() {
    let err = parse_toml("[[tasks]]\nid = \"a\"\ncapability = \"c\"\ndepends_on = [\"b\"]\n")
        .expect_err("typo");
    let text = err.to_string();
    assert!(text.contains("depends_on"), "{text}");
    assert!(text.contains("line 4"), "{text}");
}

#[test]
fn json_problems_point_at_the_task_line() {
    let json = "{\"tasks\": [\n {\"id\": \"a\", \"capability\": \"c\"},\n {\"id\": \"b\", \"capability\": \"c\", \"needs\": [\"zz\"]}\n]}";
    let p = problems(Plan::parse(json, PlanFormat::Json, &PlanLimits::default()));
    assert_eq!(p[0].line, Some(3));
}

proptest::proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(src in ".{0,400}") {
        let _ = Plan::parse(&src, PlanFormat::Toml, &PlanLimits::default());
        let _ = Plan::parse(&src, PlanFormat::Json, &PlanLimits::default());
    }
}

#[test]
fn rejects_inputs_nested_too_deep() {
    let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
    let src =
        format!("{{\"tasks\": [{{\"id\": \"t\", \"capability\": \"c\", \"input\": {deep}}}]}}");
    let p = problems(Plan::parse(&src, PlanFormat::Json, &PlanLimits::default()));
    assert_eq!(
        p[0].kind,
        ProblemKind::InputTooDeep {
            depth: 70,
            limit: MAX_INPUT_DEPTH
        }
    );
    let ok = format!("{}1{}", "[".repeat(64), "]".repeat(64));
    let src = format!("{{\"tasks\": [{{\"id\": \"t\", \"capability\": \"c\", \"input\": {ok}}}]}}");
    assert!(Plan::parse(&src, PlanFormat::Json, &PlanLimits::default()).is_ok());
}

mod properties;

#[test]
fn limits_triggers_and_spawns_are_read_and_a_plan_over_its_own_task_limit_is_refused() {
    let plan = parse_toml(
        "[limits]\nspawn = 0\ndepth = 2\n\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\nspawns = []\n\
         [[tasks]]\nid = \"b\"\ncapability = \"c\"\nneeds = [\"a\"]\ntrigger = \"one_failed\"\n",
    )
    .expect("valid");
    assert_eq!(
        plan.limits,
        Limits {
            spawn: 0,
            depth: 2,
            ..Limits::default()
        }
    );
    assert_eq!(plan.tasks[0].spawns.as_deref(), Some(&[][..]));
    assert_eq!(plan.tasks[1].trigger, Trigger::OneFailed);

    let over = problems(parse_toml(
        "[limits]\ntasks = 1\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         [[tasks]]\nid = \"b\"\ncapability = \"c\"\n",
    ));
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(
        over[0].to_string(),
        "2 is over the run's limit tasks = 1 (set in the plan's [limits])"
    );

    let bad = parse_toml("[[tasks]]\nid = \"a\"\ncapability = \"c\"\ntrigger = \"sometimes\"\n")
        .expect_err("an unknown rule");
    let text = bad.to_string();
    assert!(text.contains("line 4"), "{text}");
    assert!(text.contains("unknown variant `sometimes`"), "{text}");
    assert!(text.contains("`none_failed`"), "{text}");
}

#[test]
fn budgets_a_deadline_and_estimates_are_read() {
    let plan = parse_toml(
        "[limits]\ntokens = 150000\ncost_cents = 200\ntool_calls = 300\nattempts = 500\n\
         deadline = \"20m\"\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         estimate = { tokens = 1000, tool_calls = 2 }\n",
    )
    .expect("valid");
    assert_eq!(plan.limits.tokens, Some(150_000));
    assert_eq!(plan.limits.cost_cents, Some(200));
    assert_eq!(plan.limits.tool_calls, Some(300));
    assert_eq!(plan.limits.attempts, Some(500));
    assert_eq!(plan.limits.deadline_ms, Some(20 * 60 * 1000));
    assert_eq!(
        plan.tasks[0].estimate,
        crate::Usage {
            tokens: 1000,
            cost_cents: 0,
            tool_calls: 2
        }
    );
    let bad = problems(parse_toml(
        "[limits]\ndeadline = \"soon\"\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n",
    ));
    assert!(bad[0].to_string().contains("limits.deadline"), "{bad:?}");
    let typo = parse_toml("[[tasks]]\nid = \"a\"\ncapability = \"c\"\nestimate = { tokenz = 1 }\n")
        .expect_err("unknown key");
    assert!(typo.to_string().contains("tokenz"), "{typo}");
}

#[test]
fn an_escalation_ladder_is_read_rung_by_rung() {
    let plan = parse_toml(
        "[[tasks]]\nid = \"review\"\ncapability = \"review\"\nretry = { max_attempts = 3 }\n\
         escalate = [ { reroute = \"review-senior\" }, { reroute = \"review-expert\", retry = { max_attempts = 1 } } ]\n",
    )
    .expect("valid");
    let rungs = &plan.tasks[0].escalate;
    assert_eq!(rungs.len(), 2);
    let crate::plan::Rung::Reroute { capability, retry } = &rungs[0];
    assert_eq!(capability.as_str(), "review-senior");
    assert_eq!(retry.max_attempts, 3, "the task's own policy by default");
    let crate::plan::Rung::Reroute { retry, .. } = &rungs[1];
    assert_eq!(retry.max_attempts, 1);
    let bad = problems(parse_toml(
        "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         escalate = [ { reroute = \"x\", replan = \"y\" }, { human = { timeout = \"1h\" } }, { reroute = \"a b\" } ]\n",
    ));
    let all: Vec<String> = bad.iter().map(ToString::to_string).collect();
    let all = all.join("\n");
    assert!(
        all.contains("escalate[0]: a rung has exactly one of reroute, replan or human"),
        "{all}"
    );
    assert!(
        all.contains("escalate[1]: only reroute rungs are built so far"),
        "{all}"
    );
    assert!(all.contains("invalid capability \"a b\""), "{all}");
}
