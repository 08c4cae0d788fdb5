//! The protection middleware in front of the API handlers, cheapest checks first:
//! authentication (static keys, then virtual keys by hash; failures count against the
//! client's address), the key's budget, concurrency and request rate, the admission gate by
//! the key's priority, then the body: the key's allowed models and its token rate on an
//! estimate (prompt bytes / 4 + `max_tokens`). Whatever is taken is given back when the
//! response body ends: the admission slot (learning from the time to response headers), the
//! key's slot, the token estimate reconciled with the real usage, the cost added to the
//! key's spend, and one row in the usage ledger.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use outlast_resilience::admission::{Finished, Priority};
use outlast_store::usage::UsageRow;
use tokio::time::Instant;

use super::admission::Slot;
use super::keys::{RateInfo, Refusal, VirtualKey, go_duration};
use super::tap::{self, Tap};
use super::{PeerIp, now_ms};
use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::ApiError;

#[derive(serde::Deserialize, Default)]
struct Peek {
    #[serde(default)]
    model: String,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    // Anthropic SDKs on /v1/messages get Anthropic's error body, with the same headers.
    let anthropic = req.uri().path() == "/v1/messages";
    match protect(&state, req, next).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.request();
            state.metrics.response(e.status().as_u16());
            if anthropic {
                let body = crate::messages::anthropic_error(&e).into_body();
                let (parts, _) = e.into_response().into_parts();
                Response::from_parts(parts, body)
            } else {
                e.into_response()
            }
        }
    }
}

fn shed_index(p: Priority) -> usize {
    match p {
        Priority::Critical => 0,
        Priority::Default => 1,
        Priority::Sheddable => 2,
    }
}

async fn protect(state: &Arc<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let p = &state.protect;
    let started = Instant::now();
    let caller = match auth::identify(state, req.headers()) {
        Ok(c) => c,
        Err(e) => {
            if let Some(PeerIp(ip)) = req.extensions().get::<PeerIp>().copied() {
                let d = p.ip_rates.check(ip, started);
                if !d.allowed {
                    p.counters
                        .unauthenticated_limited
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::RateLimited {
                        message: "Too many requests without a valid API key from your address. Slow down and check your key.".into(),
                        retry_after: d.retry_after.unwrap_or(Duration::from_secs(60)),
                        kind: "requests",
                        headers: Vec::new(),
                    });
                }
            }
            return Err(e);
        }
    };
    let key = match caller {
        Caller::Virtual(k) => Some(k),
        Caller::Static | Caller::Open => None,
    };
    let mut info = RateInfo::default();
    if let Some(k) = &key {
        info = k.begin(started, now_ms()).map_err(|r| refusal(state, r))?;
    }
    // From here the key holds a slot: `Finish` gives it back however this ends.
    let mut finish = Finish {
        state: Arc::clone(state),
        key,
        slot: None,
        charged: 0,
        route: String::new(),
        tap: Arc::new(Tap::default()),
        status: 0,
        how: Finished::Neutral,
        started,
    };
    let priority = finish
        .key
        .as_ref()
        .map_or(Priority::Default, |k| k.priority);
    let Some(slot) = p.gate.admit(priority).await else {
        if let Some(c) = p.counters.shed.get(shed_index(priority)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        finish.status = 503;
        return Err(ApiError::AtCapacity {
            message: "The gateway is at capacity and shed this request to keep serving the others. Retry later with backoff.".into(),
            retry_after: state.config.admission.retry_after,
        });
    };
    finish.slot = Some(slot);
    p.counters.admitted.fetch_add(1, Ordering::Relaxed);

    let (parts, body) = req.into_parts();
    let limits = &state.config.server;
    let bytes = match crate::body::read(
        &parts.headers,
        body,
        limits.max_body_bytes,
        limits.body_read_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            finish.status = e.status().as_u16();
            return Err(e);
        }
    };
    let peek: Peek = serde_json::from_slice(&bytes).unwrap_or_default();
    finish.route.clone_from(&peek.model);
    let estimate =
        (bytes.len() as u64) / 4 + peek.max_completion_tokens.or(peek.max_tokens).unwrap_or(0);
    if let Some(k) = &finish.key {
        if let Err(r) = k.check_body(&peek.model, estimate, started, &mut info) {
            let e = refusal(state, r);
            finish.status = e.status().as_u16();
            return Err(e);
        }
        if info.tokens.is_some() {
            finish.charged = estimate;
        }
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let mut response = tap::scope(Arc::clone(&finish.tap), next.run(req)).await;
    let status = response.status().as_u16();
    finish.status = status;
    // The gateway's own load shows in its latency and in deadlines missed; a provider's
    // refusals (429, 503 at_capacity) are the per-provider cascade guard's signal, and
    // shrinking the gateway's limit for them would shed traffic other providers could serve.
    finish.how = match status {
        200..=299 => Finished::Answered(started.elapsed()),
        504 => Finished::Overloaded,
        _ => Finished::Neutral,
    };
    rate_headers(response.headers_mut(), &info);
    Ok(response.map(|b| {
        Body::new(Guarded {
            inner: b,
            finish: Some(finish),
        })
    }))
}

