//! Every error the gateway answers with, and its one mapping to HTTP: OpenAI's error body,
//! the right status, and a message that says what happened and what to do.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

/// An answer that is not a completion.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The request is malformed or breaks a rule (400).
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// No or wrong client key (401).
    Unauthorized { message: &'static str },
    /// The model is neither a route nor a configured provider's target (404).
    ModelNotFound { model: String },
    /// No such endpoint (404).
    NotFound { path: String },
    /// Endpoint exists, method does not (405).
    MethodNotAllowed,
    /// The client did not send its request body in time (408).
    RequestTimeout { after: Duration },
    /// The request body is over the configured cap (413).
    PayloadTooLarge { limit: usize },
    /// A provider refused the request itself (a caller fault it reported), passed on with the
    /// provider's status; its body is forwarded when it is already OpenAI-shaped.
    UpstreamRejected {
        status: u16,
        message: String,
        body: Option<Bytes>,
    },
    /// The key may not use this model (403).
    Forbidden { message: String },
    /// A per-key or per-address rate or concurrency limit (429, `Retry-After`, the
    /// `x-ratelimit-*` headers in `headers`). `kind` is OpenAI's error type: `requests` or
    /// `tokens`.
    RateLimited {
        message: String,
        retry_after: Duration,
        kind: &'static str,
        headers: Vec<(String, String)>,
    },
    /// The key's spend budget is used up (429, `code: "insufficient_quota"`,
    /// `x-should-retry: false`: retrying cannot help before the budget resets).
    QuotaExceeded { message: String },
    /// Every target failed (503).
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    /// Shed without trying any provider: every target at its concurrency limit, ejected or
    /// cooling down (503, `code: "at_capacity"`, `x-should-retry: false`).
    AtCapacity {
        message: String,
        retry_after: Duration,
    },
    /// The request's deadline passed before any target answered (504).
    DeadlineExceeded { message: String },
    /// The gateway itself failed; says what, never just "internal error" (500).
    Internal { message: String },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound { .. } | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Unavailable { .. } | ApiError::AtCapacity { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI `{"error": {...}}` body as JSON text.
    pub fn body(&self) -> Bytes {
        let (message, kind, param, code): (String, &str, Option<&str>, Option<&str>) = match self {
            ApiError::InvalidRequest { message, param } => (
                message.clone(),
                "invalid_request_error",
                param.as_deref(),
                None,
            ),
            ApiError::Unauthorized { message } => (
                (*message).to_string(),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ),
            ApiError::ModelNotFound { model } => (
                format!(
                    "The model `{model}` does not exist on this gateway. GET /v1/models lists the routes and targets it serves."
                ),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            ApiError::NotFound { path } => (
                format!(
                    "Unknown endpoint {path}. This gateway serves /v1/chat/completions, /v1/embeddings and /v1/models."
                ),
                "invalid_request_error",
                None,
                Some("unknown_url"),
            ),
            ApiError::MethodNotAllowed => (
                "This endpoint does not accept that HTTP method.".to_string(),
                "invalid_request_error",
                None,
                Some("method_not_allowed"),
            ),
            ApiError::RequestTimeout { after } => (
                format!(
                    "The request body was not received within {after:?}. Send the whole body promptly and retry."
                ),
                "invalid_request_error",
                None,
                Some("request_timeout"),
            ),
            ApiError::PayloadTooLarge { limit } => (
                format!(
                    "The request body is larger than this gateway accepts ({limit} bytes). Shorten the request."
                ),
                "invalid_request_error",
                None,
                Some("request_too_large"),
            ),
            ApiError::Forbidden { message } => (
                message.clone(),
                "permission_error",
                Some("model"),
                Some("model_not_allowed"),
            ),
            ApiError::RateLimited { message, kind, .. } => {
                (message.clone(), kind, None, Some("rate_limit_exceeded"))
            }
            ApiError::QuotaExceeded { message } => (
                message.clone(),
                "insufficient_quota",
                None,
                Some("insufficient_quota"),
            ),
            ApiError::UpstreamRejected {
                body: Some(body), ..
            } if is_openai_error(body) => {
                return body.clone();
            }
            ApiError::UpstreamRejected { message, .. } => {
                (message.clone(), "invalid_request_error", None, None)
            }
            ApiError::Unavailable {
                message,
                retry_after,
            } => (
                format!(
                    "{message} Retry after {} s.",
                    retry_after_secs(*retry_after)
                ),
                "server_error",
                None,
                Some("upstream_unavailable"),
            ),
            ApiError::AtCapacity {
                message,
                retry_after,
            } => (
                format!(
                    "{message} Retry after {} s.",
                    retry_after_secs(*retry_after)
                ),
                "server_error",
                None,
                Some("at_capacity"),
            ),
            ApiError::DeadlineExceeded { message } => (
                message.clone(),
                "server_error",
                None,
                Some("deadline_exceeded"),
            ),
            ApiError::Internal { message } => (message.clone(), "server_error", None, None),
        };
        let v = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
        Bytes::from(v.to_string())
    }

    /// The same error as an SSE event, for failures after a stream has started.
    pub fn sse_event(&self) -> Bytes {
        let body = self.body();
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

fn is_openai_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| {
        v.get("error")
            .and_then(|e| e.get("message"))
            .is_some_and(serde_json::Value::is_string)
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        match &self {
            ApiError::Unavailable { retry_after, .. }
            | ApiError::AtCapacity { retry_after, .. }
            | ApiError::RateLimited { retry_after, .. } => {
                let secs = retry_after_secs(*retry_after);
                if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        if let ApiError::RateLimited { headers, .. } = &self {
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    header::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    response.headers_mut().insert(k, v);
                }
            }
        }
        if let ApiError::AtCapacity { .. } | ApiError::QuotaExceeded { .. } = &self {
            // A deliberate shed: the official SDKs would otherwise retry it twice at once,
            // turning one shed request into three.
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_openai_shape_and_status() {
        let cases = [
            ApiError::invalid("bad", Some("messages".into())),
            ApiError::Unauthorized { message: "no key" },
            ApiError::ModelNotFound { model: "m".into() },
            ApiError::NotFound { path: "/x".into() },
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout {
                after: Duration::from_secs(1),
            },
            ApiError::PayloadTooLarge { limit: 10 },
            ApiError::Forbidden {
                message: "no".into(),
            },
            ApiError::RateLimited {
                message: "slow".into(),
                retry_after: Duration::from_secs(1),
                kind: "requests",
                headers: vec![],
            },
            ApiError::QuotaExceeded {
                message: "spent".into(),
            },
            ApiError::UpstreamRejected {
                status: 422,
                message: "no".into(),
                body: Some(Bytes::from_static(b"<html>")),
            },
            ApiError::Unavailable {
                message: "down.".into(),
                retry_after: Duration::from_millis(300),
            },
            ApiError::AtCapacity {
                message: "full.".into(),
                retry_after: Duration::from_secs(2),
            },
            ApiError::DeadlineExceeded {
                message: "late".into(),
            },
            ApiError::Internal {
                message: "encoding failed".into(),
            },
        ];
        let statuses: Vec<u16> = cases.iter().map(|c| c.status().as_u16()).collect();
        assert_eq!(
            statuses,
            [
                400, 401, 404, 404, 405, 408, 413, 403, 429, 429, 422, 503, 503, 504, 500
            ]
        );
        for c in &cases {
            let v: serde_json::Value = serde_json::from_slice(&c.body()).unwrap();
            let e = &v["error"];
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{c:?}"
            );
            assert!(e["type"].is_string(), "{c:?}");
            assert!(e.get("param").is_some() && e.get("code").is_some(), "{c:?}");
        }
    }

    #[test]
    fn openai_shaped_upstream_errors_pass_through_verbatim() {
        let body = Bytes::from_static(br#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#);
        let e = ApiError::UpstreamRejected {
            status: 400,
            message: "x".into(),
            body: Some(body.clone()),
        };
        assert_eq!(e.body(), body);
    }

    #[test]
    fn unavailable_carries_retry_after_in_whole_seconds() {
        let r = ApiError::Unavailable {
            message: "all down.".into(),
            retry_after: Duration::from_millis(1200),
        }
        .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
