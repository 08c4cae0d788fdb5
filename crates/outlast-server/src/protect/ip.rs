//! Per-address state at the edge, bounded in memory whatever the number of addresses: open
//! connections (an entry lives only while a connection is open, so at most
//! `max_connections` entries) and the rate of requests without a valid key (at most
//! `max_tracked_ips` entries; idle ones are swept when the table is full, and while it is
//! still full new addresses are refused rather than remembered).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outlast_resilience::gcra::{Decision, Gcra, Quota};
use tokio::time::Instant;

/// Open connections, in total and per address.
#[derive(Debug)]
pub(crate) struct Connections {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_ip: usize,
}

/// Held while a connection is open.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    owner: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.owner.total.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut m) = self.owner.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            max_total,
            max_per_ip,
        })
    }

    /// A permit for one more connection from `ip`, or `None` if a limit is reached.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let Ok(mut m) = self.per_ip.lock() else {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        };
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(m);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *n += 1;
        Some(ConnectionPermit {
            owner: Arc::clone(self),
            ip,
        })
    }

    pub(crate) fn open_count(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// Rate of failing or missing authentication per address.
#[derive(Debug)]
pub(crate) struct IpRates {
    quota: Quota,
    max_tracked: usize,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    map: HashMap<IpAddr, Gcra>,
    last_sweep: Option<Instant>,
}

impl IpRates {
    pub(crate) fn new(per_minute: u64, max_tracked: usize) -> Self {
        Self {
            quota: Quota::per_minute(per_minute),
            max_tracked,
            table: Mutex::new(Table {
                map: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    /// Count one unauthenticated request from `ip`.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Decision {
        let refused = Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_secs(60),
            retry_after: Some(Duration::from_secs(60)),
        };
        let Ok(mut t) = self.table.lock() else {
            return refused;
        };
        if !t.map.contains_key(&ip) && t.map.len() >= self.max_tracked {
            let due = t
                .last_sweep
                .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
            if due {
                t.map.retain(|_, g| !g.is_idle(now));
                t.last_sweep = Some(now);
            }
            if t.map.len() >= self.max_tracked {
                return refused;
            }
        }
        t.map.entry(ip).or_default().check(self.quota, 1, now)
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn connection_limits_total_and_per_address() {
        let c = Connections::new(3, 2);
        let a1 = c.open(ip(1)).unwrap();
        let _a2 = c.open(ip(1)).unwrap();
        assert!(c.open(ip(1)).is_none());
        let _b = c.open(ip(2)).unwrap();
        assert!(c.open(ip(3)).is_none());
        drop(a1);
        let _c = c.open(ip(3)).unwrap();
        assert_eq!(c.open_count(), 3);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let r = IpRates::new(5, 100);
        let now = Instant::now();
        for n in 0..10_000 {
            r.check(ip(n), now);
        }
        assert_eq!(r.tracked(), 100);
        // A known address keeps its state; once the others are idle they are swept.
        let later = now + Duration::from_secs(120);
        assert!(r.check(ip(20_000), later).allowed);
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn an_address_is_limited_per_minute() {
        let r = IpRates::new(3, 10);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(r.check(ip(1), now).allowed);
        }
        let d = r.check(ip(1), now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(20)));
        assert!(r.check(ip(2), now).allowed);
    }
}
