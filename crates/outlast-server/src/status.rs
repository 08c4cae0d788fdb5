//! The status page wired into the gateway: every attempt and client request feeds the board
//! (one call each, from failover), a background task flushes minute buckets to the store,
//! runs detection every `status.interval` and drains the webhook outbox with exponential
//! backoff; the handlers serve `/status` and the Statuspage-shaped `/api/v2/*.json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use outlast_status::detect::Incident;
use outlast_status::history::{Counts, DAYS, Kind};
use outlast_status::i18n::Lang;
use outlast_status::time::{DAY_MS, now_ms};
use outlast_status::{Board, html};
use outlast_store::Db;
use outlast_store::status as store;
use tokio::sync::watch;

use crate::AppState;

/// Longest wait between two delivery attempts of one notification.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Resolved incidents older than this leave memory (they stay in the store).
const KEEP_RESOLVED_MS: i64 = DAYS * DAY_MS;

#[derive(Debug)]
pub struct StatusState {
    board: Mutex<Board>,
    /// Notifications written to the outbox / delivered, for tests and metrics.
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_failures: AtomicU64,
}

impl StatusState {
    pub fn new(config: &outlast_config::Config) -> Self {
        let targets = config
            .routes
            .iter()
            .flat_map(|r| r.targets.iter().map(|t| t.label()))
            .fold(Vec::new(), |mut v: Vec<String>, t| {
                if !v.contains(&t) {
                    v.push(t);
                }
                v
            });
        let routes = config
            .routes
            .iter()
            .map(|r| {
                (
                    r.model.clone(),
                    r.targets.iter().map(|t| t.label()).collect(),
                )
            })
            .collect();
        Self {
            board: Mutex::new(Board::new(&config.status, targets, routes, now_ms())),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivery_failures: AtomicU64::new(0),
        }
    }

    pub fn board(&self) -> MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One upstream attempt's outcome: `fault` is a provider fault.
    pub fn attempt(&self, target: &str, fault: bool) {
        self.board().record_attempt(target, !fault, now_ms());
    }

    /// One client request through a route: answered (after failover) or not.
    pub fn request(&self, route: &str, answered: bool) {
        self.board().record_request(route, answered, now_ms());
    }

    /// Open incidents (for metrics).
    pub fn open_incidents(&self) -> usize {
        self.board()
            .detector
            .incidents()
            .iter()
            .filter(|i| i.is_open())
            .count()
    }
}

