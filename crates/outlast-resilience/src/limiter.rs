//! The cascade guard: a per-provider adaptive concurrency limit.
//!
//! Control law (Vector's adaptive request concurrency fed with time to first token, plus a
//! TCP-style slow start and a decay toward actual use). Every adjustment interval (the mean
//! TTFT seen so far, at least `min_interval`):
//! - at once, on any refusal: the limit is capped to the requests still in flight there (the
//!   provider just showed it cannot take more than that);
//! - if the provider pushed back (429, 529, 503, a timeout) or TTFT rose past
//!   `mean + max(rtt_deviation_scale * stddev, min_rtt_rise * mean, 50 ms)`:
//!   `limit *= decrease_ratio`,
//!   and slow start ends;
//! - else, if demand reached the limit: in slow start, or after 3 quiet intervals while below
//!   the level that worked before the last back-pressure, every answer adds one slot (the
//!   limit doubles per round trip, as TCP's slow start); otherwise `limit += 1` per interval;
//! - else, if the peak in-flight count stayed under half the limit: the limit decays toward
//!   twice that peak (never below `initial`), and at `initial` slow start begins again.
//!
//! Requests over the limit are not queued: the router sends them to the next target or sheds
//! them with 503 and Retry-After. An idle fallback therefore holds a modest limit, and a sudden
//! failover ramps onto it, doubling per round trip until it pushes back (then capped to what it
//! holds), instead of landing all at once, which is how the 4 June 2024 outage spread from one
//! provider to the others.

use std::time::Duration;

use tokio::time::Instant;

/// A TTFT rise smaller than this is noise (scheduling, GC, a busy core), never back-pressure.
const MIN_RTT_RISE_MS: f64 = 50.0;

