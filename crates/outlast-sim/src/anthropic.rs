//! The Anthropic Messages API as api.anthropic.com speaks it: the named SSE event sequence
//! (message_start, content blocks with a ping, message_delta with cumulative usage,
//! message_stop), its validators' 400s, error bodies, `request-id` and `anthropic-ratelimit-*`
//! headers, 529 when saturated and `event: error` after a 200.

#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::openai::{InFlight, now_secs};
use crate::play::{rfc3339, sse};
use crate::{Faults, SimState, text};

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .with_state(state)
}

/// `anthropic-ratelimit-{kind}-{limit,remaining,reset}` for each kind of limit.
const RATELIMIT: [(&str, &str, &str, u32); 4] = [
    (
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        1,
    ),
    (
        "anthropic-ratelimit-tokens-limit",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        100,
    ),
    (
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        100,
    ),
    (
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        20,
    ),
];

fn headers(remaining: u32) -> Vec<(&'static str, String)> {
    let reset = rfc3339(now_secs() + 1);
    let mut h = vec![("request-id", text::id("req_"))];
    for (limit, left, at, scale) in RATELIMIT {
        h.push((limit, (4000 * scale).to_string()));
        h.push((left, remaining.saturating_mul(scale).to_string()));
        h.push((at, reset.clone()));
    }
    h
}

