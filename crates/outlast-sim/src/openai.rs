//! The OpenAI Chat Completions wire format, as api.openai.com speaks it: bodies, SSE chunk
//! sequence (role chunk, content, finish chunk, optional usage chunk, `[DONE]`), error bodies
//! and rate-limit headers.

// Early returns here are whole HTTP responses; boxing them would only add noise to a test double.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::text;
use crate::{Faults, SimState};

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .with_state(state)
}

/// Holds one unit of the simulator's concurrency while a request is served.
pub(crate) struct InFlight(Arc<SimState>);

impl InFlight {
    pub(crate) fn enter(state: &Arc<SimState>, capacity: Option<u32>) -> Option<Self> {
        let now = state.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if capacity.is_some_and(|c| now > c) {
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        state.max_in_flight.fetch_max(now, Ordering::AcqRel);
        Some(Self(Arc::clone(state)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn json_response(status: StatusCode, body: &Value, extra: &[(&'static str, String)]) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        "x-request-id",
        HeaderValue::from_str(&text::id("req_")).unwrap_or(HeaderValue::from_static("req")),
    );
    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    h.insert("openai-processing-ms", HeaderValue::from_static("1"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    r
}

fn ratelimit_headers(remaining: u32) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit-requests", "10000".into()),
        ("x-ratelimit-limit-tokens", "30000000".into()),
        ("x-ratelimit-remaining-requests", remaining.to_string()),
        ("x-ratelimit-remaining-tokens", "29999000".into()),
        ("x-ratelimit-reset-requests", "6ms".into()),
        ("x-ratelimit-reset-tokens", "0s".into()),
    ]
}

fn rate_limited(model: &str) -> Response {
    let mut headers = ratelimit_headers(0);
    headers.push(("retry-after", "1".into()));
    headers.push(("x-ratelimit-reset-requests", "1s".into()));
    let msg = format!(
        "Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit 10000, Used 10000, Requested 1. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more."
    );
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &error_body(&msg, "requests", None, Some("rate_limit_exceeded")),
        &headers,
    )
}

/// The error a real OpenAI endpoint sends with each status.
fn injected_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code.as_u16() {
        429 => rate_limited("gpt-4o-mini"),
        401 => json_response(
            code,
            &error_body(
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
            &[],
        ),
        503 => json_response(
            code,
            &error_body(
                "The server is overloaded or not ready yet.",
                "server_error",
                None,
                None,
            ),
            &[],
        ),
        502 => json_response(
            code,
            &error_body("Bad gateway.", "server_error", None, None),
            &[],
        ),
        s if s >= 500 => json_response(
            code,
            &error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
                None,
            ),
            &[],
        ),
        _ => json_response(
            code,
            &error_body("Simulated error.", "invalid_request_error", None, None),
            &[],
        ),
    }
}

fn bad_request(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &error_body(message, "invalid_request_error", param, code),
        &[],
    )
}

fn check_auth(state: &SimState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        return Ok(());
    }
    let msg = if given.is_none() {
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    } else {
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
    };
    Err(json_response(
        StatusCode::UNAUTHORIZED,
        &error_body(msg, "invalid_request_error", None, Some("invalid_api_key")),
        &[],
    ))
}

/// Everything that happens before a request is parsed: auth, capacity, latency, injected errors.
async fn admit(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    check_key: bool,
) -> Result<(Faults, InFlight), Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if check_key {
        check_auth(state, headers)?;
    }
    let faults = state.faults();
    let Some(guard) = InFlight::enter(state, faults.capacity) else {
        state.rejected_capacity.fetch_add(1, Ordering::Relaxed);
        return Err(rate_limited("gpt-4o-mini"));
    };
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        state.injected_errors.fetch_add(1, Ordering::Relaxed);
        return Err(injected_error(faults.error_status));
    }
    Ok((faults, guard))
}

fn parse_json(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        )),
    }
}

