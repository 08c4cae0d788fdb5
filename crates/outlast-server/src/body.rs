//! Reading and decoding request bodies at the edge: a size cap, a read deadline, and JSON
//! errors that name the field.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Read the whole body, refusing more than `limit` bytes or taking longer than `timeout`.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // Refuse an announced oversize body before reading any of it.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(ApiError::invalid(
            "The request body was cut off before it was complete. Send the whole body and retry.",
            None,
        )),
        Err(_) => Err(ApiError::RequestTimeout { after: timeout }),
    }
}

/// Decode JSON into `T`, with errors that say where the problem is.
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "The request body is empty. Send a JSON object, for example {\"model\": \"...\", \"messages\": [...]}.",
            None,
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::invalid(
                    format!(
                        "We could not parse the JSON body of your request ({inner}). Send valid JSON."
                    ),
                    None,
                ))
            } else if path == "." {
                Err(ApiError::invalid(
                    format!("Invalid request body: {inner}."),
                    None,
                ))
            } else {
                Err(ApiError::invalid(
                    format!("Invalid value for `{path}`: {inner}."),
                    Some(path),
                ))
            }
        }
    }
}
