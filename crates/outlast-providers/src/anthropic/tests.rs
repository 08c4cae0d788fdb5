//! Golden tests: one per translation point of reference §2 (request, response, stream, errors).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_core::{ChatRequest, UpstreamErrorKind};
use serde_json::{Value, json};

use super::convert::{to_native, to_openai};
use super::stream::AnthropicTranslator;
use super::wire::MessageResponse;
use crate::StreamItem;
use crate::translate::Translate;

fn req(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn native(v: Value) -> Value {
    serde_json::to_value(to_native(&req(v), "a/m").unwrap()).unwrap()
}

#[test]
fn system_and_developer_messages_anywhere_become_system_blocks() {
    let out = native(json!({"model": "claude", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}]}
    ]}));
    assert_eq!(
        out,
        json!({"model": "claude", "max_tokens": 4096,
            "system": [{"type": "text", "text": "You are terse."},
                       {"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    );
}

#[test]
fn full_tool_round_trip_history_with_parallel_results_grouped() {
    let out = native(
        json!({"model": "claude", "max_completion_tokens": 100, "max_tokens": 50, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBE"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "Sure  "}
        ]}),
    );
    assert_eq!(
        out["messages"],
        json!([
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "noon"}]},
                {"type": "text", "text": "Thanks"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Sure"}]}
        ])
    );
    assert_eq!(out["max_tokens"], 100);
}

#[test]
fn tools_choice_stop_temperature_user_and_parallel() {
    let out = native(
        json!({"model": "claude", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "a", "description": "A", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
                  {"type": "function", "function": {"name": "b"}}],
        "tool_choice": "required", "parallel_tool_calls": false, "stop": "END",
        "temperature": 1.7, "top_p": 0.9, "user": "u-1", "seed": 7, "presence_penalty": 1.0}),
    );
    assert_eq!(
        out,
        json!({"model": "claude", "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            "tools": [{"name": "a", "description": "A", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}},
                      {"name": "b", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.9,
            "metadata": {"user_id": "u-1"}})
    );
    let choice = |c: Value| {
        native(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": c}),
        )["tool_choice"]
            .clone()
    };
    assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
    assert_eq!(choice(json!("none")), json!({"type": "none"}));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "a"}})),
        json!({"type": "tool", "name": "a"})
    );
}

#[test]
fn json_schema_becomes_a_forced_tool_and_comes_back_as_content() {
    let out = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}),
    );
    assert_eq!(out["tools"][0]["name"], "json_tool_call");
    assert_eq!(
        out["tools"][0]["input_schema"],
        json!({"type": "object", "properties": {"a": {"type": "integer"}}})
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "tool", "name": "json_tool_call"})
    );
    let resp: MessageResponse =
        serde_json::from_value(json!({"id": "msg_1", "model": "claude", "content": [
        {"type": "tool_use", "id": "toolu_9", "name": "json_tool_call", "input": {"a": 1}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}}))
        .unwrap();
    let o = to_openai(&resp, true, 7);
    assert_eq!(o["choices"][0]["message"]["content"], "{\"a\":1}");
    assert_eq!(o["choices"][0]["finish_reason"], "stop");
    assert!(o["choices"][0]["message"].get("tool_calls").is_none());
}

#[test]
fn n_above_one_is_unsupported_and_fails_over() {
    let e = to_native(
        &req(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]})),
        "a/m",
    )
    .unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::Unsupported);
    assert!(e.fails_over());
    let e = to_native(
        &req(json!({"model": "m", "messages": [{"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]})),
        "a/m",
    )
    .unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::Status(400));
}

#[test]
fn response_with_text_tool_use_usage_and_cache() {
    let resp: MessageResponse = serde_json::from_value(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking the weather."},
                    {"type": "server_tool_use_new_kind", "id": "x"},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 472, "output_tokens": 89, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 100}
    })).unwrap();
    assert_eq!(
        to_openai(&resp, false, 1_700_000_000),
        json!({"id": "msg_01", "object": "chat.completion", "created": 1_700_000_000u64, "model": "claude-sonnet-4-20250514",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking the weather.", "refusal": null,
                "reasoning_content": "hmm",
                "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 582, "completion_tokens": 89, "total_tokens": 671,
                "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 0}}})
    );
}

#[test]
fn every_stop_reason_maps_and_unknown_ones_do_not_crash() {
    for (reason, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("brand_new_reason", "stop"),
    ] {
        let resp: MessageResponse = serde_json::from_value(json!({"id": "m", "model": "c",
            "content": [{"type": "text", "text": "x"}], "stop_reason": reason, "usage": {"input_tokens": 1, "output_tokens": 1}}))
        .unwrap();
        assert_eq!(
            to_openai(&resp, false, 0)["choices"][0]["finish_reason"],
            finish,
            "{reason}"
        );
    }
}

fn run(
    events: &[(&str, Value)],
    include_usage: bool,
) -> Result<Vec<Value>, outlast_core::UpstreamError> {
    let mut t = AnthropicTranslator::new("a/m".into(), "claude".into(), include_usage, false, 42);
    let mut out = Vec::new();
    for (name, data) in events {
        for item in t.on_event(Some(name), data.to_string().as_bytes())? {
            match item {
                StreamItem::Chunk(c) => out.push(serde_json::from_slice(&c.data).unwrap()),
                StreamItem::Done => out.push(json!("[DONE]")),
            }
        }
    }
    Ok(out)
}

fn reference_stream() -> Vec<(&'static str, Value)> {
    vec![
        (
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_014","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":8}}}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}),
        ),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":1}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}),
        ),
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":2}),
        ),
        (
            "content_block_start",
            json!({"type":"content_block_start","index":3,"content_block":{"type":"future_block"}}),
        ),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}),
        ),
        ("message_stop", json!({"type":"message_stop"})),
    ]
}