fn check_model<'a>(state: &SimState, req: &'a Value) -> Result<&'a str, Response> {
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return Err(bad_request(
            "you must provide a model parameter",
            None,
            None,
        ));
    };
    if let Some(models) = &state.config.models
        && !models.iter().any(|m| m == model)
    {
        return Err(json_response(
            StatusCode::NOT_FOUND,
            &error_body(
                &format!("The model `{model}` does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
            &[],
        ));
    }
    Ok(model)
}

/// What one answer will contain.
struct Plan {
    id: String,
    created: u64,
    model: String,
    n: u32,
    tokens: u32,
    /// Tokens of the answer already given as an assistant prefix: continue after them.
    start: u32,
    finish: &'static str,
    tool: Option<(String, String, String)>,
    prompt_tokens: u64,
    include_usage: bool,
    /// Azure OpenAI's content-filter annotations.
    azure: bool,
}

impl Plan {
    fn completion_tokens(&self) -> u64 {
        let per_choice = match &self.tool {
            Some((_, _, args)) => (args.len() as u64).div_ceil(4) + 5,
            None => u64::from(self.tokens - self.start),
        };
        per_choice * u64::from(self.n)
    }

    fn usage(&self) -> Value {
        let c = self.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens, "completion_tokens": c, "total_tokens": self.prompt_tokens + c,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    }
}

fn plan(faults: &Faults, req: &Value, model: &str) -> Result<Plan, Response> {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return Err(bad_request(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        ));
    };
    if messages.is_empty() {
        return Err(bad_request(
            "[] is too short - 'messages'",
            Some("messages"),
            None,
        ));
    }
    let prompt_tokens = text::estimate_tokens(messages);
    if prompt_tokens > faults.context_window {
        return Err(bad_request(
            &format!(
                "This model's maximum context length is {} tokens. However, your messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                faults.context_window
            ),
            Some("messages"),
            Some("context_length_exceeded"),
        ));
    }
    let n = req
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 128) as u32;
    let max = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64);
    let tokens = max.map_or(faults.answer_tokens, |m| {
        (m.min(u64::from(u32::MAX)) as u32).min(faults.answer_tokens)
    });
    let finish = if tokens < faults.answer_tokens {
        "length"
    } else {
        "stop"
    };
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Plan {
        id: text::id("chatcmpl-"),
        created: now_secs(),
        model: model.to_string(),
        n,
        tokens,
        finish,
        start: prefix_tokens(messages).min(tokens),
        tool: choose_tool(req, messages),
        prompt_tokens,
        include_usage,
        azure: false,
    })
}

/// A trailing assistant message is a prefix to continue (as providers that support prefill do):
/// the number of answer tokens it already holds.
fn prefix_tokens(messages: &[Value]) -> u32 {
    let Some(last) = messages.last() else {
        return 0;
    };
    if last.get("role").and_then(Value::as_str) != Some("assistant")
        || last.get("tool_calls").is_some()
    {
        return 0;
    }
    last.get("content")
        .and_then(Value::as_str)
        .map_or(0, |c| c.split_whitespace().count() as u32)
}

/// Call a tool when tools are offered, the client allows it, and the last message is not
/// already a tool result: `(id, name, arguments)`.
fn choose_tool(req: &Value, messages: &[Value]) -> Option<(String, String, String)> {
    let tools = req.get("tools")?.as_array()?;
    let choice = req.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    if messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("tool")
    {
        return None;
    }
    let wanted = choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let tool = tools.iter().find(|t| {
        let name = t
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        wanted.is_none_or(|w| name == Some(w))
    })?;
    let function = tool.get("function")?;
    let name = function.get("name")?.as_str()?.to_string();
    let args = text::sample_arguments(function.get("parameters"));
    Some((text::id("call_"), name, args))
}

/// Azure OpenAI: the deployment names the model, `api-version` is required, the key comes in
/// an `api-key` header, and answers carry content-filter results (a stream opens with a
/// chunk whose `choices` is empty).
async fn azure_chat(
    State(state): State<Arc<SimState>>,
    axum::extract::Path(deployment): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !query.contains_key("api-version") {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "404", "message": "Resource not found"}}),
            &[],
        );
    }
    if let Some(key) = &state.config.api_key
        && headers.get("api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str())
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
            &[],
        );
    }
    let Ok(mut req) = serde_json::from_slice::<Value>(&body) else {
        return chat_inner(state, headers, body, Dialect::Azure).await;
    };
    if let Some(o) = req.as_object_mut() {
        o.insert("model".into(), Value::from(deployment));
    }
    chat_inner(state, headers, Bytes::from(req.to_string()), Dialect::Azure).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Azure,
}

async fn chat(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    chat_inner(state, headers, body, Dialect::OpenAi).await
}

