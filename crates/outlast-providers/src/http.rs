//! The one pooled upstream HTTP client, and the plumbing every protocol shares: sending with a
//! first-byte timeout, reading bodies within the deadline, and turning failures into
//! [`UpstreamError`]s.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use outlast_config::UpstreamSettings;
use outlast_core::{UpstreamError, UpstreamErrorKind};
use tokio::time::{Instant, timeout_at};

use crate::AttemptLimits;

/// Largest upstream body read into memory (non-streaming answers, error bodies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// Error bodies are only read this far: enough for any real explanation.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Encode a request body; failing to is the gateway's bug, reported against the target.
pub(crate) fn encode_json<T: serde::Serialize + ?Sized>(
    value: &T,
    target: &str,
) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(value).map_err(|e| {
        UpstreamError::new(
            UpstreamErrorKind::Malformed,
            format!("could not encode the request for {target}: {e}"),
        )
    })
}

/// The shared client: keep-alive pool, HTTP/2 where the provider offers it via ALPN, rustls.
pub fn build_client(settings: &UpstreamSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .http2_adaptive_window(true)
        // Providers are reached directly; a proxy would be configured explicitly, not inherited.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("outlast/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// When the first byte must have arrived, and which limit that is.
fn first_byte_deadline(limits: &AttemptLimits) -> (Instant, UpstreamErrorKind) {
    let own = Instant::now() + limits.first_byte_timeout;
    if own < limits.deadline {
        (own, UpstreamErrorKind::FirstByteTimeout)
    } else {
        (limits.deadline, UpstreamErrorKind::DeadlineExceeded)
    }
}

/// Send a request and wait for the response headers.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    limits: &AttemptLimits,
    target: &str,
) -> Result<reqwest::Response, UpstreamError> {
    let (at, kind) = first_byte_deadline(limits);
    match timeout_at(at, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(transport_error(&e, target)),
        Err(_) => Err(UpstreamError::new(
            kind.clone(),
            match kind {
                UpstreamErrorKind::DeadlineExceeded => {
                    format!("{target} did not answer before the request deadline")
                }
                _ => format!(
                    "{target} sent no response headers within {:?}",
                    limits.first_byte_timeout
                ),
            },
        )),
    }
}

pub(crate) fn transport_error(e: &reqwest::Error, target: &str) -> UpstreamError {
    // reqwest's messages name the URL, never the headers, so they hold no credentials; the
    // URL of a provider is configuration, not a secret. Strip it anyway to keep messages short.
    let why = e.without_url_ref();
    if e.is_timeout() {
        UpstreamError::new(
            UpstreamErrorKind::FirstByteTimeout,
            format!("{target} timed out: {why}"),
        )
    } else if e.is_body() || e.is_decode() {
        UpstreamError::new(
            UpstreamErrorKind::BodyBroken,
            format!("{target} broke off its answer: {why}"),
        )
    } else {
        UpstreamError::new(
            UpstreamErrorKind::Connect,
            format!("{target} could not be reached: {why}"),
        )
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        use std::error::Error;
        let mut text = String::new();
        let mut source: Option<&dyn Error> = self.source();
        // The outermost message repeats the URL; the sources say what actually happened.
        while let Some(s) = source {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&s.to_string());
            source = s.source();
        }
        if text.is_empty() {
            text = if self.is_connect() {
                "connection failed".into()
            } else {
                "request failed".into()
            };
        }
        text
    }
}

/// Read a whole body, bounded in size, before the request's deadline.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limits: &AttemptLimits,
    target: &str,
    max: usize,
) -> Result<Bytes, UpstreamError> {
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&e, target))?
        {
            if buf.len() + chunk.len() > max {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::Malformed,
                    format!("{target} sent a body larger than {max} bytes"),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match timeout_at(limits.deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::new(
            UpstreamErrorKind::DeadlineExceeded,
            format!("{target} did not finish its answer before the request deadline"),
        )),
    }
}

pub(crate) async fn read_success_body(
    response: reqwest::Response,
    limits: &AttemptLimits,
    target: &str,
) -> Result<Bytes, UpstreamError> {
    read_body(response, limits, target, MAX_UPSTREAM_BODY).await
}

/// Turn a non-2xx response into an error, keeping the body for caller faults and the
/// provider's Retry-After for the resilience layer.
pub(crate) async fn status_error(
    response: reqwest::Response,
    limits: &AttemptLimits,
    target: &str,
    explain: fn(&[u8]) -> Option<String>,
) -> UpstreamError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = read_body(response, limits, target, MAX_ERROR_BODY)
        .await
        .ok();
    let detail = body.as_deref().and_then(explain);
    let message = match (status, detail) {
        // Never echo what a provider says about our key: some quote part of it.
        (401 | 403, _) => format!(
            "{target} rejected the gateway's credentials (HTTP {status}); check its api_key"
        ),
        (_, Some(d)) => format!("{target} answered HTTP {status}: {d}"),
        (_, None) => format!("{target} answered HTTP {status}"),
    };
    let mut e = UpstreamError::new(UpstreamErrorKind::Status(status), message);
    e.retry_after = retry_after;
    e.body = body;
    e
}

/// `retry-after-ms` (OpenAI's SDKs honour it first), else `retry-after` in seconds.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let ms = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Duration::from_secs_f64(v / 1000.0));
    ms.or_else(|| {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
            .map(Duration::from_secs_f64)
    })
}

/// An RFC 3339 UTC timestamp (`2025-08-21T12:40:59Z`, fractions allowed) as seconds since the
/// Unix epoch. Anthropic's rate-limit resets use this form.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, offset) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => time.split_at(i),
        None => return None,
    };
    let mut t = time.splitn(3, ':');
    let h = t.next()?.parse::<i64>().ok()?;
    let min = t.next()?.parse::<i64>().ok()?;
    let sec = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    let offset_secs = match offset.get(..1)? {
        "Z" | "z" => 0,
        sign => {
            let (oh, om) = offset.get(1..)?.split_once(':')?;
            let v = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
            if sign == "-" { -v } else { v }
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec - offset_secs;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-08-21T12:40:59Z"), Some(1_755_780_059));
        assert_eq!(
            parse_rfc3339("2025-08-21T14:40:59.5+02:00"),
            Some(1_755_780_059)
        );
        assert_eq!(parse_rfc3339("soon"), None);
    }

    use super::*;

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "644".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(644)));
        let mut bad = http::HeaderMap::new();
        bad.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&bad), None);
        bad.insert("retry-after", "-1".parse().unwrap());
        assert_eq!(retry_after(&bad), None);
    }
}
