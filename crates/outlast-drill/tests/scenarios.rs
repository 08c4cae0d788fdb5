//! Scenario tests: short drills of each fault against the whole gateway, with the assertions
//! the resilience design promises.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_drill::{Report, RunOptions, Scenario, run};

/// Two providers, healthy at first; `events` describe the fault (TOML).
fn two_providers(name: &str, fallback_faults: &str, events: &str) -> Scenario {
    let text = format!(
        r#"
name = "{name}"
duration = "6s"
route = ["primary/m", "fallback/m"]
gateway = """
[resilience]
ejection_base = "500ms"
ejection_max = "1s"
[upstream]
first_byte_timeout = "400ms"
"""
[load]
clients = 12
think = "20ms"
stream_share = 0.3
[[providers]]
name = "primary"
faults = {{ latency = "20ms", first_token = "20ms", tokens_per_sec = 400.0, answer_tokens = 12 }}
[[providers]]
name = "fallback"
faults = {fallback_faults}
{events}
"#
    );
    Scenario::parse(&text).unwrap()
}

const HEALTHY: &str =
    r#"{ latency = "30ms", first_token = "30ms", tokens_per_sec = 400.0, answer_tokens = 12 }"#;

fn outage(faults: &str) -> String {
    format!(
        r#"
[[events]]
at = "1.5s"
phase = "fault"
provider = "primary"
faults = {faults}
[[events]]
at = "4s"
phase = "recovered"
provider = "primary"
faults = {{ down = false, error_rate = 0.0, first_token = "20ms", cut_after = 1000000 }}
"#
    )
}

/// Drills measure timing: run them one at a time, not in parallel on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn drill(s: &Scenario) -> Report {
    let report = run(s, &RunOptions::default()).await.unwrap();
    println!("{report}");
    report
}

