//! Reading an OpenAI stream: SSE events in, checked chunks out, with the first-token and stall
//! timeouts applied to every read.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use outlast_core::{UpstreamError, UpstreamErrorKind};
use tokio::time::{Instant, timeout_at};

use super::wire::{Peek, shorten};
use crate::http::transport_error;
use crate::sse::SseDecoder;
use crate::{AttemptLimits, Chunk, StreamItem};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub struct OpenAiStream {
    body: ByteStream,
    decoder: SseDecoder,
    limits: AttemptLimits,
    target: String,
    /// Until the first event arrives the first-byte timeout (and the request deadline) apply;
    /// after it, the stall timeout between events.
    started: bool,
    /// A chunk carried a finish reason, so a body that ends without `[DONE]` is still complete.
    saw_finish: bool,
    finished: bool,
}

impl std::fmt::Debug for OpenAiStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiStream")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl OpenAiStream {
    pub(crate) fn new(response: reqwest::Response, limits: AttemptLimits, target: String) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::new(),
            limits,
            target,
            started: false,
            saw_finish: false,
            finished: false,
        }
    }

    fn read_deadline(&self) -> (Instant, UpstreamErrorKind) {
        if self.started {
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
        }
    }

    fn fail(&mut self, e: UpstreamError) -> Option<Result<StreamItem, UpstreamError>> {
        self.finished = true;
        Some(Err(e))
    }

    /// The next item if it is already decoded from what was read, without waiting: lets the
    /// relay send a burst of events in one write.
    ///
    /// Bytes the connection has already received are taken too: a provider's burst arrives as
    /// one read but as one HTTP chunk per event.
    pub fn next_ready(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(item) = self.decoded() {
                return Some(item);
            }
            match self.body.next().now_or_never()? {
                Some(Ok(bytes)) => self.decoder.push(&bytes),
                Some(Err(e)) => {
                    let mut err = transport_error(&e, &self.target);
                    err.kind = UpstreamErrorKind::BodyBroken;
                    return self.fail(err);
                }
                None => return Some(self.body_ended()),
            }
        }
    }

    /// The body ended: complete if a finish reason was seen, broken otherwise.
    fn body_ended(&mut self) -> Result<StreamItem, UpstreamError> {
        self.finished = true;
        if self.saw_finish {
            Ok(StreamItem::Done)
        } else {
            Err(UpstreamError::new(
                UpstreamErrorKind::BodyBroken,
                format!(
                    "{} ended its stream before finishing the answer",
                    self.target
                ),
            ))
        }
    }

    fn decoded(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(event)) => {
                    self.started = true;
                    match self.on_event(event.event.as_deref(), event.data) {
                        Ok(Some(item)) => {
                            if matches!(item, StreamItem::Done) {
                                self.finished = true;
                            }
                            return Some(Ok(item));
                        }
                        Ok(None) => continue,
                        Err(e) => return self.fail(e),
                    }
                }
                Ok(None) => return None,
                Err(_) => {
                    let e = UpstreamError::new(
                        UpstreamErrorKind::Malformed,
                        format!("{} sent an oversized stream event", self.target),
                    );
                    return self.fail(e);
                }
            }
        }
    }

    pub async fn next(&mut self) -> Option<Result<StreamItem, UpstreamError>> {
        if self.finished {
            return None;
        }
        let (at, timeout_kind) = self.read_deadline();
        loop {
            if let Some(item) = self.decoded() {
                return Some(item);
            }
            match timeout_at(at, self.body.next()).await {
                Ok(Some(Ok(bytes))) => self.decoder.push(&bytes),
                Ok(Some(Err(e))) => {
                    let mut err = transport_error(&e, &self.target);
                    err.kind = UpstreamErrorKind::BodyBroken;
                    return self.fail(err);
                }
                Ok(None) => return Some(self.body_ended()),
                Err(_) => {
                    let message = match timeout_kind {
                        UpstreamErrorKind::Stalled => format!(
                            "{} sent nothing for {:?} in the middle of a stream",
                            self.target, self.limits.stall_timeout
                        ),
                        UpstreamErrorKind::DeadlineExceeded => {
                            format!(
                                "{} did not start its answer before the request deadline",
                                self.target
                            )
                        }
                        _ => format!(
                            "{} sent no first token within {:?}",
                            self.target, self.limits.first_byte_timeout
                        ),
                    };
                    return self.fail(UpstreamError::new(timeout_kind, message));
                }
            }
        }
    }

    fn on_event(
        &mut self,
        name: Option<&str>,
        data: Bytes,
    ) -> Result<Option<StreamItem>, UpstreamError> {
        if data.as_ref() == b"[DONE]" {
            return Ok(Some(StreamItem::Done));
        }
        if name == Some("error") {
            let detail = super::wire::explain_error(&data)
                .unwrap_or_else(|| shorten(&String::from_utf8_lossy(&data)));
            return Err(UpstreamError::new(
                UpstreamErrorKind::StreamError,
                format!("{} reported an error mid-stream: {detail}", self.target),
            ));
        }
        let peek: Peek<'_> = serde_json::from_slice(&data).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Malformed,
                format!("{} sent a malformed stream chunk: {e}", self.target),
            )
        })?;
        if let Some(err) = peek.error {
            return Err(UpstreamError::new(
                UpstreamErrorKind::StreamError,
                format!(
                    "{} reported an error mid-stream: {}",
                    self.target,
                    shorten(err.message.as_deref().unwrap_or("no message"))
                ),
            ));
        }
        if peek
            .choices
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.finish_reason.is_some()))
        {
            self.saw_finish = true;
        }
        let mut text: Option<String> = None;
        let mut unresumable = false;
        for choice in peek.choices.iter().flatten() {
            let Some(delta) = &choice.delta else { continue };
            if choice.index != 0
                || delta.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
                || delta.function_call.is_some()
            {
                unresumable = true;
            }
            if choice.index == 0
                && let Some(c) = &delta.content
                && !c.is_empty()
            {
                text = Some(c.clone().into_owned());
            }
        }
        let usage = peek.usage;
        drop(peek);
        Ok(Some(StreamItem::Chunk(Chunk {
            data,
            usage,
            text,
            unresumable,
        })))
    }
}
