//! Chat completions through the gateway: pass-through fidelity, streaming, models, embeddings.

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
use serde_json::{Value, json};

#[tokio::test]
async fn non_streaming_answer_passes_through_with_target_headers() {
    let a = sim("a").await;
    let b = sim("b").await;
    let gw = gateway(config(&[("a", &a), ("b", &b)], "")).await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "a/gpt-4o-mini");
    assert_eq!(header(&r, "x-outlast-attempts"), "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["model"], "gpt-4o-mini",
        "the upstream model name, as the provider reported it"
    );
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("[a]")
    );
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(b.stats().requests, 0);
}

#[tokio::test]
async fn every_request_field_reaches_the_provider_unchanged() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let body = json!({
        "model": "chat",
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
        ],
        "tools": [{"type": "function", "function": {"name": "look", "description": "Look.", "parameters": {"type": "object", "properties": {}}, "strict": true}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
        "n": 2, "seed": 42, "temperature": 0.5, "top_p": 0.9, "max_completion_tokens": 50,
        "logit_bias": {"50256": -100}, "user": "u-1", "metadata": {"k": "v"},
        "a_field_from_the_future": {"nested": [1, 2, 3]}
    });
    let r = post(&client(), &gw, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"].as_array().unwrap().len(),
        2,
        "n reached the provider"
    );
    let mut expected = body.clone();
    expected["model"] = json!("gpt-4o-mini");
    assert_eq!(a.last_request().unwrap(), expected);
}

#[tokio::test]
async fn streaming_relays_every_chunk_and_one_usage_chunk() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let r = post(&client(), &gw, &stream_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    assert_eq!(header(&r, "x-outlast-target"), "a/gpt-4o-mini");
    let text = r.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        content.starts_with("[a]") && content.len() > 20,
        "{content}"
    );
    let usage: Vec<&Value> = chunks.iter().filter(|c| c["usage"].is_object()).collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn streaming_is_not_buffered() {
    // 300 ms to the first token, then 5 tokens at 5 per second: the whole answer takes about
    // 1.1 s upstream. If the gateway buffered, the first chunk would arrive with the last.
    let a = sim_faults(
        "a",
        Faults {
            first_token: Duration::from_millis(300),
            tokens_per_sec: 5.0,
            answer_tokens: 5,
            ..Faults::default()
        },
    )
    .await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let started = Instant::now();
    let mut r = post(&client(), &gw, &stream_body("chat")).await;
    let mut first_content = None;
    let mut body = String::new();
    while let Some(bytes) = r.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&bytes).unwrap());
        if first_content.is_none() && body.contains("\"content\":\"[a]\"") {
            first_content = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_content.expect("saw the first token");
    assert!(
        total >= Duration::from_millis(1000),
        "upstream pacing: {total:?}"
    );
    assert!(
        total - first >= Duration::from_millis(500),
        "first token at {first:?}, end at {total:?}: the stream was buffered"
    );
}

#[tokio::test]
async fn direct_targets_and_model_listing() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let c = client();
    let r = post(&c, &gw, &chat_body("a/some-other-model")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "a/some-other-model");
    assert_eq!(a.last_request().unwrap()["model"], "some-other-model");

    let v: Value = c
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(v["object"], "list");
    assert!(
        ids.contains(&"chat") && ids.contains(&"a/gpt-4o-mini"),
        "{ids:?}"
    );
    let one = c
        .get(gw.url("/v1/models/a/gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let missing = c.get(gw.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn embeddings_pass_through() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let r = client()
        .post(gw.url("/v1/embeddings"))
        .json(
            &json!({"model": "a/text-embedding-3-small", "input": ["one", "two"], "dimensions": 8}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "a/text-embedding-3-small");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 8);
    let bad = client()
        .post(gw.url("/v1/embeddings"))
        .json(&json!({"model": "chat", "input": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let a = sim("a").await;
    let gw = gateway(config(&[("a", &a)], "")).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(c.get(gw.url("/readyz")).send().await.unwrap().status(), 200);
    post(&c, &gw, &chat_body("chat")).await;
    let m = c
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("outlast_requests_total 1"), "{m}");
    assert!(m.contains("outlast_upstream_attempts_total 1"), "{m}");
}

#[tokio::test]
async fn azure_deployments_api_version_and_api_key_header() {
    let az = sim_with(outlast_sim::SimConfig {
        api_key: Some("az-key-1".into()),
        ..outlast_sim::SimConfig::openai("az")
    })
    .await;
    let toml = format!(
        "[[providers]]\nname = \"azure\"\npreset = \"azure\"\nbase_url = \"http://{}/openai\"\napi_key = \"az-key-1\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"azure/my-gpt4o\"]\n",
        az.addr()
    );
    let gw = gateway(outlast_config::Config::from_toml(&toml, &|_| None).unwrap()).await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["prompt_filter_results"].is_array(),
        "Azure's own fields pass through: {v}"
    );
    assert_eq!(az.last_request().unwrap()["model"], "my-gpt4o");
    // A stream opening with Azure's choices-less filter chunk relays and ends cleanly.
    let text = post(&client(), &gw, &stream_body("chat"))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_data(&text);
    assert!(events[0].contains("prompt_filter_results"), "{text}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let content: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(content.starts_with("[az]"), "{content}");
}

#[tokio::test]
async fn mistral_gets_nine_character_tool_call_ids_and_random_seed() {
    let m = sim("m").await;
    let toml = format!(
        "[[providers]]\nname = \"mistral\"\npreset = \"mistral\"\nbase_url = \"{}\"\n[[routes]]\nmodel = \"chat\"\ntargets = [\"mistral/mistral-small-latest\"]\n",
        m.base_url()
    );
    let gw = gateway(outlast_config::Config::from_toml(&toml, &|_| None).unwrap()).await;
    let body = json!({"model": "chat", "seed": 3, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_Zx81Yh2kPqTL0vMN", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_Zx81Yh2kPqTL0vMN", "content": "sunny"}
    ]});
    assert_eq!(post(&client(), &gw, &body).await.status(), 200);
    let sent = m.last_request().unwrap();
    let id = sent["messages"][1]["tool_calls"][0]["id"].as_str().unwrap();
    assert!(
        id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(sent["messages"][2]["tool_call_id"], id);
    assert_eq!(sent["random_seed"], 3);
    assert!(sent.get("seed").is_none());
}
