//! What a drill measured: client outcomes by phase, what reached each provider, and how fast
//! the gateway routed away from a fault and back after recovery.

use std::fmt;
use std::time::Duration;

use outlast_sim::SimStats;
use tokio::time::Instant;

use crate::scenario::Scenario;

/// One client request.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub start: Duration,
    pub latency: Duration,
    pub status: u16,
    pub code: Option<String>,
    pub target: Option<String>,
    pub stream: bool,
    /// A 200 stream that did not end with `[DONE]`, or carried an error event.
    pub broken: bool,
}

impl Record {
    fn answered(&self) -> bool {
        self.status == 200 && !self.broken
    }

    fn shed(&self) -> bool {
        self.status == 503 && self.code.as_deref() == Some("at_capacity")
    }
}

/// Counters at a phase boundary.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub phase: String,
    pub at: Duration,
    /// Per provider: stats, and the highest in-flight count since the previous sample.
    pub sims: Vec<(SimStats, u32)>,
    pub upstream_attempts: u64,
}

pub(crate) async fn one_request(
    http: &reqwest::Client,
    url: &str,
    stream: bool,
    run_start: Instant,
) -> Record {
    let body = serde_json::json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "Summarise today's outage for our users."}],
        "stream": stream,
    });
    let started = Instant::now();
    let start = started.saturating_duration_since(run_start);
    let mut record = Record {
        start,
        latency: Duration::ZERO,
        status: 0,
        code: None,
        target: None,
        stream,
        broken: false,
    };
    match http.post(url).json(&body).send().await {
        Err(_) => record.status = 0,
        Ok(r) => {
            record.status = r.status().as_u16();
            record.target = r
                .headers()
                .get("x-outlast-target")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = r.text().await.unwrap_or_default();
            if record.status == 200 {
                record.broken = stream
                    && (!text.trim_end().ends_with("data: [DONE]")
                        || text.contains("data: {\"error\""));
            } else {
                record.code = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/error/code")
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                    });
            }
        }
    }
    record.latency = started.elapsed();
    record
}

#[derive(Debug, Clone)]
pub struct ProviderPhase {
    pub name: String,
    /// Requests that reached the provider (refused connections never do).
    pub requests: u64,
    pub answered: u64,
    /// Requests the provider refused for capacity: load past what it can take.
    pub rejected_capacity: u64,
    pub max_in_flight: u32,
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub name: String,
    pub start: Duration,
    pub end: Duration,
    pub requests: u64,
    pub answered: u64,
    /// 503 at capacity: deliberately shed, fast, with Retry-After.
    pub shed: u64,
    /// Every other failure the client saw (errors, broken streams).
    pub failed: u64,
    /// Failures among non-streaming requests and streams broken before their first byte.
    pub failed_non_stream: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Median and worst time to answer a shed request.
    pub shed_p50_ms: f64,
    pub shed_max_ms: f64,
    /// Upstream attempts per client request.
    pub amplification: f64,
    pub providers: Vec<ProviderPhase>,
}

impl PhaseReport {
    pub fn answered_share(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.answered as f64 / self.requests as f64
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub cascade_guard: bool,
    pub phases: Vec<PhaseReport>,
    /// (phase, provider, seconds from the fault until its breaker opened).
    pub route_away: Vec<(String, String, Option<f64>)>,
    /// (phase, provider, seconds from recovery until it answered a client again).
    pub returned: Vec<(String, String, Option<f64>)>,
}

impl Report {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn build(
    scenario: &Scenario,
    cascade_guard: bool,
    records: &[Record],
    samples: &[Sample],
    breaker_log: &[(Duration, String, bool)],
) -> Report {
    let mut phases = Vec::new();
    for w in samples.windows(2) {
        let (Some(a), Some(b)) = (w.first(), w.get(1)) else {
            continue;
        };
        let in_phase: Vec<&Record> = records
            .iter()
            .filter(|r| r.start >= a.at && r.start < b.at)
            .collect();
        let requests = in_phase.len() as u64;
        let answered = in_phase.iter().filter(|r| r.answered()).count() as u64;
        let shed = in_phase.iter().filter(|r| r.shed()).count() as u64;
        let failed = requests - answered - shed;
        let failed_non_stream = in_phase
            .iter()
            .filter(|r| !r.answered() && !r.shed() && (!r.stream || r.status != 200))
            .count() as u64;
        let lat: Vec<f64> = in_phase
            .iter()
            .filter(|r| r.answered())
            .map(|r| ms(r.latency))
            .collect();
        let shed_lat: Vec<f64> = in_phase
            .iter()
            .filter(|r| r.shed())
            .map(|r| ms(r.latency))
            .collect();
        let attempts = b.upstream_attempts.saturating_sub(a.upstream_attempts);
        let providers = scenario
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (sa, _) = a.sims.get(i).copied().unwrap_or_default();
                let (sb, max_in_flight) = b.sims.get(i).copied().unwrap_or_default();
                ProviderPhase {
                    name: p.name.clone(),
                    requests: sb.requests.saturating_sub(sa.requests),
                    answered: sb.answered.saturating_sub(sa.answered),
                    rejected_capacity: sb.rejected_capacity.saturating_sub(sa.rejected_capacity),
                    max_in_flight,
                    capacity: p.faults.capacity,
                }
            })
            .collect();
        phases.push(PhaseReport {
            name: a.phase.clone(),
            start: a.at,
            end: b.at,
            requests,
            answered,
            shed,
            failed,
            failed_non_stream,
            p50_ms: percentile(lat.clone(), 0.5),
            p99_ms: percentile(lat, 0.99),
            shed_p50_ms: percentile(shed_lat.clone(), 0.5),
            shed_max_ms: shed_lat.iter().copied().fold(0.0, f64::max),
            amplification: if requests == 0 {
                0.0
            } else {
                attempts as f64 / requests as f64
            },
            providers,
        });
    }

