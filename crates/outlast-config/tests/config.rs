//! Configuration contract: the keys of DESIGN.md, interpolation, and errors that name the field.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use outlast_config::{Config, Protocol};

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-openai".into()),
        "DEEPSEEK_API_KEY" => Some("sk-deepseek".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text, &env).map_err(|e| e.to_string())
}

const FULL: &str = r#"
listen = "127.0.0.1:9090"
data_dir = "/tmp/outlast-test"

[server]
max_body_bytes = 1024
body_read_timeout = "2s"

[upstream]
first_byte_timeout = "1500ms"

[[providers]]
name = "openai"
protocol = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "${OPENAI_API_KEY}"

[[providers]]
name = "ds"
preset = "deepseek"
api_key = "${DEEPSEEK_API_KEY}"

[[providers]]
name = "local"
base_url = "http://127.0.0.1:11434/v1"

[[routes]]
model = "chat"
targets = ["openai/gpt-4o-mini", "ds/deepseek-chat", "local/meta/llama-3"]
"#;

#[test]
fn full_example_parses_into_checked_config() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.server.max_body_bytes, 1024);
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(2));
    assert_eq!(c.upstream.first_byte_timeout, Duration::from_millis(1500));
    assert_eq!(
        c.upstream.connect_timeout,
        Duration::from_secs(5),
        "default"
    );
    assert_eq!(
        c.providers[0].base_url, "https://api.openai.com/v1",
        "trailing slash trimmed"
    );
    assert_eq!(
        c.providers[0].api_key.as_ref().unwrap().expose(),
        "sk-openai"
    );
    assert_eq!(
        c.providers[1].base_url, "https://api.deepseek.com/v1",
        "from the preset"
    );
    assert_eq!(c.providers[1].protocol, Protocol::Openai);
    assert!(c.providers[1].models.contains(&"deepseek-chat".to_string()));
    assert!(c.providers[2].api_key.is_none());
    let targets = c.resolve("chat").unwrap();
    let labels: Vec<_> = targets.iter().map(|t| t.label()).collect();
    assert_eq!(
        labels,
        [
            "openai/gpt-4o-mini",
            "ds/deepseek-chat",
            "local/meta/llama-3"
        ]
    );
    // Direct targets: any model of a configured provider; model names may contain '/'.
    assert_eq!(c.resolve("local/org/model").unwrap()[0].model, "org/model");
    assert!(c.resolve("nobody/x").is_none());
    assert!(c.resolve("openai/").is_none());
    assert!(c.resolve("gpt-4o").is_none());
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("listen = 5", "listen"),
        ("listen = \"nowhere\"", "listen"),
        ("bogus = 1", "bogus"),
        ("[server]\nmax_body_byte = 1", "server.max_body_byte"),
        (
            "[upstream]\nconnect_timeout = \"soon\"",
            "upstream.connect_timeout",
        ),
        (
            "[upstream]\nconnect_timeout = \"0s\"",
            "upstream.connect_timeout",
        ),
        ("[[providers]]\nname = \"a\"", "providers[0].base_url"),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"ftp://x\"",
            "providers[0].base_url",
        ),
        (
            "[[providers]]\nname = \"a\"\npreset = \"nope\"",
            "providers[0].preset",
        ),
        (
            "[[providers]]\nname = \"a\"\nprotocol = \"grpc\"\nbase_url = \"http://x\"",
            "providers[0].protocol",
        ),
        (
            "[[providers]]\nname = \"a\"\npreset = \"groq\"\nprotocol = \"anthropic\"",
            "providers[0].protocol",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\napi_key = \"${MISSING_KEY}\"",
            "providers[0].api_key",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[providers]]\nname = \"a\"\nbase_url = \"http://y\"",
            "providers[1].name",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[routes]]\nmodel = \"m\"\ntargets = [\"b/x\"]",
            "routes[0].targets[0]",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[routes]]\nmodel = \"m\"\ntargets = [\"ax\"]",
            "routes[0].targets[0]",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[routes]]\nmodel = \"m\"\ntargets = []",
            "routes[0].targets",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[routes]]\nmodel = \"a/m\"\ntargets = [\"a/x\"]",
            "routes[0].model",
        ),
        (
            "[[routes]]\nmodel = \"m\"\ntargets = [\"a/x\"]\nextra = 1",
            "routes[0]",
        ),
        ("[auth]\napi_keys = [\"\"]", "auth.api_keys[0]"),
    ];
    for (text, field) in cases {
        let err = parse(text).expect_err(text);
        assert!(
            err.starts_with(field),
            "for {text:?}: expected field {field}, got {err}"
        );
    }
}

