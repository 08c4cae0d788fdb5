//! The OpenAI Chat Completions protocol, spoken by OpenAI and by every OpenAI-compatible server
//! (DeepSeek, Mistral, Groq, Perplexity, OpenRouter, Ollama, vLLM...).
//!
//! Requests and replies are already canonical, so the conversions are light: the request is
//! re-encoded with the target's model name, and replies are checked and passed through as the
//! bytes the provider sent, with usage read on the way.

mod stream;
mod wire;

use http::HeaderValue;
use outlast_config::ProviderConfig;
use outlast_core::{ChatRequest, EmbeddingsRequest, UpstreamError, UpstreamErrorKind};

pub use stream::OpenAiStream;
pub(crate) use wire::{explain_error, shorten};

use crate::http::{read_success_body, send, status_error};
use crate::{AttemptLimits, ChatStream, Reply};

#[derive(Debug, Clone)]
pub struct OpenAi {
    name: String,
    chat_url: String,
    embeddings_url: String,
    /// `Bearer <key>`, marked sensitive so it is never logged by the HTTP stack.
    authorization: Option<HeaderValue>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl OpenAi {
    pub fn new(config: &ProviderConfig) -> Self {
        let authorization = config.api_key.as_ref().and_then(|k| {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
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
        if let Some(auth) = &self.authorization {
            rb = rb.header(http::header::AUTHORIZATION, auth.clone());
        }
        for (k, v) in &self.headers {
            rb = rb.header(k.clone(), v.clone());
        }
        rb
    }

    fn label(&self, model: &str) -> String {
        format!("{}/{model}", self.name)
    }

    fn encode<T: serde::Serialize>(value: &T, target: &str) -> Result<Vec<u8>, UpstreamError> {
        serde_json::to_vec(value).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Malformed,
                format!("could not encode the request for {target}: {e}"),
            )
        })
    }

    pub async fn chat(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        let target = self.label(&req.model);
        let body = Self::encode(req, &target)?;
        let response = send(self.post(client, &self.chat_url, body), &limits, &target).await?;
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
        let body = Self::encode(req, &target)?;
        let rb = self
            .post(client, &self.chat_url, body)
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
        let body = Self::encode(req, &target)?;
        let response = send(
            self.post(client, &self.embeddings_url, body),
            &limits,
            &target,
        )
        .await?;
        if !response.status().is_success() {
            return Err(status_error(response, &limits, &target, wire::explain_error).await);
        }
        let body = read_success_body(response, &limits, &target).await?;
        let usage = wire::check_embeddings(&body, &target)?;
        Ok(Reply { body, usage })
    }
}