async fn chat_inner(
    state: Arc<SimState>,
    headers: HeaderMap,
    body: Bytes,
    dialect: Dialect,
) -> Response {
    if let Ok(mut last) = state.last_request.lock() {
        *last = Some(body.clone());
    }
    let (faults, guard) = match admit(&state, &headers, dialect == Dialect::OpenAi).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match check_model(&state, &req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut plan = match plan(&faults, &req, model) {
        Ok(p) => p,
        Err(r) => return r,
    };
    plan.azure = dialect == Dialect::Azure;
    state.answered.fetch_add(1, Ordering::Relaxed);
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        stream_response(state, faults, plan, guard)
    } else {
        complete_response(&state.config.name, &plan)
    }
}

fn complete_response(name: &str, plan: &Plan) -> Response {
    let choices: Vec<Value> = (0..plan.n)
        .map(|i| {
            let message = match &plan.tool {
                Some((id, fname, args)) => json!({
                    "role": "assistant", "content": null, "refusal": null, "annotations": [],
                    "tool_calls": [{"id": id, "type": "function", "function": {"name": fname, "arguments": args}}]
                }),
                None => json!({"role": "assistant", "content": text::answer(name, plan.start, plan.tokens), "refusal": null, "annotations": []}),
            };
            let finish = if plan.tool.is_some() { "tool_calls" } else { plan.finish };
            json!({"index": i, "message": message, "logprobs": null, "finish_reason": finish})
        })
        .collect();
    let mut body = json!({
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": plan.model,
        "choices": choices, "usage": plan.usage(), "service_tier": "default", "system_fingerprint": "fp_outlastsim"
    });
    if plan.azure
        && let Some(o) = body.as_object_mut()
    {
        o.insert("prompt_filter_results".into(), azure_filter_results());
    }
    json_response(StatusCode::OK, &body, &ratelimit_headers(9999))
}

/// An item of the SSE body: bytes to send, or a cut (the connection is aborted mid-body).
type Frame = Result<Bytes, std::io::Error>;

