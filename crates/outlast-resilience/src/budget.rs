//! A retry budget (Finagle, Linkerd and tower use the same model): over a sliding window,
//! retries may add at most `ratio` of the requests seen, plus a small floor so that a quiet
//! service can still retry. A budget caps amplification: with ratio 0.2, an outage can at
//! worst turn 100 client requests into 120 upstream requests, never 300.

use std::time::Duration;

use tokio::time::Instant;

const SLOTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per request seen in the window (0.2 = 20 %).
    pub ratio: f64,
    /// Retries per second always allowed, whatever the traffic.
    pub min_per_sec: f64,
    /// How far back requests count.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 1.0,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: BudgetConfig,
    slot_len: Duration,
    /// Start of the slot at `head`.
    head_start: Instant,
    head: usize,
    requests: [u32; SLOTS],
    retries: [u32; SLOTS],
}

impl RetryBudget {
    pub fn new(config: BudgetConfig, now: Instant) -> Self {
        let window = config.window.max(Duration::from_millis(SLOTS as u64));
        Self {
            config,
            slot_len: window / SLOTS as u32,
            head_start: now,
            head: 0,
            requests: [0; SLOTS],
            retries: [0; SLOTS],
        }
    }

    fn advance(&mut self, now: Instant) {
        let mut steps = 0;
        while now.saturating_duration_since(self.head_start) >= self.slot_len && steps <= SLOTS {
            self.head = (self.head + 1) % SLOTS;
            self.head_start += self.slot_len;
            if let Some(r) = self.requests.get_mut(self.head) {
                *r = 0;
            }
            if let Some(r) = self.retries.get_mut(self.head) {
                *r = 0;
            }
            steps += 1;
        }
        if steps > SLOTS {
            // Idle for longer than the window: start afresh.
            self.head_start = now;
        }
    }

    /// A first attempt was made: it earns retry credit.
    pub fn deposit(&mut self, now: Instant) {
        self.advance(now);
        if let Some(r) = self.requests.get_mut(self.head) {
            *r = r.saturating_add(1);
        }
    }

    /// Try to spend credit on one retry.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.advance(now);
        let requests: u32 = self.requests.iter().sum();
        let retries: u32 = self.retries.iter().sum();
        let allowed = self.config.ratio * f64::from(requests)
            + self.config.min_per_sec * self.config.window.as_secs_f64();
        if f64::from(retries) + 1.0 <= allowed {
            if let Some(r) = self.retries.get_mut(self.head) {
                *r = r.saturating_add(1);
            }
            true
        } else {
            false
        }
    }

    /// Retries spent per request in the window (for metrics).
    pub fn used(&mut self, now: Instant) -> f64 {
        self.advance(now);
        let requests: u32 = self.requests.iter().sum();
        let retries: u32 = self.retries.iter().sum();
        if requests == 0 {
            0.0
        } else {
            f64::from(retries) / f64::from(requests)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_plus_floor() {
        let t0 = Instant::now();
        let cfg = BudgetConfig {
            ratio: 0.2,
            min_per_sec: 1.0,
            window: Duration::from_secs(10),
        };
        let mut b = RetryBudget::new(cfg, t0);
        for _ in 0..100 {
            b.deposit(t0);
        }
        let granted = (0..100).filter(|_| b.withdraw(t0)).count();
        // 20 % of 100 plus 1/s over 10 s.
        assert_eq!(granted, 30);
    }

    #[test]
    fn credit_expires_with_the_window() {
        let t0 = Instant::now();
        let cfg = BudgetConfig {
            ratio: 0.5,
            min_per_sec: 0.0,
            window: Duration::from_secs(10),
        };
        let mut b = RetryBudget::new(cfg, t0);
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert!(b.withdraw(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(16);
        assert!(!b.withdraw(later), "old requests no longer earn retries");
        for _ in 0..2 {
            b.deposit(later);
        }
        assert!(b.withdraw(later));
        assert!(!b.withdraw(later));
    }

    #[test]
    fn a_long_idle_gap_resets_cleanly() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(BudgetConfig::default(), t0);
        b.deposit(t0);
        let later = t0 + Duration::from_secs(3600);
        assert!((b.used(later) - 0.0).abs() < f64::EPSILON);
        b.deposit(later);
        assert!(b.withdraw(later));
    }
}
