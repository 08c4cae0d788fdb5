//! The canonical chat and embeddings requests (OpenAI's schema), with the checks every request
//! passes before any provider sees it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Chat Completions request. Fields the gateway acts on are typed; every other field, known
/// today or added later, is kept in `extra` and sent on unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    /// Legacy function-calling role, still accepted by OpenAI.
    Function,
}

/// One message of the conversation. `content` is kept as JSON (a string, an array of parts or
/// null) so that part types the gateway does not know yet pass through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// `None` when absent, `Some(Value::Null)` when sent as `null`: both are kept as sent.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A field that is present, even as `null`, becomes `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDef>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A request the gateway refuses before calling any provider: what is wrong and which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub param: Option<String>,
}

impl Invalid {
    fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}

/// OpenAI's documented limit on tools per request.
const MAX_TOOLS: usize = 128;
/// OpenAI's limit on choices per request.
const MAX_N: u32 = 128;

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for a usage chunk at the end of the stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The checks OpenAI itself makes on shape, so that a request every provider would refuse is
    /// answered at once instead of being sent (and failed over) to all of them.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.model.trim().is_empty() {
            return Err(Invalid::new("`model` must not be empty.", "model"));
        }
        if self.messages.is_empty() {
            return Err(Invalid::new(
                "`messages` must contain at least one message.",
                "messages",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            m.validate()
                .map_err(|why| Invalid::new(why, format!("messages[{i}]")))?;
        }
        if self.stream_options.is_some() && !self.is_stream() {
            return Err(Invalid::new(
                "`stream_options` is only allowed when `stream` is true.",
                "stream_options",
            ));
        }
        if let Some(n) = self.n
            && !(1..=MAX_N).contains(&n)
        {
            return Err(Invalid::new(
                format!("`n` must be between 1 and {MAX_N}, got {n}."),
                "n",
            ));
        }
        if let Some(tools) = &self.tools {
            if tools.len() > MAX_TOOLS {
                return Err(Invalid::new(
                    format!(
                        "At most {MAX_TOOLS} tools are allowed, got {}.",
                        tools.len()
                    ),
                    "tools",
                ));
            }
            for (i, t) in tools.iter().enumerate() {
                if t.kind == "function" && t.function.is_none() {
                    return Err(Invalid::new(
                        "A tool of type `function` needs a `function` object.",
                        format!("tools[{i}].function"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Message {
    fn validate(&self) -> Result<(), String> {
        let content: Result<(), String> = match &self.content {
            None | Some(Value::Null) => match self.role {
                Role::Assistant
                    if self.tool_calls.is_some() || self.extra.contains_key("function_call") =>
                {
                    Ok(())
                }
                Role::Assistant => {
                    Err("an assistant message needs `content` or `tool_calls`.".into())
                }
                _ => Err("`content` is required for this role.".into()),
            },
            Some(Value::String(_)) => Ok(()),
            Some(Value::Array(parts)) => {
                if parts.is_empty() && self.role != Role::Assistant {
                    return Err("`content` must not be an empty array.".into());
                }
                for part in parts {
                    let kind = part.get("type").and_then(Value::as_str);
                    if kind.is_none() {
                        return Err("each content part needs a string `type`.".into());
                    }
                }
                Ok(())
            }
            Some(_) => {
                Err("`content` must be a string, an array of content parts, or null.".into())
            }
        };
        content?;
        if self.role == Role::Tool && self.tool_call_id.is_none() {
            return Err("a `tool` message needs `tool_call_id`.".into());
        }
        Ok(())
    }
}

/// An embeddings request. `input` is a string, strings, token ids or lists of token ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.model.trim().is_empty() {
            return Err(Invalid::new("`model` must not be empty.", "model"));
        }
        let ok = match &self.input {
            Value::String(s) => !s.is_empty(),
            Value::Array(items) => {
                !items.is_empty()
                    && (items
                        .iter()
                        .all(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                        || items.iter().all(Value::is_u64)
                        || items.iter().all(|v| {
                            v.as_array()
                                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
                        }))
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Invalid::new(
                "`input` must be a non-empty string, an array of non-empty strings, an array of token ids, or an array of token-id arrays.",
                "input",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hi", "x_future": 1}],
            "seed": 7, "response_format": {"type": "json_object"}, "brand_new": {"a": [1, 2]}
        });
        let req = parse(body.clone());
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn validation_names_the_field() {
        let req = parse(serde_json::json!({"model": "m", "messages": []}));
        assert_eq!(
            req.validate().unwrap_err().param.as_deref(),
            Some("messages")
        );
        let req = parse(serde_json::json!({"model": "m", "messages": [{"role": "user"}]}));
        assert_eq!(
            req.validate().unwrap_err().param.as_deref(),
            Some("messages[0]")
        );
        let req = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
        );
        assert_eq!(
            req.validate().unwrap_err().param.as_deref(),
            Some("messages[0]")
        );
        let req = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
        );
        assert_eq!(
            req.validate().unwrap_err().param.as_deref(),
            Some("stream_options")
        );
        let req = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
        );
        assert_eq!(req.validate().unwrap_err().param.as_deref(), Some("n"));
    }

    #[test]
    fn assistant_tool_call_without_content_is_valid() {
        let req = parse(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
        ]}));
        assert!(req.validate().is_ok());
    }

    #[test]
    fn embeddings_input_shapes() {
        let ok = |v: Value| {
            serde_json::from_value::<EmbeddingsRequest>(
                serde_json::json!({"model": "e", "input": v}),
            )
            .unwrap()
            .validate()
            .is_ok()
        };
        assert!(ok(serde_json::json!("text")));
        assert!(ok(serde_json::json!(["a", "b"])));
        assert!(ok(serde_json::json!([1, 2, 3])));
        assert!(ok(serde_json::json!([[1], [2, 3]])));
        assert!(!ok(serde_json::json!("")));
        assert!(!ok(serde_json::json!([])));
        assert!(!ok(serde_json::json!(["a", 1])));
        assert!(!ok(serde_json::json!({"a": 1})));
    }
}
