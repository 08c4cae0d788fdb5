//! The Gemini API (generativelanguage v1beta) as Google serves it: `generateContent` and
//! `streamGenerateContent?alt=sse` with CRLF framing and no `[DONE]`, cumulative
//! `usageMetadata`, whole function calls followed by a later `STOP`, thinking tokens, prompt
//! blocks without candidates, and its errors (429 `RESOURCE_EXHAUSTED` with `RetryInfo`, 503
//! `UNAVAILABLE`, 400 `API_KEY_INVALID`) plus its request validators.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::openai::InFlight;
use crate::play::sse;
use crate::{Faults, SimState, text};

/// A user text containing this is blocked as a prompt (200 without candidates).
pub const BLOCK_MARKER: &str = "[[block]]";

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1beta/models/{*rest}", post(generate))
        .route("/v1beta/models", get(models))
        .with_state(state)
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn error_value(code: u16, message: &str, details: Value) -> Value {
    let mut e = json!({"code": code, "message": message, "status": status_name(code)});
    if let (Some(o), Value::Array(_)) = (e.as_object_mut(), &details) {
        o.insert("details".into(), details);
    }
    json!({"error": e})
}

fn error(code: u16, message: &str, details: Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        error_value(code, message, details).to_string(),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(400, message, Value::Null)
}

fn bad_key() -> Response {
    error(
        400,
        "API key not valid. Please pass a valid API key.",
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
    )
}

fn exhausted() -> Response {
    error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\nPlease retry in 1.000000s.",
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "15"}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
        ]),
    )
}

fn unavailable() -> Response {
    error(
        503,
        "The model is overloaded. Please try again later.",
        Value::Null,
    )
}

fn injected(status: u16) -> Response {
    match status {
        429 => exhausted(),
        503 => unavailable(),
        401 => bad_key(),
        403 => error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            Value::Null,
        ),
        404 => error(404, "Requested entity was not found.", Value::Null),
        504 => error(
            504,
            "Deadline expired before operation could complete.",
            Value::Null,
        ),
        s if s >= 500 => error(
            s,
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            Value::Null,
        ),
        s => error(s, "Request contains an invalid argument.", Value::Null),
    }
}

