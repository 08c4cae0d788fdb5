//! `POST /v1/chat/completions`: decode, check, resolve the route, fail over across its targets,
//! then answer in one piece or relay the stream event by event as it arrives.
//!
//! A stream that breaks after content reached the client is resumed on the next target with
//! the partial answer handed over as an assistant prefix, so the client reads one continuous
//! answer under one id. Where that cannot work (a tool call under way, several choices) or no
//! target is left, the stream ends with an OpenAI-shaped error event, never with `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use outlast_config::Target;
use outlast_core::{ChatRequest, Message, Role, UpstreamError, UpstreamErrorKind};
use outlast_providers::{ChatStream, StreamItem};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::failover::{Failover, Permit, Pick};
use crate::{AppState, auth, body};

/// Longest deadline a client may ask for with `x-outlast-timeout`.
const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.metrics.request();
    let started = Instant::now();
    let response = match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.request_duration(started.elapsed());
    state.metrics.response(response.status().as_u16());
    response
}

/// The request's deadline: `x-outlast-timeout` (e.g. `30s`, `1500ms`) or the configured one.
pub(crate) fn deadline(state: &AppState, headers: &HeaderMap) -> Result<Instant, ApiError> {
    let timeout = match headers.get("x-outlast-timeout") {
        None => state.config.upstream.request_timeout,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| humantime_parse(v.trim()))
            .filter(|d| !d.is_zero() && *d <= MAX_CLIENT_TIMEOUT)
            .ok_or_else(|| {
                ApiError::invalid(
                    "The x-outlast-timeout header must be a duration such as `30s` or `1500ms`, at most 1 h.",
                    Some("x-outlast-timeout".into()),
                )
            })?,
    };
    Ok(Instant::now() + timeout)
}

/// `250ms`, `30s`, `2m`: the forms a header needs.
fn humantime_parse(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth::check(state, headers)?;
    let deadline = deadline(state, headers)?;
    let limits = &state.config.server;
    let bytes = body::read(
        headers,
        body,
        limits.max_body_bytes,
        limits.body_read_timeout,
    )
    .await?;
    let mut req: ChatRequest = body::json(&bytes)?;
    drop(bytes);
    req.validate()
        .map_err(|i| ApiError::invalid(i.message, i.param))?;
    let targets = state
        .config
        .resolve(&req.model)
        .ok_or_else(|| ApiError::ModelNotFound {
            model: req.model.clone(),
        })?;
    let mut failover = Failover::new(state, targets, deadline);
    if req.is_stream() {
        stream(state, req, failover).await
    } else {
        complete(state, &mut req, &mut failover).await
    }
}

/// The provider a target belongs to.
pub(crate) fn provider<'a>(
    state: &'a AppState,
    target: &Target,
) -> Result<&'a outlast_providers::Provider, ApiError> {
    state
        .providers
        .get(target.provider)
        .ok_or_else(|| ApiError::Internal {
            message: format!(
                "target {} refers to a provider that is not configured",
                target.label()
            ),
        })
}

async fn complete(
    state: &Arc<AppState>,
    req: &mut ChatRequest,
    failover: &mut Failover,
) -> Result<Response, ApiError> {
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        match provider(state, &target)?
            .chat(&state.client, req, failover.limits())
            .await
        {
            Ok(reply) => {
                failover.succeeded(&target);
                crate::protect::tap::record(&target, reply.usage);
                let mut response = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    reply.body,
                )
                    .into_response();
                mark(response.headers_mut(), &target, failover.attempts());
                return Ok(response);
            }
            Err(e) => failover.failed(&target, e)?,
        }
    }
}

/// Start a stream on the next target that produces a first event.
async fn open_stream(
    state: &Arc<AppState>,
    req: &mut ChatRequest,
    failover: &mut Failover,
) -> Result<(ChatStream, StreamItem, Pick), ApiError> {
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        let mut upstream = match provider(state, &target)?
            .chat_stream(&state.client, req, failover.limits())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                failover.failed(&target, e)?;
                continue;
            }
        };
        // Nothing has reached the client yet: wait for the first event so that a stream that
        // fails before it can still move to the next target.
        match upstream.next().await {
            Some(Ok(first)) => {
                failover.succeeded(&target);
                return Ok((upstream, first, target));
            }
            Some(Err(e)) => failover.failed(&target, e)?,
            None => failover.failed(
                &target,
                UpstreamError::new(
                    UpstreamErrorKind::BodyBroken,
                    format!("{} ended its stream before any event", target.label()),
                ),
            )?,
        }
    }
}

async fn stream(
    state: &Arc<AppState>,
    req: ChatRequest,
    failover: Failover,
) -> Result<Response, ApiError> {
    stream_with(state, req, failover, OpenAiEncoder).await
}