/// Gauges and counters from health and status, appended to `/metrics`. Labels are target
/// labels (`provider/model`) from the configuration, never request contents or keys.
pub(crate) fn render_metrics(state: &AppState) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(1024);
    let snapshot = state.health.snapshot();
    let _ = writeln!(
        out,
        "# HELP outlast_target_breaker_open Whether the target's breaker is open (ejected): 1 open, 0 closed.\n# TYPE outlast_target_breaker_open gauge"
    );
    for (label, open, _) in &snapshot {
        let _ = writeln!(
            out,
            "outlast_target_breaker_open{{target=\"{label}\"}} {}",
            u8::from(*open)
        );
    }
    let _ = writeln!(
        out,
        "# HELP outlast_target_latency_ewma_seconds Peak-EWMA time to first token the balancer uses.\n# TYPE outlast_target_latency_ewma_seconds gauge"
    );
    for (label, _, ms) in &snapshot {
        let _ = writeln!(
            out,
            "outlast_target_latency_ewma_seconds{{target=\"{label}\"}} {}",
            ms / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "# HELP outlast_provider_concurrency_limit Adaptive concurrency limit per provider.\n# TYPE outlast_provider_concurrency_limit gauge\n# HELP outlast_provider_in_flight Requests in flight per provider.\n# TYPE outlast_provider_in_flight gauge"
    );
    for (i, p) in state.config.providers.iter().enumerate() {
        if let Some((limit, in_flight)) = state.health.provider(i).and_then(|h| h.limit()) {
            let _ = writeln!(
                out,
                "outlast_provider_concurrency_limit{{provider=\"{}\"}} {limit}",
                p.name
            );
            let _ = writeln!(
                out,
                "outlast_provider_in_flight{{provider=\"{}\"}} {in_flight}",
                p.name
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP outlast_incidents_open Incidents open now.\n# TYPE outlast_incidents_open gauge\noutlast_incidents_open {}",
        state.status.open_incidents()
    );
    let _ = writeln!(
        out,
        "# HELP outlast_webhook_deliveries_total Webhook notifications delivered or failed (retried later).\n# TYPE outlast_webhook_deliveries_total counter\noutlast_webhook_deliveries_total{{result=\"delivered\"}} {}\noutlast_webhook_deliveries_total{{result=\"failed\"}} {}",
        state.status.delivered.load(Ordering::Relaxed),
        state.status.delivery_failures.load(Ordering::Relaxed)
    );
    out
}

/// The URL the page is served at, for `page.url` and incident shortlinks.
fn base_url(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .map_or_else(String::new, |h| format!("http://{h}"))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct PageQuery {
    lang: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::choose(
        q.lang.as_deref(),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let body = html::render(&state.status.board(), lang, now_ms());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_LANGUAGE, lang.code()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(e) => crate::error::ApiError::Internal {
            message: format!("could not encode the status: {e}"),
        }
        .into_response(),
    }
}

pub(crate) async fn summary(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let v = state.status.board().summary(&base_url(&headers), now_ms());
    json(&v)
}

pub(crate) async fn status(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = now_ms();
    let b = state.status.board();
    json(&outlast_status::statuspage::StatusResponse {
        page: b.page(&base_url(&headers), now),
        status: b.status(now),
    })
}

pub(crate) async fn components(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = now_ms();
    let b = state.status.board();
    json(&outlast_status::statuspage::ComponentsResponse {
        page: b.page(&base_url(&headers), now),
        components: b.components(now),
    })
}

pub(crate) async fn incidents(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    incidents_view(&state, &headers, false)
}

pub(crate) async fn unresolved(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    incidents_view(&state, &headers, true)
}

fn incidents_view(state: &AppState, headers: &HeaderMap, unresolved: bool) -> Response {
    let now = now_ms();
    let base = base_url(headers);
    let b = state.status.board();
    json(&outlast_status::statuspage::IncidentsResponse {
        page: b.page(&base, now),
        incidents: b.incidents(&base, now, unresolved),
    })
}

/// The store the status task keeps its records in: PostgreSQL when `database_url` is set,
/// else SQLite under `data_dir`; in memory (not durable, logged) if neither opens.
async fn open_store(config: &outlast_config::Config) -> Option<Db> {
    let opened = match &config.database_url {
        Some(url) => Db::open_postgres(url.expose()).await,
        None => Db::open_sqlite(&config.data_dir).await,
    };
    match opened {
        Ok(db) => Some(db),
        Err(e) => {
            tracing::warn!(error = %e, "status history and incidents are kept in memory only: the store did not open");
            Db::open_memory().await.ok()
        }
    }
}

/// Load the last 90 days and the known incidents from the store.
async fn load(state: &AppState, db: &Db) {
    let now = now_ms();
    let first_day = now.div_euclid(DAY_MS) - DAYS + 1;
    match store::days_since(db, first_day).await {
        Ok(rows) => {
            let mut b = state.status.board();
            for r in rows {
                if let Some(kind) = Kind::parse(&r.kind) {
                    let counts = Counts {
                        ok: u64::try_from(r.ok).unwrap_or(0),
                        fault: u64::try_from(r.fault).unwrap_or(0),
                    };
                    b.history.load_day(kind, &r.name, r.day, counts);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not load the status history"),
    }
    match store::incidents(db, now - KEEP_RESOLVED_MS).await {
        Ok(rows) => {
            let incidents: Vec<Incident> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(&r.body).ok())
                .collect();
            state.status.board().detector.load(incidents);
        }
        Err(e) => tracing::warn!(error = %e, "could not load incidents"),
    }
}

/// The background task: started with the server, stopped (after a last flush) at shutdown.
pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let db = open_store(&state.config).await;
    if let Some(db) = &db {
        load(&state, db).await;
    }
    let mut tick = tokio::time::interval(state.config.status.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        step(&state, db.as_ref(), false).await;
    }
    step(&state, db.as_ref(), true).await;
}

/// Detect, persist, notify.
async fn step(state: &AppState, db: Option<&Db>, last: bool) {
    let now = now_ms();
    let breakers: Vec<(String, bool)> = state
        .health
        .snapshot()
        .into_iter()
        .map(|(label, open, _)| (label, open))
        .collect();
    let webhooks = &state.config.status.webhooks;
    let (minutes, incidents, notifications) = {
        let mut b = state.status.board();
        let events = b.detect(now, &breakers);
        let minutes = b.history.take_minutes(now, last);
        let mut incidents = Vec::new();
        let mut notifications = Vec::new();
        for e in &events {
            tracing::info!(incident = %e.incident.id, target = %e.incident.target, event = e.kind.as_str(), status = e.incident.status.as_str(), "incident");
            if let Ok(body) = serde_json::to_string(&e.incident) {
                incidents.push(store::IncidentRow {
                    id: e.incident.id.clone(),
                    target: e.incident.target.clone(),
                    open: e.incident.is_open(),
                    updated_ms: e.incident.updated_ms,
                    body,
                });
            }
            let n = b.notification(e, "", now);
            for url in webhooks {
                notifications.push((url.clone(), n.body.clone()));
            }
        }
        b.history.prune(now);
        b.detector.prune(now, KEEP_RESOLVED_MS);
        (minutes, incidents, notifications)
    };
    let Some(db) = db else { return };
    if !minutes.is_empty() {
        let rows: Vec<store::MinuteRow> = minutes
            .iter()
            .map(|m| store::MinuteRow {
                kind: m.kind.as_str().to_owned(),
                name: m.name.clone(),
                minute: m.minute,
                ok: i64::try_from(m.counts.ok).unwrap_or(i64::MAX),
                fault: i64::try_from(m.counts.fault).unwrap_or(i64::MAX),
            })
            .collect();
        if let Err(e) = store::add_minutes(db, &rows).await {
            tracing::warn!(error = %e, "could not flush status history; retrying next round");
            state.status.board().history.restore_minutes(minutes);
        }
    }
    if !incidents.is_empty() || !notifications.is_empty() {
        match store::save_incidents(db, &incidents, &notifications, now).await {
            Ok(()) => {
                state
                    .status
                    .queued
                    .fetch_add(notifications.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not save incidents and their notifications")
            }
        }
    }
    drain(state, db, now).await;
}

/// Deliver due notifications, oldest first, in order per receiver: one that failed or is
/// not due yet holds back the newer ones for its URL.
async fn drain(state: &AppState, db: &Db, now: i64) {
    let due = match store::outbox_head(db, 200).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the webhook outbox");
            return;
        }
    };
    let mut failed_urls: Vec<String> = Vec::new();
    for row in due {
        if failed_urls.contains(&row.url) {
            continue;
        }
        if row.next_ms > now {
            failed_urls.push(row.url);
            continue;
        }
        let sent = state
            .client
            .post(&row.url)
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(10))
            .body(row.body.clone())
            .send()
            .await;
        let error = match sent {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("receiver answered {}", r.status())),
            Err(e) => Some(format!("could not reach the receiver: {e}")),
        };
        match error {
            None => {
                state.status.delivered.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = store::outbox_delivered(db, row.id).await {
                    tracing::warn!(error = %e, "could not mark a notification delivered");
                }
            }
            Some(error) => {
                state
                    .status
                    .delivery_failures
                    .fetch_add(1, Ordering::Relaxed);
                let backoff = backoff(state.config.status.interval, row.attempts);
                let next = now + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
                tracing::warn!(url = %row.url, attempts = row.attempts + 1, retry_in = ?backoff, %error, "webhook delivery failed");
                if let Err(e) = store::outbox_retry(db, row.id, next, &error).await {
                    tracing::warn!(error = %e, "could not reschedule a notification");
                }
                failed_urls.push(row.url);
            }
        }
    }
}

/// `base * 2^attempts`, at most [`MAX_BACKOFF`], with up to 20 % jitter so receivers coming
/// back are not hit by every gateway at once.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    let d = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF);
    d.mul_f64(1.0 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(1);
        assert!(backoff(b, 0) >= b && backoff(b, 0) <= b.mul_f64(1.2));
        assert!(backoff(b, 3) >= Duration::from_secs(8));
        assert!(backoff(b, 40) <= MAX_BACKOFF.mul_f64(1.2));
    }
}
