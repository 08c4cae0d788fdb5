//! The simulator is the test double for everything else, so its wire format and faults are
//! tested against the reference shapes directly.

// Test crate: helpers panic on purpose, a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use outlast_sim::{Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

async fn start(faults: Faults) -> SimHandle {
    outlast_sim::start(
        LOCAL,
        SimConfig {
            faults,
            ..SimConfig::openai("s")
        },
    )
    .await
    .unwrap()
}

async fn post(sim: &SimHandle, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn stream_follows_openais_event_sequence() {
    let sim = start(Faults {
        answer_tokens: 3,
        ..Faults::default()
    })
    .await;
    let r = post(&sim, json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(r.headers().contains_key("x-ratelimit-remaining-requests"));
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let ev = events(&text);
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // role chunk, 3 tokens, finish chunk, usage chunk
    assert_eq!(chunks.len(), 6);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    for c in &chunks[..5] {
        assert!(
            c.get("usage").is_some_and(Value::is_null),
            "usage: null on every chunk with include_usage"
        );
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    // Without include_usage: no usage field at all and no usage chunk.
    let text = post(
        &sim,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!text.contains("usage"));
}

#[tokio::test]
async fn tool_calls_stream_with_id_and_name_only_first() {
    let sim = start(Faults::default()).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let text = post(&sim, json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}], "tools": tools, "stream": true})).await.text().await.unwrap();
    let ev = events(&text);
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert!(calls.len() >= 3);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert!(calls[0][0]["id"].as_str().unwrap().starts_with("call_"));
    assert!(
        calls[1..]
            .iter()
            .all(|c| c[0].get("id").is_none() && c[0]["function"].get("name").is_none())
    );
    let args: String = calls
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "sample"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    // A tool result gets a text answer.
    let v: Value = post(&sim, json!({"model": "m", "tools": tools, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]})).await.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn capacity_answers_429_with_retry_after_as_openai_does() {
    let sim = start(Faults {
        latency: Duration::from_millis(300),
        capacity: Some(1),
        ..Faults::default()
    })
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (a, b) = tokio::join!(post(&sim, body.clone()), async {
        // Wait until the first request holds the only slot.
        while sim.stats().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        post(&sim, body.clone()).await
    });
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 429);
    assert_eq!(b.headers()["retry-after"], "1");
    assert_eq!(b.headers()["x-ratelimit-remaining-requests"], "0");
    let v: Value = b.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(sim.stats().rejected_capacity, 1);
    assert_eq!(sim.stats().max_in_flight, 1);
}

#[tokio::test]
async fn hard_down_refuses_connections_and_comes_back() {
    let sim = start(Faults::default()).await;
    let url = format!("{}/chat/completions", sim.base_url());
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let client = reqwest::Client::new();
    assert_eq!(
        client.post(&url).json(&body).send().await.unwrap().status(),
        200
    );
    sim.update(|f| f.down = true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(sim.addr()).await {
            // Refused once the socket is closed; reset for a connect that raced into the backlog.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "still accepting while down"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Pooled keep-alive connections are dropped too.
    assert!(client.post(&url).json(&body).send().await.is_err());
    sim.update(|f| f.down = false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client.post(&url).json(&body).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "did not come back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn faults_change_over_the_control_api() {
    let sim = start(Faults::default()).await;
    let control = outlast_sim::start_control(LOCAL, &sim).await.unwrap();
    let c = reqwest::Client::new();
    let r = c
        .patch(format!("http://{control}/_sim/faults"))
        .body(r#"{"error_rate": 1.0, "error_status": 503}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        &sim,
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    let bad = c
        .patch(format!("http://{control}/_sim/faults"))
        .body(r#"{"eror_rate": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let stats: Value = c
        .get(format!("http://{control}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["injected_errors"], 1);
}

#[tokio::test]
async fn requests_are_validated_like_openai() {
    let sim = start(Faults {
        context_window: 10,
        ..Faults::default()
    })
    .await;
    let r = post(&sim, json!({"model": "m", "messages": []})).await;
    assert_eq!(r.status(), 400);
    let r = post(
        &sim,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(&sim, json!({"model": "m", "messages": [{"role": "user", "content": "a long prompt that is over ten tokens for sure, yes"}]})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", sim.base_url()))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors() {
    let sim = start(Faults::default()).await;
    let c = reqwest::Client::new();
    let url = format!("{}/embeddings", sim.base_url());
    let v: Value = c
        .post(&url)
        .json(&json!({"model": "e", "input": ["a", "a", "b"], "dimensions": 16}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let vecs: Vec<Vec<f64>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect();
    assert_eq!(vecs[0], vecs[1]);
    assert_ne!(vecs[0], vecs[2]);
    let norm: f64 = vecs[0].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
    let b: Value = c
        .post(&url)
        .json(&json!({"model": "e", "input": "a", "dimensions": 16, "encoding_format": "base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        b["data"][0]["embedding"].as_str().unwrap().len(),
        88,
        "16 f32 = 64 bytes = 88 base64 chars"
    );
}
