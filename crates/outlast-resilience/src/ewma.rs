//! Peak-EWMA latency estimate (Finagle's, as in tower's `PeakEwma`): a slower sample replaces
//! the estimate at once, faster samples pull it down with exponential decay. Used on time to
//! first token, which does not grow with the answer's length the way total latency does.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct PeakEwma {
    decay: Duration,
    estimate_ms: f64,
    last: Instant,
}

impl PeakEwma {
    pub fn new(default_rtt: Duration, decay: Duration, now: Instant) -> Self {
        Self {
            decay: decay.max(Duration::from_millis(1)),
            estimate_ms: default_rtt.as_secs_f64() * 1e3,
            last: now,
        }
    }

    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let sample = rtt.as_secs_f64() * 1e3;
        if sample > self.estimate_ms {
            self.estimate_ms = sample;
        } else {
            let dt = now.saturating_duration_since(self.last).as_secs_f64();
            let w = (-dt / self.decay.as_secs_f64()).exp();
            self.estimate_ms = self.estimate_ms * w + sample * (1.0 - w);
        }
        self.last = now;
    }

    /// Add a penalty (a rate-limited or failed target must not look fast).
    pub fn penalize(&mut self, penalty: Duration, now: Instant) {
        self.observe(penalty, now);
    }

    pub fn estimate_ms(&self) -> f64 {
        self.estimate_ms
    }

    /// P2C cost: estimate times (outstanding + 1), divided by weight.
    pub fn cost(&self, outstanding: u32, weight: u32) -> f64 {
        self.estimate_ms * f64::from(outstanding + 1) / f64::from(weight.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_at_once_and_decays_slowly() {
        let t0 = Instant::now();
        let mut e = PeakEwma::new(Duration::from_millis(100), Duration::from_secs(10), t0);
        e.observe(Duration::from_millis(500), t0);
        assert!((e.estimate_ms() - 500.0).abs() < 1e-9);
        // One decay constant later a fast sample pulls it about 63 % of the way down.
        e.observe(Duration::from_millis(100), t0 + Duration::from_secs(10));
        let expected = 500.0 * (-1f64).exp() + 100.0 * (1.0 - (-1f64).exp());
        assert!((e.estimate_ms() - expected).abs() < 1e-6);
    }

    #[test]
    fn cost_weighs_outstanding_and_weight() {
        let e = PeakEwma::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Instant::now(),
        );
        assert!(e.cost(0, 1) < e.cost(1, 1));
        assert!((e.cost(1, 2) - e.cost(0, 1)).abs() < 1e-9);
    }
}