    let mut route_away = Vec::new();
    let mut returned = Vec::new();
    for e in &scenario.events {
        let (Some(p), Some(f)) = (&e.provider, &e.faults) else {
            continue;
        };
        let prefix = format!("{p}/");
        let down = f.get("down").and_then(toml::Value::as_bool);
        let rate = f.get("error_rate").and_then(toml::Value::as_float);
        if down == Some(true) || rate.is_some_and(|r| r > 0.0) {
            let opened = breaker_log
                .iter()
                .find(|(t, label, open)| *t >= e.at && *open && label.starts_with(&prefix))
                .map(|(t, _, _)| (*t - e.at).as_secs_f64());
            route_away.push((e.phase.clone(), p.clone(), opened));
        } else if down == Some(false) || rate == Some(0.0) {
            let back = records
                .iter()
                .filter(|r| {
                    r.start >= e.at
                        && r.answered()
                        && r.target.as_deref().is_some_and(|t| t.starts_with(&prefix))
                })
                .map(|r| (r.start - e.at).as_secs_f64())
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.min(x)))
                });
            returned.push((e.phase.clone(), p.clone(), back));
        }
    }
    Report {
        scenario: scenario.name.clone(),
        cascade_guard,
        phases,
        route_away,
        returned,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}  (cascade guard {})",
            self.scenario,
            if self.cascade_guard { "ON" } else { "OFF" }
        )?;
        writeln!(
            f,
            "  {:<24} {:>7} {:>8} {:>9} {:>6} {:>6} {:>8} {:>8} {:>9} {:>9}",
            "phase",
            "from s",
            "requests",
            "answered",
            "shed",
            "failed",
            "p50 ms",
            "p99 ms",
            "shed p50",
            "upstream/req"
        )?;
        for p in &self.phases {
            writeln!(
                f,
                "  {:<24} {:>7.1} {:>8} {:>8.2}% {:>6} {:>6} {:>8.0} {:>8.0} {:>8.1}ms {:>9.2}",
                p.name,
                p.start.as_secs_f64(),
                p.requests,
                100.0 * p.answered_share(),
                p.shed,
                p.failed,
                p.p50_ms,
                p.p99_ms,
                p.shed_p50_ms,
                p.amplification
            )?;
        }
        writeln!(
            f,
            "  what reached each provider (requests / answered / refused for capacity / peak in flight of capacity):"
        )?;
        for p in &self.phases {
            let cells: Vec<String> = p
                .providers
                .iter()
                .map(|x| {
                    let cap = x
                        .capacity
                        .map_or_else(|| "-".to_string(), |c| c.to_string());
                    format!(
                        "{} {}/{}/{}/{} of {cap}",
                        x.name, x.requests, x.answered, x.rejected_capacity, x.max_in_flight
                    )
                })
                .collect();
            writeln!(f, "    {:<22} {}", p.name, cells.join("   "))?;
        }
        for (phase, p, t) in &self.route_away {
            match t {
                Some(t) => writeln!(
                    f,
                    "  route away from {p} ({phase}): breaker open {t:.2} s after the fault"
                )?,
                None => writeln!(f, "  route away from {p} ({phase}): breaker never opened")?,
            }
        }
        for (phase, p, t) in &self.returned {
            match t {
                Some(t) => writeln!(
                    f,
                    "  back on {p} ({phase}): first answer {t:.2} s after recovery"
                )?,
                None => writeln!(
                    f,
                    "  back on {p} ({phase}): never answered again in the run"
                )?,
            }
        }
        Ok(())
    }
}
