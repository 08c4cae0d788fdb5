//! Cross-protocol gateway tests: OpenAI clients answered by Anthropic and Gemini simulators,
//! streams translated, tool-call round trips validated by the simulators, and failover across
//! protocols on each provider's own fault signals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use outlast_config::Config;
use outlast_sim::{Faults, SimConfig, SimHandle, SimProtocol};
use serde_json::{Value, json};

fn model_for(p: SimProtocol) -> &'static str {
    match p {
        SimProtocol::Openai => "gpt-4o-mini",
        SimProtocol::Anthropic => "claude-3-5-haiku-latest",
        SimProtocol::Gemini => "gemini-2.0-flash",
    }
}

fn proto(p: SimProtocol) -> &'static str {
    match p {
        SimProtocol::Openai => "openai",
        SimProtocol::Anthropic => "anthropic",
        SimProtocol::Gemini => "gemini",
    }
}

/// Providers named after the sims, a route "chat" over them in order.
fn config_for(sims: &[(&str, &SimHandle)], keys: &[Option<&str>]) -> Config {
    let mut toml = String::from(
        "[upstream]\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nrequest_timeout = \"10s\"\nstream_stall_timeout = \"3s\"\n",
    );
    let mut targets = Vec::new();
    for (i, (name, sim)) in sims.iter().enumerate() {
        let p = sim.protocol();
        toml.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nprotocol = \"{}\"\nbase_url = \"{}\"\n",
            proto(p),
            sim.base_url()
        ));
        if let Some(Some(k)) = keys.get(i) {
            toml.push_str(&format!("api_key = \"{k}\"\n"));
        }
        targets.push(format!("\"{name}/{}\"", model_for(p)));
    }
    toml.push_str(&format!(
        "\n[[routes]]\nmodel = \"chat\"\ntargets = [{}]\n",
        targets.join(", ")
    ));
    Config::from_toml(&toml, &|_| None).unwrap()
}

async fn one(p: SimProtocol, faults: Faults) -> (SimHandle, Gateway) {
    let sim = sim_with(SimConfig {
        faults,
        ..SimConfig::new(p, "native")
    })
    .await;
    let gw = gateway(config_for(&[("native", &sim)], &[])).await;
    (sim, gw)
}

const NATIVE: [SimProtocol; 2] = [SimProtocol::Anthropic, SimProtocol::Gemini];

#[tokio::test]
async fn chat_completion_through_each_native_protocol() {
    for p in NATIVE {
        let (_sim, gw) = one(p, Faults::default()).await;
        let r = post(
            &client(),
            &gw,
            &json!({"model": "chat", "messages": [
            {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}]}),
        )
        .await;
        assert_eq!(r.status(), 200, "{p:?}");
        assert_eq!(
            header(&r, "x-outlast-target").split('/').next(),
            Some("native")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{p:?}");
        assert!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .starts_with("[native]")
        );
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
    }
}

#[tokio::test]
async fn streams_translate_with_exactly_one_usage_chunk_after_finish() {
    for p in NATIVE {
        let (_sim, gw) = one(p, Faults::default()).await;
        let r = post(&client(), &gw, &stream_body("chat")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let data = sse_data(&text);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{p:?}");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let usage: Vec<usize> = chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c["usage"].is_object())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(usage, vec![chunks.len() - 1], "{p:?}");
        assert_eq!(chunks[chunks.len() - 1]["choices"], json!([]));
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(content.starts_with("[native]"), "{p:?}: {content}");
        let ids: std::collections::HashSet<&str> =
            chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 1);
    }
}

