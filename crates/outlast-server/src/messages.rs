//! `POST /v1/messages`: Anthropic's Messages API inbound, so Anthropic SDKs and the tools built
//! on them can use Outlast. The request becomes canonical, runs the same failover as
//! `/v1/chat/completions` over targets of any protocol, and the answer goes back as an
//! Anthropic message or event stream; errors use Anthropic's body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use outlast_core::UpstreamError;
use outlast_providers::anthropic::inbound::{self, InboundStream};
use serde_json::{Value, json};

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
pub(crate) fn anthropic_error(e: &ApiError) -> Response {
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
    let deadline = crate::chat::deadline(state, headers)?;
    let mut failover = Failover::new(state, targets, deadline);
    if req.is_stream() {
        let encoder = AnthropicEncoder {
            inner: InboundStream::new(public_model),
        };
        return crate::chat::stream_with(state, req, failover, encoder).await;
    }
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        let provider = crate::chat::provider(state, &target)?;
        match provider.chat(&state.client, &req, failover.limits()).await {
            Ok(reply) => {
                failover.succeeded(&target);
                crate::protect::tap::record(&target, reply.usage);
                let completion: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                let msg = inbound::to_message(&completion, &public_model);
                let mut r = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    msg.to_string(),
                )
                    .into_response();
                mark(r.headers_mut(), &target, failover.attempts());
                return Ok(r);
            }
            Err(e) => failover.failed(&target, e)?,
        }
    }
}

/// Writes the relayed answer as Anthropic's event sequence.
struct AnthropicEncoder {
    inner: InboundStream,
}

impl AnthropicEncoder {
    fn write(out: &mut BytesMut, events: Vec<(&'static str, Value)>) {
        for (name, data) in events {
            out.put_slice(b"event: ");
            out.put_slice(name.as_bytes());
            out.put_slice(b"\ndata: ");
            out.put_slice(data.to_string().as_bytes());
            out.put_slice(b"\n\n");
        }
    }
}

impl crate::chat::Encoder for AnthropicEncoder {
    fn chunk(&mut self, data: &[u8], out: &mut BytesMut) {
        let events = self.inner.on_chunk(data);
        Self::write(out, events);
    }

    fn done(&mut self, out: &mut BytesMut) {
        let events = self.inner.on_done();
        Self::write(out, events);
    }

    fn error(&mut self, e: &UpstreamError, out: &mut BytesMut) {
        let err = json!({"type": "error", "error": {"type": "overloaded_error",
            "message": format!("The answer was cut off because the provider failed mid-stream ({}). Retry the request.", e.message)}});
        Self::write(out, vec![("error", err)]);
    }
}
