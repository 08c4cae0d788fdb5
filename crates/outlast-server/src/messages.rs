//! `POST /v1/messages`: Anthropic's Messages API inbound, so Anthropic SDKs and the tools built
//! on them can use Outlast. The request becomes canonical, runs the same failover as
//! `/v1/chat/completions` over targets of any protocol, and the answer goes back as an
//! Anthropic message or event stream; errors use Anthropic's body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use outlast_core::{UpstreamError, UpstreamErrorKind};
use outlast_providers::StreamItem;
use outlast_providers::anthropic::inbound::{self, InboundStream};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::chat::mark;
use crate::error::ApiError;
use crate::failover::Failover;
use crate::{AppState, auth, body};

pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.metrics.request();
    let response = match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => anthropic_error(&e),
    };
    state.metrics.response(response.status().as_u16());
    response
}

/// The gateway's error in Anthropic's shape, with the same status (529 for overload is not
/// used: 503 is what the gateway means, and Anthropic SDKs retry it the same way).
fn anthropic_error(e: &ApiError) -> Response {
    let status = e.status();
    let kind = match status.as_u16() {
        400 | 405 | 408 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        _ => "api_error",
    };
    let message = serde_json::from_slice::<Value>(&e.body())
        .ok()
        .and_then(|v| v.get("error")?.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "The gateway could not answer.".into());
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let ApiError::Unavailable { retry_after, .. } = e {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
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
    let native = inbound::parse(&bytes).map_err(|m| ApiError::invalid(m, None))?;
    let mut req = inbound::to_canonical(native).map_err(|m| ApiError::invalid(m, None))?;
    req.validate()
        .map_err(|i| ApiError::invalid(i.message, i.param))?;
    let public_model = req.model.clone();
    let targets = state
        .config
        .resolve(&req.model)
        .ok_or_else(|| ApiError::ModelNotFound {
            model: req.model.clone(),
        })?;
    let deadline = Instant::now() + state.config.upstream.request_timeout;
    let mut failover = Failover::new(state, &targets, deadline);
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        let provider = state
            .providers
            .get(target.provider)
            .ok_or_else(|| ApiError::Internal {
                message: format!(
                    "target {} refers to a provider that is not configured",
                    target.label()
                ),
            })?;
        let limits = failover.limits();
        if !req.is_stream() {
            match provider.chat(&state.client, &req, limits).await {
                Ok(reply) => {
                    failover.succeeded(target);
                    let completion: Value =
                        serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                    let msg = inbound::to_message(&completion, &public_model);
                    let mut r = (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        msg.to_string(),
                    )
                        .into_response();
                    mark(r.headers_mut(), target, failover.attempts());
                    return Ok(r);
                }
                Err(e) => failover.failed(target, e)?,
            }
            continue;
        }
        let mut upstream = match provider.chat_stream(&state.client, &req, limits).await {
            Ok(s) => s,
            Err(e) => {
                failover.failed(target, e)?;
                continue;
            }
        };
        let first = match upstream.next().await {
            Some(Ok(first)) => first,
            Some(Err(e)) => {
                failover.failed(target, e)?;
                continue;
            }
            None => {
                failover.failed(
                    target,
                    UpstreamError::new(
                        UpstreamErrorKind::BodyBroken,
                        format!("{} ended its stream before any event", target.label()),
                    ),
                )?;
                continue;
            }
        };
        failover.succeeded(target);
        let relay = (
            upstream,
            Some(first),
            InboundStream::new(public_model.clone()),
            false,
        );
        let body = futures_util::stream::unfold(
            relay,
            |(mut up, mut first, mut conv, done)| async move {
                if done {
                    return None;
                }
                let item = match first.take() {
                    Some(i) => Some(Ok(i)),
                    None => up.next().await,
                };
                let (events, done) = match item {
                    Some(Ok(StreamItem::Chunk(c))) => (conv.on_chunk(&c.data), false),
                    Some(Ok(StreamItem::Done)) => (conv.on_done(), true),
                    Some(Err(e)) => {
                        let err = json!({"type": "error", "error": {"type": "overloaded_error",
                        "message": format!("The answer was cut off because the provider failed mid-stream ({}). Retry the request.", e.message)}});
                        (vec![("error", err)], true)
                    }
                    None => return None,
                };
                let mut out = String::new();
                for (name, data) in events {
                    out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
                }
                Some((
                    Ok::<_, Infallible>(Bytes::from(out)),
                    (up, first, conv, done),
                ))
            },
        );
        let mut r = Response::new(Body::from_stream(body));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        mark(h, target, failover.attempts());
        return Ok(r);
    }
}