/// Intervals without back-pressure after which the limit climbs back quickly to the level
/// that worked before.
const RECOVERY_QUIET_INTERVALS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    pub decrease_ratio: f64,
    /// Growth per interval during slow start.
    pub ramp_ratio: f64,
    pub rtt_deviation_scale: f64,
    /// Smallest TTFT rise, as a share of the mean, that counts as back-pressure.
    pub min_rtt_rise: f64,
    /// Weight of a new interval in the long-run TTFT mean and variance.
    pub ewma_alpha: f64,
    /// Shortest adjustment interval.
    pub min_interval: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            initial: 32,
            min: 2,
            max: 1024,
            decrease_ratio: 0.9,
            ramp_ratio: 1.5,
            rtt_deviation_scale: 2.5,
            min_rtt_rise: 0.5,
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
    /// The provider refused the request: overloaded or rate limited (429, 503, 529).
    Refused,
    /// The provider did not answer in time.
    Backpressure,
    /// Anything else (refused connection, caller fault, server error): no signal about load.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct AimdLimit {
    config: LimitConfig,
    limit: f64,
    in_flight: u32,
    slow_start: bool,
    peak: u32,
    /// Intervals in a row without back-pressure.
    quiet: u32,
    /// Demand reached the limit in the previous interval.
    reached_before: bool,
    /// The highest limit at which the provider kept up with demand at the limit.
    good_level: f64,
    /// The limit that worked before the last back-pressure (0: none to recover to).
    recover_to: f64,
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
            slow_start: true,
            peak: 0,
            quiet: 1,
            reached_before: false,
            good_level: 0.0,
            recover_to: 0.0,
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
            self.peak = self.peak.max(self.in_flight);
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
                // Slow start (TCP's): each answer while demand is at the limit adds one slot,
                // so the limit doubles per round trip until the provider pushes back; the same
                // after a storm, back up to the level that worked before it.
                let recovering =
                    self.quiet >= RECOVERY_QUIET_INTERVALS && self.limit < self.recover_to;
                if (self.reached || self.reached_before) && (self.slow_start || recovering) {
                    let ceiling = if recovering {
                        self.recover_to.floor()
                    } else {
                        f64::from(self.config.max.max(1))
                    };
                    self.limit = (self.limit + 1.0).min(ceiling.max(self.limit));
                }
            }
            Outcome::Refused | Outcome::Backpressure => {
                if !self.backpressure {
                    // A refusal at or below the best level known to work means that level is
                    // too high now; a probe above it failing leaves it as it is.
                    // (Only the first refusal after a quiet spell says so: during a storm the
                    // limit falls fast and each further refusal says nothing new.)
                    if self.quiet > 0 && self.limit <= self.good_level {
                        self.good_level = (self.limit - 1.0).max(0.0);
                    }
                    // After the trouble passes, the limit may climb back to that level quickly.
                    self.recover_to = self.good_level;
                }
                self.backpressure = true;
                self.slow_start = false;
                if outcome == Outcome::Refused {
                    // The provider refused while `in_flight` others were still running: its
                    // capacity is at most about that. Cap at once instead of waiting an
                    // interval, so that a burst of refusals does not keep refilling the slots
                    // they free.
                    let cap = f64::from(self.in_flight.max(self.config.min.max(1)));
                    if cap < self.limit {
                        self.limit = cap;
                    }
                }
            }
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
        // A rise must pass both the deviation test and a floor: with a steady provider the
        // deviation tends to zero, and noise alone would otherwise read as overload.
        let too_slow = match (current, self.mean_ms) {
            (Some(c), Some(m)) => {
                c > m
                    + (self.config.rtt_deviation_scale * self.var_ms.sqrt())
                        .max(self.config.min_rtt_rise * m)
                        .max(MIN_RTT_RISE_MS)
            }
            _ => false,
        };
        let (min, max) = (
            f64::from(self.config.min.max(1)),
            f64::from(self.config.max.max(1)),
        );
        let initial = f64::from(self.config.initial).clamp(min, max);
        if !(self.backpressure || too_slow) && self.samples > 0 {
            // The provider kept up with this many at once: that level works.
            self.good_level = self.good_level.max(f64::from(self.peak));
        }
        if !(self.backpressure || too_slow) {
            self.quiet += 1;
        }
        if self.backpressure || too_slow {
            self.limit = (self.limit * self.config.decrease_ratio)
                .floor()
                .clamp(min, max);
            self.slow_start = false;
            self.quiet = 0;
        } else if self.reached {
            // Quiet for a few intervals below the last level that worked: climb back fast.
            let recovering = self.quiet >= RECOVERY_QUIET_INTERVALS && self.limit < self.recover_to;
            if !recovering && self.limit >= self.recover_to {
                self.recover_to = 0.0;
            }
            // Slow start and recovery grow per answer (in `release`); otherwise one per interval.
            if !(recovering || self.slow_start) {
                self.limit = (self.limit + 1.0).clamp(min, max);
            }
        } else if f64::from(self.peak) * 2.0 < self.limit && self.limit > initial {
            self.limit = (f64::from(self.peak) * 2.0)
                .max(self.limit * self.config.decrease_ratio)
                .max(initial)
                .floor()
                .clamp(min, max);
            if self.limit <= initial {
                self.slow_start = true;
            }
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
        self.reached_before = self.reached;
        self.peak = self.in_flight;
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
            // Refusals come back at once, answers a TTFT later.
            now += Duration::from_millis(1);
            for _ in capacity.min(admitted)..admitted {
                l.release(Outcome::Refused, now);
            }
            now += ttft;
            for _ in 0..capacity.min(admitted) {
                l.release(Outcome::Answered(ttft), now);
            }
            out.push(l.limit());
        }
        out
    }

    #[test]
    fn slow_start_ramps_by_half_per_interval_then_additively_after_push_back() {
        let limits = drive(1000, 50, 6);
        assert_eq!(limits, [8, 16, 32, 64, 65, 65]);
        // Past its capacity of 20 the provider pushes back: from then on +1 per interval.
        let limits = drive(20, 60, 12);
        let first_drop = limits.windows(2).position(|w| w[1] < w[0]).unwrap();
        let after: Vec<i64> = limits[first_drop + 1..]
            .windows(2)
            .map(|w| i64::from(w[1]) - i64::from(w[0]))
            .collect();
        assert!(after.iter().all(|&d| d <= 1), "{limits:?}");
    }

    #[test]
    fn an_idle_provider_decays_back_to_the_initial_limit() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 4,
                min: 1,
                max: 100,
                ..LimitConfig::default()
            },
            now,
        );
        let ttft = Duration::from_millis(200);
        // Busy: ramp up.
        for _ in 0..6 {
            let n = (0..100).filter(|_| l.try_acquire()).count();
            now += ttft;
            for _ in 0..n {
                l.release(Outcome::Answered(ttft), now);
            }
        }
        assert!(l.limit() > 20, "{}", l.limit());
        // Quiet: one request at a time.
        for _ in 0..60 {
            assert!(l.try_acquire());
            now += ttft;
            l.release(Outcome::Answered(ttft), now);
        }
        assert_eq!(l.limit(), 4);
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
        let _ = Outcome::Neutral;
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
    fn noise_on_a_steady_provider_is_not_back_pressure() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 10,
                ..cfg()
            },
            now,
        );
        for i in 0..200 {
            let n = (0..40).filter(|_| l.try_acquire()).count();
            now += Duration::from_millis(200);
            let jitter = Duration::from_micros(200 + (i % 7) * 300);
            for _ in 0..n {
                l.release(Outcome::Answered(Duration::from_millis(200) + jitter), now);
            }
        }
        assert!(
            l.limit() >= 40,
            "a steady provider's limit grows to the demand: {}",
            l.limit()
        );
    }

    #[test]
    fn a_burst_of_refusals_caps_the_limit_to_what_the_provider_holds() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 32,
                min: 2,
                max: 100,
                ..LimitConfig::default()
            },
            now,
        );
        let admitted = (0..30).filter(|_| l.try_acquire()).count();
        assert_eq!(admitted, 30);
        // The provider takes 6 and refuses 24 at once.
        now += Duration::from_millis(1);
        for _ in 0..24 {
            l.release(Outcome::Refused, now);
        }
        assert_eq!(l.limit(), 6);
        assert!(!l.try_acquire(), "no slot freed by a refusal is refilled");
    }

    #[test]
    fn after_a_passing_storm_the_limit_climbs_back_fast() {
        let mut now = Instant::now();
        let mut l = AimdLimit::new(
            LimitConfig {
                initial: 32,
                min: 2,
                max: 100,
                ..LimitConfig::default()
            },
            now,
        );
        let ttft = Duration::from_millis(100);
        // Healthy: 30 at a time are served.
        for _ in 0..5 {
            let n = (0..30).filter(|_| l.try_acquire()).count();
            now += ttft;
            for _ in 0..n {
                l.release(Outcome::Answered(ttft), now);
            }
        }
        // A storm of refusals drives the limit to its floor.
        for _ in 0..10 {
            let n = (0..40).filter(|_| l.try_acquire()).count();
            now += ttft;
            for _ in 0..n {
                l.release(Outcome::Refused, now);
            }
        }
        assert_eq!(l.limit(), 2);
        // The storm passes: within ten intervals it is back near the level that worked.
        for _ in 0..10 {
            let n = (0..30).filter(|_| l.try_acquire()).count();
            now += ttft;
            for _ in 0..n {
                l.release(Outcome::Answered(ttft), now);
            }
        }
        assert!(l.limit() >= 28, "{}", l.limit());
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
