//! Playing a pre-rendered SSE body with the stream faults applied (token pacing, cut, stall,
//! error after N events), shared by the Anthropic and Gemini simulators.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::mpsc;

use crate::Faults;
use crate::openai::InFlight;

type Frame = Result<Bytes, std::io::Error>;

/// Stream `frames` (each a complete SSE event, terminator included). `error_frame` is what the
/// provider sends when it fails after a 200.
pub(crate) fn sse(
    faults: Faults,
    frames: Vec<String>,
    error_frame: String,
    guard: InFlight,
    headers: Vec<(&'static str, String)>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Frame>(16);
    tokio::spawn(async move {
        let _guard = guard;
        play(&tx, &faults, frames, error_frame).await;
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    r
}

async fn play(tx: &mpsc::Sender<Frame>, faults: &Faults, frames: Vec<String>, error_frame: String) {
    if !faults.first_token.is_zero() {
        tokio::time::sleep(faults.first_token).await;
    }
    let interval = faults.token_interval();
    for (sent, frame) in frames.into_iter().enumerate() {
        let sent = sent as u32;
        if faults.cut_after.is_some_and(|n| sent >= n) {
            // Let what was sent reach the wire first: a real cut loses only what follows it.
            for _ in 0..100 {
                if tx.capacity() == tx.max_capacity() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(Err(std::io::Error::other("simulated cut"))).await;
            return;
        }
        if faults.stall_after.is_some_and(|n| sent >= n) {
            tx.closed().await;
            return;
        }
        if faults.error_after.is_some_and(|n| sent >= n) {
            let _ = tx.send(Ok(Bytes::from(error_frame))).await;
            return;
        }
        if sent > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        if tx.send(Ok(Bytes::from(frame))).await.is_err() {
            return;
        }
    }
}

/// An RFC 3339 UTC timestamp `secs` after the Unix epoch (Anthropic's reset headers).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_755_780_059), "2025-08-21T12:40:59Z");
    }
}
