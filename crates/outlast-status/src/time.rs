//! Wall-clock time as Unix milliseconds, and its RFC 3339 rendering (what Statuspage emits).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `2024-06-04T10:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// `2024-06-04`, the UTC day of `ms`.
pub fn day(ms: i64) -> String {
    rfc3339(ms).chars().take(10).collect()
}

/// `10:00`, the UTC time of day of `ms`.
pub fn hhmm(ms: i64) -> String {
    rfc3339(ms).chars().skip(11).take(5).collect()
}
