//! The OpenAI Chat Completions protocol, spoken by OpenAI and by every OpenAI-compatible server
//! (DeepSeek, Mistral, Groq, Perplexity, OpenRouter, Ollama, vLLM...).
//!
//! Requests and replies are already canonical, so the conversions are light: the request is
//! re-encoded with the target's model name, and replies are checked and passed through as the
//! bytes the provider sent, with usage read on the way.

mod dialect;
mod stream;
mod wire;

use http::HeaderValue;
use outlast_config::{Dialect, ProviderConfig};
use outlast_core::{ChatRequest, EmbeddingsRequest, UpstreamError, UpstreamErrorKind};

pub use stream::OpenAiStream;
pub(crate) use wire::{explain_error, shorten};

use crate::http::{read_success_body, send, status_error};
use crate::{AttemptLimits, ChatStream, Reply};

#[derive(Debug, Clone)]
pub struct OpenAi {
    name: String,
    base_url: String,
    chat_url: String,
    embeddings_url: String,
    dialect: Dialect,
    /// `Bearer <key>` (or Azure's `api-key`), marked sensitive so it is never logged by the
    /// HTTP stack.
    authorization: Option<(http::HeaderName, HeaderValue)>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl OpenAi {
    pub fn new(config: &ProviderConfig) -> Self {
        let authorization = config.api_key.as_ref().and_then(|k| {
            let (name, value) = match config.dialect {
                Dialect::Azure { .. } => (
                    http::HeaderName::from_static("api-key"),
                    k.expose().to_string(),
                ),
                Dialect::Standard | Dialect::Mistral => (
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", k.expose()),
                ),
            };
            let mut v = HeaderValue::from_str(&value).ok()?;
            v.set_sensitive(true);
            Some((name, v))
        });
        let headers = config
            .headers
            .iter()
            .filter_map(|(k, v)| {
                let name = http::HeaderName::from_bytes(k.as_bytes()).ok()?;
                let mut value = HeaderValue::from_str(v.expose()).ok()?;
                value.set_sensitive(true);
                Some((name, value))
            })
            .collect();
        Self {
            name: config.name.clone(),
            base_url: config.base_url.clone(),
            dialect: config.dialect.clone(),
            chat_url: format!("{}/chat/completions", config.base_url),
            embeddings_url: format!("{}/embeddings", config.base_url),
            authorization,
            headers,
        }
    }

    fn post(&self, client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut rb = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((name, value)) = &self.authorization {
            rb = rb.header(name.clone(), value.clone());
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.clone(), v.clone());
        }
        rb
    }

    fn label(&self, model: &str) -> String {
        format!("{}/{model}", self.name)
    }

    /// The URL for an operation (`chat/completions`, `embeddings`) on `model`. Azure names the
    /// deployment in the path instead of the body.
    fn url(&self, operation: &str, model: &str) -> std::borrow::Cow<'_, str> {
        match &self.dialect {
            Dialect::Azure { api_version } => format!(
                "{}/deployments/{model}/{operation}?api-version={api_version}",
                self.base_url
            )
            .into(),
            Dialect::Standard | Dialect::Mistral if operation == "embeddings" => {
                self.embeddings_url.as_str().into()
            }
            Dialect::Standard | Dialect::Mistral => self.chat_url.as_str().into(),
        }
    }

    /// The chat request body, adapted to the provider's dialect.
    fn encode_chat(&self, req: &ChatRequest, target: &str) -> Result<Vec<u8>, UpstreamError> {
        match self.dialect {
            Dialect::Mistral => {
                let mut v = serde_json::to_value(req).map_err(|e| {
                    UpstreamError::new(
                        UpstreamErrorKind::Malformed,
                        format!("could not encode the request for {target}: {e}"),
                    )
                })?;
                dialect::mistral(&mut v);
                crate::http::encode_json(&v, target)
            }
            Dialect::Standard | Dialect::Azure { .. } => crate::http::encode_json(req, target),
        }
    }

    pub async fn chat(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        let target = self.label(&req.model);
        let body = self.encode_chat(req, &target)?;
        let url = self.url("chat/completions", &req.model);
        let response = send(self.post(client, &url, body), &limits, &target).await?;
        if !response.status().is_success() {
            return Err(status_error(response, &limits, &target, wire::explain_error).await);
        }
        let body = read_success_body(response, &limits, &target).await?;
        let usage = wire::check_completion(&body, &target)?;
        Ok(Reply { body, usage })
    }

    pub async fn chat_stream(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<ChatStream, UpstreamError> {
        let target = self.label(&req.model);
        let body = self.encode_chat(req, &target)?;
        let url = self.url("chat/completions", &req.model);
        let rb = self
            .post(client, &url, body)
            .header(http::header::ACCEPT, "text/event-stream");
        let response = send(rb, &limits, &target).await?;
        if !response.status().is_success() {
            return Err(status_error(response, &limits, &target, wire::explain_error).await);
        }
        Ok(ChatStream::Openai(OpenAiStream::new(
            response, limits, target,
        )))
    }

    pub async fn embeddings(
        &self,
        client: &reqwest::Client,
        req: &EmbeddingsRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        let target = self.label(&req.model);
        let body = crate::http::encode_json(req, &target)?;
        let url = self.url("embeddings", &req.model);
        let response = send(self.post(client, &url, body), &limits, &target).await?;
        if !response.status().is_success() {
            return Err(status_error(response, &limits, &target, wire::explain_error).await);
        }
        let body = read_success_body(response, &limits, &target).await?;
        let usage = wire::check_embeddings(&body, &target)?;
        Ok(Reply { body, usage })
    }
}
