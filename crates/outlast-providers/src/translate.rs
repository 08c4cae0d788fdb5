//! Streams that need translation (Anthropic, Gemini): SSE events are read with the first-token
//! and stall timeouts applied, handed to a per-stream state machine ([`Translate`]) that turns
//! each native event into zero or more OpenAI chunks, and those are yielded one by one.
//!
//! Also the small pieces every translating protocol shares: OpenAI chunk and usage JSON,
//! unsupported-field errors and OpenAI-shaped caller errors.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use outlast_core::usage::{CompletionTokensDetails, PromptTokensDetails};
use outlast_core::{UpstreamError, UpstreamErrorKind, Usage};
use serde_json::{Value, json};
use tokio::time::{Instant, timeout_at};

use crate::http::transport_error;
use crate::sse::{SseDecoder, SseEvent};
use crate::{AttemptLimits, Chunk, StreamItem};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A per-stream state machine from native events to OpenAI chunks.
pub trait Translate {
    /// One native SSE event in, the items it produces out (often none, sometimes several).
    fn on_event(
        &mut self,
        name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<StreamItem>, UpstreamError>;
    /// The body ended: the last items (usage, `Done`), or why the stream is incomplete.
    fn on_end(&mut self) -> Result<Vec<StreamItem>, UpstreamError>;
}

/// What [`EventReader::ready`] found.
pub(crate) enum Ready {
    Event(SseEvent),
    Nothing,
    Ended,
}

/// Reads SSE events off a response body within the attempt's time limits.
pub(crate) struct EventReader {
    body: ByteStream,
    decoder: SseDecoder,
    limits: AttemptLimits,
    target: String,
    started: bool,
}

impl EventReader {
    pub fn new(response: reqwest::Response, limits: AttemptLimits, target: String) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::new(),
            limits,
            target,
            started: false,
        }
    }

    /// An event already at hand: decodable from bytes read earlier, or from bytes the
    /// connection has already received (a burst arrives as one read but one HTTP chunk per
    /// event). Never waits.
    pub fn ready(&mut self) -> Result<Ready, UpstreamError> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(event)) => {
                    self.started = true;
                    return Ok(Ready::Event(event));
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Malformed,
                        format!("{} sent an oversized stream event", self.target),
                    ));
                }
            }
            match self.body.next().now_or_never() {
                None => return Ok(Ready::Nothing),
                Some(Some(Ok(bytes))) => self.decoder.push(&bytes),
                Some(Some(Err(e))) => {
                    let mut err = transport_error(&e, &self.target);
                    err.kind = UpstreamErrorKind::BodyBroken;
                    return Err(err);
                }
                Some(None) => return Ok(Ready::Ended),
            }
        }
    }

    /// The next event; `Ok(None)` when the body ended.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, UpstreamError> {
        let (at, kind) = if self.started {
            (
                Instant::now() + self.limits.stall_timeout,
                UpstreamErrorKind::Stalled,
            )
        } else {
            let own = Instant::now() + self.limits.first_byte_timeout;
            if own < self.limits.deadline {
                (own, UpstreamErrorKind::FirstByteTimeout)
            } else {
                (self.limits.deadline, UpstreamErrorKind::DeadlineExceeded)
            }
        };
        loop {
            match self.decoder.next_event() {
                Ok(Some(event)) => {
                    self.started = true;
                    return Ok(Some(event));
                }
                Ok(None) => {}
                Err(_) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Malformed,
                        format!("{} sent an oversized stream event", self.target),
                    ));
                }
            }
            match timeout_at(at, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.decoder.push(&bytes),
                Ok(Some(Err(e))) => {
                    let mut err = transport_error(&e, &self.target);
                    err.kind = UpstreamErrorKind::BodyBroken;
                    return Err(err);
                }
                Ok(None) => {
                    // A last event without its blank line still counts (Gemini ends the body
                    // right after its final chunk).
                    self.decoder.push(b"\n\n");
                    return match self.decoder.next_event() {
                        Ok(Some(event)) => Ok(Some(event)),
                        _ => Ok(None),
                    };
                }
                Err(_) => {
                    let message = match kind {
                        UpstreamErrorKind::Stalled => format!(
                            "{} sent nothing for {:?} in the middle of a stream",
                            self.target, self.limits.stall_timeout
                        ),
                        UpstreamErrorKind::DeadlineExceeded => format!(
                            "{} did not start its answer before the request deadline",
                            self.target
                        ),
                        _ => format!(
                            "{} sent no first token within {:?}",
                            self.target, self.limits.first_byte_timeout
                        ),
                    };
                    return Err(UpstreamError::new(kind, message));
                }
            }
        }
    }
}

/// A native stream translated to OpenAI chunks.
pub struct TranslatedStream<T> {
    reader: EventReader,
    state: T,
    pending: VecDeque<StreamItem>,
    body_ended: bool,
    finished: bool,
}

impl<T> std::fmt::Debug for TranslatedStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslatedStream")
            .field("target", &self.reader.target)
            .finish_non_exhaustive()
    }
}

