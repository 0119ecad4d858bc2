//! The `workforce-worker` binary's configuration layering and refusals; no broker (every case
//! exits before connecting).

use std::process::{Command, Output};

fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workforce-worker"));
    command.args(args);
    // Isolate from the developer's own settings.
    for (key, _) in std::env::vars() {
        if key.starts_with("WORKFORCE_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run workforce-worker")
}

fn printed_config(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let out = worker(&all, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .expect("printed config is TOML")
}

#[test]
fn env_overrides_the_file_and_flags_override_env() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("worker.toml");
    std::fs::write(
        &file,
        "concurrency = 2\nprefix = \"from.file\"\nack_wait = \"10s\"\nstop_grace = \"20s\"\n\
         breaker_failures = 4\nbreaker_cooldown = \"5m\"\n\
         [capabilities.review]\ncommand = \"./review.sh\"\n",
    )
    .expect("write config");
    let path = file.to_str().expect("utf-8 path");

    let config = printed_config(
        &[
            "--config",
            path,
            "--concurrency",
            "9",
            "--breaker-failures",
            "3",
        ],
        &[
            ("WORKFORCE_BREAKER_FAILURES", "6"),
            ("WORKFORCE_BREAKER_COOLDOWN", "90s"),
            ("WORKFORCE_CONCURRENCY", "7"),
            ("WORKFORCE_PREFIX", "from.env"),
            ("WORKFORCE_GRACE_PERIOD", "1m 5s"),
            ("WORKFORCE_STOP_GRACE", "3s"),
            ("WORKFORCE_SERVE", "wc=wc -w"),
        ],
    );
    assert_eq!(
        config["concurrency"].as_integer(),
        Some(9),
        "flag beats env"
    );
    assert_eq!(
        config["prefix"].as_str(),
        Some("from.env"),
        "env beats file"
    );
    assert_eq!(
        config["ack_wait"].as_str(),
        Some("10s"),
        "file beats default"
    );
    assert_eq!(config["grace_period"].as_str(), Some("1m 5s"));
    assert_eq!(config["stop_grace"].as_str(), Some("3s"), "env beats file");
    assert_eq!(config["heartbeat_interval"].as_str(), Some("2s"), "default");
    assert_eq!(
        config["breaker_failures"].as_integer(),
        Some(3),
        "flag beats env"
    );
    assert_eq!(
        config["breaker_cooldown"].as_str(),
        Some("1m 30s"),
        "env beats file"
    );
    let capabilities = config["capabilities"].as_table().expect("capabilities");
    assert_eq!(
        capabilities["review"]["command"].as_str(),
        Some("./review.sh")
    );
    assert_eq!(capabilities["wc"]["command"].as_str(), Some("wc -w"));
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("worker.toml");
    std::fs::write(&file, "id = \"from-file\"\n").expect("write config");
    let path = file.to_str().expect("utf-8 path");
    let config = printed_config(&[], &[("WORKFORCE_CONFIG", path)]);
    assert_eq!(config["id"].as_str(), Some("from-file"));
    let config = printed_config(&["--id", "from-flag"], &[("WORKFORCE_CONFIG", path)]);
    assert_eq!(config["id"].as_str(), Some("from-flag"));
}

#[test]
fn refuses_to_start_without_capabilities() {
    // An unroutable address: if the check came after connecting, this would hang, not fail.
    let out = worker(&["--nats", "nats://127.0.0.1:1"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no capabilities to serve"), "{stderr}");
    assert!(stderr.contains("--serve"), "{stderr}");
}

#[test]
fn names_a_bad_capability() {
    let out = worker(&["--serve", "code.review=./review.sh"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("code.review"), "{stderr}");
    assert!(stderr.contains("contains '.'"), "{stderr}");
}

#[test]
fn help_documents_every_option_and_its_variable() {
    let out = worker(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, var) in [
        ("--config", "WORKFORCE_CONFIG"),
        ("--nats", "WORKFORCE_NATS_URL"),
        ("--prefix", "WORKFORCE_PREFIX"),
        ("--id", "WORKFORCE_WORKER_ID"),
        ("--concurrency", "WORKFORCE_CONCURRENCY"),
        ("--heartbeat-interval", "WORKFORCE_HEARTBEAT_INTERVAL"),
        ("--ack-wait", "WORKFORCE_ACK_WAIT"),
        ("--grace-period", "WORKFORCE_GRACE_PERIOD"),
        ("--stop-grace", "WORKFORCE_STOP_GRACE"),
        ("--max-message-bytes", "WORKFORCE_MAX_MESSAGE_BYTES"),
        ("--max-output-bytes", "WORKFORCE_MAX_OUTPUT_BYTES"),
        ("--max-deliveries", "WORKFORCE_MAX_DELIVERIES"),
        ("--breaker-failures", "WORKFORCE_BREAKER_FAILURES"),
        ("--breaker-cooldown", "WORKFORCE_BREAKER_COOLDOWN"),
        ("--workdir", "WORKFORCE_WORKDIR"),
        ("--serve", "WORKFORCE_SERVE"),
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        assert!(help.contains(var), "{var} missing from --help");
    }
}
