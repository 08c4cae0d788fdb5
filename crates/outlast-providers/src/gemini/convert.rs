//! The two conversions: canonical request -> `generateContent` request, and Gemini response ->
//! OpenAI completion JSON (reference §3.6).

use std::collections::HashMap;

use outlast_core::{ChatRequest, Role as CRole, UpstreamError};
use serde_json::{Map, Value, json};

use super::wire::{
    Blob, Content, FileData, FunctionCall, FunctionCallingConfig, FunctionDeclaration,
    FunctionResponse, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part,
    Tool, ToolConfig, finish_reason,
};
use crate::translate::{
    content_text, invalid_request, split_data_url, stop_list, unsupported, usage_json,
};

/// Schema keys Gemini's OpenAPI subset rejects.
const DROPPED_SCHEMA_KEYS: &[&str] = &[
    "additionalProperties",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "strict",
    "examples",
];

/// Canonical -> Gemini.
pub fn to_native(req: &ChatRequest, target: &str) -> Result<GenerateContentRequest, UpstreamError> {
    // Tool names and thought signatures of earlier calls, by call id: a tool result names the
    // call only by id, and Gemini demands the function's name.
    let mut calls: HashMap<&str, (&str, Option<&str>)> = HashMap::new();
    for m in &req.messages {
        for c in m.tool_calls.iter().flatten() {
            if let (Some(id), Some(name)) = (
                c.get("id").and_then(Value::as_str),
                c.get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str),
            ) {
                calls.insert(id, (name, thought_signature(c)));
            }
        }
    }
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            CRole::System | CRole::Developer => {
                let text = content_text(m.content.as_ref());
                if !text.is_empty() {
                    system.push(text_part(text));
                }
            }
            CRole::User => push(&mut contents, "user", parts(m.content.as_ref(), target)?),
            CRole::Assistant => {
                let mut out = Vec::new();
                let text = content_text(m.content.as_ref());
                if !text.is_empty() {
                    out.push(text_part(text));
                }
                for c in m.tool_calls.iter().flatten() {
                    out.push(function_call_part(c)?);
                }
                push(&mut contents, "model", out);
            }
            CRole::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                let Some((name, _)) = calls.get(id) else {
                    return Err(invalid_request(
                        format!(
                            "`tool_call_id` `{id}` does not match any earlier assistant tool call."
                        ),
                        &format!("messages[{i}].tool_call_id"),
                    ));
                };
                let text = content_text(m.content.as_ref());
                let value = match serde_json::from_str::<Value>(&text) {
                    Ok(v) => v,
                    Err(_) => Value::String(text),
                };
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: None,
                        name: (*name).to_string(),
                        response: json!({"content": value}),
                    }),
                    ..Part::default()
                };
                push(&mut contents, "user", vec![part]);
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
    let declarations: Vec<FunctionDeclaration> = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| t.function.as_ref())
        .map(|f| FunctionDeclaration {
            name: f.name.clone(),
            description: f.description.clone(),
            parameters: f
                .parameters
                .as_ref()
                .map(clean_schema)
                // A function without parameters has none; an empty object schema is refused.
                .filter(|p| {
                    p.get("properties")
                        .and_then(Value::as_object)
                        .is_none_or(|o| !o.is_empty())
                }),
        })
        .collect();
    let tool_config = match extra.get("tool_choice") {
        _ if declarations.is_empty() => None,
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let mode = match s.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                other => {
                    return Err(invalid_request(
                        format!("Invalid value for `tool_choice`: `{other}`."),
                        "tool_choice",
                    ));
                }
            };
            Some(ToolConfig {
                function_calling_config: FunctionCallingConfig {
                    mode: mode.into(),
                    allowed_function_names: None,
                },
            })
        }
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid_request(
                        "`tool_choice` must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}.".into(),
                        "tool_choice",
                    )
                })?;
            Some(ToolConfig {
                function_calling_config: FunctionCallingConfig {
                    mode: "ANY".into(),
                    allowed_function_names: Some(vec![name.to_string()]),
                },
            })
        }
    };
    let (mime, schema) = match extra.get("response_format") {
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("json_object") => (Some("application/json".to_string()), None),
            Some("json_schema") => (
                Some("application/json".to_string()),
                f.get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .map(clean_schema),
            ),
            _ => (None, None),
        },
        None => (None, None),
    };
    let f64_of = |k: &str| extra.get(k).and_then(Value::as_f64);
    let logprobs = extra.get("logprobs").and_then(Value::as_bool);
    let generation = GenerationConfig {
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: f64_of("temperature"),
        top_p: f64_of("top_p"),
        top_k: extra.get("top_k").and_then(Value::as_u64),
        stop_sequences: stop_list(extra.get("stop")).filter(|s| !s.is_empty()),
        candidate_count: req.n.filter(|n| *n > 1),
        seed: extra.get("seed").and_then(Value::as_i64),
        presence_penalty: f64_of("presence_penalty"),
        frequency_penalty: f64_of("frequency_penalty"),
        response_mime_type: mime,
        response_schema: schema,
        response_logprobs: logprobs.filter(|l| *l),
        // Gemini allows at most 5 (OpenAI 20).
        logprobs: extra
            .get("top_logprobs")
            .and_then(Value::as_u64)
            .filter(|_| logprobs == Some(true))
            .map(|n| n.min(5) as u32),
        thinking_config: None,
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: (!declarations.is_empty()).then(|| {
            vec![Tool {
                function_declarations: declarations,
            }]
        }),
        tool_config,
        generation_config: (!generation.is_empty()).then_some(generation),
        safety_settings: None,
    })
}

