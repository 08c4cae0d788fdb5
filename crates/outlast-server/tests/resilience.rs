//! Resilience through the whole gateway: breakers route away and back, cool-downs honour
//! Retry-After, the cascade guard sheds excess at once, and retries never multiply load.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use outlast_sim::Faults;
use serde_json::Value;

const FAST_BREAKER: &str = "[resilience]\nejection_base = \"300ms\"\nejection_max = \"300ms\"\n";

#[tokio::test]
async fn a_dead_primary_is_ejected_then_readmitted_after_probation() {
    let a = sim("a").await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], FAST_BREAKER)).await;
    let c = client();
    a.update(|f| f.down = true);
    for _ in 0..20 {
        let r = post(&c, &gw, &chat_body("chat")).await;
        assert_eq!(r.status(), 200);
    }
    // Five consecutive failures trip the breaker; after that the primary is not even tried.
    let before = gw.state.metrics.render();
    let r = post(&c, &gw, &chat_body("chat")).await;
    assert_eq!(
        header(&r, "x-outlast-attempts"),
        "1",
        "ejected primary is skipped"
    );
    assert_eq!(header(&r, "x-outlast-target"), "b/gpt-4o-mini");
    assert!(
        before.contains("outlast_upstream_failures_total 5"),
        "{before}"
    );

    // The primary recovers; after the ejection time one probe readmits it.
    a.update(|f| f.down = false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = post(&c, &gw, &chat_body("chat")).await;
        assert_eq!(r.status(), 200);
        if header(&r, "x-outlast-target") == "a/gpt-4o-mini" {
            break;
        }
        assert!(Instant::now() < deadline, "primary never readmitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(
            header(&post(&c, &gw, &chat_body("chat")).await, "x-outlast-target"),
            "a/gpt-4o-mini"
        );
    }
}

