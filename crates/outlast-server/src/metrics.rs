//! Counters the gateway keeps on its hot path (relaxed atomics, no locks) and their Prometheus
//! text rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    responses_2xx: AtomicU64,
    responses_4xx: AtomicU64,
    responses_5xx: AtomicU64,
    upstream_attempts: AtomicU64,
    upstream_failures: AtomicU64,
    failed_over: AtomicU64,
    streams_broken: AtomicU64,
    streams_resumed: AtomicU64,
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    capacity_skips: AtomicU64,
    shed: AtomicU64,
    panic_mode: AtomicU64,
}

impl Metrics {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn response(&self, status: u16) {
        let c = match status {
            200..=299 => &self.responses_2xx,
            400..=499 => &self.responses_4xx,
            _ => &self.responses_5xx,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Upstream attempts so far (drills read it to measure amplification).
    pub fn upstream_attempts(&self) -> u64 {
        self.upstream_attempts.load(Ordering::Relaxed)
    }

    pub fn upstream_attempt(&self) {
        self.upstream_attempts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_failure(&self) {
        self.upstream_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed_over(&self) {
        self.failed_over.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_broken(&self) {
        self.streams_broken.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_resumed(&self) {
        self.streams_resumed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn capacity_skip(&self) {
        self.capacity_skips.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn panic_mode(&self) {
        self.panic_mode.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "outlast_requests_total",
            "Client requests received on the API endpoints.",
            &[("", g(&self.requests))],
        );
        counter(
            "outlast_responses_total",
            "Client responses by status class.",
            &[
                ("{class=\"2xx\"}", g(&self.responses_2xx)),
                ("{class=\"4xx\"}", g(&self.responses_4xx)),
                ("{class=\"5xx\"}", g(&self.responses_5xx)),
            ],
        );
        counter(
            "outlast_upstream_attempts_total",
            "Requests sent to providers.",
            &[("", g(&self.upstream_attempts))],
        );
        counter(
            "outlast_upstream_failures_total",
            "Provider attempts that failed.",
            &[("", g(&self.upstream_failures))],
        );
        counter(
            "outlast_failovers_total",
            "Client requests answered by a target other than the first tried.",
            &[("", g(&self.failed_over))],
        );
        counter(
            "outlast_streams_broken_total",
            "Streams that failed after the first byte reached the client.",
            &[("", g(&self.streams_broken))],
        );
        counter(
            "outlast_streams_resumed_total",
            "Broken streams continued on another target with the partial answer as prefix.",
            &[("", g(&self.streams_resumed))],
        );
        counter(
            "outlast_retries_total",
            "Attempts after the first, paid by the retry budget.",
            &[("", g(&self.retries))],
        );
        counter(
            "outlast_retry_budget_exhausted_total",
            "Retries refused because the retry budget was spent.",
            &[("", g(&self.budget_exhausted))],
        );
        counter(
            "outlast_capacity_skips_total",
            "Targets passed over because their provider was at its adaptive concurrency limit.",
            &[("", g(&self.capacity_skips))],
        );
        counter(
            "outlast_shed_total",
            "Requests answered 503 without any upstream attempt (all targets at capacity, ejected or cooling down).",
            &[("", g(&self.shed))],
        );
        counter(
            "outlast_panic_mode_total",
            "Requests routed with breakers ignored because every target was ejected.",
            &[("", g(&self.panic_mode))],
        );
        out
    }
}
