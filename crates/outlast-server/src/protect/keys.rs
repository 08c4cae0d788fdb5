//! Virtual keys at run time: every active key's hash in memory (a lookup is one SHA-256 and
//! one map probe, never a database query, so a flood of made-up keys costs nothing more), and
//! each key's limits and live state: request and token rates (GCRA), requests in flight, and
//! spend today and this month. Revoking through the admin API removes the key here at once;
//! keys changed by another process are picked up at the next refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use outlast_resilience::admission::Priority;
use outlast_resilience::gcra::{Decision, Gcra, Quota};
use outlast_store::keys::{KeyRecord, hash_key};
use tokio::time::Instant;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug)]
pub(crate) struct VirtualKey {
    pub id: String,
    pub models: Vec<String>,
    pub priority: Priority,
    rpm: Option<Quota>,
    tpm: Option<Quota>,
    max_concurrent: Option<u64>,
    budget_daily: Option<f64>,
    budget_monthly: Option<f64>,
    record: KeyRecord,
    state: Mutex<KeyState>,
}

#[derive(Debug, Clone, Default)]
struct KeyState {
    rpm: Gcra,
    tpm: Gcra,
    in_flight: u64,
    day: i64,
    spent_day: f64,
    month: i64,
    spent_month: f64,
}

/// Why a key's request is refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Requests(Decision, u64),
    Tokens(Decision, u64),
    Concurrency(u64),
    Budget { period: &'static str, limit: f64 },
    Model(String),
}

/// Rate-limit figures for the `x-ratelimit-*` headers of an admitted request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RateInfo {
    pub requests: Option<(u64, Decision)>,
    pub tokens: Option<(u64, Decision)>,
}

/// Days since the epoch of `ms`, and the index (year·12 + month) of its month, in UTC.
pub(crate) fn day_and_month(ms: i64) -> (i64, i64) {
    let days = ms.div_euclid(DAY_MS);
    // Civil-from-days (the proleptic Gregorian calendar), after H. Hinnant's formulas.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (days, year * 12 + month - 1)
}

/// The first millisecond of the UTC month holding `ms`.
pub(crate) fn month_start_ms(ms: i64) -> i64 {
    let (_, month) = day_and_month(ms);
    // Walk back day by day at most 31 times: cheap and obviously right.
    let mut day = ms.div_euclid(DAY_MS);
    for _ in 0..31 {
        if day_and_month((day - 1) * DAY_MS).1 != month {
            break;
        }
        day -= 1;
    }
    day * DAY_MS
}

impl KeyState {
    fn roll(&mut self, wall_ms: i64) {
        let (day, month) = day_and_month(wall_ms);
        if day != self.day {
            self.day = day;
            self.spent_day = 0.0;
        }
        if month != self.month {
            self.month = month;
            self.spent_month = 0.0;
        }
    }
}

impl VirtualKey {
    pub(crate) fn from_record(
        record: KeyRecord,
        spent_day: f64,
        spent_month: f64,
        wall_ms: i64,
    ) -> Self {
        let l = &record.limits;
        let (day, month) = day_and_month(wall_ms);
        Self {
            id: record.id.clone(),
            models: l.models.clone(),
            priority: Priority::parse(&l.priority).unwrap_or_default(),
            rpm: l.rpm.filter(|n| *n > 0).map(Quota::per_minute),
            tpm: l.tpm.filter(|n| *n > 0).map(Quota::per_minute),
            max_concurrent: l.max_concurrent,
            budget_daily: l.budget_daily_usd,
            budget_monthly: l.budget_monthly_usd,
            state: Mutex::new(KeyState {
                day,
                month,
                spent_day,
                spent_month,
                ..KeyState::default()
            }),
            record,
        }
    }

    /// Before admission: budget, concurrency and request rate. On success one request is in
    /// flight for this key until [`VirtualKey::end`].
    pub(crate) fn begin(&self, now: Instant, wall_ms: i64) -> Result<RateInfo, Refusal> {
        let Ok(mut s) = self.state.lock() else {
            return Err(Refusal::Concurrency(0));
        };
        s.roll(wall_ms);
        if let Some(limit) = self.budget_daily
            && s.spent_day >= limit
        {
            return Err(Refusal::Budget {
                period: "daily",
                limit,
            });
        }
        if let Some(limit) = self.budget_monthly
            && s.spent_month >= limit
        {
            return Err(Refusal::Budget {
                period: "monthly",
                limit,
            });
        }
        if let Some(max) = self.max_concurrent
            && s.in_flight >= max
        {
            return Err(Refusal::Concurrency(max));
        }
        let mut info = RateInfo::default();
        if let Some(q) = self.rpm {
            let d = s.rpm.check(q, 1, now);
            if !d.allowed {
                return Err(Refusal::Requests(d, q.rate));
            }
            info.requests = Some((q.rate, d));
        }
        s.in_flight += 1;
        Ok(info)
    }

    /// After the body is read: the model and the estimated tokens. On refusal the request
    /// still has to be ended.
    pub(crate) fn check_body(
        &self,
        model: &str,
        tokens: u64,
        now: Instant,
        info: &mut RateInfo,
    ) -> Result<(), Refusal> {
        if !self.models.is_empty() && !self.models.iter().any(|m| m == model) {
            return Err(Refusal::Model(model.to_string()));
        }
        if let Some(q) = self.tpm {
            let Ok(mut s) = self.state.lock() else {
                return Ok(());
            };
            let d = s.tpm.check(q, tokens, now);
            if !d.allowed {
                return Err(Refusal::Tokens(d, q.rate));
            }
            info.tokens = Some((q.rate, d));
        }
        Ok(())
    }