fn stream_response(state: Arc<SimState>, faults: Faults, plan: Plan, guard: InFlight) -> Response {
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let name = state.config.name.clone();
    tokio::spawn(async move {
        let _guard = guard;
        write_stream(&tx, &name, &faults, &plan).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("openai-version", HeaderValue::from_static("2020-10-01"));
    if let Ok(v) = HeaderValue::from_str(&text::id("req_")) {
        h.insert("x-request-id", v);
    }
    for (k, v) in ratelimit_headers(9999) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

struct Emitter<'a> {
    tx: &'a mpsc::Sender<Frame>,
    faults: &'a Faults,
    sent: u32,
}

enum Stop {
    /// The client went away or a fault ended the stream.
    Ended,
}

impl Emitter<'_> {
    async fn send(&mut self, data: String) -> Result<(), Stop> {
        if self.faults.cut_after.is_some_and(|n| self.sent >= n) {
            // Let what was sent reach the wire first: a real cut loses only what follows it.
            for _ in 0..100 {
                if self.tx.capacity() == self.tx.max_capacity() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = self
                .tx
                .send(Err(std::io::Error::other("simulated cut")))
                .await;
            return Err(Stop::Ended);
        }
        if self.faults.stall_after.is_some_and(|n| self.sent >= n) {
            self.tx.closed().await;
            return Err(Stop::Ended);
        }
        if self.faults.error_after.is_some_and(|n| self.sent >= n) {
            let e = error_body(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
                None,
            );
            let _ = self
                .tx
                .send(Ok(Bytes::from(format!("data: {e}\n\n"))))
                .await;
            return Err(Stop::Ended);
        }
        self.sent += 1;
        self.tx
            .send(Ok(Bytes::from(format!("data: {data}\n\n"))))
            .await
            .map_err(|_| Stop::Ended)
    }
}

async fn write_stream(tx: &mpsc::Sender<Frame>, name: &str, faults: &Faults, plan: &Plan) {
    let mut em = Emitter {
        tx,
        faults,
        sent: 0,
    };
    if !faults.first_token.is_zero() {
        tokio::time::sleep(faults.first_token).await;
    }
    let _ = emit_all(&mut em, name, faults.token_interval(), plan).await;
}

fn chunk(plan: &Plan, choices: Value) -> String {
    let mut c = json!({
        "id": plan.id, "object": "chat.completion.chunk", "created": plan.created, "model": plan.model,
        "system_fingerprint": "fp_outlastsim", "choices": choices
    });
    if plan.include_usage
        && let Some(o) = c.as_object_mut()
    {
        o.insert("usage".into(), Value::Null);
    }
    c.to_string()
}

async fn emit_all(
    em: &mut Emitter<'_>,
    name: &str,
    interval: Duration,
    plan: &Plan,
) -> Result<(), Stop> {
    let choice = |i: u32, delta: Value, finish: Option<&str>| json!({"index": i, "delta": delta, "logprobs": null, "finish_reason": finish});
    if plan.azure {
        // Azure opens every stream with the prompt's filter results and no choices.
        let c = json!({"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": azure_filter_results()});
        em.send(c.to_string()).await?;
    }
    match &plan.tool {
        Some((id, fname, args)) => {
            for i in 0..plan.n {
                let first = json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": id, "type": "function", "function": {"name": fname, "arguments": ""}}]});
                em.send(chunk(plan, json!([choice(i, first, None)])))
                    .await?;
            }
            // Split the arguments mid-token, as OpenAI does.
            let mid = args
                .char_indices()
                .nth(args.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for piece in [&args[..mid], &args[mid..]] {
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                for i in 0..plan.n {
                    let d = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                    em.send(chunk(plan, json!([choice(i, d, None)]))).await?;
                }
            }
            for i in 0..plan.n {
                em.send(chunk(
                    plan,
                    json!([choice(i, json!({}), Some("tool_calls"))]),
                ))
                .await?;
            }
        }
        None => {
            for i in 0..plan.n {
                let d = json!({"role": "assistant", "content": "", "refusal": null});
                em.send(chunk(plan, json!([choice(i, d, None)]))).await?;
            }
            for t in plan.start..plan.tokens {
                if t > plan.start && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                let piece = text::piece(name, t);
                for i in 0..plan.n {
                    em.send(chunk(
                        plan,
                        json!([choice(i, json!({"content": piece}), None)]),
                    ))
                    .await?;
                }
            }
            for i in 0..plan.n {
                em.send(chunk(
                    plan,
                    json!([choice(i, json!({}), Some(plan.finish))]),
                ))
                .await?;
            }
        }
    }
    if plan.include_usage {
        let mut c = json!({
            "id": plan.id, "object": "chat.completion.chunk", "created": plan.created, "model": plan.model,
            "system_fingerprint": "fp_outlastsim", "choices": [], "usage": plan.usage()
        });
        if let Some(o) = c.as_object_mut() {
            o.insert("usage".into(), plan.usage());
        }
        em.send(c.to_string()).await?;
    }
    em.tx
        .send(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
        .await
        .map_err(|_| Stop::Ended)
}

async fn embeddings(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_faults, _guard) = match admit(&state, &headers, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let model = match check_model(&state, &req) {
        Ok(m) => m.to_string(),
        Err(r) => return r,
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_u64) {
                vec![Value::Array(items.clone()).to_string()]
            } else {
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            }
        }
        _ => {
            return bad_request(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
                Some("input"),
                None,
            );
        }
    };
    let dims = req
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(1536)
        .clamp(1, 3072) as usize;
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut prompt_tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            prompt_tokens += (s.chars().count() as u64).div_ceil(4).max(1);
            let v = vector(s, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    state.answered.fetch_add(1, Ordering::Relaxed);
    let body = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}});
    json_response(StatusCode::OK, &body, &ratelimit_headers(9999))
}

/// A unit vector that depends only on the text, so equal inputs embed equally.
fn vector(s: &str, dims: usize) -> Vec<f32> {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let v: Vec<f32> = (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / norm).collect()
}

async fn models(State(state): State<Arc<SimState>>) -> Response {
    let names: Vec<String> = state.config.models.clone().unwrap_or_else(|| {
        vec![
            "gpt-4o-mini".into(),
            "gpt-4o".into(),
            "text-embedding-3-small".into(),
        ]
    });
    let data: Vec<Value> = names
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_715_367_049u64, "owned_by": "system"}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
        &[],
    )
}

fn azure_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!([{"prompt_index": 0, "content_filter_results": {"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe}}])
}