/// The promises for a fault on the primary while a healthy fallback exists.
fn assert_unnoticed(r: &Report) {
    for p in &r.phases {
        assert!(
            p.requests > 20,
            "{}: too few requests to judge ({})",
            p.name,
            p.requests
        );
        assert_eq!(
            p.failed + p.shed,
            0,
            "{}: clients saw {} failures and {} sheds\n{r}",
            p.name,
            p.failed,
            p.shed
        );
    }
    let fault = r.phase("fault").unwrap();
    assert!(
        fault.amplification <= 1.3,
        "upstream requests per client request {:.2}\n{r}",
        fault.amplification
    );
    let back = r
        .returned
        .iter()
        .find(|(phase, _, _)| phase == "recovered")
        .and_then(|(_, _, t)| *t);
    // Probation: the longest ejection is 1 s here, plus the time to the next request.
    assert!(
        back.is_some_and(|t| t <= 1.5),
        "back on the primary after {back:?} s\n{r}"
    );
    let recovered = r.phase("recovered").unwrap();
    let primary = &recovered.providers[0];
    assert!(
        primary.answered * 3 > recovered.requests,
        "traffic returned to the primary\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_down_is_routed_away_within_a_second_and_unnoticed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let r = drill(&two_providers(
        "hard down",
        HEALTHY,
        &outage("{ down = true }"),
    ))
    .await;
    assert_unnoticed(&r);
    let away = r.route_away.first().and_then(|(_, _, t)| *t);
    assert!(
        away.is_some_and(|t| t <= 1.0),
        "route away after {away:?} s\n{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brownout_is_unnoticed_and_not_amplified() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let r = drill(&two_providers(
        "brownout",
        HEALTHY,
        &outage("{ error_rate = 0.3, error_status = 503 }"),
    ))
    .await;
    assert_unnoticed(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_unnoticed_and_not_amplified() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let r = drill(&two_providers(
        "429 storm",
        HEALTHY,
        &outage("{ error_rate = 1.0, error_status = 429 }"),
    ))
    .await;
    assert_unnoticed(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_is_unnoticed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let r = drill(&two_providers(
        "slow first token",
        HEALTHY,
        &outage("{ first_token = \"2s\" }"),
    ))
    .await;
    assert_unnoticed(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_mid_answer_are_resumed_within_the_retry_budget() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The primary cuts every stream after its first events (30 % of requests stream).
    let r = drill(&two_providers(
        "cut streams",
        HEALTHY,
        &outage("{ cut_after = 4 }"),
    ))
    .await;
    for p in &r.phases {
        assert_eq!(p.failed_non_stream + p.shed, 0, "{}\n{r}", p.name);
    }
    // A resumption is a retry, paid from the retry budget (10 % of recent requests): most
    // broken streams continue on the fallback, and the rest end with an error event.
    let fault = r.phase("fault").unwrap();
    assert!(
        (fault.failed as f64) < fault.requests as f64 * 0.3 / 2.0,
        "fewer than half of the broken streams may fail: {}\n{r}",
        fault.failed
    );
    assert!(fault.amplification <= 1.3, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_everything_is_saturated_the_excess_is_shed_fast_and_the_fallback_is_not_overrun() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The primary goes down; the fallback can take 6 concurrent requests; 30 clients want more.
    let mut s = two_providers(
        "saturated",
        r#"{ latency = "200ms", first_token = "200ms", tokens_per_sec = 400.0, answer_tokens = 12, capacity = 6 }"#,
        &outage("{ down = true }"),
    );
    s.load.clients = 30;
    let r = drill(&s).await;
    let fault = r.phase("fault").unwrap();
    assert!(fault.shed > 0, "the excess is shed\n{r}");
    assert!(
        fault.shed_max_ms < 50.0,
        "shed in {:.1} ms at worst\n{r}",
        fault.shed_max_ms
    );
    assert!(fault.answered > 0);
    let fallback = &fault.providers[1];
    // Not knowing the fallback's capacity, the guard learns it: the first failover burst is
    // bounded by the initial limit (32; 30 clients here, so at most 24 over a capacity of 6),
    // then the limit is capped to what the fallback holds and it probes one request past that
    // per interval (about 200 ms here).
    let intervals = (fault.end - fault.start).as_secs_f64() / 0.2;
    let bound = 24.0 + intervals;
    assert!(
        (fallback.rejected_capacity as f64) <= bound,
        "fallback refused {} requests, bound {bound:.0}\n{r}",
        fallback.rejected_capacity
    );
    assert!(fault.amplification <= 1.3, "{r}");

    // Without the guard, the same load overruns the fallback.
    let off = run(
        &s,
        &RunOptions {
            cascade_guard: Some(false),
            progress: false,
        },
    )
    .await
    .unwrap();
    println!("{off}");
    let off_fallback = &off.phase("fault").unwrap().providers[1];
    assert!(
        off_fallback.rejected_capacity > 10 * fallback.rejected_capacity,
        "the guard reduces what is pushed past capacity: {} with, {} without",
        fallback.rejected_capacity,
        off_fallback.rejected_capacity
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_with_known_capacity_is_never_pushed_past_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut s = two_providers(
        "saturated, capacity known",
        r#"{ latency = "200ms", first_token = "200ms", tokens_per_sec = 400.0, answer_tokens = 12, capacity = 6 }"#,
        &outage("{ down = true }"),
    );
    s.load.clients = 30;
    s.providers[1].max_concurrency = Some(6);
    let r = drill(&s).await;
    let fault = r.phase("fault").unwrap();
    assert_eq!(fault.providers[1].rejected_capacity, 0, "{r}");
    assert!(fault.providers[1].answered > 30, "{r}");
    assert!(fault.shed_max_ms < 50.0, "{r}");
}

#[test]
fn the_shipped_4_june_scenario_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scenarios/2024-06-04.toml"
    ))
    .unwrap();
    let s = Scenario::parse(&text).unwrap();
    let phases: Vec<String> = s.phases().into_iter().map(|(n, _)| n).collect();
    assert_eq!(phases.len(), 7, "{phases:?}");
    assert!(Scenario::parse("name = \"x\"\nduration = \"1s\"\nroute = [\"nope/m\"]\n[load]\nclients = 1\n[[providers]]\nname = \"p\"").is_err());
}