#[tokio::test]
async fn tool_call_round_trip_is_accepted_by_each_providers_validators() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "additionalProperties": false, "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    for p in NATIVE {
        let (sim, gw) = one(p, Faults::default()).await;
        let c = client();
        let first = json!({"model": "chat", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": tools});
        let v: Value = post(&c, &gw, &first).await.json().await.unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{p:?}: {v}");
        let call = v["choices"][0]["message"]["tool_calls"][0].clone();
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "sample"}));
        let second = json!({"model": "chat", "tools": tools, "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call.clone()]},
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 18}"}]});
        let r = post(&c, &gw, &second).await;
        assert_eq!(r.status(), 200, "{p:?}: {}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let sent = sim.last_request().unwrap();
        match p {
            SimProtocol::Anthropic => {
                assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result")
            }
            _ => assert_eq!(
                sent["contents"][2]["parts"][0]["functionResponse"]["name"],
                "get_weather"
            ),
        }
        // Streaming: whole tool call with index 0 and finish_reason tool_calls.
        let mut s = first.clone();
        s["stream"] = json!(true);
        let text = post(&c, &gw, &s).await.text().await.unwrap();
        let chunks: Vec<Value> = sse_data(&text)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "sample"}),
            "{p:?}"
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
        );
    }
}