fn text_part(text: String) -> Part {
    Part {
        text: Some(text),
        ..Part::default()
    }
}

/// Where a thought signature from an earlier Gemini answer rides in an OpenAI tool call (the
/// place Gemini's own OpenAI-compatible endpoint uses).
fn thought_signature(call: &Value) -> Option<&str> {
    call.get("extra_content")?
        .get("google")?
        .get("thought_signature")?
        .as_str()
}

fn function_call_part(call: &Value) -> Result<Part, UpstreamError> {
    let f = call.get("function");
    let name = f
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let args = f
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let args = if args.trim().is_empty() {
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
    Ok(Part {
        function_call: Some(FunctionCall {
            id: None,
            name: name.to_string(),
            args: Some(args),
        }),
        thought_signature: thought_signature(call).map(str::to_string),
        ..Part::default()
    })
}

/// Gemini requires strict user/model alternation: same-role neighbours merge.
fn push(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    if let Some(prev) = contents.last_mut()
        && prev.role.as_deref() == Some(role)
    {
        prev.parts.extend(parts);
        return;
    }
    contents.push(Content {
        role: Some(role.to_string()),
        parts,
    });
}

fn mime_from_url(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or("");
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mp3",
        Some("wav") => "audio/wav",
        _ => "image/jpeg",
    }
}

fn parts(content: Option<&Value>, target: &str) -> Result<Vec<Part>, UpstreamError> {
    let Some(Value::Array(items)) = content else {
        let text = content_text(content);
        return Ok(if text.is_empty() {
            vec![]
        } else {
            vec![text_part(text)]
        });
    };
    let mut out = Vec::new();
    for p in items {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    out.push(text_part(text.to_string()));
                }
            }
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|i| i.get("url"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some((media, data)) = split_data_url(url) {
                    out.push(Part {
                        inline_data: Some(Blob {
                            mime_type: media.to_string(),
                            data: data.to_string(),
                        }),
                        ..Part::default()
                    });
                } else if ["http://", "https://", "gs://"]
                    .iter()
                    .any(|s| url.starts_with(s))
                {
                    out.push(Part {
                        file_data: Some(FileData {
                            mime_type: Some(mime_from_url(url).to_string()),
                            file_uri: url.to_string(),
                        }),
                        ..Part::default()
                    });
                } else {
                    return Err(unsupported(
                        target,
                        "an image URL that is neither data:, http(s) nor gs://",
                    ));
                }
            }
            Some("input_audio") => {
                let audio = p.get("input_audio");
                let data = audio
                    .and_then(|a| a.get("data"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let format = audio
                    .and_then(|a| a.get("format"))
                    .and_then(Value::as_str)
                    .unwrap_or("wav");
                out.push(Part {
                    inline_data: Some(Blob {
                        mime_type: format!("audio/{format}"),
                        data: data.to_string(),
                    }),
                    ..Part::default()
                });
            }
            Some(other) => {
                return Err(unsupported(target, format!("`{other}` content parts")));
            }
            None => {}
        }
    }
    Ok(out)
}

/// A JSON schema reduced to the OpenAPI subset Gemini accepts: rejected keys removed, local
/// `$ref`s inlined (bounded depth), `"type": [T, "null"]` turned into `type` + `nullable`.
pub fn clean_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    clean(schema, &defs, 0)
}