#[test]
fn stream_golden_text_then_two_tools_with_usage_chunk() {
    let head = |choices: Value| json!({"id": "msg_014", "object": "chat.completion.chunk", "created": 42, "model": "claude-sonnet-4-20250514", "choices": choices, "usage": null});
    let ch = |delta: Value, finish: Value| {
        head(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]))
    };
    let out = run(&reference_stream(), true).unwrap();
    assert_eq!(
        out,
        vec![
            ch(json!({"role": "assistant", "content": ""}), Value::Null),
            ch(json!({"content": "Checking"}), Value::Null),
            ch(
                json!({"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null
            ),
            ch(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}),
                Value::Null
            ),
            ch(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Pa"}}]}),
                Value::Null
            ),
            ch(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]}),
                Value::Null
            ),
            ch(
                json!({"tool_calls": [{"index": 1, "id": "toolu_02", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
                Value::Null
            ),
            ch(json!({}), json!("tool_calls")),
            json!({"id": "msg_014", "object": "chat.completion.chunk", "created": 42, "model": "claude-sonnet-4-20250514", "choices": [],
                "usage": {"prompt_tokens": 480, "completion_tokens": 89, "total_tokens": 569,
                    "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 0}}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_without_include_usage_has_no_usage_field_and_no_usage_chunk() {
    let out = run(&reference_stream(), false).unwrap();
    assert!(out.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(out.len(), 9);
    assert_eq!(out[8], json!("[DONE]"));
}

#[test]
fn error_event_after_200_is_a_provider_fault() {
    let mut events = reference_stream();
    events.truncate(4);
    events.push((
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    let e = run(&events, true).unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::StreamError);
    assert!(e.fails_over());
    assert!(e.message.contains("overloaded_error"));
}

#[test]
fn stream_that_ends_early_is_broken_but_a_finished_one_without_stop_is_complete() {
    let mut t = AnthropicTranslator::new("a/m".into(), "claude".into(), false, false, 0);
    let events = reference_stream();
    t.on_event(None, events[0].1.to_string().as_bytes())
        .unwrap();
    assert_eq!(t.on_end().unwrap_err().kind, UpstreamErrorKind::BodyBroken);
    let mut t = AnthropicTranslator::new("a/m".into(), "claude".into(), false, false, 0);
    for (_, e) in &events[..15] {
        t.on_event(None, e.to_string().as_bytes()).unwrap();
    }
    assert!(matches!(t.on_end().unwrap().last(), Some(StreamItem::Done)));
}

#[test]
fn json_mode_stream_turns_tool_input_into_content() {
    let mut t = AnthropicTranslator::new("a/m".into(), "claude".into(), false, true, 0);
    let evs = [
        json!({"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"json_tool_call","input":{}}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}),
    ];
    let mut out = Vec::new();
    for e in evs {
        for i in t.on_event(None, e.to_string().as_bytes()).unwrap() {
            if let StreamItem::Chunk(c) = i {
                out.push(serde_json::from_slice::<Value>(&c.data).unwrap()["choices"][0].clone());
            }
        }
    }
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["delta"], json!({"content": "{\"a\":1}"}));
    assert_eq!(out[2]["finish_reason"], "stop");
}

#[test]
fn ratelimit_reset_headers_give_the_wait() {
    let mut h = http::HeaderMap::new();
    h.insert(
        "anthropic-ratelimit-requests-remaining",
        "0".parse().unwrap(),
    );
    h.insert(
        "anthropic-ratelimit-requests-reset",
        "2025-08-21T12:41:05Z".parse().unwrap(),
    );
    h.insert(
        "anthropic-ratelimit-tokens-remaining",
        "5000".parse().unwrap(),
    );
    h.insert(
        "anthropic-ratelimit-tokens-reset",
        "2025-08-21T12:40:59Z".parse().unwrap(),
    );
    assert_eq!(
        super::ratelimit_reset(&h, 1_755_780_059),
        Some(std::time::Duration::from_secs(6))
    );
    let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
    let o: Value = serde_json::from_slice(&super::openai_error_body(body).unwrap()).unwrap();
    assert_eq!(
        o,
        json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
    );
}
