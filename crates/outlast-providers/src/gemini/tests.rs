//! Golden tests: one per translation point of reference §3 (request, response, stream, errors).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_core::{ChatRequest, UpstreamErrorKind};
use serde_json::{Value, json};

use super::convert::{clean_schema, to_native, to_openai};
use super::stream::GeminiTranslator;
use super::wire::{ErrorBody, GenerateContentResponse};
use crate::StreamItem;
use crate::translate::Translate;

fn req(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn native(v: Value) -> Value {
    serde_json::to_value(to_native(&req(v), "g/m").unwrap()).unwrap()
}

#[test]
fn full_request_golden() {
    let out = native(
        json!({"model": "gemini", "n": 2, "max_tokens": 99, "seed": 7, "temperature": 1.5, "top_p": 0.9,
            "stop": ["END"], "logprobs": true, "top_logprobs": 10,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Cite."}]},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                     "extra_content": {"google": {"thought_signature": "sig=="}}},
                    {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "c2", "content": "noon"},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"temp_c\":18}"},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"$schema": "x", "type": "object", "additionalProperties": false,
                    "properties": {"city": {"type": ["string", "null"]}, "strict": {"type": "boolean"}}, "required": ["city"]}, "strict": true}},
                {"type": "function", "function": {"name": "get_time", "description": "Now", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object", "additionalProperties": false}}}
        }),
    );
    assert_eq!(
        out,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Weather?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                    {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png"}}]},
                {"role": "model", "parts": [
                    {"thoughtSignature": "sig==", "functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"content": {"temp_c": 18}}}},
                    {"text": "Thanks"}]}
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Cite."}]},
            "tools": [{"functionDeclarations": [
                {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "nullable": true}, "strict": {"type": "boolean"}}, "required": ["city"]}},
                {"name": "get_time", "description": "Now"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "generationConfig": {"maxOutputTokens": 99, "temperature": 1.5, "topP": 0.9, "stopSequences": ["END"],
                "candidateCount": 2, "seed": 7, "responseMimeType": "application/json", "responseSchema": {"type": "object"},
                "responseLogprobs": true, "logprobs": 5}
        })
    );
}

#[test]
fn tool_choice_modes_and_json_object() {
    let choice = |c: Value| {
        native(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}}], "tool_choice": c}),
        )["toolConfig"]
            .clone()
    };
    assert_eq!(
        choice(json!("auto")),
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        choice(json!("none")),
        json!({"functionCallingConfig": {"mode": "NONE"}})
    );
    assert_eq!(
        choice(json!("required")),
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    let out = native(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    );
    assert_eq!(
        out["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn unknown_tool_call_id_is_the_callers_fault_never_a_filler_name() {
    let e = to_native(
        &req(json!({"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]})),
        "g/m",
    )
    .unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::Status(400));
    assert!(!e.fails_over());
}

#[test]
fn schema_refs_are_inlined() {
    let s = clean_schema(
        &json!({"type": "object", "$defs": {"P": {"type": "string", "additionalProperties": true}},
        "properties": {"p": {"$ref": "#/$defs/P"}}}),
    );
    assert_eq!(
        s,
        json!({"type": "object", "properties": {"p": {"type": "string"}}})
    );
}

#[test]
fn response_golden_text_parts_joined_calls_and_thinking_usage() {
    let resp: GenerateContentResponse = serde_json::from_value(json!({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "It is "}, {"text": "18C."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig"},
            {"functionCall": {"name": "ping"}}]},
            "finishReason": "STOP", "index": 0, "safetyRatings": []}],
        "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 359, "thoughtsTokenCount": 661,
            "cachedContentTokenCount": 5, "totalTokenCount": 1035},
        "modelVersion": "gemini-2.5-flash", "responseId": "mAit"
    })).unwrap();
    assert_eq!(
        to_openai(&resp, "gemini", "call_x_", "fallback", 9),
        json!({"id": "mAit", "object": "chat.completion", "created": 9, "model": "gemini-2.5-flash",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 18C.", "refusal": null,
                "reasoning_content": "thinking...",
                "tool_calls": [
                    {"id": "call_x_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                     "extra_content": {"google": {"thought_signature": "sig"}}},
                    {"id": "call_x_1", "type": "function", "function": {"name": "ping", "arguments": "{}"}}]},
                "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 15, "completion_tokens": 1020, "total_tokens": 1035,
                "prompt_tokens_details": {"cached_tokens": 5}, "completion_tokens_details": {"reasoning_tokens": 661}}})
    );
}