impl<T: Translate> TranslatedStream<T> {
    pub(crate) fn new(reader: EventReader, state: T) -> Self {
        Self {
            reader,
            state,
            pending: VecDeque::new(),
            body_ended: false,
            finished: false,
        }
    }

    pub async fn next(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(item) = self.pending.pop_front() {
                if matches!(item, StreamItem::Done) {
                    self.finished = true;
                }
                return Some(Ok(item));
            }
            if self.body_ended {
                self.finished = true;
                return None;
            }
            let produced = match self.reader.next().await {
                Ok(Some(event)) => self.state.on_event(event.event.as_deref(), &event.data),
                Ok(None) => {
                    self.body_ended = true;
                    self.state.on_end()
                }
                Err(e) => Err(e),
            };
            match produced {
                Ok(items) => self.pending.extend(items),
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// The next item if it is already at hand (queued, or decodable from bytes read
    /// earlier), without waiting.
    pub fn next_ready(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(item) = self.pending.pop_front() {
                if matches!(item, StreamItem::Done) {
                    self.finished = true;
                }
                return Some(Ok(item));
            }
            if self.body_ended {
                return None;
            }
            let produced = match self.reader.ready() {
                Ok(Ready::Event(event)) => self.state.on_event(event.event.as_deref(), &event.data),
                Ok(Ready::Nothing) => return None,
                Ok(Ready::Ended) => {
                    self.body_ended = true;
                    self.state.on_end()
                }
                Err(e) => Err(e),
            };
            match produced {
                Ok(items) => self.pending.extend(items),
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random alphanumeric string, for ids the provider does not give.
pub(crate) fn random_id(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

/// The header of every chunk of one stream: `id`, `created`, `model`.
#[derive(Debug, Clone)]
pub(crate) struct ChunkHead {
    pub id: String,
    pub created: u64,
    pub model: String,
    /// With `stream_options.include_usage`, OpenAI puts `"usage": null` on every chunk.
    pub include_usage: bool,
}

impl ChunkHead {
    /// A chunk with one choice.
    pub fn choice(&self, index: u32, delta: Value, finish: Option<&str>) -> StreamItem {
        let text = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let unresumable = index != 0 || delta.get("tool_calls").is_some();
        let mut item = self.chunk(
            json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]),
            None,
        );
        if let StreamItem::Chunk(c) = &mut item {
            c.text = text;
            c.unresumable = unresumable;
        }
        item
    }

    pub fn chunk(&self, choices: Value, usage: Option<Usage>) -> StreamItem {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": choices
        });
        if let Some(o) = c.as_object_mut() {
            if let Some(u) = usage {
                o.insert("usage".into(), usage_json(&u));
            } else if self.include_usage {
                o.insert("usage".into(), Value::Null);
            }
        }
        StreamItem::Chunk(Chunk {
            data: Bytes::from(c.to_string()),
            usage,
            ..Chunk::default()
        })
    }

    /// The end of a stream: the usage chunk (`choices: []`) when the client asked for it, and
    /// `Done`. Usage is recorded on the last item either way, for billing.
    pub fn finish(&self, usage: Option<Usage>, out: &mut Vec<StreamItem>) {
        if self.include_usage {
            out.push(self.chunk(json!([]), Some(usage.unwrap_or_default())));
        } else if let (Some(u), Some(StreamItem::Chunk(c))) = (usage, out.last_mut()) {
            c.usage = Some(u);
        }
        out.push(StreamItem::Done);
    }
}

/// Usage with the OpenAI details objects always present.
pub(crate) fn usage_json(u: &Usage) -> Value {
    let mut u = *u;
    u.prompt_tokens_details
        .get_or_insert(PromptTokensDetails::default());
    u.completion_tokens_details
        .get_or_insert(CompletionTokensDetails::default());
    serde_json::to_value(u).unwrap_or(Value::Null)
}

/// Usage from its parts, keeping OpenAI's invariants (total = prompt + completion).
pub(crate) fn usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Usage {
    let mut u = Usage::new(prompt, completion);
    u.prompt_tokens_details = Some(PromptTokensDetails {
        cached_tokens: cached.min(prompt),
    });
    u.completion_tokens_details = Some(CompletionTokensDetails {
        reasoning_tokens: reasoning.min(completion),
    });
    u
}

/// Nothing was sent: this target cannot express the request, the next one may.
pub(crate) fn unsupported(target: &str, what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::Unsupported,
        format!("{target} cannot express this request: {what}"),
    )
}

/// The request itself is wrong (every target would refuse it): a 400 with OpenAI's body.
pub(crate) fn invalid_request(message: String, param: &str) -> UpstreamError {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    let mut e = UpstreamError::new(UpstreamErrorKind::Status(400), message);
    e.body = Some(Bytes::from(body.to_string()));
    e
}

/// A malformed native answer.
pub(crate) fn malformed(target: &str, what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::Malformed,
        format!("{target} sent a malformed answer: {what}"),
    )
}

/// Split a `data:` URL into its media type and base64 payload.
pub(crate) fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

/// `stop` as a list (OpenAI accepts a string or an array).
pub(crate) fn stop_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// Message content as plain text: a string, or the `text` parts of an array joined.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}
