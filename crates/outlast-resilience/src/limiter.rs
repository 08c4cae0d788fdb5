//! The cascade guard: a per-provider adaptive concurrency limit.
//!
//! Control law (Vector's adaptive request concurrency, fed with time to first token):
//! every adjustment interval (the mean TTFT seen so far, at least `min_interval`),
//! - if the provider pushed back (429, 529, 503, a timeout) or TTFT rose past
//!   `mean + rtt_deviation_scale * stddev`, the limit is multiplied by `decrease_ratio`;
//! - else, if demand reached the limit in that interval, the limit grows by one.
//!
//! Requests over the limit are not queued: the router sends them to the next target or sheds
//! them with 503 and Retry-After. Because a fallback provider's limit only grows by one per
//! interval while it keeps up, a sudden failover ramps onto it instead of landing all at once,
//! which is what turned the 4 June 2024 outage into a cascade.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    pub decrease_ratio: f64,
    pub rtt_deviation_scale: f64,
    /// Weight of a new interval in the long-run TTFT mean and variance.
    pub ewma_alpha: f64,
    /// Shortest adjustment interval.
    pub min_interval: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            initial: 16,
            min: 2,
            max: 512,
            decrease_ratio: 0.9,
            rtt_deviation_scale: 2.5,
            ewma_alpha: 0.4,
            min_interval: Duration::from_millis(100),
        }
    }
}

/// How an attempt ended, as the limiter sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The provider answered (its first byte, for streams) after this long.
    Answered(Duration),
    /// The provider said it is overloaded or rate limited, or did not answer in time.
    Backpressure,
    /// Anything else (refused connection, caller fault, server error): no signal about load.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct AimdLimit {
    config: LimitConfig,
    limit: f64,
    in_flight: u32,
    // Long-run TTFT statistics (ms), updated once per interval.
    mean_ms: Option<f64>,
    var_ms: f64,
    // The current interval.
    interval_start: Instant,
    reached: bool,
    backpressure: bool,
    sum_ms: f64,
    samples: u32,
}