#[test]
fn finish_reasons_map_and_prompt_block_is_content_filter() {
    for (reason, finish) in [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("SOMETHING_NEW", "stop"),
    ] {
        let resp: GenerateContentResponse = serde_json::from_value(json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]})).unwrap();
        assert_eq!(
            to_openai(&resp, "g", "c", "f", 0)["choices"][0]["finish_reason"],
            finish,
            "{reason}"
        );
    }
    let blocked: GenerateContentResponse =
        serde_json::from_value(json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}))
        .unwrap();
    let o = to_openai(&blocked, "gemini", "c", "chatcmpl-f", 0);
    assert_eq!(o["id"], "chatcmpl-f");
    assert_eq!(o["model"], "gemini");
    assert_eq!(o["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(o["usage"]["completion_tokens"], 0);
}

fn run(events: &[Value], include_usage: bool) -> Result<Vec<Value>, outlast_core::UpstreamError> {
    let mut t = GeminiTranslator::new(
        "g/m".into(),
        "gemini".into(),
        include_usage,
        "chatcmpl-f".into(),
        "call_s_".into(),
        5,
    );
    let mut out = Vec::new();
    let mut items = Vec::new();
    for e in events {
        items.extend(t.on_event(None, e.to_string().as_bytes())?);
    }
    items.extend(t.on_end()?);
    for item in items {
        match item {
            StreamItem::Chunk(c) => out.push(serde_json::from_slice(&c.data).unwrap()),
            StreamItem::Done => out.push(json!("[DONE]")),
        }
    }
    Ok(out)
}

#[test]
fn stream_golden_text_then_whole_function_call_then_stop() {
    let events = [
        json!({"candidates": [{"content": {"parts": [{"text": "It is"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 2, "totalTokenCount": 17}, "modelVersion": "gemini-2.5-flash", "responseId": "mAit"}),
        json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}, {"functionCall": {"name": "get_time", "args": {}}}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 12, "totalTokenCount": 27}, "modelVersion": "gemini-2.5-flash", "responseId": "mAit"}),
        json!({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 12, "thoughtsTokenCount": 4, "totalTokenCount": 31}, "modelVersion": "gemini-2.5-flash", "responseId": "mAit"}),
    ];
    let ch = |delta: Value, finish: Value| {
        json!({"id": "mAit", "object": "chat.completion.chunk", "created": 5, "model": "gemini-2.5-flash",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}], "usage": null})
    };
    assert_eq!(
        run(&events, true).unwrap(),
        vec![
            ch(json!({"role": "assistant", "content": ""}), Value::Null),
            ch(json!({"content": "It is"}), Value::Null),
            ch(
                json!({"tool_calls": [{"index": 0, "id": "call_s_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
                Value::Null
            ),
            ch(
                json!({"tool_calls": [{"index": 1, "id": "call_s_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
                Value::Null
            ),
            ch(json!({}), json!("tool_calls")),
            json!({"id": "mAit", "object": "chat.completion.chunk", "created": 5, "model": "gemini-2.5-flash", "choices": [],
                "usage": {"prompt_tokens": 15, "completion_tokens": 16, "total_tokens": 31,
                    "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 4}}}),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn stream_errors_blocks_and_early_ends() {
    let err = json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}});
    let e = run(&[err], true).unwrap_err();
    assert_eq!(e.kind, UpstreamErrorKind::StreamError);
    assert!(e.fails_over());
    let text = json!({"candidates": [{"content": {"parts": [{"text": "It"}]}, "index": 0}]});
    assert_eq!(
        run(&[text], false).unwrap_err().kind,
        UpstreamErrorKind::BodyBroken
    );
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}});
    let out = run(&[blocked], false).unwrap();
    assert_eq!(out[1]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));
    assert!(out.iter().all(|c| c.get("usage").is_none()));
}

#[test]
fn errors_classify_bad_key_and_retry_delay() {
    let quota: ErrorBody = serde_json::from_value(json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.5s"}]}})).unwrap();
    assert_eq!(
        quota.error.retry_delay(),
        Some(std::time::Duration::from_millis(36_500))
    );
    assert!(!quota.error.is_bad_key());
    let key: ErrorBody = serde_json::from_value(json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})).unwrap();
    assert!(key.error.is_bad_key());
    let o: Value = serde_json::from_slice(&super::openai_error_body(&quota.error)).unwrap();
    assert_eq!(
        o,
        json!({"error": {"message": "quota", "type": "RESOURCE_EXHAUSTED", "param": null, "code": 429}})
    );
}