#[test]
fn secrets_do_not_leak_through_debug() {
    let c = parse(FULL).unwrap();
    let dump = format!("{c:?}");
    assert!(
        !dump.contains("sk-openai") && !dump.contains("sk-deepseek"),
        "{dump}"
    );
}

#[test]
fn from_env_builds_failover_routes() {
    assert!(Config::from_env(&|_| None, &|_| true).is_none());
    assert!(Config::from_env(&env, &|p| p != Protocol::Openai).is_none());
    let c = Config::from_env(&env, &|_| true).unwrap().unwrap();
    let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["openai", "deepseek"]);
    let default: Vec<_> = c
        .resolve("default")
        .unwrap()
        .iter()
        .map(|t| t.label())
        .collect();
    assert_eq!(default, ["openai/gpt-4o-mini", "deepseek/deepseek-chat"]);
    let mini: Vec<_> = c
        .resolve("gpt-4o-mini")
        .unwrap()
        .iter()
        .map(|t| t.label())
        .collect();
    assert_eq!(mini, ["openai/gpt-4o-mini", "deepseek/deepseek-chat"]);
    let ds: Vec<_> = c
        .resolve("deepseek-reasoner")
        .unwrap()
        .iter()
        .map(|t| t.label())
        .collect();
    assert_eq!(ds, ["deepseek/deepseek-reasoner", "openai/gpt-4o-mini"]);
}

#[test]
fn tiers_weights_and_resilience() {
    let c = parse(
        r#"
[resilience]
max_attempts = 2
ejection_base = "500ms"
cascade_guard = false
[[providers]]
name = "a"
base_url = "http://a"
max_concurrency = 40
[[providers]]
name = "b"
base_url = "http://b"
[[routes]]
model = "chat"
targets = ["a/x", ["b/y", { target = "a/z", weight = 3 }]]
"#,
    )
    .unwrap();
    assert_eq!(c.resilience.max_attempts, 2);
    assert_eq!(c.resilience.ejection_base, Duration::from_millis(500));
    assert!(!c.resilience.cascade_guard);
    assert_eq!(c.resilience.retry_budget_ratio, 0.2, "default");
    assert_eq!(c.providers[0].max_concurrency, Some(40));
    let t = c.resolve("chat").unwrap();
    let shape: Vec<(String, u32, u32)> = t.iter().map(|t| (t.label(), t.tier, t.weight)).collect();
    assert_eq!(
        shape,
        [
            ("a/x".into(), 0, 1),
            ("b/y".into(), 1, 1),
            ("a/z".into(), 1, 3)
        ]
    );

    for (text, field) in [
        ("[resilience]\nmax_attempts = 0", "resilience.max_attempts"),
        (
            "[resilience]\nbreaker_failure_rate = 1.5",
            "resilience.breaker_failure_rate",
        ),
        (
            "[resilience]\nejection_base = \"10s\"\nejection_max = \"1s\"",
            "resilience.ejection_max",
        ),
        ("[resilience]\nretries = 3", "resilience.retries"),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://a\"\nmax_concurrency = 0",
            "providers[0].max_concurrency",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://a\"\n[[routes]]\nmodel = \"m\"\ntargets = [[]]",
            "routes[0].targets[0]",
        ),
        (
            "[[providers]]\nname = \"a\"\nbase_url = \"http://a\"\n[[routes]]\nmodel = \"m\"\ntargets = [[{ target = \"a/x\", weight = 0 }]]",
            "routes[0].targets[0][0]",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            err.starts_with(field),
            "for {text:?}: expected {field}, got {err}"
        );
    }
}