async fn admit(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(Faults, InFlight), Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = &state.config.api_key {
        let given = headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .or(query.get("key").map(String::as_str));
        match given {
            Some(k) if k == key => {}
            Some(_) => return Err(bad_key()),
            None => return Err(injected(403)),
        }
    }
    let faults = state.faults();
    let Some(guard) = InFlight::enter(state, faults.capacity) else {
        state.rejected_capacity.fetch_add(1, Ordering::Relaxed);
        return Err(exhausted());
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

fn parts(c: &Value) -> Vec<Value> {
    c.get("parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The checks Gemini makes, with its messages (reference §3.2).
fn validate(req: &Value) -> Result<(), Response> {
    let Some(contents) = req.get("contents").and_then(Value::as_array) else {
        return Err(invalid(
            "* GenerateContentRequest.contents: contents is not specified\n",
        ));
    };
    let mut prev = "";
    let mut calls: Vec<String> = Vec::new();
    for c in contents {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        if role == prev {
            return Err(invalid(
                "Please ensure that multiturn requests alternate between user and model.",
            ));
        }
        let p = parts(c);
        let responses: Vec<&str> = p
            .iter()
            .filter_map(|x| x.get("functionResponse")?.get("name")?.as_str())
            .collect();
        if !responses.is_empty() {
            if responses.len() != calls.len() {
                return Err(invalid(
                    "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.",
                ));
            }
            if let Some(bad) = responses.iter().find(|r| !calls.iter().any(|c| c == *r)) {
                return Err(invalid(&format!(
                    "Function response name `{bad}` does not match any function call name of the previous turn."
                )));
            }
        }
        calls = p
            .iter()
            .filter_map(|x| {
                x.get("functionCall")?
                    .get("name")?
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        prev = if role == "model" { "model" } else { "user" };
    }
    for (i, t) in req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, d) in t
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if d.get("parameters")
                .is_some_and(|p| p.to_string().contains("\"additionalProperties\""))
            {
                return Err(invalid(&format!(
                    "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[{i}].function_declarations[{j}].parameters': Cannot find field."
                )));
            }
        }
    }
    Ok(())
}

/// A trailing model turn is continued, as a prefix.
fn contents_prefix(contents: &[Value]) -> u32 {
    match contents.last() {
        Some(c) if c.get("role").and_then(Value::as_str) == Some("model") => {
            let parts = c.get("parts").and_then(Value::as_array);
            if parts.is_some_and(|p| p.iter().any(|x| x.get("functionCall").is_some())) {
                return 0;
            }
            text::prefix_tokens(text::content_text(c.get("parts")))
        }
        _ => 0,
    }
}

struct Plan {
    id: String,
    model: String,
    candidates: u32,
    tokens: u32,
    /// Tokens already given as a trailing model turn: the answer continues after them.
    start: u32,
    finish: &'static str,
    tool: Option<(String, Value)>,
    prompt: u64,
    thoughts: u64,
    blocked: bool,
}

impl Plan {
    fn candidates_tokens(&self, upto: u32) -> u64 {
        let per = match &self.tool {
            Some((_, args)) => (args.to_string().len() as u64).div_ceil(4) + 3,
            None => u64::from(upto),
        };
        per * u64::from(self.candidates)
    }

    fn usage(&self, upto: u32) -> Value {
        let c = self.candidates_tokens(upto);
        let mut u = json!({"promptTokenCount": self.prompt, "candidatesTokenCount": c,
            "totalTokenCount": self.prompt + c + self.thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}]});
        if self.thoughts > 0
            && let Some(o) = u.as_object_mut()
        {
            o.insert("thoughtsTokenCount".into(), Value::from(self.thoughts));
        }
        u
    }

    fn response(&self, candidates: Vec<Value>, usage: Value) -> Value {
        json!({"candidates": candidates, "usageMetadata": usage, "modelVersion": self.model, "responseId": self.id})
    }
}

fn plan(state: &SimState, faults: &Faults, model: &str, req: &Value) -> Result<Plan, Response> {
    if let Some(models) = &state.config.models
        && !models.iter().any(|m| m == model)
    {
        return Err(error(
            404,
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
            ),
            Value::Null,
        ));
    }
    let contents = req
        .get("contents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let as_messages: Vec<Value> = contents
        .iter()
        .map(|c| json!({"content": parts(c).iter().filter_map(|p| p.get("text")?.as_str()).collect::<String>()}))
        .collect();
    let prompt = text::estimate_tokens(&as_messages);
    if prompt > faults.context_window {
        return Err(invalid(&format!(
            "The input token count ({prompt}) exceeds the maximum number of tokens allowed ({}).",
            faults.context_window
        )));
    }
    let config = req.get("generationConfig");
    let max = config
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let tokens = (max.min(u64::from(u32::MAX)) as u32).min(faults.answer_tokens);
    let thoughts = config
        .and_then(|c| c.get("thinkingConfig"))
        .and_then(|t| t.get("thinkingBudget"))
        .and_then(Value::as_u64)
        .filter(|b| *b > 0)
        .map_or(0, |b| b.min(12));
    let blocked = contents.iter().any(|c| {
        parts(c).iter().any(|p| {
            p.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains(BLOCK_MARKER))
        })
    });
    Ok(Plan {
        id: text::id(""),
        model: model.to_string(),
        candidates: config
            .and_then(|c| c.get("candidateCount"))
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .clamp(1, 8) as u32,
        tokens,
        start: contents_prefix(&contents).min(tokens),
        finish: if tokens < faults.answer_tokens {
            "MAX_TOKENS"
        } else {
            "STOP"
        },
        tool: choose_tool(req, &contents),
        prompt,
        thoughts,
        blocked,
    })
}