/// How relayed stream items are written for the client: OpenAI's SSE, or another API's.
pub(crate) trait Encoder: Send + 'static {
    /// One OpenAI chunk (JSON) of the answer.
    fn chunk(&mut self, data: &[u8], out: &mut BytesMut);
    /// The answer is complete.
    fn done(&mut self, out: &mut BytesMut);
    /// The answer broke and cannot be continued.
    fn error(&mut self, e: &UpstreamError, out: &mut BytesMut);
}

/// OpenAI's own stream: the chunks as they are, `[DONE]`, or an error event.
struct OpenAiEncoder;

impl Encoder for OpenAiEncoder {
    fn chunk(&mut self, data: &[u8], out: &mut BytesMut) {
        frame(out, data);
    }

    fn done(&mut self, out: &mut BytesMut) {
        out.put_slice(DONE);
    }

    fn error(&mut self, e: &UpstreamError, out: &mut BytesMut) {
        out.put_slice(&broken_stream_event(e));
    }
}

/// Open a stream on the first target that produces an event and relay it to the client,
/// resuming on the next target if it breaks mid-answer.
pub(crate) async fn stream_with<E: Encoder>(
    state: &Arc<AppState>,
    mut req: ChatRequest,
    mut failover: Failover,
    encoder: E,
) -> Result<Response, ApiError> {
    let hide_usage = crate::protect::tap::ensure_stream_usage(&mut req);
    let (upstream, first, target) = open_stream(state, &mut req, &mut failover).await?;
    let attempts = failover.attempts();
    let permit = failover.take_permit();
    let label_target = target.clone();
    let resumable = req.n.unwrap_or(1) == 1;
    let relay = Relay {
        state: Arc::clone(state),
        upstream,
        first: Some(Ok(first)),
        permit,
        target,
        resume: resumable.then(|| Resume {
            failover,
            req,
            text: String::new(),
            identity: None,
            continuing: false,
        }),
        encoder,
        finished: false,
        tap: crate::protect::tap::current(),
        hide_usage,
    };
    let body = futures_util::stream::unfold(relay, |mut r| async move {
        let bytes = r.next_frame().await?;
        Some((Ok::<_, Infallible>(bytes), r))
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies in front of the gateway must not buffer the stream either.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    mark(h, &label_target, attempts);
    Ok(response)
}

/// `x-outlast-target` and `x-outlast-attempts` on every provider answer.
pub(crate) fn mark(headers: &mut HeaderMap, target: &Target, attempts: u32) {
    if let Ok(v) = HeaderValue::from_str(&target.label()) {
        headers.insert("x-outlast-target", v);
    }
    headers.insert("x-outlast-attempts", HeaderValue::from(attempts));
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Append one SSE event carrying `data`.
fn frame(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 8);
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// What is needed to continue a broken stream elsewhere.
struct Resume {
    failover: Failover,
    req: ChatRequest,
    /// The first choice's text so far.
    text: String,
    /// `id`, `created`, `model` of the stream the client sees, from its first chunk.
    identity: Option<(Value, Value, Value)>,
    /// Chunks now come from a continuation and must carry the original identity.
    continuing: bool,
}

struct Relay<E> {
    state: Arc<AppState>,
    upstream: ChatStream,
    /// An item taken from upstream but not yet relayed.
    first: Option<Result<StreamItem, UpstreamError>>,
    permit: Option<Permit>,
    /// The target streaming now.
    target: Pick,
    /// `None` once the stream can no longer be resumed.
    resume: Option<Resume>,
    encoder: E,
    finished: bool,
    /// Where usage is reported for billing, and whether the client did not ask to see it.
    tap: Option<Arc<crate::protect::tap::Tap>>,
    hide_usage: bool,
}

impl<E: Encoder> Relay<E> {
    /// The next bytes for the client: every event already at hand, framed together, so that
    /// a burst from the provider leaves in one write instead of one write per event.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        loop {
            if self.finished {
                return (!out.is_empty()).then(|| out.freeze());
            }
            let item = match self.first.take() {
                Some(i) => Some(i),
                None if out.is_empty() => self.upstream.next().await,
                None => match self.upstream.next_ready() {
                    Some(i) => Some(i),
                    None => return Some(out.freeze()),
                },
            };
            match item {
                Some(Ok(StreamItem::Chunk(chunk))) => self.relay_chunk(chunk, &mut out),
                Some(Ok(StreamItem::Done)) => {
                    self.finished = true;
                    self.permit = None;
                    self.encoder.done(&mut out);
                }
                Some(Err(e)) if !out.is_empty() => {
                    // Send what arrived before the failure first.
                    self.first = Some(Err(e));
                    return Some(out.freeze());
                }
                Some(Err(e)) => {
                    if let Some(p) = &mut self.permit {
                        p.stream_failed(&e);
                    }
                    self.permit = None;
                    if self.try_resume(&e).await {
                        continue;
                    }
                    self.finished = true;
                    self.state.metrics.stream_broken();
                    tracing::warn!(error = %e.message, "stream broke after the answer started");
                    self.encoder.error(&e, &mut out);
                    return Some(out.freeze());
                }
                None => return (!out.is_empty()).then(|| out.freeze()),
            }
        }
    }

    /// Note what the chunk adds to the answer and frame it for the client (a continuation's
    /// opening role chunk is dropped).
    fn relay_chunk(&mut self, chunk: outlast_providers::Chunk, out: &mut BytesMut) {
        if let (Some(tap), Some(usage)) = (&self.tap, chunk.usage) {
            tap.record(&self.target, usage);
            if self.hide_usage && crate::protect::tap::is_usage_only(&chunk) {
                return;
            }
        }
        let Some(resume) = &mut self.resume else {
            return self.encoder.chunk(&chunk.data, out);
        };
        if chunk.unresumable {
            self.resume = None;
            return self.encoder.chunk(&chunk.data, out);
        }
        if resume.identity.is_none() {
            // From the first chunk that has an id (Azure opens with an id-less filter chunk).
            resume.identity = serde_json::from_slice::<Value>(&chunk.data)
                .ok()
                .filter(|v| {
                    v.get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| !id.is_empty())
                })
                .map(|v| {
                    let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
                    (field("id"), field("created"), field("model"))
                });
        }
        if !resume.continuing {
            if let Some(t) = &chunk.text {
                resume.text.push_str(t);
            }
            return self.encoder.chunk(&chunk.data, out);
        }
        // A continuation: present it under the original stream's identity.
        let Ok(mut v) = serde_json::from_slice::<Value>(&chunk.data) else {
            return self.encoder.chunk(&chunk.data, out);
        };
        let is_opening = chunk.text.is_none()
            && v.pointer("/choices/0/finish_reason")
                .is_none_or(Value::is_null)
            && v.pointer("/choices/0/delta/role").is_some();
        if is_opening {
            return;
        }
        if let Some(t) = &chunk.text {
            resume.text.push_str(t);
        }
        if let (Some((id, created, model)), Some(o)) = (&resume.identity, v.as_object_mut()) {
            o.insert("id".into(), id.clone());
            o.insert("created".into(), created.clone());
            o.insert("model".into(), model.clone());
        }
        self.encoder.chunk(v.to_string().as_bytes(), out);
    }

    /// Continue on the next target with the partial answer as an assistant prefix.
    async fn try_resume(&mut self, e: &UpstreamError) -> bool {
        let Some(mut resume) = self.resume.take() else {
            return false;
        };
        let state = Arc::clone(&self.state);
        // The failed attempt counts against the target that broke (its budget pays the retry).
        if resume.failover.failed(&self.target, e.clone()).is_err() {
            return false;
        }
        let mut req = resume.req.clone();
        if !resume.text.is_empty() {
            req.messages.push(Message {
                role: Role::Assistant,
                content: Some(Value::String(resume.text.clone())),
                tool_calls: None,
                tool_call_id: None,
                extra: Default::default(),
            });
        }
        match open_stream(&state, &mut req, &mut resume.failover).await {
            Ok((upstream, first, target)) => {
                tracing::info!(target = %target.label(), "stream resumed on the next target");
                state.metrics.stream_resumed();
                self.upstream = upstream;
                self.first = Some(Ok(first));
                self.permit = resume.failover.take_permit();
                self.target = target;
                resume.continuing = true;
                self.resume = Some(resume);
                true
            }
            Err(err) => {
                tracing::warn!(error = ?err.status(), "could not resume the stream");
                false
            }
        }
    }
}

fn broken_stream_event(e: &UpstreamError) -> Bytes {
    ApiError::Unavailable {
        message: format!("The answer was cut off because the provider failed mid-stream ({}). The answer is incomplete; retry the request.", e.message),
        retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
    }
    .sse_event()
}

#[cfg(test)]
mod tests {
    use super::humantime_parse;
    use std::time::Duration;

    #[test]
    fn parses_header_durations() {
        assert_eq!(humantime_parse("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(humantime_parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(humantime_parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(humantime_parse("0.5s"), Some(Duration::from_millis(500)));
        for bad in ["", "30", "s", "10h", "-1s", "1e400s"] {
            assert_eq!(humantime_parse(bad), None, "{bad}");
        }
    }
}