#[tokio::test]
async fn retry_after_cools_a_target_down_for_that_long() {
    let a = sim_faults(
        "a",
        Faults {
            error_rate: 1.0,
            error_status: 429,
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    let c = client();
    // Three refusals in a row: the provider's quota is gone, not just busy.
    for _ in 0..3 {
        let r = post(&c, &gw, &chat_body("chat")).await;
        assert_eq!(header(&r, "x-outlast-attempts"), "2");
    }
    let hits = a.stats().requests;
    // The simulator said retry-after: 1. Within that second the target is left alone.
    for _ in 0..10 {
        let r = post(&c, &gw, &chat_body("chat")).await;
        assert_eq!(header(&r, "x-outlast-attempts"), "1");
    }
    assert_eq!(
        a.stats().requests,
        hits,
        "no request reached a cooling-down target"
    );
}

#[tokio::test]
async fn when_every_target_is_at_capacity_the_excess_is_shed_at_once() {
    // One slow provider whose adaptive limit is held at 2 concurrent requests.
    let a = sim_faults(
        "a",
        Faults {
            latency: Duration::from_millis(800),
            ..Faults::default()
        },
    )
    .await;
    let extra = "[resilience]\ninitial_concurrency = 2\nmin_concurrency = 2\n";
    let mut cfg = config(&[("a", &a)], extra);
    cfg.providers[0].max_concurrency = Some(2);
    let gw = gateway(cfg).await;
    let c = client();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let (c, url) = (c.clone(), gw.url("/v1/chat/completions"));
                async move {
                    c.post(url)
                        .json(&chat_body("chat"))
                        .send()
                        .await
                        .unwrap()
                        .status()
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.stats().in_flight < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let r = post(&c, &gw, &chat_body("chat")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        header(&r, "x-should-retry"),
        "false",
        "SDKs must not retry a deliberate shed at once"
    );
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at capacity"),
        "{v}"
    );
    assert!(
        took < Duration::from_millis(50),
        "shed in {took:?}, not queued"
    );
    assert_eq!(
        a.stats().requests,
        2,
        "the shed request never reached the provider"
    );
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn a_brownout_does_not_multiply_upstream_requests() {
    // The primary fails 30 % of requests; the budget and the breaker keep upstream requests
    // per client request well under 1.3, and every client request is answered.
    let a = sim_faults(
        "a",
        Faults {
            error_rate: 0.3,
            error_status: 503,
            ..Faults::default()
        },
    )
    .await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    let c = client();
    let n = 200;
    for _ in 0..n {
        assert_eq!(post(&c, &gw, &chat_body("chat")).await.status(), 200);
    }
    let upstream = a.stats().requests + b.stats().requests;
    let ratio = upstream as f64 / f64::from(n);
    assert!(ratio <= 1.3, "amplification {ratio}");
}

#[tokio::test]
async fn the_retry_budget_stops_retries_when_spent() {
    // Every provider fails: without a budget each request would make 3 attempts.
    let a = sim_faults(
        "a",
        Faults {
            error_rate: 1.0,
            error_status: 500,
            ..Faults::default()
        },
    )
    .await;
    let b = sim_faults(
        "b",
        Faults {
            error_rate: 1.0,
            error_status: 500,
            ..Faults::default()
        },
    )
    .await;
    let extra = "[resilience]\nretry_budget_ratio = 0.1\nretry_budget_min_per_sec = 0.5\nbreaker_consecutive_failures = 1000\nbreaker_min_requests = 1000\n";
    let gw = gateway(config(&[("a", &a), ("b", &b)], extra)).await;
    let c = client();
    let n = 100;
    for _ in 0..n {
        assert_eq!(post(&c, &gw, &chat_body("chat")).await.status(), 503);
    }
    let upstream = a.stats().requests + b.stats().requests;
    // 100 first attempts, retries at most 10 % of them plus the floor of 5 in the window.
    assert!(
        upstream <= 100 + 10 + 5,
        "{upstream} upstream requests for {n}"
    );
    assert!(upstream > 100, "some retries were allowed");
    let m = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("outlast_retry_budget_exhausted_total 0"), "{m}");
}

#[tokio::test]
async fn panic_mode_spreads_load_when_every_target_is_ejected() {
    let a = sim_faults(
        "a",
        Faults {
            down: true,
            ..Faults::default()
        },
    )
    .await;
    let b = sim_faults(
        "b",
        Faults {
            down: true,
            ..Faults::default()
        },
    )
    .await;
    let extra = "[resilience]\nejection_base = \"30s\"\nejection_max = \"30s\"\n";
    let gw = gateway(config(&[("a", &a), ("b", &b)], extra)).await;
    let c = client();
    for _ in 0..10 {
        assert_eq!(post(&c, &gw, &chat_body("chat")).await.status(), 503);
    }
    // Both ejected for 30 s. The providers come back: panic mode still tries them.
    a.update(|f| f.down = false);
    b.update(|f| f.down = false);
    let r = post(&c, &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200, "all-ejected must not mean all-refused");
    let m = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("outlast_panic_mode_total 0"), "{m}");
}

#[tokio::test]
async fn equal_preference_targets_share_load() {
    let a = sim_faults(
        "a",
        Faults {
            latency: Duration::from_millis(5),
            ..Faults::default()
        },
    )
    .await;
    let b = sim_faults(
        "b",
        Faults {
            latency: Duration::from_millis(5),
            ..Faults::default()
        },
    )
    .await;
    let toml = format!(
        "[[providers]]\nname = \"a\"\nbase_url = \"{}\"\n[[providers]]\nname = \"b\"\nbase_url = \"{}\"\n[[routes]]\nmodel = \"chat\"\ntargets = [[\"a/m\", \"b/m\"]]\n",
        a.base_url(),
        b.base_url()
    );
    let gw = gateway(outlast_config::Config::from_toml(&toml, &|_| None).unwrap()).await;
    let c = client();
    let reqs: Vec<_> = (0..60)
        .map(|_| {
            let (c, url) = (c.clone(), gw.url("/v1/chat/completions"));
            tokio::spawn(async move {
                c.post(url)
                    .json(&chat_body("chat"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for r in reqs {
        assert_eq!(r.await.unwrap(), 200);
    }
    let (na, nb) = (a.stats().answered, b.stats().answered);
    assert_eq!(na + nb, 60);
    assert!(na >= 10 && nb >= 10, "both serve: a={na} b={nb}");
    // A slow member gets less.
    b.update(|f| f.latency = Duration::from_secs(1));
    let before_b = b.stats().requests;
    for _ in 0..20 {
        post(&c, &gw, &chat_body("chat")).await;
    }
    let to_b = b.stats().requests - before_b;
    assert!(to_b <= 5, "the slow member got {to_b} of 20");
}
