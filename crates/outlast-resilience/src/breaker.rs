//! A per-target circuit breaker in the Linkerd/Finagle style.
//!
//! Closed: count consecutive failures and failures within a sliding window. Trip when either
//! crosses its threshold. Open: the target is skipped until the ejection time passes; each
//! consecutive ejection doubles the time (capped), with jitter so that many gateways do not
//! probe in step. Probation: exactly one request is let through; success closes the breaker and
//! resets the backoff, failure opens it again for longer.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that trip the breaker (Envoy and Finagle use 5).
    pub consecutive_failures: u32,
    /// Share of failed requests in the window that trips it...
    pub failure_rate: f64,
    /// ...once the window holds at least this many requests.
    pub min_requests: u32,
    pub window: Duration,
    /// First ejection; doubles on each consecutive ejection up to `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Ejection times vary by up to this share (Linkerd uses 0.5).
    pub jitter: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.2,
            min_requests: 10,
            window: Duration::from_secs(10),
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

/// What the breaker allows for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: send normally.
    Yes,
    /// Probation: this request is the one probe.
    Probe,
    /// Open, or a probe is already out.
    No,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// `probing`: the single probe request is in flight.
    Probation {
        probing: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    consecutive: u32,
    /// Consecutive ejections without a success in between: the backoff exponent.
    ejections: u32,
    window_start: Instant,
    window_requests: u32,
    window_failures: u32,
}

impl Breaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Closed,
            consecutive: 0,
            ejections: 0,
            window_start: now,
            window_requests: 0,
            window_failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the target is ejected right now (open and not yet due for a probe).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }

    /// Ask to send one request. `Probe` must be followed by `record`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Yes,
            State::Open { until } if now < until => Admit::No,
            State::Open { .. } | State::Probation { probing: false } => {
                self.state = State::Probation { probing: true };
                Admit::Probe
            }
            State::Probation { probing: true } => Admit::No,
        }
    }

    /// A probe was admitted but never sent (another limit refused it): let the next one go.
    pub fn release_probe(&mut self) {
        if self.state == (State::Probation { probing: true }) {
            self.state = State::Probation { probing: false };
        }
    }

    pub fn record_success(&mut self, now: Instant) {
        self.roll_window(now);
        self.window_requests += 1;
        self.consecutive = 0;
        if matches!(self.state, State::Probation { .. }) {
            self.state = State::Closed;
            self.ejections = 0;
            self.reset_window(now);
        }
    }

    /// Record a failure; `rand` in [0, 1) drives the jitter (injected for determinism).
    pub fn record_failure(&mut self, now: Instant, rand: f64) {
        self.roll_window(now);
        self.window_requests += 1;
        self.window_failures += 1;
        self.consecutive += 1;
        let trip = match self.state {
            State::Probation { .. } => true,
            State::Open { .. } => false,
            State::Closed => {
                self.consecutive >= self.config.consecutive_failures
                    || (self.window_requests >= self.config.min_requests
                        && f64::from(self.window_failures)
                            >= self.config.failure_rate * f64::from(self.window_requests))
            }
        };
        if trip {
            let ejection = self.ejection_time(rand);
            self.ejections = self.ejections.saturating_add(1);
            self.state = State::Open {
                until: now + ejection,
            };
            self.reset_window(now);
        }
    }

    /// `base * 2^ejections`, capped, minus up to `jitter` of itself.
    fn ejection_time(&self, rand: f64) -> Duration {
        let factor = 2f64.powi(self.ejections.min(30) as i32);
        let full = self
            .config
            .base_ejection
            .mul_f64(factor)
            .min(self.config.max_ejection);
        let jitter = self.config.jitter.clamp(0.0, 1.0) * rand.clamp(0.0, 1.0);
        full.mul_f64(1.0 - jitter)
    }

    fn roll_window(&mut self, now: Instant) {
        if now.saturating_duration_since(self.window_start) >= self.config.window {
            self.reset_window(now);
        }
    }

    fn reset_window(&mut self, now: Instant) {
        self.window_start = now;
        self.window_requests = 0;
        self.window_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            jitter: 0.0,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn trips_after_consecutive_failures_and_probes_once() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..4 {
            b.record_failure(t0, 0.0);
            assert_eq!(b.admit(t0), Admit::Yes);
        }
        b.record_failure(t0, 0.0);
        assert_eq!(b.admit(t0), Admit::No);
        assert!(b.is_open(t0 + Duration::from_millis(999)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admit::Probe);
        assert_eq!(b.admit(t1), Admit::No, "exactly one probe");
        b.record_success(t1);
        assert_eq!(b.admit(t1), Admit::Yes);
    }

    #[test]
    fn failed_probes_back_off_exponentially_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..5 {
            b.record_failure(t0, 0.0);
        }
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let State::Open { until } = b.state() else {
                panic!("open")
            };
            waits.push(until - now);
            now = until;
            assert_eq!(b.admit(now), Admit::Probe);
            b.record_failure(now, 0.0);
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        // A successful probe resets the backoff.
        let State::Open { until } = b.state() else {
            panic!("open")
        };
        assert_eq!(b.admit(until), Admit::Probe);
        b.record_success(until);
        for _ in 0..5 {
            b.record_failure(until, 0.0);
        }
        assert_eq!(
            b.state(),
            State::Open {
                until: until + Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn failure_rate_trips_without_a_consecutive_run() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // One failure in four: never 5 in a row, but 25 % of the window.
        for i in 0..20 {
            if b.admit(t0) == Admit::No {
                break;
            }
            if i % 2 == 0 {
                b.record_success(t0)
            } else {
                b.record_failure(t0, 0.0)
            }
        }
        assert!(b.is_open(t0));
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // 3 failures in 9 requests: not yet the 10 the window needs.
        for i in 0..9 {
            if i % 3 == 0 {
                b.record_failure(t0, 0.0)
            } else {
                b.record_success(t0)
            }
        }
        // In the same window one more failure would trip it (4 of 10); a window later it does not.
        let later = t0 + Duration::from_secs(11);
        b.record_failure(later, 0.0);
        assert_eq!(b.admit(later), Admit::Yes);
    }

    #[test]
    fn jitter_shortens_ejection_by_at_most_its_share() {
        let t0 = Instant::now();
        let mut b = Breaker::new(
            BreakerConfig {
                jitter: 0.5,
                ..BreakerConfig::default()
            },
            t0,
        );
        for _ in 0..5 {
            b.record_failure(t0, 0.999);
        }
        let State::Open { until } = b.state() else {
            panic!("open")
        };
        let wait = until - t0;
        assert!(
            wait >= Duration::from_millis(500) && wait < Duration::from_millis(502),
            "{wait:?}"
        );
    }

    #[test]
    fn an_unsent_probe_is_released() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..5 {
            b.record_failure(t0, 0.0);
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.release_probe();
        assert_eq!(b.admit(t1), Admit::Probe);
    }
}
