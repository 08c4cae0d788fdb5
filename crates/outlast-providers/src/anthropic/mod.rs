//! The Anthropic Messages API (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`).
//! Wire types in `wire`, the two conversions in `convert`, the stream state machine in `stream`.

pub mod convert;
pub mod inbound;
pub mod stream;
pub mod wire;

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use outlast_config::ProviderConfig;
use outlast_core::{ChatRequest, UpstreamError, UpstreamErrorKind};
use serde_json::json;

pub use stream::AnthropicTranslator;

use crate::http::{parse_rfc3339, read_success_body, send, status_error};
use crate::translate::{EventReader, TranslatedStream, malformed, now_secs};
use crate::{AttemptLimits, ChatStream, Reply};

/// The API version every request names (required by Anthropic).
pub const API_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone)]
pub struct Anthropic {
    name: String,
    url: String,
    api_key: Option<HeaderValue>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Anthropic {
    pub fn new(config: &ProviderConfig) -> Self {
        let api_key = config.api_key.as_ref().and_then(|k| {
            let mut v = HeaderValue::from_str(k.expose()).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Self {
            name: config.name.clone(),
            url: format!("{}/v1/messages", config.base_url),
            api_key,
            headers: crate::config_headers(config),
        }
    }

    fn post(&self, client: &reqwest::Client, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut rb = client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("anthropic-version", API_VERSION)
            .body(body);
        if let Some(key) = &self.api_key {
            rb = rb.header("x-api-key", key.clone());
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.clone(), v.clone());
        }
        rb
    }

    fn encode(req: &ChatRequest, target: &str) -> Result<Vec<u8>, UpstreamError> {
        crate::http::encode_json(&convert::to_native(req, target)?, target)
    }

    pub async fn chat(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        let target = format!("{}/{}", self.name, req.model);
        let body = Self::encode(req, &target)?;
        let response = send(self.post(client, body), &limits, &target).await?;
        if !response.status().is_success() {
            return Err(error(response, &limits, &target).await);
        }
        let body = read_success_body(response, &limits, &target).await?;
        let native: wire::MessageResponse =
            serde_json::from_slice(&body).map_err(|e| malformed(&target, e))?;
        let json_mode = convert::json_mode_schema(req.extra.get("response_format")).is_some();
        let out = convert::to_openai(&native, json_mode, now_secs());
        Ok(Reply {
            body: Bytes::from(out.to_string()),
            usage: Some(native.usage.to_openai()),
        })
    }

    pub async fn chat_stream(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<ChatStream, UpstreamError> {
        let target = format!("{}/{}", self.name, req.model);
        let body = Self::encode(req, &target)?;
        let rb = self
            .post(client, body)
            .header(http::header::ACCEPT, "text/event-stream");
        let response = send(rb, &limits, &target).await?;
        if !response.status().is_success() {
            return Err(error(response, &limits, &target).await);
        }
        let json_mode = convert::json_mode_schema(req.extra.get("response_format")).is_some();
        let state = AnthropicTranslator::new(
            target.clone(),
            req.model.clone(),
            req.wants_stream_usage(),
            json_mode,
            now_secs(),
        );
        let reader = EventReader::new(response, limits, target);
        Ok(ChatStream::Anthropic(TranslatedStream::new(reader, state)))
    }
}

/// A non-2xx answer: the status decides the fault (529 and 429 fail over, 400 does not); the
/// wait comes from `retry-after`, else the earliest `anthropic-ratelimit-*-reset`; the body is
/// rewritten in OpenAI's shape so a caller fault reaches the client in the form it expects.
async fn error(response: reqwest::Response, limits: &AttemptLimits, target: &str) -> UpstreamError {
    let reset = ratelimit_reset(response.headers(), now_secs());
    let mut e = status_error(response, limits, target, crate::openai::explain_error).await;
    if e.retry_after.is_none() && e.kind == UpstreamErrorKind::Status(429) {
        e.retry_after = reset;
    }
    e.body = e.body.as_deref().and_then(openai_error_body);
    e
}

/// The soonest `anthropic-ratelimit-*-reset` timestamp among exhausted limits, as a wait.
pub fn ratelimit_reset(headers: &http::HeaderMap, now: u64) -> Option<Duration> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("anthropic-ratelimit-") && k.ends_with("-reset")
        })
        .filter(|(k, _)| {
            let remaining = k.as_str().replace("-reset", "-remaining");
            headers
                .get(remaining.as_str())
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0")
        })
        .filter_map(|(_, v)| parse_rfc3339(v.to_str().ok()?))
        .map(|at| Duration::from_secs(at.saturating_sub(now)))
        .min()
}

/// Anthropic's `{"type":"error","error":{"type","message"}}` as OpenAI's error body.
pub fn openai_error_body(body: &[u8]) -> Option<Bytes> {
    let parsed: wire::ErrorBody = serde_json::from_slice(body).ok()?;
    let v = json!({"error": {"message": parsed.error.message, "type": parsed.error.kind, "param": null, "code": null}});
    Some(Bytes::from(v.to_string()))
}

#[cfg(test)]
mod tests;
