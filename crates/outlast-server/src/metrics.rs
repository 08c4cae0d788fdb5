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
    request_duration: Histogram,
    ttft: Histogram,
}

/// Upper bounds in seconds, spanning a fast cache hit to a long generation.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A fixed-bucket histogram of relaxed atomics (Prometheus cumulative buckets on render).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .and_then(|i| self.counts.get(i))
            .unwrap_or(&self.overflow);
        slot.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            total += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {total}");
        }
        total += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
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

    /// A client request's whole duration (for streams: until the response head).
    pub fn request_duration(&self, d: std::time::Duration) {
        self.request_duration.observe(d);
    }

    /// Time from sending an attempt to its first byte (for streams: first event).
    pub fn ttft(&self, d: std::time::Duration) {
        self.ttft.observe(d);
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
        self.request_duration.render(
            &mut out,
            "gen_ai_server_request_duration_seconds",
            "Client request duration (OpenTelemetry GenAI gen_ai.server.request.duration; streams until the response head).",
        );
        self.ttft.render(
            &mut out,
            "gen_ai_server_time_to_first_token_seconds",
            "Upstream time to first token per successful attempt (OpenTelemetry GenAI gen_ai.server.time_to_first_token).",
        );
        out
    }
}