fn refusal(state: &AppState, r: Refusal) -> ApiError {
    let c = &state.protect.counters;
    match r {
        Refusal::Requests(d, limit) | Refusal::Tokens(d, limit) => {
            c.rate_limited.fetch_add(1, Ordering::Relaxed);
            let kind = if matches!(r, Refusal::Requests(..)) {
                "requests"
            } else {
                "tokens"
            };
            let mut info = RateInfo::default();
            if kind == "requests" {
                info.requests = Some((limit, d));
            } else {
                info.tokens = Some((limit, d));
            }
            let mut headers = HeaderMap::new();
            rate_headers(&mut headers, &info);
            let message = match d.retry_after {
                Some(w) => format!(
                    "Rate limit reached for this key on {kind} per minute: limit {limit}. Please try again in {}.",
                    go_duration(w)
                ),
                None => format!(
                    "This request needs more {kind} than this key's whole per-minute limit ({limit}). Reduce max_tokens or the prompt."
                ),
            };
            ApiError::RateLimited {
                message,
                retry_after: d.retry_after.unwrap_or(Duration::from_secs(60)),
                kind,
                headers: headers
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                    })
                    .collect(),
            }
        }
        Refusal::Concurrency(max) => {
            c.rate_limited.fetch_add(1, Ordering::Relaxed);
            ApiError::RateLimited {
                message: format!(
                    "This key already has {max} requests in flight, its limit. Wait for one to finish."
                ),
                retry_after: Duration::from_secs(1),
                kind: "requests",
                headers: Vec::new(),
            }
        }
        Refusal::Budget { period, limit } => {
            c.budget_refused.fetch_add(1, Ordering::Relaxed);
            ApiError::QuotaExceeded {
                message: format!(
                    "This key has spent its {period} budget of ${limit:.2}. Ask the gateway's operator to raise it, or wait for the next {}.",
                    if period == "daily" {
                        "day (UTC)"
                    } else {
                        "month (UTC)"
                    }
                ),
            }
        }
        Refusal::Model(model) => ApiError::Forbidden {
            message: format!("This key may not use the model `{model}`."),
        },
    }
}

/// OpenAI's `x-ratelimit-*` headers for the key's limits.
fn rate_headers(h: &mut HeaderMap, info: &RateInfo) {
    for (what, v) in [("requests", info.requests), ("tokens", info.tokens)] {
        let Some((limit, d)) = v else { continue };
        let pairs = [
            (format!("x-ratelimit-limit-{what}"), limit.to_string()),
            (
                format!("x-ratelimit-remaining-{what}"),
                d.remaining.to_string(),
            ),
            (format!("x-ratelimit-reset-{what}"), go_duration(d.reset)),
        ];
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                h.insert(k, v);
            }
        }
    }
}

/// Everything to give back and record when a request ends.
struct Finish {
    state: Arc<AppState>,
    key: Option<Arc<VirtualKey>>,
    slot: Option<Slot>,
    charged: u64,
    route: String,
    tap: Arc<Tap>,
    status: u16,
    how: Finished,
    started: Instant,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let p = &self.state.protect;
        let admitted = self.slot.is_some();
        if let Some(slot) = self.slot.take() {
            p.gate.finish(slot, self.how);
        }
        let segments = self.tap.segments();
        let (mut prompt, mut completion, mut cost, mut known) = (0u64, 0u64, 0.0f64, true);
        for s in &segments {
            prompt += s.usage.prompt_tokens;
            completion += s.usage.completion_tokens;
            let c = p.prices.cost(&s.provider, &s.model, &s.usage);
            cost += c.usd;
            if !c.known {
                known = false;
            }
        }
        if !known {
            p.counters.unpriced.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(route = %self.route, "no price for the target that answered; charged at the highest known rates");
        }
        let now = Instant::now();
        let wall = now_ms();
        if let Some(k) = &self.key {
            let used = (!segments.is_empty()).then_some(prompt + completion);
            k.end(self.charged, used, cost, now, wall);
        }
        if self.status == 0 {
            // Cancelled before any answer (client went away): nothing to record.
            self.status = 499;
        }
        // Sheds at the admission gate are counted in metrics, not written: in a flood they
        // would be most of the rows.
        if let Some(store) = p.store.get()
            && admitted
            && self.state.config.usage.enabled
        {
            let outcome = match self.status {
                200..=299 => "ok",
                429 => "rate_limited",
                499 => "cancelled",
                400..=499 => "client_error",
                503 => "unavailable",
                504 => "deadline",
                _ => "error",
            };
            store.ledger.record(UsageRow {
                ts_ms: wall,
                key_id: self.key.as_ref().map(|k| k.id.clone()),
                route: std::mem::take(&mut self.route),
                target: segments.last().map(|s| s.label.clone()),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cost_usd: cost,
                price_known: known,
                latency_ms: u64::try_from(now.duration_since(self.started).as_millis())
                    .unwrap_or(u64::MAX),
                status: self.status,
                outcome: outcome.into(),
            });
        }
    }
}

/// The response body, with the request's [`Finish`] dropped when it ends or is dropped.
struct Guarded {
    inner: Body,
    finish: Option<Finish>,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.finish = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
