//! Client authentication against the configured gateway keys.

use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::error::ApiError;

/// Accept `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>` (Anthropic SDKs).
/// With no keys configured the gateway is open.
pub(crate) fn check(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() {
        return Ok(());
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
        Ok(())
    } else {
        Err(ApiError::Unauthorized {
            message: "The API key is not valid for this gateway. Check the key you configured in your client.",
        })
    }
}

/// Compare without an early exit, so response time does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
