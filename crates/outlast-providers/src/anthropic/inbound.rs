//! The gateway speaking Anthropic to its own clients (`POST /v1/messages`): an Anthropic
//! request becomes a canonical one, and the OpenAI answer of whichever target served it becomes
//! an Anthropic message or event sequence.

use serde_json::{Map, Value, json};

use super::wire::{
    Block, Content, MessagesRequest, Role, Source, System, ToolChoice, ToolResultContent,
};

/// Anthropic request -> canonical (OpenAI) request.
pub fn to_canonical(req: MessagesRequest) -> Result<outlast_core::ChatRequest, String> {
    let Some(max_tokens) = req.max_tokens else {
        return Err("max_tokens: Field required".into());
    };
    let mut messages: Vec<Value> = Vec::new();
    match req.system {
        Some(System::Text(t)) if !t.is_empty() => {
            messages.push(json!({"role": "system", "content": t}))
        }
        Some(System::Blocks(b)) if !b.is_empty() => {
            let parts: Vec<Value> = b
                .into_iter()
                .map(|t| {
                    let mut p = json!({"type": "text", "text": t.text});
                    if let (Some(c), Some(o)) = (t.cache_control, p.as_object_mut()) {
                        o.insert("cache_control".into(), c);
                    }
                    p
                })
                .collect();
            messages.push(json!({"role": "system", "content": parts}));
        }
        _ => {}
    }
    for m in req.messages {
        let blocks = m.content.into_blocks();
        match m.role {
            Role::User => {
                let mut parts = Vec::new();
                for b in blocks {
                    match b {
                        Block::ToolResult {
                            tool_use_id,
                            content,
                            is_error,
                        } => {
                            let text = match content {
                                Some(ToolResultContent::Text(t)) => t,
                                Some(ToolResultContent::Blocks(bs)) => bs
                                    .into_iter()
                                    .filter_map(|b| match b {
                                        Block::Text { text, .. } => Some(text),
                                        _ => None,
                                    })
                                    .collect::<Vec<_>>()
                                    .join(""),
                                None => String::new(),
                            };
                            let text = if is_error == Some(true) {
                                format!("Error: {text}")
                            } else {
                                text
                            };
                            messages.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
                        }
                        other => {
                            if let Some(p) = user_part(other) {
                                parts.push(p);
                            }
                        }
                    }
                }
                if !parts.is_empty() {
                    messages.push(json!({"role": "user", "content": parts}));
                }
            }
            Role::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for b in blocks {
                    match b {
                        Block::Text { text: t, .. } => text.push_str(&t),
                        Block::ToolUse { id, name, input } => calls
                            .push(json!({"id": id, "type": "function",
                            "function": {"name": name, "arguments": input.to_string()}})),
                        _ => {}
                    }
                }
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
                if let (false, Some(o)) = (calls.is_empty(), msg.as_object_mut()) {
                    o.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(msg);
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(req.model));
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), Value::from(max_tokens));
    if let Some(s) = req.stop_sequences.filter(|s| !s.is_empty()) {
        out.insert("stop".into(), json!(s));
    }
    for (k, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = v {
            out.insert(k.into(), json!(v));
        }
    }
    if let Some(k) = req.top_k {
        out.insert("top_k".into(), json!(k));
    }
    if let Some(u) = req.metadata.and_then(|m| m.user_id) {
        out.insert("user".into(), Value::String(u));
    }
    if let Some(tools) = req.tools.filter(|t| !t.is_empty()) {
        let t: Vec<Value> = tools
            .into_iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.input_schema});
                if let (Some(d), Some(o)) = (t.description, f.as_object_mut()) {
                    o.insert("description".into(), Value::String(d));
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(t));
    }
    if let Some(choice) = req.tool_choice {
        let (c, disable) = match choice {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (json!("auto"), disable_parallel_tool_use),
            ToolChoice::Any {
                disable_parallel_tool_use,
            } => (json!("required"), disable_parallel_tool_use),
            ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                json!({"type": "function", "function": {"name": name}}),
                disable_parallel_tool_use,
            ),
            ToolChoice::None => (json!("none"), None),
        };
        out.insert("tool_choice".into(), c);
        if let Some(d) = disable {
            out.insert("parallel_tool_calls".into(), Value::Bool(!d));
        }
    }
    if req.stream == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
        // Usage is needed for `message_delta`, whatever the client asked.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = req.extra.get("thinking") {
        out.insert("thinking".into(), t.clone());
    }
    serde_json::from_value(Value::Object(out)).map_err(|e| e.to_string())
}

