//! `POST /v1/chat/completions`: decode, check, resolve the route, fail over across its targets,
//! then answer in one piece or relay the stream chunk by chunk as it arrives.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use outlast_config::Target;
use outlast_core::{ChatRequest, UpstreamError, UpstreamErrorKind};
use outlast_providers::{ChatStream, StreamItem};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::failover::Failover;
use crate::{AppState, auth, body};

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.metrics.request();
    let response = match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.response(response.status().as_u16());
    response
}

async fn handle(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth::check(state, headers)?;
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
    let deadline = Instant::now() + state.config.upstream.request_timeout;
    let mut failover = Failover::new(state, &targets, deadline);
    if req.is_stream() {
        stream(state, &mut req, &mut failover).await
    } else {
        complete(state, &mut req, &mut failover).await
    }
}

fn provider<'a>(
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
    failover: &mut Failover<'_>,
) -> Result<Response, ApiError> {
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        match provider(state, target)?
            .chat(&state.client, req, failover.limits())
            .await
        {
            Ok(reply) => {
                failover.succeeded(target);
                let mut response = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    reply.body,
                )
                    .into_response();
                mark(response.headers_mut(), target, failover.attempts());
                return Ok(response);
            }
            Err(e) => failover.failed(target, e)?,
        }
    }
}

async fn stream(
    state: &Arc<AppState>,
    req: &mut ChatRequest,
    failover: &mut Failover<'_>,
) -> Result<Response, ApiError> {
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        let mut upstream = match provider(state, target)?
            .chat_stream(&state.client, req, failover.limits())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                failover.failed(target, e)?;
                continue;
            }
        };
        // Nothing has reached the client yet: wait for the first event so that a stream that
        // fails before it can still move to the next target.
        match upstream.next().await {
            Some(Ok(first)) => {
                failover.succeeded(target);
                return Ok(relay(
                    Arc::clone(state),
                    upstream,
                    first,
                    target,
                    failover.attempts(),
                ));
            }
            Some(Err(e)) => failover.failed(target, e)?,
            None => failover.failed(
                target,
                UpstreamError::new(
                    UpstreamErrorKind::BodyBroken,
                    format!("{} ended its stream before any event", target.label()),
                ),
            )?,
        }
    }
}

/// `x-outlast-target` and `x-outlast-attempts` on every provider answer.
pub(crate) fn mark(headers: &mut HeaderMap, target: &Target, attempts: u32) {
    if let Ok(v) = HeaderValue::from_str(&target.label()) {
        headers.insert("x-outlast-target", v);
    }
    headers.insert("x-outlast-attempts", HeaderValue::from(attempts));
}

const DONE: &[u8] = b"data: [DONE]\n\n";

struct Relay {
    upstream: ChatStream,
    first: Option<StreamItem>,
    state: Arc<AppState>,
    finished: bool,
}

fn frame(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Relay the provider's stream to the client as it arrives. A failure after the first byte
/// ends the stream with an OpenAI-shaped error event and never with `[DONE]`.
fn relay(
    state: Arc<AppState>,
    upstream: ChatStream,
    first: StreamItem,
    target: &Target,
    attempts: u32,
) -> Response {
    let relay = Relay {
        upstream,
        first: Some(first),
        state,
        finished: false,
    };
    let body = futures_util::stream::unfold(relay, |mut r| async move {
        if r.finished {
            return None;
        }
        let item = match r.first.take() {
            Some(i) => Some(Ok(i)),
            None => r.upstream.next().await,
        };
        let bytes = match item {
            Some(Ok(StreamItem::Chunk(chunk))) => frame(&chunk.data),
            Some(Ok(StreamItem::Done)) => {
                r.finished = true;
                Bytes::from_static(DONE)
            }
            Some(Err(e)) => {
                r.finished = true;
                r.state.metrics.stream_broken();
                tracing::warn!(error = %e.message, "stream broke after the answer started");
                broken_stream_event(&e)
            }
            None => return None,
        };
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
    mark(h, target, attempts);
    response
}

fn broken_stream_event(e: &UpstreamError) -> Bytes {
    ApiError::Unavailable {
        message: format!("The answer was cut off because the provider failed mid-stream ({}). The answer is incomplete; retry the request.", e.message),
        retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
    }
    .sse_event()
}
