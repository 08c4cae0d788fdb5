//! Client authentication against the configured gateway keys.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::error::ApiError;
use crate::protect::keys::VirtualKey;

/// Who is calling.
#[derive(Debug)]
pub(crate) enum Caller {
    /// No keys are configured and no virtual key was ever created.
    Open,
    /// One of `[auth] api_keys`.
    Static,
    /// A virtual key from the store.
    Virtual(Arc<VirtualKey>),
}

/// Accept `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic SDKs).
pub(crate) fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    identify(state, headers).map(|_| ())
}

/// Static keys first, then virtual keys by hash. With no static keys and no virtual key ever
/// created the gateway is open. Error messages never repeat the key.
pub(crate) fn identify(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() && !state.protect.keys_in_use.load(Ordering::Acquire) {
        return Ok(Caller::Open);
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Err(ApiError::Unauthorized {
            message: "No API key was provided. Send your Outlast key as `Authorization: Bearer <key>`.",
        });
    };
    if keys
        .iter()
        .any(|k| constant_time_eq(k.expose().as_bytes(), given.as_bytes()))
    {
        Ok(Caller::Static)
    } else if let Some(k) = state.protect.registry.lookup(given) {
        Ok(Caller::Virtual(k))
    } else {
        Err(ApiError::Unauthorized {
            message: "The API key is not valid for this gateway. Check the key you configured in your client.",
        })
    }
}

/// Compare without an early exit, so response time does not reveal how much of a key matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_keys() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