fn choose_tool(req: &Value, contents: &[Value]) -> Option<(String, Value)> {
    let decls: Vec<&Value> = req
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| t.get("functionDeclarations")?.as_array())
        .flatten()
        .collect();
    let mode_cfg = req
        .get("toolConfig")
        .and_then(|t| t.get("functionCallingConfig"));
    if mode_cfg.and_then(|m| m.get("mode")).and_then(Value::as_str) == Some("NONE") {
        return None;
    }
    if contents
        .last()
        .is_some_and(|c| parts(c).iter().any(|p| p.get("functionResponse").is_some()))
    {
        return None;
    }
    let allowed = mode_cfg
        .and_then(|m| m.get("allowedFunctionNames"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let d = decls
        .into_iter()
        .find(|d| allowed.is_none_or(|a| d.get("name").and_then(Value::as_str) == Some(a)))?;
    let name = d.get("name")?.as_str()?.to_string();
    let args = serde_json::from_str(&text::sample_arguments(d.get("parameters")))
        .unwrap_or_else(|_| json!({}));
    Some((name, args))
}

async fn generate(
    State(state): State<Arc<SimState>>,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Ok(mut last) = state.last_request.lock() {
        *last = Some(body.clone());
    }
    let (model, method) = rest.split_once(':').unwrap_or((rest.as_str(), ""));
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, "Method not found.", Value::Null),
    };
    let (faults, guard) = match admit(&state, &headers, &query).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received. Unexpected token."),
    };
    if let Err(r) = validate(&req) {
        return r;
    }
    let plan = match plan(&state, &faults, model, &req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    state.answered.fetch_add(1, Ordering::Relaxed);
    let name = state.config.name.clone();
    if stream && query.get("alt").map(String::as_str) == Some("sse") {
        let error_frame = format!(
            "data: {}\r\n\r\n",
            error_value(
                503,
                "The model is overloaded. Please try again later.",
                Value::Null
            )
        );
        let frames = frames(&name, &plan)
            .into_iter()
            .map(|f| format!("data: {f}\r\n\r\n"))
            .collect();
        sse(faults, frames, error_frame, guard, vec![])
    } else if stream {
        // Without alt=sse Gemini streams one JSON array of responses.
        let all: Vec<Value> = frames(&name, &plan);
        (
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            Value::Array(all).to_string(),
        )
            .into_response()
    } else {
        let body = whole(&name, &plan);
        (
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            body.to_string(),
        )
            .into_response()
    }
}

fn blocked(plan: &Plan) -> Value {
    json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": plan.prompt, "totalTokenCount": plan.prompt},
        "modelVersion": plan.model, "responseId": plan.id})
}

fn whole(name: &str, plan: &Plan) -> Value {
    if plan.blocked {
        return blocked(plan);
    }
    let candidates = (0..plan.candidates)
        .map(|i| {
            let part = match &plan.tool {
                Some((f, args)) => json!({"functionCall": {"name": f, "args": args}}),
                None => json!({"text": text::answer(name, plan.start, plan.tokens)}),
            };
            json!({"content": {"parts": [part], "role": "model"}, "finishReason": plan.finish, "index": i,
                "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}]})
        })
        .collect();
    plan.response(candidates, plan.usage(plan.tokens - plan.start))
}

/// Every chunk of a streamed answer, each a complete response with cumulative usage.
fn frames(name: &str, plan: &Plan) -> Vec<Value> {
    if plan.blocked {
        return vec![blocked(plan)];
    }
    let cand = |i: u32, part: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"parts": [part], "role": "model"}, "index": i});
        if let (Some(f), Some(o)) = (finish, c.as_object_mut()) {
            o.insert("finishReason".into(), Value::from(f));
        }
        c
    };
    let mut out = Vec::new();
    match &plan.tool {
        Some((f, args)) => {
            let calls = (0..plan.candidates)
                .map(|i| cand(i, json!({"functionCall": {"name": f, "args": args}}), None))
                .collect();
            out.push(plan.response(calls, plan.usage(0)));
            let stops = (0..plan.candidates)
                .map(|i| cand(i, json!({"text": ""}), Some("STOP")))
                .collect();
            out.push(plan.response(stops, plan.usage(0)));
        }
        None => {
            // Two tokens a chunk, as Gemini sends a few words at a time.
            let mut t = plan.start;
            while t < plan.tokens {
                let end = (t + 2).min(plan.tokens);
                let piece: String = (t..end).map(|k| text::piece(name, k)).collect();
                let last = end == plan.tokens;
                let cands = (0..plan.candidates)
                    .map(|i| cand(i, json!({"text": piece}), last.then_some(plan.finish)))
                    .collect();
                out.push(plan.response(cands, plan.usage(end - plan.start)));
                t = end;
            }
            if out.is_empty() {
                let cands = (0..plan.candidates)
                    .map(|i| cand(i, json!({"text": ""}), Some(plan.finish)))
                    .collect();
                out.push(plan.response(cands, plan.usage(0)));
            }
        }
    }
    out
}

async fn models(State(state): State<Arc<SimState>>) -> Response {
    let names = state
        .config
        .models
        .clone()
        .unwrap_or_else(|| vec!["gemini-2.0-flash".into(), "gemini-2.5-flash".into()]);
    let data: Vec<Value> = names
        .iter()
        .map(|m| json!({"name": format!("models/{m}"), "version": "2.0", "displayName": m, "inputTokenLimit": 1_048_576, "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["generateContent", "countTokens"]}))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"models": data}).to_string(),
    )
        .into_response()
}
