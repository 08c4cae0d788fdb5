//! The parts of OpenAI's wire format the gateway reads. Only what is needed is parsed; the rest
//! of each object is skipped, never rebuilt.

use std::borrow::Cow;

use outlast_core::{UpstreamError, UpstreamErrorKind, Usage};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A chat completion or chunk as far as the gateway cares.
#[derive(Debug, Deserialize)]
pub(crate) struct Peek<'a> {
    #[serde(default, borrow)]
    pub error: Option<ErrorBody<'a>>,
    #[serde(default)]
    pub choices: Option<Vec<ChoicePeek<'a>>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub data: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChoicePeek<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub delta: Option<DeltaPeek<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeltaPeek<'a> {
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    pub function_call: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
}

/// Flat errors (`{"object":"error","message":...}`) used by Mistral and older vLLM.
#[derive(Debug, Deserialize)]
struct AnyError<'a> {
    #[serde(default, borrow)]
    error: Option<ErrorOrString<'a>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorOrString<'a> {
    #[serde(borrow)]
    Object(ErrorBody<'a>),
    Text(Cow<'a, str>),
}

/// The provider's own explanation in an error body, shortened.
pub(crate) fn explain_error(body: &[u8]) -> Option<String> {
    let parsed: AnyError<'_> = serde_json::from_slice(body).ok()?;
    let text = match (parsed.error, parsed.message) {
        (Some(ErrorOrString::Object(ErrorBody { message: Some(m) })), _) => m,
        (Some(ErrorOrString::Text(m)), _) => m,
        (_, Some(m)) => m,
        _ => return None,
    };
    Some(shorten(&text))
}

pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

fn malformed(target: &str, what: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::new(
        UpstreamErrorKind::Malformed,
        format!("{target} sent a malformed answer: {what}"),
    )
}

/// Check a non-streaming completion and read its usage.
pub(crate) fn check_completion(
    body: &[u8],
    target: &str,
) -> Result<Option<outlast_core::Usage>, UpstreamError> {
    let peek: Peek<'_> = serde_json::from_slice(body).map_err(|e| malformed(target, e))?;
    if let Some(err) = peek.error {
        return Err(UpstreamError::new(
            UpstreamErrorKind::StreamError,
            format!(
                "{target} reported an error: {}",
                shorten(err.message.as_deref().unwrap_or("no message"))
            ),
        ));
    }
    match peek.choices {
        Some(c) if !c.is_empty() => Ok(peek.usage),
        _ => Err(malformed(target, "no `choices`")),
    }
}

pub(crate) fn check_embeddings(
    body: &[u8],
    target: &str,
) -> Result<Option<outlast_core::Usage>, UpstreamError> {
    let peek: Peek<'_> = serde_json::from_slice(body).map_err(|e| malformed(target, e))?;
    if peek.data.is_none() {
        return Err(malformed(target, "no `data`"));
    }
    Ok(peek.usage)
}
