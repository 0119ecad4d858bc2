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
    for plan in ["code-review.toml", "roadmap.toml"] {
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
