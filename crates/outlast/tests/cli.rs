//! The command-line contract: check, serve without configuration, and the demo.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

fn outlast() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outlast"));
    for var in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "PERPLEXITY_API_KEY",
        "DEEPSEEK_API_KEY",
        "OUTLAST_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn check_accepts_a_good_file_and_names_the_field_in_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("outlast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[[providers]]\nname = \"local\"\npreset = \"ollama\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"local/llama3.2\"]\n").unwrap();
    let out = outlast()
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[providers]]\nname = \"local\"\npreset = \"ollama\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"lokal/llama3.2\"]\n").unwrap();
    let out = outlast()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routes[0].targets[0]") && err.contains("lokal"),
        "{err}"
    );

    let missing = outlast()
        .args(["check", "--config"])
        .arg(dir.join("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_without_config_or_keys_says_what_to_do() {
    let out = outlast().arg("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OPENAI_API_KEY") && err.contains("outlast demo"),
        "{err}"
    );
}

#[test]
fn demo_runs_without_keys_and_reports_what_clients_saw() {
    let out = outlast()
        .args([
            "demo",
            "--duration",
            "4s",
            "--clients",
            "4",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("is now HARD DOWN") && text.contains("is back UP"),
        "{text}"
    );
    assert!(text.contains("What the clients saw"), "{text}");
    // Requests failed over while the primary was down. The only errors allowed are streams that
    // were mid-answer on the primary at the instant it went down (resuming those on another
    // target is not built yet): before the outage and after recovery everything is answered.
    let summary = text
        .lines()
        .find(|l| l.contains("requests answered ("))
        .expect(&text);
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (answered, total, failed_over) = (numbers[0], numbers[1], numbers[4]);
    assert!(total > 0 && failed_over > 0, "{summary}");
    assert!(
        total - answered <= 4,
        "at most one error per client, at the moment of the outage: {summary}"
    );
    for phase in ["before the outage", "after recovery"] {
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with(phase))
            .expect(phase);
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 3], "0", "no errors {phase}: {row}");
    }
}

#[test]
fn keys_are_created_once_listed_without_secrets_and_revoked() {
    let dir = std::env::temp_dir().join(format!("outlast-cli-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        outlast()
            .arg("keys")
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "create",
        "--name",
        "ci",
        "--priority",
        "critical",
        "--rpm",
        "60",
        "--budget-daily",
        "1",
        "--models",
        "chat,a/b",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("olk-") && key.len() == 68, "{key}");
    let list = String::from_utf8(run(&["list"]).stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(v["priority"], "critical");
    assert_eq!(v["models"], serde_json::json!(["chat", "a/b"]));
    assert!(!list.contains(&key));
    let id = v["id"].as_str().unwrap().to_string();
    assert!(run(&["revoke", &id]).status.success());
    assert!(!run(&["revoke", &id]).status.success());
    let bad = run(&["create", "--name", "x", "--priority", "urgent"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("priority"));
    std::fs::remove_dir_all(&dir).unwrap();
}