fn user_part(b: Block) -> Option<Value> {
    match b {
        Block::Text {
            text,
            cache_control,
        } => {
            let mut p = json!({"type": "text", "text": text});
            if let (Some(c), Some(o)) = (cache_control, p.as_object_mut()) {
                o.insert("cache_control".into(), c);
            }
            Some(p)
        }
        Block::Image { source } | Block::Document { source } => {
            let url = match source {
                Source::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
                Source::Url { url } => url,
            };
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        _ => None,
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn anthropic_usage(u: Option<&Value>) -> Value {
    let get = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cached = u
        .and_then(|u| u.get("prompt_tokens_details"))
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    // OpenAI's prompt tokens include cached ones; Anthropic's input_tokens exclude them.
    json!({"input_tokens": get("prompt_tokens").saturating_sub(cached), "output_tokens": get("completion_tokens"),
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached})
}

/// An OpenAI `chat.completion` -> an Anthropic message (first choice).
pub fn to_message(completion: &Value, model: &str) -> Value {
    let choice = completion.get("choices").and_then(|c| c.get(0));
    let message = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(t) = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = serde_json::from_str::<Value>(args)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        content.push(
            json!({"type": "tool_use", "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null), "input": input}),
        );
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .unwrap_or("stop");
    let id = completion.get("id").and_then(Value::as_str).unwrap_or("");
    json!({"id": format!("msg_{}", id.trim_start_matches("msg_")), "type": "message", "role": "assistant",
        "model": completion.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or(model),
        "content": content, "stop_reason": stop_reason(finish), "stop_sequence": null,
        "usage": anthropic_usage(completion.get("usage"))})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Tool(u64),
}

/// OpenAI chunks -> Anthropic events, one per stream.
#[derive(Debug)]
pub struct InboundStream {
    model: String,
    started: bool,
    open: Open,
    next_block: u32,
    finish: Option<String>,
    usage: Option<Value>,
}

impl InboundStream {
    pub fn new(model: String) -> Self {
        Self {
            model,
            started: false,
            open: Open::None,
            next_block: 0,
            finish: None,
            usage: None,
        }
    }

    fn close(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if self.open != Open::None {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.next_block - 1}),
            ));
            self.open = Open::None;
        }
    }

    fn start(&mut self, kind: Open, block: Value, out: &mut Vec<(&'static str, Value)>) {
        self.close(out);
        out.push(("content_block_start", json!({"type": "content_block_start", "index": self.next_block, "content_block": block})));
        self.next_block += 1;
        self.open = kind;
    }

    /// One OpenAI chunk in, the Anthropic events it makes out.
    pub fn on_chunk(&mut self, chunk: &[u8]) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let Ok(c) = serde_json::from_slice::<Value>(chunk) else {
            return out;
        };
        if !self.started {
            self.started = true;
            let id = c.get("id").and_then(Value::as_str).unwrap_or("");
            let model = c
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or(&self.model);
            out.push(("message_start", json!({"type": "message_start", "message": {
                "id": format!("msg_{}", id.trim_start_matches("msg_")), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 1}}})));
            out.push(("ping", json!({"type": "ping"})));
        }
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = c.get("choices").and_then(|c| c.get(0)) else {
            return out;
        };
        let delta = choice.get("delta");
        if let Some(t) = delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.open != Open::Text {
                self.start(Open::Text, json!({"type": "text", "text": ""}), &mut out);
            }
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.next_block - 1,
                "delta": {"type": "text_delta", "text": t}}),
            ));
        }
        for call in delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function");
            if self.open != Open::Tool(index) {
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("toolu_{index}"), str::to_string);
                let name = f
                    .and_then(|f| f.get("name"))
                    .cloned()
                    .unwrap_or(Value::Null);
                self.start(
                    Open::Tool(index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    &mut out,
                );
            }
            let args = f
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !args.is_empty() {
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.next_block - 1,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        out
    }

    /// The upstream stream ended cleanly: close the message.
    pub fn on_done(&mut self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        self.close(&mut out);
        let usage = anthropic_usage(self.usage.as_ref());
        out.push(("message_delta", json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref().unwrap_or("stop")), "stop_sequence": null},
            "usage": usage})));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }
}

/// Check an inbound body's content is usable; empty message lists are the caller's error.
pub fn parse(body: &[u8]) -> Result<MessagesRequest, String> {
    let req: MessagesRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if req.messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    if req
        .messages
        .iter()
        .any(|m| matches!(&m.content, Content::Blocks(b) if b.is_empty()))
    {
        return Err("messages: all messages must have non-empty content".into());
    }
    Ok(req)
}
