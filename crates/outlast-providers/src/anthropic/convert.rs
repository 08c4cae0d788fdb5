//! The two conversions: canonical request -> Messages request, and Messages response -> OpenAI
//! completion JSON. Each rule follows `shared/reference/provider-apis.md` §2.7.

use outlast_core::{ChatRequest, Role as CRole, UpstreamError};
use serde_json::{Map, Value, json};

use super::wire::{
    Block, Content, MessageParam, MessageResponse, MessagesRequest, Metadata, Role, Source, System,
    TextBlock, ToolChoice, ToolDef, ToolResultContent,
};
use crate::translate::{
    content_text, invalid_request, split_data_url, stop_list, unsupported, usage_json,
};

/// Anthropic requires `max_tokens`; LiteLLM's documented default, used when the client set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The synthetic tool through which JSON mode is expressed (LiteLLM's name for it).
pub const JSON_TOOL: &str = "json_tool_call";

/// Canonical -> Anthropic. `target` names the provider in errors.
pub fn to_native(req: &ChatRequest, target: &str) -> Result<MessagesRequest, UpstreamError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(unsupported(target, "Anthropic has no `n`; it answers once"));
    }
    let mut system: Vec<TextBlock> = Vec::new();
    let mut messages: Vec<MessageParam> = Vec::new();
    let last = req.messages.len().saturating_sub(1);
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            CRole::System | CRole::Developer => system.extend(system_blocks(m.content.as_ref())),
            CRole::User => push(&mut messages, Role::User, user_blocks(m, target)?),
            CRole::Tool => {
                let content = tool_result_content(m.content.as_ref(), target)?;
                let block = Block::ToolResult {
                    tool_use_id: m.tool_call_id.clone().unwrap_or_default(),
                    content: Some(content),
                    is_error: None,
                };
                push(&mut messages, Role::User, vec![block]);
            }
            CRole::Assistant => {
                let blocks = assistant_blocks(m, i == last)?;
                push(&mut messages, Role::Assistant, blocks);
            }
            CRole::Function => {
                return Err(unsupported(
                    target,
                    "legacy `function` messages; use `tool` messages",
                ));
            }
        }
    }
    let extra = &req.extra;
    let mut tools: Vec<ToolDef> = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.function.as_ref())
        .map(|f| ToolDef {
            name: f.name.clone(),
            description: f.description.clone(),
            input_schema: match &f.parameters {
                Some(p @ Value::Object(_)) => p.clone(),
                _ => json!({"type": "object", "properties": {}}),
            },
        })
        .collect();
    let parallel = extra.get("parallel_tool_calls").and_then(Value::as_bool);
    let disable_parallel = parallel.map(|p| !p);
    let mut tool_choice = match extra.get("tool_choice") {
        None | Some(Value::Null) => disable_parallel.map(|d| ToolChoice::Auto {
            disable_parallel_tool_use: Some(d),
        }),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto {
                disable_parallel_tool_use: disable_parallel,
            }),
            "required" => Some(ToolChoice::Any {
                disable_parallel_tool_use: disable_parallel,
            }),
            "none" => Some(ToolChoice::None),
            other => {
                return Err(invalid_request(
                    format!("Invalid value for `tool_choice`: `{other}`."),
                    "tool_choice",
                ));
            }
        },
        Some(v) => match v
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Some(ToolChoice::Tool {
                name: name.to_string(),
                disable_parallel_tool_use: disable_parallel,
            }),
            None => {
                return Err(invalid_request(
                    "`tool_choice` must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}.".into(),
                    "tool_choice",
                ));
            }
        },
    };
    if tools.is_empty() {
        tool_choice = None;
    }
    if let Some(schema) = json_mode_schema(extra.get("response_format")) {
        let forced = tools.is_empty();
        tools.push(ToolDef {
            name: JSON_TOOL.into(),
            description: Some("Respond with a JSON object in this tool's input.".into()),
            input_schema: schema,
        });
        if forced {
            tool_choice = Some(ToolChoice::Tool {
                name: JSON_TOOL.into(),
                disable_parallel_tool_use: None,
            });
        }
    }
    let temperature = extra
        .get("temperature")
        .and_then(Value::as_f64)
        // OpenAI allows 0-2, Anthropic 0-1: clamp rather than fail over on a valid request.
        .map(|t| t.clamp(0.0, 1.0));
    let user = extra.get("user").and_then(Value::as_str);
    let mut pass = Map::new();
    if let Some(t) = extra.get("thinking") {
        pass.insert("thinking".into(), t.clone());
    }
    Ok(MessagesRequest {
        model: req.model.clone(),
        max_tokens: Some(
            req.max_completion_tokens
                .or(req.max_tokens)
                .unwrap_or(DEFAULT_MAX_TOKENS),
        ),
        system: (!system.is_empty()).then_some(System::Blocks(system)),
        messages,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        stop_sequences: stop_list(extra.get("stop")).filter(|s| !s.is_empty()),
        temperature,
        top_p: extra.get("top_p").and_then(Value::as_f64),
        top_k: extra.get("top_k").and_then(Value::as_u64),
        metadata: user.map(|u| Metadata {
            user_id: Some(u.to_string()),
        }),
        stream: req.stream.filter(|s| *s),
        extra: pass,
    })
}