#[tokio::test]
async fn failover_across_protocols_openai_down_anthropic_overloaded_gemini_answers() {
    let openai = sim_faults(
        "openai",
        Faults {
            down: true,
            ..Faults::default()
        },
    )
    .await;
    let anthropic = sim_with(SimConfig {
        faults: Faults {
            error_rate: 1.0,
            error_status: 529,
            ..Faults::default()
        },
        ..SimConfig::anthropic("claude")
    })
    .await;
    let gemini = sim_with(SimConfig::gemini("gem")).await;
    let gw = gateway(config_for(
        &[
            ("openai", &openai),
            ("anthropic", &anthropic),
            ("gemini", &gemini),
        ],
        &[],
    ))
    .await;
    let c = client();
    let r = post(&c, &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "gemini/gemini-2.0-flash");
    assert_eq!(header(&r, "x-outlast-attempts"), "3");
    let r = post(&c, &gw, &stream_body("chat")).await;
    assert_eq!(header(&r, "x-outlast-target"), "gemini/gemini-2.0-flash");
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // Capacity: Anthropic answers 529, Gemini 429 RESOURCE_EXHAUSTED with RetryInfo.
    anthropic.update(|f| {
        f.error_rate = 0.0;
        f.capacity = Some(0);
    });
    gemini.update(|f| f.capacity = Some(0));
    let r = post(&c, &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(anthropic.stats().rejected_capacity, 1);
    assert_eq!(gemini.stats().rejected_capacity, 1);
}

#[tokio::test]
async fn bad_keys_fail_over_on_both_protocols() {
    let anthropic = sim_with(SimConfig {
        api_key: Some("right".into()),
        ..SimConfig::anthropic("a")
    })
    .await;
    let gemini = sim_with(SimConfig {
        api_key: Some("right".into()),
        ..SimConfig::gemini("g")
    })
    .await;
    let good = sim("good").await;
    let gw = gateway(config_for(
        &[
            ("anthropic", &anthropic),
            ("gemini", &gemini),
            ("good", &good),
        ],
        &[Some("wrong"), Some("wrong")],
    ))
    .await;
    let r = post(&client(), &gw, &chat_body("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "good/gpt-4o-mini");
    let gw = gateway(config_for(
        &[("anthropic", &anthropic), ("gemini", &gemini)],
        &[Some("right"), Some("right")],
    ))
    .await;
    assert_eq!(post(&client(), &gw, &chat_body("chat")).await.status(), 200);
}

#[tokio::test]
async fn what_one_protocol_cannot_express_fails_over_to_one_that_can() {
    let anthropic = sim_with(SimConfig::anthropic("a")).await;
    let gemini = sim_with(SimConfig::gemini("g")).await;
    let gw = gateway(config_for(
        &[("anthropic", &anthropic), ("gemini", &gemini)],
        &[],
    ))
    .await;
    let mut body = chat_body("chat");
    body["n"] = json!(2);
    let r = post(&client(), &gw, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-outlast-target"), "gemini/gemini-2.0-flash");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert_eq!(
        anthropic.stats().requests,
        0,
        "nothing was sent to Anthropic"
    );
}

#[tokio::test]
async fn caller_faults_from_native_providers_come_back_openai_shaped() {
    let (_sim, gw) = one(
        SimProtocol::Anthropic,
        Faults {
            context_window: 5,
            ..Faults::default()
        },
    )
    .await;
    let r = post(&client(), &gw, &json!({"model": "chat", "messages": [{"role": "user", "content": "a long enough prompt to be too long"}]})).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt is too long")
    );
}

#[tokio::test]
async fn errors_inside_native_streams_end_the_stream_without_done() {
    for p in NATIVE {
        let (_sim, gw) = one(
            p,
            Faults {
                error_after: Some(3),
                ..Faults::default()
            },
        )
        .await;
        let r = post(&client(), &gw, &stream_body("chat")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(!text.contains("[DONE]"), "{p:?}");
        let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
        assert!(
            last["error"]["message"]
                .as_str()
                .unwrap()
                .contains("mid-stream"),
            "{p:?}: {last}"
        );
    }
    // Before the first event reached the client, the same error fails over.
    let anthropic = sim_with(SimConfig {
        faults: Faults {
            error_after: Some(0),
            ..Faults::default()
        },
        ..SimConfig::anthropic("a")
    })
    .await;
    let gemini = sim_with(SimConfig::gemini("g")).await;
    let gw = gateway(config_for(
        &[("anthropic", &anthropic), ("gemini", &gemini)],
        &[],
    ))
    .await;
    let r = post(&client(), &gw, &stream_body("chat")).await;
    assert_eq!(header(&r, "x-outlast-target"), "gemini/gemini-2.0-flash");
}

#[tokio::test]
async fn gemini_prompt_block_and_thinking_tokens() {
    let (_sim, gw) = one(SimProtocol::Gemini, Faults::default()).await;
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": format!("say {}", outlast_sim::GEMINI_BLOCK_MARKER)}]});
    let v: Value = post(&client(), &gw, &body).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let body = json!({"model": "chat", "messages": [{"role": "user", "content": "think"}], "max_tokens": 5});
    let v: Value = post(&client(), &gw, &body).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn inbound_messages_api_routed_to_openai_and_gemini_targets() {
    for p in [SimProtocol::Openai, SimProtocol::Gemini] {
        let (_sim, gw) = one(p, Faults::default()).await;
        let c = client();
        let body = json!({"model": "chat", "max_tokens": 64, "system": "Be terse.",
            "messages": [{"role": "user", "content": "Hello"}]});
        let r = c
            .post(gw.url("/v1/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "end_turn", "{p:?}");
        assert!(
            v["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("[native]")
        );
        let mut s = body.clone();
        s["stream"] = json!(true);
        let text = c
            .post(gw.url("/v1/messages"))
            .json(&s)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(
            &names[names.len() - 3..],
            &["content_block_stop", "message_delta", "message_stop"],
            "{p:?}"
        );
        // Tools: a tool_use answer, then the tool_result turn.
        let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
        let t = json!({"model": "chat", "max_tokens": 64, "tools": tools, "messages": [{"role": "user", "content": "Weather?"}]});
        let v: Value = c
            .post(gw.url("/v1/messages"))
            .json(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["stop_reason"], "tool_use", "{p:?}: {v}");
        let tu = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap()
            .clone();
        assert_eq!(tu["input"], json!({"city": "sample"}));
        let t2 = json!({"model": "chat", "max_tokens": 64, "tools": tools, "messages": [
            {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": [tu.clone()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu["id"], "content": "18C"}]}]});
        let r = c
            .post(gw.url("/v1/messages"))
            .json(&t2)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{p:?}");
    }
    // Errors use Anthropic's body.
    let (_sim, gw) = one(SimProtocol::Openai, Faults::default()).await;
    let r = client().post(gw.url("/v1/messages")).json(&json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    let r = client()
        .post(gw.url("/v1/messages"))
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
