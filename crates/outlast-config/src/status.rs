//! The `[status]` section: the status page, incident detection thresholds and webhooks.

use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// Incident detection and notification settings; see docs/configuration.md for each default.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSettings {
    /// Shown as the status page's title and as the Statuspage `page.name`.
    pub title: String,
    /// Webhook URLs that receive incident opened/updated/resolved notifications.
    pub webhooks: Vec<String>,
    /// Open an incident when a target's fault share over `window` reaches this (0..=1).
    pub fault_rate: f64,
    /// ... and at least this many attempts were made to it in `window`.
    pub min_requests: u32,
    /// The sliding window the fault share is measured over.
    pub window: Duration,
    /// Open an incident when a target's breaker has stayed open this long.
    pub breaker_open_for: Duration,
    /// Resolve an open incident after the target has been healthy this long (hysteresis).
    pub resolve_after: Duration,
    /// How often detection runs and minute buckets are flushed to the store.
    pub interval: Duration,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            title: "Outlast status".to_owned(),
            webhooks: Vec::new(),
            fault_rate: 0.5,
            min_requests: 5,
            window: Duration::from_secs(300),
            breaker_open_for: Duration::from_secs(60),
            resolve_after: Duration::from_secs(300),
            interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatus {
    pub title: Option<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    pub fault_rate: Option<f64>,
    pub min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub breaker_open_for: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

impl RawStatus {
    pub(crate) fn check(self) -> Result<StatusSettings, ConfigError> {
        let d = StatusSettings::default();
        let positive = |field: &str, v: Option<Duration>, default: Duration| match v {
            None => Ok(default),
            Some(v) if v.is_zero() => Err(ConfigError::new(
                format!("status.{field}"),
                "must be greater than zero",
            )),
            Some(v) => Ok(v),
        };
        let fault_rate = match self.fault_rate {
            None => d.fault_rate,
            Some(x) if x > 0.0 && x <= 1.0 => x,
            Some(_) => {
                return Err(ConfigError::new(
                    "status.fault_rate",
                    "must be greater than 0 and at most 1",
                ));
            }
        };
        for (i, url) in self.webhooks.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    format!("status.webhooks[{i}]"),
                    format!("`{url}` is not an http:// or https:// URL"),
                ));
            }
        }
        let min_requests = match self.min_requests {
            None => d.min_requests,
            Some(0) => {
                return Err(ConfigError::new(
                    "status.min_requests",
                    "must be at least 1",
                ));
            }
            Some(n) => n,
        };
        Ok(StatusSettings {
            title: self.title.unwrap_or(d.title),
            webhooks: self.webhooks,
            fault_rate,
            min_requests,
            window: positive("window", self.window, d.window)?,
            breaker_open_for: positive(
                "breaker_open_for",
                self.breaker_open_for,
                d.breaker_open_for,
            )?,
            resolve_after: positive("resolve_after", self.resolve_after, d.resolve_after)?,
            interval: positive("interval", self.interval, d.interval)?,
        })
    }
}
