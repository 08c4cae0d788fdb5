//! Provider clients. Each wire protocol lives in its own module that owns its wire types and
//! the two conversions (canonical -> native request, native -> canonical reply and stream);
//! [`Provider`] is the closed set of them, built once from configuration.
//!
//! Every call returns either an OpenAI-shaped reply or an [`UpstreamError`] that says whose
//! fault it was, so the router decides failover without knowing any protocol.

pub mod anthropic;
pub mod gemini;
mod http;
pub mod openai;
pub mod sse;
mod translate;

use std::time::Duration;

use bytes::Bytes;
use outlast_config::{Protocol, ProviderConfig, UpstreamSettings};
use outlast_core::{ChatRequest, EmbeddingsRequest, UpstreamError, Usage};
use tokio::time::Instant;

pub use http::{build_client, parse_rfc3339, retry_after};
pub use translate::{Translate, TranslatedStream};

/// A complete, non-streaming answer, already in OpenAI's wire format.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// An OpenAI `chat.completion.chunk` JSON object, ready to be sent as `data: ...`.
    Chunk(Chunk),
    /// The provider ended the stream cleanly.
    Done,
}

#[derive(Debug, Clone, Default)]
pub struct Chunk {
    pub data: Bytes,
    /// Usage carried by this chunk (the final usage chunk, or cumulative usage).
    pub usage: Option<Usage>,
    /// Text this chunk adds to the first choice's answer, so that a broken stream can be
    /// resumed elsewhere with the partial answer as a prefix.
    pub text: Option<String>,
    /// The chunk carries a tool call, or a choice other than the first: such a stream cannot
    /// be resumed by prefixing text.
    pub unresumable: bool,
}

/// Limits of one attempt: when it must have started answering, and how long a stream may
/// fall silent.
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimits {
    /// The request's deadline, shared by every attempt.
    pub deadline: Instant,
    pub first_byte_timeout: Duration,
    pub stall_timeout: Duration,
}

impl AttemptLimits {
    pub fn new(deadline: Instant, settings: &UpstreamSettings) -> Self {
        Self {
            deadline,
            first_byte_timeout: settings.first_byte_timeout,
            stall_timeout: settings.stream_stall_timeout,
        }
    }
}

/// A configured provider, dispatched by protocol.
#[derive(Debug, Clone)]
pub enum Provider {
    Openai(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Gemini(gemini::Gemini),
}

/// Why a provider could not be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedProtocol {
    pub provider: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for UnsupportedProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "provider `{}`: protocol `{}` is not available in this build of Outlast; use an OpenAI-compatible endpoint for it",
            self.provider,
            self.protocol.as_str()
        )
    }
}

/// Whether this build speaks `protocol`.
pub fn supports(protocol: Protocol) -> bool {
    match protocol {
        Protocol::Openai | Protocol::Anthropic | Protocol::Gemini => true,
    }
}

impl Provider {
    pub fn from_config(config: &ProviderConfig) -> Result<Self, UnsupportedProtocol> {
        match config.protocol {
            Protocol::Openai => Ok(Provider::Openai(openai::OpenAi::new(config))),
            Protocol::Anthropic => Ok(Provider::Anthropic(anthropic::Anthropic::new(config))),
            Protocol::Gemini => Ok(Provider::Gemini(gemini::Gemini::new(config))),
        }
    }

    pub async fn chat(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Provider::Openai(p) => p.chat(client, req, limits).await,
            Provider::Anthropic(p) => p.chat(client, req, limits).await,
            Provider::Gemini(p) => p.chat(client, req, limits).await,
        }
    }

    pub async fn chat_stream(
        &self,
        client: &reqwest::Client,
        req: &ChatRequest,
        limits: AttemptLimits,
    ) -> Result<ChatStream, UpstreamError> {
        match self {
            Provider::Openai(p) => p.chat_stream(client, req, limits).await,
            Provider::Anthropic(p) => p.chat_stream(client, req, limits).await,
            Provider::Gemini(p) => p.chat_stream(client, req, limits).await,
        }
    }

    pub async fn embeddings(
        &self,
        client: &reqwest::Client,
        req: &EmbeddingsRequest,
        limits: AttemptLimits,
    ) -> Result<Reply, UpstreamError> {
        match self {
            Provider::Openai(p) => p.embeddings(client, req, limits).await,
            Provider::Anthropic(_) | Provider::Gemini(_) => Err(UpstreamError::new(
                outlast_core::UpstreamErrorKind::Unsupported,
                format!(
                    "{}: embeddings are only available over the openai protocol",
                    req.model
                ),
            )),
        }
    }
}

/// A streamed answer being read from a provider.
#[derive(Debug)]
pub enum ChatStream {
    Openai(openai::OpenAiStream),
    Anthropic(TranslatedStream<anthropic::AnthropicTranslator>),
    Gemini(TranslatedStream<gemini::GeminiTranslator>),
}

impl ChatStream {
    /// The next item, or an error once the stream broke, stalled or reported a failure. After
    /// `Done` or an error, the stream is finished.
    pub async fn next(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        match self {
            ChatStream::Openai(s) => s.next().await,
            ChatStream::Anthropic(s) => s.next().await,
            ChatStream::Gemini(s) => s.next().await,
        }
    }

    /// The next item only if it is already decoded from bytes read earlier; never waits.
    pub fn next_ready(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        match self {
            ChatStream::Openai(s) => s.next_ready(),
            ChatStream::Anthropic(s) => s.next_ready(),
            ChatStream::Gemini(s) => s.next_ready(),
        }
    }
}

/// Extra headers from the provider's configuration, marked sensitive (they may hold keys).
pub(crate) fn config_headers(
    config: &ProviderConfig,
) -> Vec<(::http::HeaderName, ::http::HeaderValue)> {
    config
        .headers
        .iter()
        .filter_map(|(k, v)| {
            let name = ::http::HeaderName::from_bytes(k.as_bytes()).ok()?;
            let mut value = ::http::HeaderValue::from_str(v.expose()).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        })
        .collect()
}
