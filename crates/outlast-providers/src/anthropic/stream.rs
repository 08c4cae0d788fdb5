//! Anthropic's event sequence -> OpenAI chunks, one state struct per stream (reference §2.8).

use outlast_core::{UpstreamError, UpstreamErrorKind};
use serde_json::json;

use super::convert::JSON_TOOL;
use super::wire::{AnthropicUsage, Block, Delta, StopReason, StreamEvent};
use crate::StreamItem;
use crate::translate::{ChunkHead, Translate};

#[derive(Debug)]
pub struct AnthropicTranslator {
    target: String,
    head: ChunkHead,
    json_mode: bool,
    /// Input side from `message_start`, output (cumulative) from `message_delta`.
    usage: AnthropicUsage,
    /// Anthropic block index -> OpenAI tool-call index (tool calls only, counted from 0).
    tools: Vec<(u32, u32)>,
    /// The block carrying the synthetic JSON-mode tool: its input is the answer text.
    json_block: Option<u32>,
    started: bool,
    finish: Option<&'static str>,
}

impl AnthropicTranslator {
    pub fn new(
        target: String,
        model: String,
        include_usage: bool,
        json_mode: bool,
        created: u64,
    ) -> Self {
        Self {
            target,
            head: ChunkHead {
                id: String::new(),
                created,
                model,
                include_usage,
            },
            json_mode,
            usage: AnthropicUsage::default(),
            tools: Vec::new(),
            json_block: None,
            started: false,
            finish: None,
        }
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tools
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }

    fn error(&self, kind: &str, message: &str) -> UpstreamError {
        UpstreamError::new(
            UpstreamErrorKind::StreamError,
            format!(
                "{} reported an error mid-stream: {kind}: {}",
                self.target,
                crate::openai::shorten(message)
            ),
        )
    }
}

impl Translate for AnthropicTranslator {
    fn on_event(
        &mut self,
        _name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<StreamItem>, UpstreamError> {
        let event: StreamEvent = serde_json::from_slice(data).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Malformed,
                format!("{} sent a malformed stream event: {e}", self.target),
            )
        })?;
        let mut out = Vec::new();
        match event {
            StreamEvent::MessageStart { message } => {
                self.head.id = message.id;
                if !message.model.is_empty() {
                    self.head.model = message.model;
                }
                self.usage = message.usage;
                self.started = true;
                out.push(
                    self.head
                        .choice(0, json!({"role": "assistant", "content": ""}), None),
                );
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                if let Block::ToolUse { id, name, .. } = content_block {
                    if self.json_mode && name == JSON_TOOL {
                        self.json_block = Some(index);
                    } else {
                        let k = self.tools.len() as u32;
                        self.tools.push((index, k));
                        out.push(self.head.choice(
                            0,
                            json!({"tool_calls": [{"index": k, "id": id, "type": "function",
                                "function": {"name": name, "arguments": ""}}]}),
                            None,
                        ));
                    }
                }
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                Delta::TextDelta { text } => {
                    out.push(self.head.choice(0, json!({"content": text}), None));
                }
                Delta::InputJsonDelta { partial_json } => {
                    if self.json_block == Some(index) {
                        if !partial_json.is_empty() {
                            out.push(self.head.choice(0, json!({"content": partial_json}), None));
                        }
                    } else if let Some(k) = self.tool_index(index) {
                        // Sent even when empty: the first fragment often is.
                        out.push(self.head.choice(
                            0,
                            json!({"tool_calls": [{"index": k, "function": {"arguments": partial_json}}]}),
                            None,
                        ));
                    }
                }
                Delta::ThinkingDelta { thinking } => {
                    out.push(
                        self.head
                            .choice(0, json!({"reasoning_content": thinking}), None),
                    );
                }
                Delta::SignatureDelta { .. } | Delta::Unknown => {}
            },
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    if let Some(o) = u.output_tokens {
                        self.usage.output_tokens = o;
                    }
                    if let Some(i) = u.input_tokens {
                        self.usage.input_tokens = i;
                    }
                    if u.cache_creation_input_tokens.is_some() {
                        self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens;
                    }
                    if u.cache_read_input_tokens.is_some() {
                        self.usage.cache_read_input_tokens = u.cache_read_input_tokens;
                    }
                }
                let mut finish = delta.stop_reason.map_or("stop", StopReason::finish_reason);
                if self.json_block.is_some() && self.tools.is_empty() {
                    finish = "stop";
                }
                self.finish = Some(finish);
                out.push(self.head.choice(0, json!({}), Some(finish)));
            }
            StreamEvent::MessageStop => {
                if self.finish.is_none() {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Malformed,
                        format!("{} ended its message without a stop reason", self.target),
                    ));
                }
                self.head.finish(Some(self.usage.to_openai()), &mut out);
            }
            StreamEvent::Error { error } => return Err(self.error(&error.kind, &error.message)),
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {}
        }
        Ok(out)
    }

    fn on_end(&mut self) -> Result<Vec<StreamItem>, UpstreamError> {
        let mut out = Vec::new();
        if self.finish.is_some() {
            // `message_stop` missing but the answer was complete.
            self.head.finish(Some(self.usage.to_openai()), &mut out);
            return Ok(out);
        }
        Err(UpstreamError::new(
            UpstreamErrorKind::BodyBroken,
            format!(
                "{} ended its stream before finishing the answer",
                self.target
            ),
        ))
    }
}
