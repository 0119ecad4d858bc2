use serde_json::json;

use super::*;
use crate::plan::{PlanError, PlanProblem};

const PARAMETERIZED: &str = r#"
name = "review"

[params]
repo = { default = ".", description = "the repository" }
goal = { description = "what to look for" }
focus = { default = ["security", "tests"] }
limit = { default = 20 }

[[tasks]]
id = "plan"
capability = "planner"
input = { repo = "{{ params.repo }}", goal = "Goal: {{params.goal}}!", focus = "{{ params.focus }}" }

[[tasks]]
id = "deep"
capability = "c"
input = { nested = { list = ["{{ params.limit }}", "at most {{ params.limit }} in {{ params.repo }}"] } }
"#;

fn parse(source: &str) -> Result<Plan, PlanError> {
    Plan::parse(source, PlanFormat::Toml, &PlanLimits::default())
}

fn values(pairs: &[(&str, Value)]) -> ParamValues {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn problems(result: Result<Plan, PlanError>) -> Vec<PlanProblem> {
    match result {
        Err(PlanError::Invalid { problems }) => problems,
        other => panic!("expected an invalid plan, got {other:?}"),
    }
}

#[test]
fn parses_declarations_and_keeps_references_until_substituted() {
    let plan = parse(PARAMETERIZED).expect("valid");
    assert_eq!(
        plan.params.keys().collect::<Vec<_>>(),
        ["focus", "goal", "limit", "repo"]
    );
    assert!(plan.params["goal"].is_required());
    assert_eq!(plan.params["goal"].description, "what to look for");
    assert_eq!(plan.params["repo"].default, Some(json!(".")));
    assert!(!plan.params["focus"].is_required());
    assert_eq!(plan.tasks[0].input["repo"], json!("{{ params.repo }}"));
}

#[test]
fn substitutes_typed_values_whole_strings_and_text_inside_strings() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let concrete = plan
        .with_params(
            &values(&[("goal", json!("find leaks")), ("limit", json!(7))]),
            &PlanLimits::default(),
        )
        .expect("values fit");
    assert!(
        concrete.params.is_empty(),
        "a concrete plan declares nothing"
    );
    assert_eq!(
        concrete.tasks[0].input,
        json!({ "repo": ".", "goal": "Goal: find leaks!", "focus": ["security", "tests"] })
    );
    assert_eq!(
        concrete.tasks[1].input,
        json!({ "nested": { "list": [7, "at most 7 in ."] } })
    );
}

#[test]
fn non_string_values_inside_strings_are_their_json_text() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let concrete = plan
        .with_params(
            &values(&[("goal", json!({ "a": [1, true] })), ("repo", json!(null))]),
            &PlanLimits::default(),
        )
        .expect("values fit");
    assert_eq!(
        concrete.tasks[0].input["goal"],
        json!("Goal: {\"a\":[1,true]}!")
    );
    assert_eq!(concrete.tasks[0].input["repo"], json!(null));
    assert_eq!(
        concrete.tasks[1].input["nested"]["list"][1],
        json!("at most 20 in null")
    );
}

#[test]
fn a_substituted_value_is_not_substituted_again() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let concrete = plan
        .with_params(
            &values(&[("goal", json!("{{ params.repo }}"))]),
            &PlanLimits::default(),
        )
        .expect("values fit");
    assert_eq!(
        concrete.tasks[0].input["goal"],
        json!("Goal: {{ params.repo }}!")
    );
}

#[test]
fn missing_and_unknown_values_are_named_together() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let error = plan
        .with_params(&values(&[("rpeo", json!("x"))]), &PlanLimits::default())
        .expect_err("goal is missing, rpeo unknown");
    assert_eq!(
        error.problems,
        [
            ParamProblem::Missing {
                name: "goal".into(),
                description: "what to look for".into()
            },
            ParamProblem::Unknown {
                name: "rpeo".into(),
                declared: vec!["focus".into(), "goal".into(), "limit".into(), "repo".into()],
            },
        ]
    );
    let text = error.to_string();
    assert!(text.contains("2 problems"), "{text}");
    assert!(
        text.contains("missing a value for the required parameter \"goal\" (what to look for); give one with --param goal=VALUE"),
        "{text}"
    );
    assert!(
        text.contains("unknown parameter \"rpeo\": the plan declares focus, goal, limit, repo"),
        "{text}"
    );
}

#[test]
fn a_plan_without_params_takes_no_values_and_is_unchanged_without_them() {
    let source =
        "[[tasks]]\nid = \"a\"\ncapability = \"c\"\ninput = { x = \"{{ not a param }}\" }\n";
    let plan = parse(source).expect("valid");
    assert_eq!(
        plan.with_params(&ParamValues::new(), &PlanLimits::default())
            .expect("no values, none needed"),
        plan
    );
    let error = plan
        .with_params(&values(&[("x", json!(1))]), &PlanLimits::default())
        .expect_err("x is unknown");
    assert!(
        error
            .to_string()
            .contains("the plan declares no parameters"),
        "{error}"
    );
}