    /// The request is over: reconcile tokens (`charged` were taken, `used` were used) and add
    /// its cost to the spend.
    pub(crate) fn end(
        &self,
        charged: u64,
        used: Option<u64>,
        cost: f64,
        now: Instant,
        wall_ms: i64,
    ) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        if let (Some(q), Some(used)) = (self.tpm, used) {
            let delta = i64::try_from(used).unwrap_or(i64::MAX)
                - i64::try_from(charged).unwrap_or(i64::MAX);
            s.tpm.adjust(q, delta, now);
        }
        s.roll(wall_ms);
        s.spent_day += cost;
        s.spent_month += cost;
    }

    /// (today, this month) in USD.
    pub(crate) fn spent(&self) -> (f64, f64) {
        self.state
            .lock()
            .map(|s| (s.spent_day, s.spent_month))
            .unwrap_or((0.0, 0.0))
    }
}

/// Active keys by hash.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_hash: RwLock<HashMap<String, Arc<VirtualKey>>>,
}

impl Registry {
    pub(crate) fn lookup(&self, secret: &str) -> Option<Arc<VirtualKey>> {
        let hash = hash_key(secret);
        self.by_hash.read().ok()?.get(&hash).cloned()
    }

    /// Replace the active set with `records` (revoked ones are dropped), keeping the live
    /// state of keys whose limits did not change. `spend` gives (day, month) spend for keys
    /// seen for the first time.
    pub(crate) fn load(
        &self,
        records: Vec<KeyRecord>,
        spend: &HashMap<String, (f64, f64)>,
        wall_ms: i64,
    ) {
        let Ok(mut map) = self.by_hash.write() else {
            return;
        };
        let mut next = HashMap::with_capacity(records.len());
        for r in records.into_iter().filter(|r| r.revoked_ms.is_none()) {
            let entry = match map.get(&r.hash) {
                Some(old) if old.record == r => Arc::clone(old),
                Some(old) => {
                    let (d, m) = old.spent();
                    Arc::new(VirtualKey::from_record(r, d, m, wall_ms))
                }
                None => {
                    let (d, m) = spend.get(&r.id).copied().unwrap_or((0.0, 0.0));
                    Arc::new(VirtualKey::from_record(r, d, m, wall_ms))
                }
            };
            next.insert(entry.record.hash.clone(), entry);
        }
        *map = next;
    }

    /// Forget a key at once (revoked on this replica).
    pub(crate) fn remove_id(&self, id: &str) {
        if let Ok(mut map) = self.by_hash.write() {
            map.retain(|_, k| k.id != id);
        }
    }

    pub(crate) fn insert(&self, key: VirtualKey) {
        if let Ok(mut map) = self.by_hash.write() {
            map.insert(key.record.hash.clone(), Arc::new(key));
        }
    }
}

/// Go-style duration text as OpenAI's `x-ratelimit-reset-*` headers use (`644ms`, `1s`,
/// `6m0s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let m = ms / 60_000;
    let rest = ms % 60_000;
    let s = if rest.is_multiple_of(1000) {
        format!("{}s", rest / 1000)
    } else {
        let text = format!("{:.3}", rest as f64 / 1000.0);
        format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
    };
    if m > 0 { format!("{m}m{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outlast_store::keys::KeyLimits;

    fn record(limits: KeyLimits) -> KeyRecord {
        KeyRecord {
            id: "key_1".into(),
            name: "t".into(),
            hash: hash_key("olk-secret"),
            prefix: "olk-sec".into(),
            limits,
            created_ms: 0,
            revoked_ms: None,
        }
    }

    #[test]
    fn calendar_windows() {
        // 2024-02-29T12:00:00Z
        let ms = 1_709_208_000_000;
        let (_, month) = day_and_month(ms);
        assert_eq!(month, 2024 * 12 + 1);
        assert_eq!(month_start_ms(ms), 1_706_745_600_000); // 2024-02-01
        assert_eq!(day_and_month(0).1, 1970 * 12);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_millis(644)), "644ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn budget_concurrency_rate_and_models() {
        let now = Instant::now();
        let k = VirtualKey::from_record(
            record(KeyLimits {
                models: vec!["chat".into()],
                priority: "sheddable".into(),
                rpm: Some(2),
                tpm: Some(100),
                max_concurrent: Some(1),
                budget_daily_usd: Some(1.0),
                budget_monthly_usd: None,
            }),
            0.0,
            0.0,
            0,
        );
        assert_eq!(k.priority, Priority::Sheddable);
        let mut info = k.begin(now, 0).unwrap_or_default();
        assert_eq!(k.begin(now, 0), Err(Refusal::Concurrency(1)));
        assert_eq!(
            k.check_body("other", 1, now, &mut info),
            Err(Refusal::Model("other".into()))
        );
        assert!(k.check_body("chat", 80, now, &mut info).is_ok());
        assert!(matches!(
            k.check_body("chat", 80, now, &mut info),
            Err(Refusal::Tokens(..))
        ));
        k.end(80, Some(10), 0.6, now, 0);
        assert!(k.check_body("chat", 80, now, &mut info).is_ok());
        assert!(k.begin(now, 0).is_ok());
        k.end(0, None, 0.5, now, 0);
        // $1.10 spent of $1: refused for the rest of the day, allowed the next.
        assert!(matches!(k.begin(now, 0), Err(Refusal::Budget { .. })));
        // 30 s later one of the two requests per minute is free again.
        let tomorrow = now + Duration::from_secs(30);
        assert!(k.begin(tomorrow, DAY_MS).is_ok());
        k.end(0, None, 0.0, tomorrow, DAY_MS);
        assert!(matches!(
            k.begin(tomorrow, DAY_MS),
            Err(Refusal::Requests(..))
        ));
    }
}