fn clean(v: &Value, defs: &Map<String, Value>, depth: u32) -> Value {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                let name = r.rsplit('/').next().unwrap_or("");
                return match defs.get(name) {
                    Some(d) if depth < 8 => clean(d, defs, depth + 1),
                    _ => json!({"type": "object"}),
                };
            }
            let mut out = Map::new();
            for (k, val) in o {
                if DROPPED_SCHEMA_KEYS.contains(&k.as_str()) {
                    continue;
                }
                if k == "type"
                    && let Value::Array(types) = val
                {
                    let real: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if let Some(t) = real.first() {
                        out.insert("type".into(), (*t).clone());
                    }
                    if real.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    continue;
                }
                // Property names are data, not schema keywords: keep them all.
                let cleaned = if k == "properties" {
                    match val {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(n, s)| (n.clone(), clean(s, defs, depth)))
                                .collect(),
                        ),
                        other => other.clone(),
                    }
                } else {
                    clean(val, defs, depth)
                };
                out.insert(k.clone(), cleaned);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| clean(x, defs, depth)).collect()),
        other => other.clone(),
    }
}

/// Gemini response -> OpenAI `chat.completion`. `id_prefix` makes the tool-call ids Gemini does
/// not give (`{prefix}{n}`); `fallback_id` and `model` are used when the response has none.
pub fn to_openai(
    resp: &GenerateContentResponse,
    model: &str,
    id_prefix: &str,
    fallback_id: &str,
    created: u64,
) -> Value {
    let mut choices = Vec::new();
    let mut next_call = 0u32;
    for (pos, cand) in resp.candidates.iter().flatten().enumerate() {
        let mut text = String::new();
        let mut thoughts = String::new();
        let mut calls = Vec::new();
        for part in cand.content.iter().flat_map(|c| c.parts.iter()) {
            if let Some(t) = &part.text {
                if part.thought == Some(true) {
                    thoughts.push_str(t);
                } else {
                    text.push_str(t);
                }
            }
            if let Some(fc) = &part.function_call {
                calls.push(tool_call(
                    fc,
                    part.thought_signature.as_deref(),
                    id_prefix,
                    next_call,
                    None,
                ));
                next_call += 1;
            }
        }
        let finish = finish_reason(
            cand.finish_reason.as_deref().unwrap_or("STOP"),
            !calls.is_empty(),
        );
        let mut message = json!({
            "role": "assistant",
            "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
            "refusal": null,
        });
        if let Some(o) = message.as_object_mut() {
            if !calls.is_empty() {
                o.insert("tool_calls".into(), Value::Array(calls));
            }
            if !thoughts.is_empty() {
                o.insert("reasoning_content".into(), Value::String(thoughts));
            }
        }
        let index = cand.index.unwrap_or(pos as u32);
        choices.push(
            json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish}),
        );
    }
    if choices.is_empty() {
        // Prompt blocked: HTTP 200, no candidates, `promptFeedback.blockReason`.
        choices.push(
            json!({"index": 0, "message": {"role": "assistant", "content": "", "refusal": null},
            "logprobs": null, "finish_reason": "content_filter"}),
        );
    }
    json!({
        "id": resp.response_id.as_deref().unwrap_or(fallback_id),
        "object": "chat.completion",
        "created": created,
        "model": resp.model_version.as_deref().unwrap_or(model),
        "choices": choices,
        "usage": usage_json(&resp.usage_metadata.unwrap_or_default().to_openai()),
    })
}

/// One OpenAI tool call from a whole Gemini function call. `index` is set for stream deltas.
pub(crate) fn tool_call(
    fc: &FunctionCall,
    signature: Option<&str>,
    id_prefix: &str,
    n: u32,
    index: Option<u32>,
) -> Value {
    let id = fc
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("{id_prefix}{n}"));
    let args = fc.args.clone().unwrap_or_else(|| json!({}));
    let mut call = json!({"id": id, "type": "function", "function": {"name": fc.name, "arguments": args.to_string()}});
    if let Some(o) = call.as_object_mut() {
        if let Some(i) = index {
            o.insert("index".into(), Value::from(i));
        }
        if let Some(sig) = signature {
            o.insert(
                "extra_content".into(),
                json!({"google": {"thought_signature": sig}}),
            );
        }
    }
    call
}
