//! Overload and abuse protection in front of the API handlers: edge connection limits, the
//! per-address limit on unauthenticated traffic, virtual keys with their rates, concurrency
//! and budgets, the gateway-wide admission gate with priority classes, cost accounting and
//! the usage ledger. The handlers stay unaware of all this but for reporting usage ([`tap`]).

pub mod admin;
pub(crate) mod admission;
pub(crate) mod cost;
pub(crate) mod guard;
pub(crate) mod ip;
pub(crate) mod keys;
pub(crate) mod ledger;
pub mod tap;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use outlast_config::Config;
use outlast_store::{Db, StoreError};

use crate::AppState;

/// The client's address, set by the edge on every request of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerIp(pub std::net::IpAddr);

#[derive(Debug)]
pub(crate) struct Store {
    pub db: Db,
    pub ledger: ledger::Ledger,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub shed: [AtomicU64; 3],
    pub admitted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub budget_refused: AtomicU64,
    pub unauthenticated_limited: AtomicU64,
    pub connections_refused: AtomicU64,
    pub unpriced: AtomicU64,
}

#[derive(Debug)]
pub struct Protection {
    pub(crate) gate: admission::Gate,
    pub(crate) connections: Arc<ip::Connections>,
    pub(crate) ip_rates: ip::IpRates,
    pub(crate) registry: keys::Registry,
    pub(crate) prices: cost::Prices,
    pub(crate) store: OnceLock<Store>,
    /// Set once any virtual key exists (even revoked): the gateway is then never open.
    pub(crate) keys_in_use: AtomicBool,
    pub(crate) counters: Counters,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Protection {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            gate: admission::Gate::new(&config.admission),
            connections: ip::Connections::new(
                config.edge.max_connections,
                config.edge.max_connections_per_ip,
            ),
            ip_rates: ip::IpRates::new(
                config.edge.unauthenticated_per_ip_per_minute,
                config.edge.max_tracked_ips,
            ),
            registry: keys::Registry::default(),
            prices: cost::Prices::bundled(),
            store: OnceLock::new(),
            keys_in_use: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// Prometheus text for the protection counters and gauges.
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (limit, in_flight) = self.gate.snapshot();
        let _ = writeln!(
            out,
            "# HELP outlast_admission_limit The gateway's adaptive concurrency limit.\n# TYPE outlast_admission_limit gauge\noutlast_admission_limit {limit}"
        );
        let _ = writeln!(
            out,
            "# HELP outlast_admission_in_flight Requests holding an admission slot.\n# TYPE outlast_admission_in_flight gauge\noutlast_admission_in_flight {in_flight}"
        );
        let _ = writeln!(
            out,
            "# HELP outlast_admission_shed_total Requests shed by the admission gate, by priority class.\n# TYPE outlast_admission_shed_total counter"
        );
        for (i, p) in ["critical", "default", "sheddable"].iter().enumerate() {
            let v = c.shed.get(i).map_or(0, g);
            let _ = writeln!(out, "outlast_admission_shed_total{{priority=\"{p}\"}} {v}");
        }
        let rows = [
            (
                "outlast_admitted_total",
                "Requests admitted to the handlers.",
                g(&c.admitted),
            ),
            (
                "outlast_key_rate_limited_total",
                "Requests refused by a key's rate or concurrency limit (429).",
                g(&c.rate_limited),
            ),
            (
                "outlast_key_budget_refused_total",
                "Requests refused because a key's budget is spent.",
                g(&c.budget_refused),
            ),
            (
                "outlast_unauthenticated_limited_total",
                "Requests without a valid key refused by the per-address limit.",
                g(&c.unauthenticated_limited),
            ),
            (
                "outlast_connections_refused_total",
                "Connections closed at accept by the total or per-address limit.",
                g(&c.connections_refused),
            ),
            (
                "outlast_unpriced_requests_total",
                "Requests to targets missing from the price table (charged at the highest known rates).",
                g(&c.unpriced),
            ),
        ];
        for (name, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let open = self.connections.open_count();
        let _ = writeln!(
            out,
            "# HELP outlast_connections_open Client connections open.\n# TYPE outlast_connections_open gauge\noutlast_connections_open {open}"
        );
        if let Some(s) = self.store.get() {
            let _ = writeln!(
                out,
                "# HELP outlast_usage_rows_written_total Usage ledger rows written.\n# TYPE outlast_usage_rows_written_total counter\noutlast_usage_rows_written_total {}\n# HELP outlast_usage_rows_dropped_total Usage ledger rows dropped (queue full or closed).\n# TYPE outlast_usage_rows_dropped_total counter\noutlast_usage_rows_dropped_total {}",
                s.ledger.written.load(Ordering::Relaxed),
                s.ledger.dropped.load(Ordering::Relaxed)
            );
        }
    }

    /// Requests waiting for an admission slot now.
    pub fn admission_queued(&self) -> usize {
        self.gate.queued()
    }

    /// Write every usage row still queued (graceful shutdown).
    pub async fn close(&self) {
        if let Some(s) = self.store.get() {
            s.ledger.close().await;
        }
    }
}

/// Load keys and spend from the store.
pub(crate) async fn reload_keys(state: &AppState, db: &Db) -> Result<(), StoreError> {
    let records = db.list_keys().await?;
    if !records.is_empty() {
        state.protect.keys_in_use.store(true, Ordering::Release);
    }
    let now = now_ms();
    let day_start = now - now.rem_euclid(86_400_000);
    let month_start = keys::month_start_ms(now);
    let mut spend: HashMap<String, (f64, f64)> = HashMap::new();
    for (k, v) in db.spend_since(month_start).await? {
        spend.entry(k).or_default().1 = v;
    }
    for (k, v) in db.spend_since(day_start).await? {
        spend.entry(k).or_default().0 = v;
    }
    state.protect.registry.load(records, &spend, now);
    Ok(())
}

/// Connect the gateway to its durable store: load the virtual keys and their spend, start
/// the usage ledger, and refresh keys every `keys.refresh_interval`.
pub async fn attach_store(state: &Arc<AppState>, db: Db) -> Result<(), StoreError> {
    reload_keys(state, &db).await?;
    let store = Store {
        ledger: ledger::Ledger::start(db.clone(), &state.config.usage),
        db: db.clone(),
    };
    if state.protect.store.set(store).is_err() {
        return Ok(());
    }
    let weak: Weak<AppState> = Arc::downgrade(state);
    let every = state.config.keys.refresh_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { break };
            if let Err(e) = reload_keys(&state, &db).await {
                tracing::warn!(error = %e, "could not refresh virtual keys; keeping the loaded ones");
            }
        }
    });
    Ok(())
}