impl AimdLimit {
    pub fn new(config: LimitConfig, now: Instant) -> Self {
        let initial = f64::from(config.initial.clamp(config.min.max(1), config.max.max(1)));
        Self {
            config,
            limit: initial,
            in_flight: 0,
            mean_ms: None,
            var_ms: 0.0,
            interval_start: now,
            reached: false,
            backpressure: false,
            sum_ms: 0.0,
            samples: 0,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Take a slot if one is free. A refusal still counts as demand at the limit.
    pub fn try_acquire(&mut self) -> bool {
        if self.in_flight < self.limit() {
            self.in_flight += 1;
            if self.in_flight >= self.limit() {
                self.reached = true;
            }
            true
        } else {
            self.reached = true;
            false
        }
    }

    /// Give a slot back and learn from how the attempt ended.
    pub fn release(&mut self, outcome: Outcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Answered(ttft) => {
                self.sum_ms += ttft.as_secs_f64() * 1e3;
                self.samples += 1;
            }
            Outcome::Backpressure => self.backpressure = true,
            Outcome::Neutral => {}
        }
        self.maybe_adjust(now);
    }

    fn interval(&self) -> Duration {
        let mean = self
            .mean_ms
            .map_or(Duration::ZERO, |m| Duration::from_secs_f64(m / 1e3));
        mean.max(self.config.min_interval)
    }

    fn maybe_adjust(&mut self, now: Instant) {
        if now.saturating_duration_since(self.interval_start) < self.interval() {
            return;
        }
        let current = (self.samples > 0).then(|| self.sum_ms / f64::from(self.samples));
        let too_slow = match (current, self.mean_ms) {
            (Some(c), Some(m)) => c > m + self.config.rtt_deviation_scale * self.var_ms.sqrt(),
            _ => false,
        };
        let (min, max) = (
            f64::from(self.config.min.max(1)),
            f64::from(self.config.max.max(1)),
        );
        if self.backpressure || too_slow {
            self.limit = (self.limit * self.config.decrease_ratio)
                .floor()
                .clamp(min, max);
        } else if self.reached {
            self.limit = (self.limit + 1.0).clamp(min, max);
        }
        if let Some(c) = current {
            let a = self.config.ewma_alpha;
            match self.mean_ms {
                None => self.mean_ms = Some(c),
                Some(m) => {
                    let diff = c - m;
                    let mean = m + a * diff;
                    self.var_ms = (1.0 - a) * (self.var_ms + a * diff * diff);
                    self.mean_ms = Some(mean);
                }
            }
        }
        self.interval_start = now;
        self.reached = self.in_flight >= self.limit();
        self.backpressure = false;
        self.sum_ms = 0.0;
        self.samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitConfig {
        LimitConfig {
            initial: 4,
            min: 1,
            max: 100,
            ..LimitConfig::default()
        }
    }

    /// Run `intervals` adjustment intervals of a provider with `capacity` concurrent slots and a
    /// steady demand of `demand` concurrent requests; return the limit after each interval.
    fn drive(capacity: u32, demand: u32, intervals: u32) -> Vec<u32> {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(cfg(), now);
        let ttft = Duration::from_millis(200);
        let mut out = Vec::new();
        for _ in 0..intervals {
            let admitted: u32 = (0..demand).filter(|_| l.try_acquire()).count() as u32;
            now += ttft;
            for i in 0..admitted {
                let outcome = if i < capacity {
                    Outcome::Answered(ttft)
                } else {
                    Outcome::Backpressure
                };
                l.release(outcome, now);
            }
            out.push(l.limit());
        }
        out
    }

    #[test]
    fn ramps_by_one_per_interval_under_demand() {
        let limits = drive(1000, 50, 10);
        assert_eq!(limits, [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    }

    #[test]
    fn settles_near_the_providers_capacity() {
        let limits = drive(20, 60, 300);
        let tail = &limits[200..];
        let max = *tail.iter().max().unwrap();
        let min = *tail.iter().min().unwrap();
        // The decision lags one interval, so the sawtooth overshoots capacity by a step or two.
        assert!(max <= 22, "never far past capacity: {tail:?}");
        assert!(min >= 16, "does not collapse: {tail:?}");
    }

    #[test]
    fn does_not_grow_while_demand_stays_below_the_limit() {
        let limits = drive(1000, 2, 50);
        assert!(limits.iter().all(|&l| l == 4), "{limits:?}");
    }

    #[test]
    fn backs_off_multiplicatively_and_respects_the_floor() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 50,
                min: 5,
                max: 100,
                ..LimitConfig::default()
            },
            now,
        );
        let mut seen = Vec::new();
        for _ in 0..40 {
            assert!(l.try_acquire());
            now += Duration::from_millis(150);
            l.release(Outcome::Backpressure, now);
            seen.push(l.limit());
        }
        assert_eq!(&seen[..3], &[45, 40, 36]);
        assert_eq!(*seen.last().unwrap(), 5);
    }

    #[test]
    fn latency_rise_is_back_pressure() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 10,
                ..cfg()
            },
            now,
        );
        for _ in 0..20 {
            assert!(l.try_acquire());
            now += Duration::from_millis(200);
            l.release(Outcome::Answered(Duration::from_millis(100)), now);
        }
        let before = l.limit();
        assert!(l.try_acquire());
        now += Duration::from_millis(200);
        l.release(Outcome::Answered(Duration::from_secs(2)), now);
        assert!(l.limit() < before, "{} -> {}", before, l.limit());
    }

    #[test]
    fn refuses_past_the_limit() {
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 2,
                ..cfg()
            },
            Instant::now(),
        );
        assert!(l.try_acquire() && l.try_acquire());
        assert!(!l.try_acquire());
        assert_eq!(l.in_flight(), 2);
    }
}
