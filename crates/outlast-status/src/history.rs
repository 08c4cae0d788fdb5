//! Health history from real traffic: per target (each provider's own availability) and per
//! route (what users experienced after failover), in one-minute buckets that the server
//! flushes to the store, day buckets for the 90-day uptime bars, and a per-second window for
//! detection.

use std::collections::{BTreeMap, VecDeque};

use crate::time::{DAY_MS, MINUTE_MS};

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One upstream target (`provider/model`): every attempt, ok or provider fault.
    Target,
    /// One route (the model name clients send): was the client answered, after failover.
    Route,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Target => "target",
            Kind::Route => "route",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "target" => Some(Kind::Target),
            "route" => Some(Kind::Route),
            _ => None,
        }
    }
}

/// Successes and faults in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub fault: u64,
}

impl Counts {
    pub fn total(self) -> u64 {
        self.ok + self.fault
    }

    pub fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.fault += other.fault;
    }

    /// Share answered, or `None` without traffic.
    pub fn availability(self) -> Option<f64> {
        let total = self.total();
        (total > 0).then(|| self.ok as f64 / total as f64)
    }

    fn one(ok: bool) -> Self {
        if ok {
            Counts { ok: 1, fault: 0 }
        } else {
            Counts { ok: 0, fault: 1 }
        }
    }
}

/// One finished minute to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRow {
    pub kind: Kind,
    pub name: String,
    /// Unix minute (ms / 60 000).
    pub minute: i64,
    pub counts: Counts,
}

/// Days kept for the uptime bars.
pub const DAYS: i64 = 90;

/// How long per-second detection samples are kept at most.
const FINE_KEEP_MS: i64 = 3_600_000;

#[derive(Debug, Default)]
pub struct History {
    /// Minute buckets not yet flushed.
    minutes: BTreeMap<(Kind, String), BTreeMap<i64, Counts>>,
    /// Day buckets (Unix day), the last [`DAYS`].
    days: BTreeMap<(Kind, String), BTreeMap<i64, Counts>>,
    /// Per-second samples for the detection window.
    fine: BTreeMap<(Kind, String), VecDeque<(i64, Counts)>>,
}

impl History {
    pub fn record(&mut self, kind: Kind, name: &str, ok: bool, now_ms: i64) {
        let c = Counts::one(ok);
        let key = (kind, name.to_owned());
        self.minutes
            .entry(key.clone())
            .or_default()
            .entry(now_ms.div_euclid(MINUTE_MS))
            .or_default()
            .add(c);
        self.days
            .entry(key.clone())
            .or_default()
            .entry(now_ms.div_euclid(DAY_MS))
            .or_default()
            .add(c);
        let sec = now_ms.div_euclid(1000);
        let fine = self.fine.entry(key).or_default();
        match fine.back_mut() {
            Some((s, counts)) if *s == sec => counts.add(c),
            _ => fine.push_back((sec, c)),
        }
        while fine
            .front()
            .is_some_and(|(s, _)| (sec - s) * 1000 > FINE_KEEP_MS)
        {
            fine.pop_front();
        }
    }

    /// Counts over the last `window_ms` (whole seconds).
    pub fn window(&self, kind: Kind, name: &str, window_ms: i64, now_ms: i64) -> Counts {
        let mut total = Counts::default();
        let from = (now_ms - window_ms).div_euclid(1000);
        if let Some(fine) = self.fine.get(&(kind, name.to_owned())) {
            for (s, c) in fine.iter().rev() {
                if *s <= from {
                    break;
                }
                total.add(*c);
            }
        }
        total
    }

    /// Take the minute buckets that are over (strictly before the current minute), or all of
    /// them when `all` (at shutdown).
    pub fn take_minutes(&mut self, now_ms: i64, all: bool) -> Vec<MinuteRow> {
        let current = now_ms.div_euclid(MINUTE_MS);
        let mut out = Vec::new();
        for ((kind, name), buckets) in &mut self.minutes {
            let keep = if all {
                BTreeMap::new()
            } else {
                buckets.split_off(&current)
            };
            for (minute, counts) in std::mem::replace(buckets, keep) {
                out.push(MinuteRow {
                    kind: *kind,
                    name: name.clone(),
                    minute,
                    counts,
                });
            }
        }
        self.minutes.retain(|_, b| !b.is_empty());
        out
    }

    /// Put back rows whose flush failed, so the next flush retries them.
    pub fn restore_minutes(&mut self, rows: Vec<MinuteRow>) {
        for r in rows {
            self.minutes
                .entry((r.kind, r.name))
                .or_default()
                .entry(r.minute)
                .or_default()
                .add(r.counts);
        }
    }

    /// Seed day buckets from the store at startup (before any traffic is recorded).
    pub fn load_day(&mut self, kind: Kind, name: &str, day: i64, counts: Counts) {
        self.days
            .entry((kind, name.to_owned()))
            .or_default()
            .entry(day)
            .or_default()
            .add(counts);
    }

    /// The last [`DAYS`] days for one series, oldest first; `None` where there was no traffic.
    pub fn days(&self, kind: Kind, name: &str, now_ms: i64) -> Vec<(i64, Counts)> {
        let today = now_ms.div_euclid(DAY_MS);
        let series = self.days.get(&(kind, name.to_owned()));
        (today - DAYS + 1..=today)
            .map(|d| {
                let c = series.and_then(|s| s.get(&d)).copied().unwrap_or_default();
                (d, c)
            })
            .collect()
    }

    /// Forget day buckets older than [`DAYS`].
    pub fn prune(&mut self, now_ms: i64) {
        let first = now_ms.div_euclid(DAY_MS) - DAYS + 1;
        for s in self.days.values_mut() {
            *s = s.split_off(&first);
        }
    }

    /// Names seen for a kind.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        self.days
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect()
    }
}
