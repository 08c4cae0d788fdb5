//! Gateway admission: one adaptive concurrency limit for the whole gateway ([`AimdLimit`] fed
//! with the time each request took to its response headers), shared by priority classes.
//! A class may only fill its share of the limit, so as load rises the sheddable class is
//! refused first, then the default class, and critical traffic keeps the last slots
//! (Google SRE criticality; Netflix partitions).

use std::time::Duration;

use tokio::time::Instant;

use crate::limiter::{AimdLimit, LimitConfig, Outcome};

/// A request's priority class, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    Critical,
    #[default]
    Default,
    Sheddable,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Default => "default",
            Priority::Sheddable => "sheddable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "critical" => Some(Priority::Critical),
            "default" => Some(Priority::Default),
            "sheddable" => Some(Priority::Sheddable),
            _ => None,
        }
    }

    /// Share of the gateway's limit this class may fill.
    pub fn share(self) -> f64 {
        match self {
            Priority::Critical => 1.0,
            Priority::Default => 0.9,
            Priority::Sheddable => 0.6,
        }
    }
}

/// How an admitted request ended, for the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finished {
    /// Answered (2xx) with headers after this long.
    Answered(Duration),
    /// Shed or timed out further in (503, 504, 429 from the router): back-pressure.
    Overloaded,
    /// A caller fault or anything that says nothing about load.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct Admission {
    limit: AimdLimit,
}

impl Admission {
    pub fn new(config: LimitConfig, now: Instant) -> Self {
        Self {
            limit: AimdLimit::new(config, now),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit.limit()
    }

    pub fn in_flight(&self) -> u32 {
        self.limit.in_flight()
    }

    /// The most requests of this class that may be in flight: at least one, so no class is
    /// starved outright on an idle gateway.
    pub fn cap(&self, priority: Priority) -> u32 {
        let c = (f64::from(self.limit.limit()) * priority.share()).floor() as u32;
        c.max(1)
    }

    /// Take a slot if this class may.
    pub fn try_admit(&mut self, priority: Priority) -> bool {
        if self.limit.in_flight() >= self.cap(priority) {
            return false;
        }
        self.limit.try_acquire()
    }

    pub fn finish(&mut self, how: Finished, now: Instant) {
        let outcome = match how {
            Finished::Answered(d) => Outcome::Answered(d),
            Finished::Overloaded => Outcome::Backpressure,
            Finished::Neutral => Outcome::Neutral,
        };
        self.limit.release(outcome, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n: u32) -> LimitConfig {
        LimitConfig {
            initial: n,
            min: n,
            max: n,
            ..LimitConfig::default()
        }
    }

    #[test]
    fn sheddable_is_refused_first_and_critical_last() {
        let now = Instant::now();
        let mut a = Admission::new(config(10), now);
        let mut shed_ok = 0;
        while a.try_admit(Priority::Sheddable) {
            shed_ok += 1;
        }
        assert_eq!(shed_ok, 6);
        let mut default_ok = 0;
        while a.try_admit(Priority::Default) {
            default_ok += 1;
        }
        assert_eq!(default_ok, 3);
        assert!(a.try_admit(Priority::Critical));
        assert!(!a.try_admit(Priority::Critical));
        assert!(!a.try_admit(Priority::Sheddable));
        a.finish(Finished::Answered(Duration::from_millis(5)), now);
        assert!(!a.try_admit(Priority::Sheddable));
        assert!(a.try_admit(Priority::Critical));
        assert_eq!(a.in_flight(), 10);
    }

    #[test]
    fn the_limit_falls_under_back_pressure() {
        let start = Instant::now();
        let mut a = Admission::new(
            LimitConfig {
                initial: 100,
                min: 4,
                max: 1000,
                ..LimitConfig::default()
            },
            start,
        );
        let mut now = start;
        for _ in 0..50 {
            now += Duration::from_millis(200);
            assert!(a.try_admit(Priority::Critical));
            a.finish(Finished::Overloaded, now);
        }
        assert!(a.limit() < 100, "{}", a.limit());
        assert!(a.limit() >= 4);
    }

    #[test]
    fn priorities_parse() {
        for p in [Priority::Critical, Priority::Default, Priority::Sheddable] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
    }
}
