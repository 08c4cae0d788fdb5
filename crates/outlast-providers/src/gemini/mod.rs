//! The Gemini API (generativelanguage v1beta): `POST {base}/v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`.

pub mod convert;
pub mod stream;
pub mod wire;

use bytes::Bytes;
use http::HeaderValue;
use outlast_config::ProviderConfig;
use outlast_core::{ChatRequest, UpstreamError, UpstreamErrorKind};
use serde_json::json;

pub use stream::GeminiTranslator;

use crate::http::{read_success_body, send, status_error};
use crate::translate::{EventReader, TranslatedStream, malformed, now_secs, random_id};
use crate::{AttemptLimits, ChatStream, Reply};

#[derive(Debug, Clone)]
pub struct Gemini {
    name: String,
    base_url: String,
    api_key: Option<HeaderValue>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Gemini {
    pub fn new(config: &ProviderConfig) -> Self {
        let api_key = config.api_key.as_ref().and_then(|k| {
            let mut v = HeaderValue::from_str(k.expose()).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Self {
            name: config.name.clone(),
            base_url: config.base_url.clone(),
            api_key,
            headers: crate::config_headers(config),
        }
    }

    fn post(&self, client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut rb = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            rb = rb.header("x-goog-api-key", key.clone());
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
        let url = format!(
            "{}/v1beta/models/{}:generateContent",
            self.base_url, req.model
        );
        let response = send(self.post(client, &url, body), &limits, &target).await?;
        if !response.status().is_success() {
            return Err(error(response, &limits, &target).await);
        }
        let body = read_success_body(response, &limits, &target).await?;
        let native: wire::GenerateContentResponse =
            serde_json::from_slice(&body).map_err(|e| malformed(&target, e))?;
        if let Some(err) = &native.error {
            return Err(UpstreamError::new(
                UpstreamErrorKind::StreamError,
                format!("{target} reported an error: {}", err.message),
            ));
        }
        let out = convert::to_openai(
            &native,
            &req.model,
            &format!("call_{}_", random_id(12)),
            &format!("chatcmpl-{}", random_id(24)),
            now_secs(),
        );
        Ok(Reply {
            body: Bytes::from(out.to_string()),
            usage: Some(native.usage_metadata.unwrap_or_default().to_openai()),
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
        let url = format!(
            "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
            self.base_url, req.model
        );
        let rb = self
            .post(client, &url, body)
            .header(http::header::ACCEPT, "text/event-stream");
        let response = send(rb, &limits, &target).await?;
        if !response.status().is_success() {
            return Err(error(response, &limits, &target).await);
        }
        let state = GeminiTranslator::new(
            target.clone(),
            req.model.clone(),
            req.wants_stream_usage(),
            format!("chatcmpl-{}", random_id(24)),
            format!("call_{}_", random_id(12)),
            now_secs(),
        );
        let reader = EventReader::new(response, limits, target);
        Ok(ChatStream::Gemini(TranslatedStream::new(reader, state)))
    }
}

/// A non-2xx answer. A bad key arrives as 400 `API_KEY_INVALID` and is re-classified as 401
/// (our key, not the request: fail over); `RetryInfo.retryDelay` is the wait when there is no
/// Retry-After; the body is rewritten in OpenAI's shape.
async fn error(response: reqwest::Response, limits: &AttemptLimits, target: &str) -> UpstreamError {
    let mut e = status_error(response, limits, target, crate::openai::explain_error).await;
    let parsed = e
        .body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<wire::ErrorBody>(b).ok());
    if let Some(body) = parsed {
        if body.error.is_bad_key() {
            e.kind = UpstreamErrorKind::Status(401);
            e.message = format!(
                "{target} rejected the gateway's credentials (API_KEY_INVALID); check its api_key"
            );
        }
        if e.retry_after.is_none() {
            e.retry_after = body.error.retry_delay();
        }
        e.body = Some(openai_error_body(&body.error));
    } else {
        e.body = None;
    }
    e
}

/// Gemini's error as OpenAI's body (Portkey's mapping: type = status, code = HTTP code).
pub fn openai_error_body(err: &wire::ErrorDetail) -> Bytes {
    let v = json!({"error": {"message": err.message, "type": err.status, "param": null, "code": err.code}});
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests;
