//! The protection sections: `[edge]` (connection limits against abusive clients), `[admission]`
//! (the gateway-wide adaptive concurrency limit), `[keys]` (virtual keys and the admin API)
//! and `[usage]` (the durable usage ledger). Raw serde structs and their checked forms.

use std::time::Duration;

use serde::Deserialize;

use crate::{ConfigError, Secret};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEdge {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_h2_streams: Option<u32>,
    pub unauthenticated_per_ip_per_minute: Option<u64>,
    pub max_tracked_ips: Option<usize>,
}

/// Connection-level limits at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Open client connections in total; past it new connections are closed at once.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_h2_streams: u32,
    /// Requests per minute one IP may make without a valid key (missing or failing auth).
    pub unauthenticated_per_ip_per_minute: u64,
    /// Most addresses whose rate state is kept; the oldest idle ones are forgotten first.
    pub max_tracked_ips: usize,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_h2_streams: 100,
            unauthenticated_per_ip_per_minute: 60,
            max_tracked_ips: 100_000,
        }
    }
}

fn nonzero<T: Copy + PartialEq + Default>(
    field: &str,
    v: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        Some(v) if v == T::default() => Err(ConfigError::new(field, "must be greater than zero")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

impl RawEdge {
    pub(crate) fn check(self) -> Result<Edge, ConfigError> {
        let d = Edge::default();
        Ok(Edge {
            max_connections: nonzero(
                "edge.max_connections",
                self.max_connections,
                d.max_connections,
            )?,
            max_connections_per_ip: nonzero(
                "edge.max_connections_per_ip",
                self.max_connections_per_ip,
                d.max_connections_per_ip,
            )?,
            max_h2_streams: nonzero("edge.max_h2_streams", self.max_h2_streams, d.max_h2_streams)?,
            unauthenticated_per_ip_per_minute: nonzero(
                "edge.unauthenticated_per_ip_per_minute",
                self.unauthenticated_per_ip_per_minute,
                d.unauthenticated_per_ip_per_minute,
            )?,
            max_tracked_ips: nonzero(
                "edge.max_tracked_ips",
                self.max_tracked_ips,
                d.max_tracked_ips,
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmission {
    pub enabled: Option<bool>,
    pub initial_concurrency: Option<u32>,
    pub min_concurrency: Option<u32>,
    pub max_concurrency: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    pub max_queue: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub retry_after: Option<Duration>,
}

/// The gateway-wide admission limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub enabled: bool,
    pub initial_concurrency: u32,
    pub min_concurrency: u32,
    pub max_concurrency: u32,
    /// Longest a request waits for a slot before it is shed (sheddable requests never wait).
    pub max_wait: Duration,
    /// Most requests waiting at once; past it, shed at once.
    pub max_queue: usize,
    /// `Retry-After` sent with a shed.
    pub retry_after: Duration,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_concurrency: 256,
            min_concurrency: 16,
            max_concurrency: 2048,
            max_wait: Duration::from_millis(100),
            max_queue: 512,
            retry_after: Duration::from_secs(1),
        }
    }
}

impl RawAdmission {
    pub(crate) fn check(self) -> Result<Admission, ConfigError> {
        let d = Admission::default();
        let min = nonzero(
            "admission.min_concurrency",
            self.min_concurrency,
            d.min_concurrency,
        )?;
        let max = nonzero(
            "admission.max_concurrency",
            self.max_concurrency,
            d.max_concurrency.max(min),
        )?;
        if max < min {
            return Err(ConfigError::new(
                "admission.max_concurrency",
                "must be at least admission.min_concurrency",
            ));
        }
        let initial = self
            .initial_concurrency
            .unwrap_or(d.initial_concurrency)
            .clamp(min, max);
        Ok(Admission {
            enabled: self.enabled.unwrap_or(d.enabled),
            initial_concurrency: initial,
            min_concurrency: min,
            max_concurrency: max,
            max_wait: self.max_wait.unwrap_or(d.max_wait),
            max_queue: self.max_queue.unwrap_or(d.max_queue),
            retry_after: nonzero_duration(
                "admission.retry_after",
                self.retry_after,
                d.retry_after,
            )?,
        })
    }
}

fn nonzero_duration(
    field: &str,
    v: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        Some(d) if d.is_zero() => Err(ConfigError::new(field, "must be greater than zero")),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    pub admin_key: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
}

/// Virtual keys (stored hashed in the database) and the admin API.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Bearer key for `/admin/*`; without it the admin API answers 404.
    pub admin_key: Option<Secret>,
    /// How often keys created or revoked by another process are picked up.
    pub refresh_interval: Duration,
}

impl RawKeys {
    pub(crate) fn check(self) -> Result<Keys, ConfigError> {
        let admin_key = match self.admin_key {
            Some(k) if k.trim().len() < 16 => {
                return Err(ConfigError::new(
                    "keys.admin_key",
                    "must be at least 16 characters",
                ));
            }
            k => k.map(Secret::new),
        };
        Ok(Keys {
            admin_key,
            refresh_interval: nonzero_duration(
                "keys.refresh_interval",
                self.refresh_interval,
                Duration::from_secs(5),
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUsage {
    pub enabled: Option<bool>,
    pub batch_size: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    pub max_pending: Option<usize>,
}

/// The usage ledger: one row per request, written in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub enabled: bool,
    /// Rows per write transaction.
    pub batch_size: usize,
    /// Longest a row waits before it is written.
    pub flush_interval: Duration,
    /// Rows held in memory waiting to be written; past it new rows are dropped and counted.
    pub max_pending: usize,
}

impl RawUsage {
    pub(crate) fn check(self) -> Result<Usage, ConfigError> {
        Ok(Usage {
            enabled: self.enabled.unwrap_or(true),
            batch_size: nonzero("usage.batch_size", self.batch_size, 256)?,
            flush_interval: nonzero_duration(
                "usage.flush_interval",
                self.flush_interval,
                Duration::from_millis(500),
            )?,
            max_pending: nonzero("usage.max_pending", self.max_pending, 100_000)?,
        })
    }
}