#[test]
fn azure_and_mistral_dialects() {
    use outlast_config::Dialect;
    let c = parse("[[providers]]\nname = \"az\"\npreset = \"azure\"\nbase_url = \"https://r.openai.azure.com/openai\"\n[[providers]]\nname = \"mi\"\npreset = \"mistral\"\n[[providers]]\nname = \"az2\"\npreset = \"azure\"\nbase_url = \"https://s.openai.azure.com/openai\"\napi_version = \"2025-01-01-preview\"").unwrap();
    assert_eq!(
        c.providers[0].dialect,
        Dialect::Azure {
            api_version: "2024-10-21".into()
        }
    );
    assert_eq!(c.providers[1].dialect, Dialect::Mistral);
    assert_eq!(
        c.providers[2].dialect,
        Dialect::Azure {
            api_version: "2025-01-01-preview".into()
        }
    );
    let err = parse("[[providers]]\nname = \"az\"\npreset = \"azure\"").unwrap_err();
    assert!(err.starts_with("providers[0].base_url"), "{err}");
    let err = parse("[[providers]]\nname = \"x\"\nbase_url = \"http://x\"\napi_version = \"1\"")
        .unwrap_err();
    assert!(err.starts_with("providers[0].api_version"), "{err}");
}

#[test]
fn status_section_defaults_and_checks() {
    let base = "[[providers]]\nname = \"openai\"\nprotocol = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"openai/gpt-4o-mini\"]\n";
    let c = parse(base).unwrap();
    assert_eq!(c.status, outlast_config::StatusSettings::default());
    assert_eq!(c.status.fault_rate, 0.5);

    let c = parse(&format!(
        "{base}[status]\ntitle = \"Acme AI\"\nwebhooks = [\"http://127.0.0.1:9/hook\"]\nfault_rate = 0.25\nmin_requests = 2\nwindow = \"10s\"\nbreaker_open_for = \"2s\"\nresolve_after = \"3s\"\ninterval = \"200ms\"\n"
    ))
    .unwrap();
    assert_eq!(c.status.title, "Acme AI");
    assert_eq!(
        c.status.webhooks,
        vec!["http://127.0.0.1:9/hook".to_owned()]
    );
    assert_eq!(c.status.min_requests, 2);
    assert_eq!(c.status.window, std::time::Duration::from_secs(10));
    assert_eq!(c.status.interval, std::time::Duration::from_millis(200));

    let e = parse(&format!("{base}[status]\nfault_rate = 1.5\n")).unwrap_err();
    assert!(e.starts_with("status.fault_rate"), "{e}");
    let e = parse(&format!("{base}[status]\nwebhooks = [\"ftp://x\"]\n")).unwrap_err();
    assert!(e.starts_with("status.webhooks[0]"), "{e}");
    let e = parse(&format!("{base}[status]\nwindow = \"0s\"\n")).unwrap_err();
    assert!(e.starts_with("status.window"), "{e}");
    let e = parse(&format!("{base}[status]\ncolour = \"red\"\n")).unwrap_err();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn protection_sections_have_safe_defaults_and_checked_values() {
    let c = parse("").unwrap();
    assert_eq!(c.edge.max_connections, 10_000);
    assert_eq!(c.edge.max_connections_per_ip, 256);
    assert_eq!(c.edge.max_h2_streams, 100);
    assert_eq!(c.edge.unauthenticated_per_ip_per_minute, 60);
    assert!(c.admission.enabled);
    assert_eq!(c.admission.max_wait, Duration::from_millis(100));
    assert!(c.keys.admin_key.is_none());
    assert_eq!(c.usage.batch_size, 256);

    let c = parse(
        "[edge]\nmax_connections = 50\nmax_connections_per_ip = 5\n\
         [admission]\nmin_concurrency = 4\nmax_concurrency = 8\ninitial_concurrency = 100\nmax_wait = \"20ms\"\n\
         [keys]\nadmin_key = \"0123456789abcdef-admin\"\nrefresh_interval = \"1s\"\n\
         [usage]\nbatch_size = 10\nflush_interval = \"50ms\"\n",
    )
    .unwrap();
    assert_eq!(c.edge.max_connections, 50);
    // The initial limit is clamped into [min, max].
    assert_eq!(c.admission.initial_concurrency, 8);
    assert_eq!(c.admission.max_wait, Duration::from_millis(20));
    assert!(!format!("{:?}", c.keys).contains("0123456789abcdef"));
    assert_eq!(c.usage.flush_interval, Duration::from_millis(50));

    for (text, field) in [
        ("[edge]\nmax_connections = 0", "edge.max_connections"),
        ("[edge]\nmax_conns = 1", "edge.max_conns"),
        (
            "[admission]\nmin_concurrency = 9\nmax_concurrency = 8",
            "admission.max_concurrency",
        ),
        ("[keys]\nadmin_key = \"short\"", "keys.admin_key"),
        ("[usage]\nbatch_size = 0", "usage.batch_size"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.starts_with(field), "{text}: {e}");
    }
}
