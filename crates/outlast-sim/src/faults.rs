//! Faults a simulated provider can be told to show, changeable while it runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the simulator does to each request. The defaults are a healthy, fast provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before the response headers.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// In a stream, added between the headers and the first event.
    #[serde(with = "humantime_serde")]
    pub first_token: Duration,
    /// Streaming speed; 0 sends every token at once.
    pub tokens_per_sec: f64,
    /// Length of an answer in tokens (a request's max tokens may cut it shorter).
    pub answer_tokens: u32,
    /// Share of requests (0 to 1) answered with `error_status` instead.
    pub error_rate: f64,
    pub error_status: u16,
    /// Concurrent requests served; past it the provider answers as it does when saturated.
    pub capacity: Option<u32>,
    /// Streams end abruptly (connection cut) after this many events.
    pub cut_after: Option<u32>,
    /// Streams stop sending, but stay open, after this many events.
    pub stall_after: Option<u32>,
    /// Streams send an error event (after a 200) after this many events.
    pub error_after: Option<u32>,
    /// Hard down: the listening socket is closed and open connections are dropped.
    pub down: bool,
    /// With `down`, come back up by itself after this long.
    #[serde(with = "humantime_serde")]
    pub down_for: Option<Duration>,
    /// Prompts longer than this many (estimated) tokens get the provider's context-length error.
    pub context_window: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            first_token: Duration::ZERO,
            tokens_per_sec: 0.0,
            answer_tokens: 20,
            error_rate: 0.0,
            error_status: 500,
            capacity: None,
            cut_after: None,
            stall_after: None,
            error_after: None,
            down: false,
            down_for: None,
            context_window: 128_000,
        }
    }
}

impl Faults {
    /// Apply a partial update given as JSON (only the fields present change).
    pub fn merge(&self, patch: serde_json::Value) -> Result<Faults, String> {
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let (Some(cur), serde_json::Value::Object(p)) = (current.as_object_mut(), patch) else {
            return Err("a fault update must be a JSON object".into());
        };
        for (k, v) in p {
            cur.insert(k, v);
        }
        serde_json::from_value(current).map_err(|e| e.to_string())
    }

    pub fn token_interval(&self) -> Duration {
        if self.tokens_per_sec > 0.0 && self.tokens_per_sec.is_finite() {
            Duration::from_secs_f64(1.0 / self.tokens_per_sec)
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_changes_only_given_fields() {
        let f = Faults::default();
        let g = f
            .merge(serde_json::json!({"latency": "250ms", "capacity": 3}))
            .unwrap();
        assert_eq!(g.latency, Duration::from_millis(250));
        assert_eq!(g.capacity, Some(3));
        assert_eq!(g.answer_tokens, f.answer_tokens);
        assert!(f.merge(serde_json::json!({"latncy": "1s"})).is_err());
        assert!(f.merge(serde_json::json!([1])).is_err());
    }
}
