//! GCRA (the generic cell rate algorithm, as in `governor`): a rate limit kept as one instant,
//! the theoretical arrival time (TAT) of the next cell. With emission interval `T = period /
//! rate` and a burst of `B` cells, a request for `n` cells conforms iff
//! `max(TAT, now) + n·T − now ≤ B·T`; then `TAT = max(TAT, now) + n·T`. Weighted cells serve
//! token limits (`n` = estimated tokens), and [`Gcra::adjust`] reconciles the estimate with
//! the real count afterwards.

use std::time::Duration;

use tokio::time::Instant;

/// `rate` cells per `period`, all of which may arrive at once (burst = rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub rate: u64,
    pub period: Duration,
}

impl Quota {
    pub fn per_minute(rate: u64) -> Self {
        Self {
            rate,
            period: Duration::from_secs(60),
        }
    }

    fn interval_nanos(self) -> u128 {
        self.period.as_nanos() / u128::from(self.rate.max(1))
    }

    fn window_nanos(self) -> u128 {
        self.interval_nanos() * u128::from(self.rate.max(1))
    }
}

/// The answer to one check, with what `x-ratelimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Cells still available now (after this request, if allowed).
    pub remaining: u64,
    /// Until the limit is fully replenished.
    pub reset: Duration,
    /// Until this request would conform (zero when allowed). `None`: it never can, being
    /// larger than the whole burst.
    pub retry_after: Option<Duration>,
}

/// One limited subject (a key, an address).
#[derive(Debug, Clone, Copy, Default)]
pub struct Gcra {
    tat: Option<Instant>,
}

fn nanos(d: u128) -> Duration {
    Duration::from_nanos(u64::try_from(d).unwrap_or(u64::MAX))
}

impl Gcra {
    /// Take `n` cells if they conform.
    pub fn check(&mut self, quota: Quota, n: u64, now: Instant) -> Decision {
        let t = quota.interval_nanos();
        let window = quota.window_nanos();
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let backlog = tat.saturating_duration_since(now).as_nanos();
        let need = t.saturating_mul(u128::from(n));
        let after = backlog.saturating_add(need);
        let remaining_of = |used: u128| {
            let free = window.saturating_sub(used);
            u64::try_from(free / t.max(1)).unwrap_or(u64::MAX)
        };
        if after <= window {
            let new_tat = now + nanos(after);
            self.tat = Some(new_tat);
            Decision {
                allowed: true,
                remaining: remaining_of(after),
                reset: nanos(after),
                retry_after: Some(Duration::ZERO),
            }
        } else {
            Decision {
                allowed: false,
                remaining: remaining_of(backlog),
                reset: nanos(backlog),
                retry_after: (need <= window).then(|| nanos(after - window)),
            }
        }
    }

    /// Reconcile after the fact: `delta` cells more (positive) or fewer (negative) than were
    /// taken. Going over the limit is allowed here: the next request waits for it.
    pub fn adjust(&mut self, quota: Quota, delta: i64, now: Instant) {
        let t = quota.interval_nanos();
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let shift = nanos(t.saturating_mul(u128::from(delta.unsigned_abs())));
        self.tat = Some(if delta >= 0 {
            tat + shift
        } else {
            tat.checked_sub(shift).unwrap_or(now).max(now)
        });
    }

    /// Whether the subject is back at a full burst, so its state can be forgotten.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn allows_a_burst_then_spaces_requests() {
        let now = Instant::now();
        let q = Quota::per_minute(60);
        let mut g = Gcra::default();
        for i in 0..60 {
            let d = g.check(q, 1, now);
            assert!(d.allowed, "{i}");
            assert_eq!(d.remaining, 59 - i);
        }
        let d = g.check(q, 1, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(d.reset, Duration::from_secs(60));
        assert!(!g.check(q, 1, now + Duration::from_millis(999)).allowed);
        assert!(g.check(q, 1, now + Duration::from_secs(1)).allowed);
        assert!(g.is_idle(now + Duration::from_secs(61)));
    }

    #[test]
    fn weighted_cells_and_reconciliation() {
        let now = Instant::now();
        let q = Quota::per_minute(1000);
        let mut g = Gcra::default();
        assert!(g.check(q, 600, now).allowed);
        let d = g.check(q, 600, now);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 400);
        // The first request used only 100 tokens: 500 come back.
        g.adjust(q, -500, now);
        assert!(g.check(q, 600, now).allowed);
        // More than the whole burst can never pass.
        let d = g.check(q, 2000, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, None);
        // Usage over the estimate pushes the next request back.
        let mut g = Gcra::default();
        assert!(g.check(q, 10, now).allowed);
        g.adjust(q, 990, now);
        assert!(!g.check(q, 1, now).allowed);
    }
}
