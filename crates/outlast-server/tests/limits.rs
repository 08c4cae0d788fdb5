//! Overload and abuse protection end to end: virtual keys (lifecycle, rates, concurrency,
//! models, budgets across restarts), the admission gate's priority classes, the per-address
//! limit on failing authentication, connection limits, and the usage ledger.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::*;
use outlast_config::Config;
use outlast_server::{AppState, Server};
use outlast_sim::{Faults, SimHandle};
use outlast_store::Db;
use outlast_store::usage::UsageRow;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const ADMIN: &str = "admin-key-for-tests-0123456789";

async fn gateway_with(config: Config, db: Db) -> Gateway {
    let state = AppState::new(config).unwrap();
    outlast_server::attach_store(&state, db).await.unwrap();
    let listener = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let server = Server::from_listener(listener, Arc::clone(&state));
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Gateway::from_parts(addr, state, tx, task)
}

fn cfg(sim: &SimHandle, extra: &str) -> Config {
    config(
        &[("a", sim)],
        &format!("[keys]\nadmin_key = \"{ADMIN}\"\n{extra}"),
    )
}

async fn create_key(client: &reqwest::Client, gw: &Gateway, spec: Value) -> (String, String) {
    let r = client
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["key"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

async fn chat(
    client: &reqwest::Client,
    gw: &Gateway,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn key_lifecycle_revocation_is_immediate_and_the_key_never_leaks() {
    let sim = sim("a").await;
    let gw = gateway_with(cfg(&sim, ""), Db::open_memory().await.unwrap()).await;
    let c = client();
    // Without the admin key: refused.
    let r = c.get(gw.url("/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (key, id) = create_key(&c, &gw, json!({"name": "app"})).await;
    assert!(key.starts_with("olk-"));
    let r = chat(&c, &gw, &key, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    // A wrong key is refused, and the error does not echo it.
    let wrong = format!("{key}x");
    let r = chat(&c, &gw, &wrong, &chat_body("chat")).await;
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains(&key));
    // Listing shows neither the key nor its hash.
    let list = c
        .get(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains(&id) && !list.contains(&key));
    assert!(!list.contains(&outlast_store::keys::hash_key(&key)));
    let r = c
        .delete(gw.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Refused at once, on the very next request.
    let r = chat(&c, &gw, &key, &chat_body("chat")).await;
    assert_eq!(r.status(), 401);
    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(&key) && !metrics.contains(&key[4..20]));
    assert!(metrics.contains("outlast_admission_limit"));
    // After a revoke the gateway does not fall open: no key at all is refused too.
    let r = post(&c, &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn requests_per_minute_give_429_with_openai_headers() {
    let sim = sim("a").await;
    let gw = gateway_with(cfg(&sim, ""), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (key, _) = create_key(&c, &gw, json!({"name": "app", "rpm": 2})).await;
    let r = chat(&c, &gw, &key, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
    assert_eq!(chat(&c, &gw, &key, &chat_body("chat")).await.status(), 200);
    let r = chat(&c, &gw, &key, &chat_body("chat")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(r.headers().contains_key("x-ratelimit-reset-requests"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
}

#[tokio::test]
async fn tokens_per_minute_count_the_estimate_and_models_are_enforced() {
    let sim = sim("a").await;
    let gw = gateway_with(cfg(&sim, ""), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (key, _) = create_key(
        &c,
        &gw,
        json!({"name": "app", "tpm": 1000, "models": ["chat"]}),
    )
    .await;
    let mut body = chat_body("chat");
    body["max_tokens"] = json!(5000);
    let r = chat(&c, &gw, &key, &body).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "tokens");
    body["max_tokens"] = json!(100);
    let r = chat(&c, &gw, &key, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "1000");
    let r = chat(&c, &gw, &key, &chat_body("a/gpt-4o-mini")).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
}

fn stalled_sim_faults() -> Faults {
    Faults {
        stall_after: Some(1),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_key_cannot_exceed_its_concurrent_requests() {
    let sim = sim_faults("a", stalled_sim_faults()).await;
    let gw = gateway_with(cfg(&sim, ""), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (key, _) = create_key(&c, &gw, json!({"name": "app", "max_concurrent": 1})).await;
    // A stream that stays open holds the key's one slot.
    let held = chat(&c, &gw, &key, &stream_body("chat")).await;
    assert_eq!(held.status(), 200);
    let r = chat(&c, &gw, &key, &chat_body("chat")).await;
    assert_eq!(r.status(), 429);
    drop(held);
}

#[tokio::test]
async fn critical_keys_are_served_while_sheddable_traffic_is_shed() {
    let sim = sim_faults("a", stalled_sim_faults()).await;
    // A fixed limit of 4: sheddable may fill 2 (60 %), default 3, critical all 4.
    let extra = "[admission]\nmin_concurrency = 4\nmax_concurrency = 4\nmax_wait = \"0s\"\n";
    let gw = gateway_with(cfg(&sim, extra), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (low, _) = create_key(&c, &gw, json!({"name": "batch", "priority": "sheddable"})).await;
    let (high, _) = create_key(&c, &gw, json!({"name": "pager", "priority": "critical"})).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = chat(&c, &gw, &low, &stream_body("chat")).await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let shed = chat(&c, &gw, &low, &stream_body("chat")).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["x-should-retry"], "false");
    assert_eq!(shed.headers()["retry-after"], "1");
    let v: Value = shed.json().await.unwrap();
    assert_eq!(v["error"]["code"], "at_capacity");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at capacity")
    );
    for _ in 0..2 {
        let r = chat(&c, &gw, &high, &stream_body("chat")).await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    // Full: even critical is shed now, and it is counted by class.
    assert_eq!(chat(&c, &gw, &high, &chat_body("chat")).await.status(), 503);
    let metrics = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("outlast_admission_shed_total{priority=\"sheddable\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("outlast_admission_shed_total{priority=\"critical\"} 1"));
    drop(held);
}

#[tokio::test]
async fn failing_authentication_is_rate_limited_per_address() {
    let sim = sim("a").await;
    let extra =
        "[auth]\napi_keys = [\"good-key\"]\n[edge]\nunauthenticated_per_ip_per_minute = 2\n";
    let gw = gateway(config(&[("a", &sim)], extra)).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(chat(&c, &gw, "bad", &chat_body("chat")).await.status(), 401);
    }
    let r = chat(&c, &gw, "bad", &chat_body("chat")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // A valid key from the same address is still served.
    assert_eq!(
        chat(&c, &gw, "good-key", &chat_body("chat")).await.status(),
        200
    );
}

#[tokio::test]
async fn connections_past_the_per_address_limit_are_closed_at_once() {
    let sim = sim("a").await;
    let gw = gateway(config(
        &[("a", &sim)],
        "[edge]\nmax_connections_per_ip = 2\n",
    ))
    .await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    // Both idle connections are accepted before the third is tried.
    let c = client();
    let mut third = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "the third connection must be closed without an answer"
    );
    drop(idle);
    // Once they close, connections are accepted again.
    let mut ok = false;
    for _ in 0..50 {
        if c.get(gw.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ok = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ok);
}

#[tokio::test]
async fn streams_are_billed_even_without_include_usage_which_stays_hidden() {
    let sim = sim("a").await;
    let dir = tempdir();
    let db = Db::open_sqlite(&dir).await.unwrap();
    let gw = gateway_with(cfg(&sim, ""), db.clone()).await;
    let c = client();
    let (key, id) = create_key(&c, &gw, json!({"name": "app"})).await;
    let mut body = stream_body("chat");
    body.as_object_mut().unwrap().remove("stream_options");
    let text = chat(&c, &gw, &key, &body).await.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(
            !v["choices"].as_array().unwrap().is_empty(),
            "usage chunk leaked: {d}"
        );
    }
    for _ in 0..4 {
        assert_eq!(chat(&c, &gw, &key, &chat_body("chat")).await.status(), 200);
    }
    gw.shutdown().await;
    // Graceful shutdown wrote every row, with tokens and cost.
    assert_eq!(db.usage_count().await.unwrap(), 5);
    let spend = db.spend_since(0).await.unwrap();
    assert_eq!(spend.len(), 1);
    assert_eq!(spend[0].0, id);
    assert!(spend[0].1 > 0.0);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "outlast-limits-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn a_one_dollar_budget_stops_at_one_dollar_across_restarts() {
    let sim = sim("a").await;
    let dir = tempdir();
    let db = Db::open_sqlite(&dir).await.unwrap();
    let gw = gateway_with(cfg(&sim, ""), db.clone()).await;
    let c = client();
    let (key, id) = create_key(&c, &gw, json!({"name": "app", "budget_daily_usd": 1.0})).await;
    // One request's cost, from the ledger after a restart-free run.
    assert_eq!(chat(&c, &gw, &key, &chat_body("chat")).await.status(), 200);
    gw.shutdown().await;
    let one = db.spend_since(0).await.unwrap()[0].1;
    assert!(one > 0.0);
    // Earlier spend brings the key to just under $1 minus two requests.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    db.insert_usage(&[UsageRow {
        ts_ms: now,
        key_id: Some(id.clone()),
        route: "chat".into(),
        target: Some("a/gpt-4o-mini".into()),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 1.0 - one - 1.5 * one,
        price_known: true,
        latency_ms: 1,
        status: 200,
        outcome: "ok".into(),
    }])
    .await
    .unwrap();
    // Restart: the spend is loaded from the ledger.
    let gw = gateway_with(cfg(&sim, ""), db.clone()).await;
    let mut served = 0;
    let mut refused = None;
    for _ in 0..10 {
        let r = chat(&c, &gw, &key, &chat_body("chat")).await;
        if r.status() == 200 {
            served += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    assert_eq!(served, 2);
    let r = refused.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    gw.shutdown().await;
    let spent = db.spend_since(0).await.unwrap()[0].1;
    assert!(spent >= 1.0 && spent < 1.0 + one + 1e-12, "{spent}");
    // And after another restart it is still refused.
    let gw = gateway_with(cfg(&sim, ""), db.clone()).await;
    assert_eq!(chat(&c, &gw, &key, &chat_body("chat")).await.status(), 429);
}

#[tokio::test]
async fn a_default_request_waits_for_a_slot_within_max_wait() {
    let sim = sim_faults("a", stalled_sim_faults()).await;
    // A limit of 2: the default class may hold 1, and waits up to 5 s for it.
    let extra = "[admission]\nmin_concurrency = 2\nmax_concurrency = 2\nmax_wait = \"5s\"\n";
    let gw = gateway_with(cfg(&sim, extra), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (key, _) = create_key(&c, &gw, json!({"name": "app"})).await;
    let held = chat(&c, &gw, &key, &stream_body("chat")).await;
    assert_eq!(held.status(), 200);
    let waiter = {
        let c = c.clone();
        let url = gw.url("/v1/chat/completions");
        let key = key.clone();
        tokio::spawn(async move {
            c.post(url)
                .bearer_auth(key)
                .json(&chat_body("chat"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Wait (bounded) until the request is queued at the gate, then release the held slot.
    let mut queued = false;
    for _ in 0..100_000 {
        if gw.state.protect.admission_queued() == 1 {
            queued = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(queued, "the second request should wait for a slot");
    drop(held);
    assert_eq!(waiter.await.unwrap(), 200);
}

#[tokio::test]
async fn limits_on_the_messages_api_answer_in_anthropic_shape() {
    let sim = sim("a").await;
    let gw = gateway_with(cfg(&sim, ""), Db::open_memory().await.unwrap()).await;
    let c = client();
    let (key, _) = create_key(&c, &gw, json!({"name": "claude-code", "rpm": 1})).await;
    let body =
        json!({"model": "chat", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let send = || {
        c.post(gw.url("/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let r = send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}