fn error(status: u16, kind: &str, message: &str, extra: &[(&'static str, String)]) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": text::id("req_")});
    let mut r = (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    for (k, v) in headers(if status == 429 { 0 } else { 3999 })
        .iter()
        .chain(extra)
    {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

fn invalid(message: &str) -> Response {
    error(400, "invalid_request_error", message, &[])
}

fn overloaded() -> Response {
    error(529, "overloaded_error", "Overloaded", &[])
}

fn injected(status: u16) -> Response {
    match status {
        429 => error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 4,000 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
            &[("retry-after", "1".into())],
        ),
        529 => overloaded(),
        401 => error(401, "authentication_error", "invalid x-api-key", &[]),
        402 => error(402, "billing_error", "Your credit balance is too low.", &[]),
        403 => error(
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            &[],
        ),
        404 => error(404, "not_found_error", "Not found.", &[]),
        413 => error(
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            &[],
        ),
        s if s >= 500 => error(s, "api_error", "Internal server error", &[]),
        s => error(s, "invalid_request_error", "Simulated error.", &[]),
    }
}

async fn admit(state: &Arc<SimState>, headers: &HeaderMap) -> Result<(Faults, InFlight), Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = &state.config.api_key {
        let given = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if given != Some(key.as_str()) {
            return Err(error(401, "authentication_error", "invalid x-api-key", &[]));
        }
    }
    if headers.get("anthropic-version").is_none() {
        return Err(invalid("anthropic-version: header is required"));
    }
    let faults = state.faults();
    let Some(guard) = InFlight::enter(state, faults.capacity) else {
        state.rejected_capacity.fetch_add(1, Ordering::Relaxed);
        return Err(overloaded());
    };
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        state.injected_errors.fetch_add(1, Ordering::Relaxed);
        return Err(injected(faults.error_status));
    }
    Ok((faults, guard))
}

fn blocks(m: &Value) -> Vec<Value> {
    match m.get("content") {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(b)) => b.clone(),
        _ => vec![],
    }
}

/// The checks the real API makes, with its messages (reference §2.2).
fn validate(req: &Value) -> Result<(), Response> {
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err(invalid("max_tokens: Field required"));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages: Field required"));
    };
    let mut prev_role = "";
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(invalid(&format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        if role == prev_role {
            return Err(invalid(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"user\" roles in a row",
            ));
        }
        let b = blocks(m);
        for (j, block) in b.iter().enumerate() {
            if block.get("type").and_then(Value::as_str) == Some("text")
                && block
                    .get("text")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                return Err(invalid(&format!(
                    "messages.{i}.content.{j}: text content blocks must be non-empty"
                )));
            }
        }
        let results: Vec<&str> = b
            .iter()
            .filter(|x| x.get("type").and_then(Value::as_str) == Some("tool_result"))
            .filter_map(|x| x.get("tool_use_id").and_then(Value::as_str))
            .collect();
        if let Some(unexpected) = results.iter().find(|r| !pending.iter().any(|p| p == *r)) {
            return Err(invalid(&format!(
                "messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {unexpected}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )));
        }
        if let Some(missing) = pending.iter().find(|p| !results.contains(&p.as_str())) {
            return Err(invalid(&format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                i.saturating_sub(1)
            )));
        }
        pending = b
            .iter()
            .filter(|x| x.get("type").and_then(Value::as_str) == Some("tool_use"))
            .filter_map(|x| x.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        prev_role = if role == "user" { "user" } else { "assistant" };
    }
    Ok(())
}

struct Plan {
    id: String,
    model: String,
    tokens: u32,
    /// Tokens already given as an assistant prefill: the answer continues after them.
    start: u32,
    stop: &'static str,
    tool: Option<(String, String, String)>,
    input: u64,
    cache_read: u64,
}

fn plan(state: &SimState, faults: &Faults, req: &Value) -> Result<Plan, Response> {
    let model = req.get("model").and_then(Value::as_str).unwrap_or("");
    if let Some(models) = &state.config.models
        && !models.iter().any(|m| m == model)
    {
        return Err(error(
            404,
            "not_found_error",
            &format!("model: {model}"),
            &[],
        ));
    }
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let input = text::estimate_tokens(&messages);
    if input > faults.context_window {
        return Err(invalid(&format!(
            "prompt is too long: {input} tokens > {} maximum",
            faults.context_window
        )));
    }
    let max = req
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let tokens = (max.min(u64::from(u32::MAX)) as u32).min(faults.answer_tokens);
    let stop = if tokens < faults.answer_tokens {
        "max_tokens"
    } else {
        "end_turn"
    };
    let cached = req
        .get("system")
        .is_some_and(|s| s.to_string().contains("cache_control"));
    let start = match messages.last() {
        Some(m) if m.get("role").and_then(Value::as_str) == Some("assistant") => {
            text::prefix_tokens(text::content_text(m.get("content")))
        }
        _ => 0,
    }
    .min(tokens);
    Ok(Plan {
        id: text::id("msg_"),
        model: model.to_string(),
        tokens,
        start,
        stop,
        tool: choose_tool(req, &messages),
        input,
        cache_read: if cached { 8 } else { 0 },
    })
}

fn choose_tool(req: &Value, messages: &[Value]) -> Option<(String, String, String)> {
    let tools = req.get("tools")?.as_array()?;
    let choice = req.get("tool_choice");
    if choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_is_result = messages.last().is_some_and(|m| {
        blocks(m)
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
    });
    if last_is_result {
        return None;
    }
    let wanted = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
    let tool = tools
        .iter()
        .find(|t| wanted.is_none_or(|w| t.get("name").and_then(Value::as_str) == Some(w)))?;
    let name = tool.get("name")?.as_str()?.to_string();
    let args = text::sample_arguments(tool.get("input_schema"));
    Some((text::id("toolu_"), name, args))
}

impl Plan {
    fn output_tokens(&self) -> u64 {
        match &self.tool {
            Some((_, _, args)) => (args.len() as u64).div_ceil(4) + 8,
            None => u64::from(self.tokens - self.start),
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self.tool.is_some() {
            "tool_use"
        } else {
            self.stop
        }
    }

    fn usage(&self, output: u64) -> Value {
        json!({"input_tokens": self.input, "output_tokens": output,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": self.cache_read})
    }
}

async fn messages(
    State(state): State<Arc<SimState>>,
    headers_in: HeaderMap,
    body: Bytes,
) -> Response {
    if let Ok(mut last) = state.last_request.lock() {
        *last = Some(body.clone());
    }
    let (faults, guard) = match admit(&state, &headers_in).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("There was an error parsing the body of your request as JSON."),
    };
    if let Err(r) = validate(&req) {
        return r;
    }
    let plan = match plan(&state, &faults, &req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    state.answered.fetch_add(1, Ordering::Relaxed);
    let name = state.config.name.clone();
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let error_frame = event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        sse(
            faults,
            frames(&name, &plan),
            error_frame,
            guard,
            headers(3999),
        )
    } else {
        let mut content = Vec::new();
        match &plan.tool {
            Some((id, tool, args)) => {
                content.push(json!({"type": "text", "text": "Checking."}));
                let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                content.push(json!({"type": "tool_use", "id": id, "name": tool, "input": input}));
            }
            None => content.push(
                json!({"type": "text", "text": text::answer(&name, plan.start, plan.tokens)}),
            ),
        }
        let body = json!({"id": plan.id, "type": "message", "role": "assistant", "model": plan.model,
            "content": content, "stop_reason": plan.stop_reason(), "stop_sequence": null,
            "usage": plan.usage(plan.output_tokens())});
        let mut r = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in headers(3999) {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The whole event sequence of one answer (reference §2.4).
fn frames(name: &str, plan: &Plan) -> Vec<String> {
    let mut f = Vec::new();
    f.push(event("message_start", &json!({"type": "message_start", "message": {"id": plan.id, "type": "message",
        "role": "assistant", "model": plan.model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": plan.usage(1)}})));
    f.push(event("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    f.push(event("ping", &json!({"type": "ping"})));
    let text_delta = |t: &str| {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    match &plan.tool {
        Some((id, tool, args)) => {
            f.push(text_delta("Checking."));
            f.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            f.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": id, "name": tool, "input": {}}}),
            ));
            let json_delta = |p: &str| {
                event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}),
                )
            };
            // A zero-argument tool sends no fragments at all.
            if args != "{}" {
                f.push(json_delta(""));
                let mid = args
                    .char_indices()
                    .nth(args.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                f.push(json_delta(args.get(..mid).unwrap_or("")));
                f.push(json_delta(args.get(mid..).unwrap_or("")));
            }
            f.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 1}),
            ));
        }
        None => {
            for t in plan.start..plan.tokens {
                f.push(text_delta(&text::piece(name, t)));
            }
            f.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
        }
    }
    f.push(event("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": plan.stop_reason(), "stop_sequence": null},
        "usage": {"output_tokens": plan.output_tokens()}})));
    f.push(event("message_stop", &json!({"type": "message_stop"})));
    f
}

async fn models(State(state): State<Arc<SimState>>) -> Response {
    let names = state
        .config
        .models
        .clone()
        .unwrap_or_else(|| vec!["claude-3-5-haiku-latest".into(), "claude-sonnet-4-0".into()]);
    let data: Vec<Value> = names.iter().map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-02-19T00:00:00Z"})).collect();
    let body = json!({"data": data, "has_more": false, "first_id": names.first(), "last_id": names.last()});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
