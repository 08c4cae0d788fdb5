//! Deterministic answers, token estimates and ids for simulated providers.

use serde_json::Value;

const WORDS: &[&str] = &[
    "Outlast",
    "keeps",
    "answering",
    "when",
    "a",
    "provider",
    "fails,",
    "because",
    "every",
    "request",
    "has",
    "somewhere",
    "else",
    "to",
    "go,",
    "and",
    "no",
    "basket",
    "holds",
    "all",
    "the",
    "eggs.",
];

/// The `i`-th token of an answer, with its leading space.
pub fn token(i: u32) -> &'static str {
    WORDS.get(i as usize % WORDS.len()).copied().unwrap_or("ok")
}

/// The answer text from token `start` to token `n` (the first token names the simulator).
pub fn answer(name: &str, start: u32, n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 8);
    for i in start..n {
        s.push_str(&piece(name, i));
    }
    s
}

/// The text of token `i` as streamed (first token names the simulator).
pub fn piece(name: &str, i: u32) -> String {
    if i == 0 {
        format!("[{name}]")
    } else {
        format!(" {}", token(i - 1))
    }
}

/// A rough token count (four characters a token), as providers' own estimates go.
pub fn estimate_tokens(messages: &[Value]) -> u64 {
    let chars: usize = messages
        .iter()
        .map(|m| content_chars(m.get("content")))
        .sum();
    (chars as u64).div_ceil(4) + 3 * messages.len() as u64
}

fn content_chars(v: Option<&Value>) -> usize {
    match v {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .map_or(85 * 4, |t| t.chars().count())
            })
            .sum(),
        _ => 0,
    }
}

pub fn id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    for _ in 0..24 {
        s.push(fastrand::alphanumeric());
    }
    s
}

/// Arguments for a tool call that satisfy the schema's required properties.
pub fn sample_arguments(parameters: Option<&Value>) -> String {
    let mut args = serde_json::Map::new();
    if let Some(p) = parameters {
        let props = p.get("properties").and_then(Value::as_object);
        let required = p.get("required").and_then(Value::as_array);
        if let (Some(props), Some(required)) = (props, required) {
            for name in required.iter().filter_map(Value::as_str) {
                let kind = props
                    .get(name)
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str);
                let value = match kind {
                    Some("integer") | Some("number") => Value::from(1),
                    Some("boolean") => Value::Bool(true),
                    Some("array") => Value::Array(vec![]),
                    Some("object") => Value::Object(Default::default()),
                    _ => Value::from("sample"),
                };
                args.insert(name.to_string(), value);
            }
        }
    }
    Value::Object(args).to_string()
}

/// Tokens of an answer already given as a trailing assistant prefix (providers that support
/// prefill continue after it).
pub fn prefix_tokens(text: Option<String>) -> u32 {
    text.map_or(0, |t| t.split_whitespace().count() as u32)
}

/// The text of a message's content: a string, or the `text` of its text parts/blocks.
pub fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}
