//! The `workforce` CLI's offline commands, run as a real process: no NATS needed.

use std::path::Path;
use std::process::Output;

use workforce_tests::harness::bin;

fn workforce(args: &[&str]) -> Output {
    std::process::Command::new(bin("workforce"))
        .args(args)
        .env_remove("WORKFORCE_NATS_URL")
        .output()
        .expect("run workforce")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write plan");
    path.display().to_string()
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plans")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn validate_accepts_the_example_plans() {
    for plan in [
        "code-review.toml",
        "roadmap.toml",
        "bug-investigation.toml",
        "research.toml",
    ] {
        let out = workforce(&["validate", &example(plan)]);
        assert!(out.status.success(), "{plan}: {}", text(&out));
        assert!(text(&out).contains("is valid"), "{}", text(&out));
    }
}

#[test]
fn validate_refuses_each_bad_plan_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "empty.toml",
            "name = \"nothing\"\n",
            "the plan has no tasks",
        ),
        (
            "dup.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n",
            "line 4: task \"a\": duplicate task id (first defined at line 1)",
        ),
        (
            "unknown.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"c\"\nneeds = [\"ghost\"]\n",
            "needs \"ghost\", which is not a task in this plan",
        ),
        (
            "cycle.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"c\"\nneeds = [\"b\"]\n[[tasks]]\nid = \"b\"\ncapability = \"c\"\nneeds = [\"a\"]\n",
            "dependency cycle: a -> b -> a",
        ),
        (
            "dot.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"a.b\"\n",
            "invalid capability \"a.b\": contains '.'",
        ),
        (
            "star.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"*\"\n",
            "invalid capability \"*\"",
        ),
        (
            "gt.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \">\"\n",
            "invalid capability \">\"",
        ),
        (
            "space.toml",
            "[[tasks]]\nid = \"a\"\ncapability = \"has space\"\n",
            "contains a space",
        ),
        (
            "big.json",
            "{\"tasks\": [{\"id\": \"a\", \"capability\": \"c\", \"input\": \"0123456789012345678901234567890123456789\"}]}",
            "over the limit of 16 bytes",
        ),
        (
            "syntax.toml",
            "[[tasks]\nid = \"a\"\n",
            "TOML syntax error at line 1",
        ),
    ];
    for (name, body, expected) in cases {
        let path = write(dir.path(), name, body);
        let out = workforce(&["validate", &path, "--max-input-bytes", "16"]);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            text(&out).contains(expected),
            "{name}: expected {expected:?} in {}",
            text(&out)
        );
    }
}

#[test]
fn simulate_gives_the_same_digest_for_the_same_seed() {
    let digest = |seed: &str| {
        let out = workforce(&[
            "simulate",
            &example("code-review.toml"),
            "--workers",
            "3",
            "--seed",
            seed,
            "--fail-rate",
            "0.3",
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["replay_identical"], serde_json::json!(true));
        report["digest"].as_str().expect("digest").to_owned()
    };
    let first = digest("11");
    assert_eq!(first.len(), 64);
    assert_eq!(first, digest("11"));
    assert_ne!(first, digest("12"));
}

#[test]
fn replay_checks_a_kept_simulation_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sim").display().to_string();
    let out = workforce(&[
        "simulate",
        &example("roadmap.toml"),
        "--seed",
        "5",
        "--data",
        &data,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = workforce(&["replay", "--data", &data]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("identical"), "{}", text(&out));
    let out = workforce(&[
        "replay",
        "--data",
        &dir.path().join("nothing").display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no event log"), "{}", text(&out));
}

const PARAMETERIZED: &str = r#"name = "p"

[params]
repo = { default = ".", description = "the repository" }
goal = { description = "what to look for" }

[[tasks]]
id = "a"
capability = "c"
input = { repo = "{{ params.repo }}", goal = "goal: {{ params.goal }}", n = "{{ params.goal }}" }
"#;

#[test]
fn validate_lists_the_parameters_and_checks_values_when_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "p.toml", PARAMETERIZED);

    let out = workforce(&["validate", &plan]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    assert!(
        listed.contains("PARAMETER  DEFAULT     DESCRIPTION"),
        "{listed}"
    );
    assert!(
        listed.contains("goal       (required)  what to look for"),
        "{listed}"
    );
    assert!(
        listed.contains("repo       \".\"         the repository"),
        "{listed}"
    );

    let out = workforce(&["validate", &plan, "--param", "repo=src"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("missing a value for the required parameter \"goal\""),
        "{}",
        text(&out)
    );

    let out = workforce(&["validate", &plan, "--param", "goal=x", "--param", "rpeo=1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unknown parameter \"rpeo\": the plan declares goal, repo"),
        "{}",
        text(&out)
    );

    let out = workforce(&["validate", &plan, "--param", "goal"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("\"goal\" is not NAME=VALUE"),
        "{}",
        text(&out)
    );

    // --param overrides the file; a JSON value keeps its type whole, and is text inside text.
    let values = write(
        dir.path(),
        "values.json",
        r#"{"goal": "from the file", "repo": "src"}"#,
    );
    let out = workforce(&[
        "validate",
        &plan,
        "--params",
        &values,
        "--param",
        "goal=[1,2]",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        report["plan"]["tasks"][0]["input"],
        serde_json::json!({ "repo": "src", "goal": "goal: [1,2]", "n": [1, 2] })
    );
    assert!(report["plan"].get("params").is_none(), "{report}");
}

#[test]
fn validate_refuses_a_reference_to_an_undeclared_parameter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "ghost.toml",
        "[[tasks]]\nid = \"a\"\ncapability = \"c\"\ninput = { x = \"{{ params.ghost }}\" }\n",
    );
    let out = workforce(&["validate", &plan]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "line 1: task \"a\": input references {{ params.ghost }}, which is not declared in [params]"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn submit_and_simulate_refuse_a_missing_value_before_any_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "p.toml", PARAMETERIZED);
    // Nothing listens on port 1: the refusal comes before any connection.
    let out = workforce(&["submit", &plan, "--nats", "nats://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("missing a value for the required parameter \"goal\""),
        "{}",
        text(&out)
    );
    for args in [&["--seed", "1"][..], &["--seeds", "1..3"]] {
        let mut all = vec!["simulate", plan.as_str()];
        all.extend_from_slice(args);
        let out = workforce(&all);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("\"goal\""), "{}", text(&out));
        all.extend_from_slice(&["--param", "goal=find it"]);
        let out = workforce(&all);
        assert!(out.status.success(), "{}", text(&out));
    }
}
