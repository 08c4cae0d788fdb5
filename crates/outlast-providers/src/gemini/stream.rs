//! Gemini `streamGenerateContent?alt=sse` -> OpenAI chunks. Each event is a whole response with
//! cumulative usage; function calls arrive whole; there is no `[DONE]`: the body's end is the
//! stream's end (reference §3.4).

use std::collections::BTreeMap;

use outlast_core::{UpstreamError, UpstreamErrorKind};
use serde_json::json;

use super::convert::tool_call;
use super::wire::{GenerateContentResponse, UsageMetadata, finish_reason};
use crate::StreamItem;
use crate::translate::{ChunkHead, Translate};

#[derive(Debug, Default, Clone, Copy)]
struct CandidateState {
    started: bool,
    tool_calls: u32,
    finished: bool,
}

#[derive(Debug)]
pub struct GeminiTranslator {
    target: String,
    head: ChunkHead,
    id_prefix: String,
    started: bool,
    candidates: BTreeMap<u32, CandidateState>,
    /// Tool calls over all candidates, for unique synthesized ids.
    calls: u32,
    usage: Option<UsageMetadata>,
    finished: bool,
}

impl GeminiTranslator {
    /// `fallback_id` is the chunk id when Gemini gives no `responseId`; `id_prefix` makes
    /// tool-call ids (`{prefix}{n}`).
    pub fn new(
        target: String,
        model: String,
        include_usage: bool,
        fallback_id: String,
        id_prefix: String,
        created: u64,
    ) -> Self {
        Self {
            target,
            head: ChunkHead {
                id: fallback_id,
                created,
                model,
                include_usage,
            },
            id_prefix,
            started: false,
            candidates: BTreeMap::new(),
            calls: 0,
            usage: None,
            finished: false,
        }
    }

    fn candidate(&mut self, index: u32) -> &mut CandidateState {
        self.candidates.entry(index).or_default()
    }
}

impl Translate for GeminiTranslator {
    fn on_event(
        &mut self,
        _name: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<StreamItem>, UpstreamError> {
        let resp: GenerateContentResponse = serde_json::from_slice(data).map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Malformed,
                format!("{} sent a malformed stream event: {e}", self.target),
            )
        })?;
        if let Some(err) = resp.error {
            let mut e = UpstreamError::new(
                UpstreamErrorKind::StreamError,
                format!(
                    "{} reported an error mid-stream: {}: {}",
                    self.target,
                    err.status.as_deref().unwrap_or("UNKNOWN"),
                    crate::openai::shorten(&err.message)
                ),
            );
            e.retry_after = err.retry_delay();
            return Err(e);
        }
        if !self.started {
            self.started = true;
            if let Some(id) = resp.response_id.as_ref().filter(|i| !i.is_empty()) {
                self.head.id.clone_from(id);
            }
            if let Some(m) = resp.model_version.as_ref().filter(|m| !m.is_empty()) {
                self.head.model.clone_from(m);
            }
        }
        if resp.usage_metadata.is_some() {
            self.usage = resp.usage_metadata;
        }
        let mut out = Vec::new();
        let candidates = resp.candidates.unwrap_or_default();
        if candidates.is_empty()
            && resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
        {
            // The prompt was blocked: no candidates at all.
            out.push(
                self.head
                    .choice(0, json!({"role": "assistant", "content": ""}), None),
            );
            out.push(self.head.choice(0, json!({}), Some("content_filter")));
            self.candidate(0).finished = true;
            self.finished = true;
            return Ok(out);
        }
        for (pos, cand) in candidates.iter().enumerate() {
            let index = cand.index.unwrap_or(pos as u32);
            if !self.candidate(index).started {
                self.candidate(index).started = true;
                out.push(self.head.choice(
                    index,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ));
            }
            for part in cand.content.iter().flat_map(|c| c.parts.iter()) {
                if let Some(t) = part.text.as_ref().filter(|t| !t.is_empty()) {
                    let delta = if part.thought == Some(true) {
                        json!({"reasoning_content": t})
                    } else {
                        json!({"content": t})
                    };
                    out.push(self.head.choice(index, delta, None));
                }
                if let Some(fc) = &part.function_call {
                    let k = self.candidate(index).tool_calls;
                    self.candidate(index).tool_calls += 1;
                    let call = tool_call(
                        fc,
                        part.thought_signature.as_deref(),
                        &self.id_prefix,
                        self.calls,
                        Some(k),
                    );
                    self.calls += 1;
                    out.push(self.head.choice(index, json!({"tool_calls": [call]}), None));
                }
            }
            if let Some(reason) = &cand.finish_reason {
                let saw_call = self.candidate(index).tool_calls > 0;
                self.candidate(index).finished = true;
                self.finished = true;
                out.push(
                    self.head
                        .choice(index, json!({}), Some(finish_reason(reason, saw_call))),
                );
            }
        }
        Ok(out)
    }

    fn on_end(&mut self) -> Result<Vec<StreamItem>, UpstreamError> {
        let all_done = self.candidates.values().all(|c| !c.started || c.finished);
        if !self.finished || !all_done {
            return Err(UpstreamError::new(
                UpstreamErrorKind::BodyBroken,
                format!(
                    "{} ended its stream before finishing the answer",
                    self.target
                ),
            ));
        }
        let mut out = Vec::new();
        self.head
            .finish(self.usage.map(UsageMetadata::to_openai), &mut out);
        Ok(out)
    }
}