/// The schema JSON mode asks for, if it asks.
pub(crate) fn json_mode_schema(format: Option<&Value>) -> Option<Value> {
    let format = format?;
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(json!({"type": "object"})),
        "json_schema" => Some(
            format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
        ),
        _ => None,
    }
}

/// Adjacent messages of one role merge: Anthropic demands strict alternation, and parallel tool
/// results must share one user message.
fn push(messages: &mut Vec<MessageParam>, role: Role, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(prev) = messages.last_mut()
        && prev.role == role
        && let Content::Blocks(b) = &mut prev.content
    {
        b.extend(blocks);
        return;
    }
    messages.push(MessageParam {
        role,
        content: Content::Blocks(blocks),
    });
}

fn system_blocks(content: Option<&Value>) -> Vec<TextBlock> {
    let text_block = |text: &str, cache: Option<&Value>| TextBlock {
        kind: "text".into(),
        text: text.to_string(),
        cache_control: cache.cloned(),
    };
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![text_block(s, None)],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                let text = p.get("text").and_then(Value::as_str)?;
                (!text.is_empty()).then(|| text_block(text, p.get("cache_control")))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn image_block(url: &str, target: &str) -> Result<Block, UpstreamError> {
    if let Some((media, data)) = split_data_url(url) {
        let source = Source::Base64 {
            media_type: media.to_string(),
            data: data.to_string(),
        };
        return Ok(if media == "application/pdf" {
            Block::Document { source }
        } else {
            Block::Image { source }
        });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Block::Image {
            source: Source::Url {
                url: url.to_string(),
            },
        });
    }
    Err(unsupported(
        target,
        "an image URL that is neither data: nor http(s)",
    ))
}

fn part_blocks(content: Option<&Value>, target: &str) -> Result<Vec<Block>, UpstreamError> {
    match content {
        Some(Value::String(s)) if s.is_empty() => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![Block::Text {
            text: s.clone(),
            cache_control: None,
        }]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            out.push(Block::Text {
                                text: text.to_string(),
                                cache_control: p.get("cache_control").cloned(),
                            });
                        }
                    }
                    Some("image_url") => {
                        let url = p
                            .get("image_url")
                            .and_then(|i| i.get("url"))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        out.push(image_block(url, target)?);
                    }
                    Some(other) => {
                        return Err(unsupported(target, format!("`{other}` content parts")));
                    }
                    None => {}
                }
            }
            Ok(out)
        }
        _ => Ok(vec![]),
    }
}

fn user_blocks(m: &outlast_core::Message, target: &str) -> Result<Vec<Block>, UpstreamError> {
    part_blocks(m.content.as_ref(), target)
}

fn tool_result_content(
    content: Option<&Value>,
    target: &str,
) -> Result<ToolResultContent, UpstreamError> {
    Ok(match content {
        Some(Value::Array(_)) => ToolResultContent::Blocks(part_blocks(content, target)?),
        other => ToolResultContent::Text(content_text(other)),
    })
}

fn assistant_blocks(m: &outlast_core::Message, is_last: bool) -> Result<Vec<Block>, UpstreamError> {
    let mut out = Vec::new();
    let mut text = content_text(m.content.as_ref());
    if is_last {
        // A final assistant message is a prefill, which Anthropic refuses with trailing space.
        text.truncate(text.trim_end().len());
    }
    if !text.is_empty() {
        out.push(Block::Text {
            text,
            cache_control: None,
        });
    }
    for call in m.tool_calls.iter().flatten() {
        let f = call.get("function");
        let name = f
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let args = f
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // `""` means no arguments; anything else must parse, and is never sent as a string.
        let input = if args.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str::<Value>(args) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(invalid_request(
                        format!("The arguments of tool call `{name}` are not a JSON object."),
                        "messages",
                    ));
                }
            }
        };
        out.push(Block::ToolUse {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: name.to_string(),
            input,
        });
    }
    Ok(out)
}

/// Anthropic response -> OpenAI `chat.completion`. `json_mode`: the request asked for JSON
/// through the synthetic tool, whose input becomes the message content.
pub fn to_openai(resp: &MessageResponse, json_mode: bool, created: u64) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    let mut json_answer = None;
    for block in &resp.content {
        match block {
            Block::Text { text: t, .. } => text.push_str(t),
            Block::Thinking { thinking: t, .. } => thinking.push_str(t),
            Block::ToolUse { id, name, input } if json_mode && name == JSON_TOOL => {
                json_answer = Some(input.to_string());
                let _ = id;
            }
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()}
            })),
            _ => {}
        }
    }
    let mut finish = resp.stop_reason.map_or("stop", |r| r.finish_reason());
    if let Some(j) = json_answer {
        text = j;
        if calls.is_empty() {
            finish = "stop";
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if let Some(o) = message.as_object_mut() {
        if !calls.is_empty() {
            o.insert("tool_calls".into(), Value::Array(calls));
        }
        if !thinking.is_empty() {
            o.insert("reasoning_content".into(), Value::String(thinking));
        }
    }
    json!({
        "id": resp.id, "object": "chat.completion", "created": created, "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage_json(&resp.usage.to_openai()),
    })
}