#[test]
fn a_substituted_input_over_the_limit_is_refused() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let limits = PlanLimits {
        max_input_bytes: 200,
    };
    let error = plan
        .with_params(&values(&[("goal", json!("x".repeat(300)))]), &limits)
        .expect_err("too large");
    assert!(
        matches!(&error.problems[..], [ParamProblem::Input(PlanProblem { task: Some(task), kind: ProblemKind::InputTooLarge { .. }, .. })] if task == "plan"),
        "{error}"
    );
}

#[test]
fn undeclared_and_malformed_references_are_plan_problems_with_lines() {
    let source = r#"[params]
repo = { default = "." }
"bad-name" = {}

[[tasks]]
id = "a"
capability = "c"
input = { x = "{{ params.ghost }}", y = ["in {{ params.ghost }}", "{{ params.repo-x }}"], z = "{{ params. }}" }
"#;
    let problems = problems(parse(source));
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "line 3: parameter \"bad-name\": not a parameter name: use letters, digits and _, not starting with a digit",
            "line 5: task \"a\": input references {{ params.ghost }}, which is not declared in [params]",
            "line 5: task \"a\": input has \"{{ params.repo-x }}\", which is not a parameter reference like {{ params.NAME }}",
            "line 5: task \"a\": input has \"{{ params. }}\", which is not a parameter reference like {{ params.NAME }}",
        ]
    );
}

#[test]
fn unknown_fields_of_a_declaration_are_refused() {
    let source =
        "[params]\nrepo = { defualt = \".\" }\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n";
    let error = parse(source).expect_err("typo");
    assert!(error.to_string().contains("defualt"), "{error}");
}

#[test]
fn json_plans_declare_params_too() {
    let source = r#"{
  "params": {
    "repo": {"default": "."},
    "n": {}
  },
  "tasks": [{"id": "a", "capability": "c", "input": {"repo": "{{ params.repo }}", "n": "{{ params.n }}"}}]
}"#;
    let plan = Plan::parse_with_params(
        source,
        PlanFormat::Json,
        &PlanLimits::default(),
        &values(&[("n", json!([1, 2]))]),
    )
    .expect("valid");
    assert_eq!(plan.tasks[0].input, json!({ "repo": ".", "n": [1, 2] }));
    assert_eq!(param_line(source, PlanFormat::Json, "n"), Some(4));
}

#[test]
fn other_double_braces_are_text() {
    assert_eq!(
        pieces("a {{ b }} {{params.x}}c"),
        [
            Piece::Text("a {{ b }} "),
            Piece::Reference("x"),
            Piece::Text("c")
        ]
    );
    assert_eq!(pieces("{{ params.x"), [Piece::Malformed("{{ params.x")]);
}

#[test]
fn assignments_parse_json_else_plain_text() {
    let parse = |s| ParamValues::parse_assignment(s).expect(s);
    assert_eq!(parse("n=3"), ("n".into(), json!(3)));
    assert_eq!(parse("flag=true"), ("flag".into(), json!(true)));
    assert_eq!(
        parse("list=[\"a\",\"b\"]"),
        ("list".into(), json!(["a", "b"]))
    );
    assert_eq!(parse("obj={\"a\":1}"), ("obj".into(), json!({ "a": 1 })));
    assert_eq!(parse("q=\"3\""), ("q".into(), json!("3")));
    assert_eq!(parse("repo=."), ("repo".into(), json!(".")));
    assert_eq!(parse("goal=find a=b"), ("goal".into(), json!("find a=b")));
    assert_eq!(parse("empty="), ("empty".into(), json!("")));
    for bad in ["novalue", "=3", "bad-name=1", "1x=2"] {
        let error = ParamValues::parse_assignment(bad).expect_err(bad);
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn a_values_file_is_one_object_and_later_values_win() {
    let mut file = ParamValues::from_json(r#"{"repo": "src", "n": 2}"#).expect("object");
    assert!(matches!(
        ParamValues::from_json("[1]"),
        Err(ValuesError::NotAnObject { found: "an array" })
    ));
    assert!(matches!(
        ParamValues::from_json("{"),
        Err(ValuesError::Json { .. })
    ));
    file.extend(values(&[("repo", json!("."))]));
    assert_eq!(file, values(&[("n", json!(2)), ("repo", json!("."))]));
}

#[test]
fn a_concrete_plan_serializes_like_a_plan_without_params() {
    let plan = parse(PARAMETERIZED).expect("valid");
    let concrete = plan
        .with_params(&values(&[("goal", json!("g"))]), &PlanLimits::default())
        .expect("fits");
    let encoded = serde_json::to_value(&concrete).expect("json");
    assert!(encoded.get("params").is_none(), "{encoded}");
    let declared = serde_json::to_value(&plan).expect("json");
    assert_eq!(
        declared["params"]["goal"],
        json!({ "description": "what to look for" })
    );
}
