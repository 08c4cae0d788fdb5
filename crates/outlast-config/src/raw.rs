//! The configuration file as written, before any checks. `deny_unknown_fields` everywhere so a
//! misspelt key is an error instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{
    Auth, Config, ConfigError, Dialect, Protocol, ProviderConfig, Resilience, Route, Secret,
    ServerLimits, Target, UpstreamSettings, check_unique, presets,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub resilience: RawResilience,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub status: crate::status::RawStatus,
    #[serde(default)]
    pub edge: crate::limits::RawEdge,
    #[serde(default)]
    pub admission: crate::limits::RawAdmission,
    #[serde(default)]
    pub keys: crate::limits::RawKeys,
    #[serde(default)]
    pub usage: crate::limits::RawUsage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub body_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub first_byte_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stream_stall_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub pool_idle_timeout: Option<Duration>,
    pub pool_max_idle_per_host: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub api_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub protocol: Option<Protocol>,
    pub preset: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub max_concurrency: Option<u32>,
    /// Azure OpenAI only.
    pub api_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub model: String,
    pub targets: Vec<RawTargetEntry>,
}

/// `"provider/model"`, or a group of equal preference: `["a/x", { target = "b/y", weight = 2 }]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTargetEntry {
    One(String),
    Tier(Vec<RawTierMember>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTierMember {
    Plain(String),
    Weighted { target: String, weight: u32 },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResilience {
    pub max_attempts: Option<u32>,
    pub breaker_consecutive_failures: Option<u32>,
    pub breaker_failure_rate: Option<f64>,
    pub breaker_min_requests: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub breaker_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ejection_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ejection_max: Option<Duration>,
    pub retry_budget_ratio: Option<f64>,
    pub retry_budget_min_per_sec: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub cooldown_max: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ewma_decay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub default_ttft: Option<Duration>,
    pub cascade_guard: Option<bool>,
    pub initial_concurrency: Option<u32>,
    pub min_concurrency: Option<u32>,
}

/// Azure OpenAI's current GA API version.
const AZURE_API_VERSION: &str = "2024-10-21";

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

fn positive(field: &str, d: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match d {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(ConfigError::new(field, "must be greater than zero")),
        Some(d) => Ok(d),
    }
}

impl RawConfig {
    pub(crate) fn check(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::new(
                "listen",
                format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
            )
        })?;

        let server = ServerLimits {
            max_body_bytes: match self.server.max_body_bytes {
                Some(0) => {
                    return Err(ConfigError::new(
                        "server.max_body_bytes",
                        "must be greater than zero",
                    ));
                }
                Some(n) => n,
                None => DEFAULT_MAX_BODY,
            },
            header_read_timeout: positive(
                "server.header_read_timeout",
                self.server.header_read_timeout,
                Duration::from_secs(10),
            )?,
            body_read_timeout: positive(
                "server.body_read_timeout",
                self.server.body_read_timeout,
                Duration::from_secs(30),
            )?,
            shutdown_grace: self
                .server
                .shutdown_grace
                .unwrap_or(Duration::from_secs(30)),
        };
        let upstream = UpstreamSettings {
            connect_timeout: positive(
                "upstream.connect_timeout",
                self.upstream.connect_timeout,
                Duration::from_secs(5),
            )?,
            first_byte_timeout: positive(
                "upstream.first_byte_timeout",
                self.upstream.first_byte_timeout,
                Duration::from_secs(60),
            )?,
            stream_stall_timeout: positive(
                "upstream.stream_stall_timeout",
                self.upstream.stream_stall_timeout,
                Duration::from_secs(60),
            )?,
            request_timeout: positive(
                "upstream.request_timeout",
                self.upstream.request_timeout,
                Duration::from_secs(300),
            )?,
            pool_idle_timeout: positive(
                "upstream.pool_idle_timeout",
                self.upstream.pool_idle_timeout,
                Duration::from_secs(90),
            )?,
            pool_max_idle_per_host: self.upstream.pool_max_idle_per_host.unwrap_or(512),
        };

        let resilience = self.resilience.check()?;
        let status = self.status.check()?;
        let mut api_keys = Vec::new();
        for (i, k) in self.auth.api_keys.into_iter().enumerate() {
            if k.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("auth.api_keys[{i}]"),
                    "must not be empty",
                ));
            }
            api_keys.push(Secret::new(k));
        }

        check_unique(
            self.providers.iter().map(|p| p.name.as_str()).enumerate(),
            "providers",
            "name",
        )?;
        let providers = self
            .providers
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.check(i))
            .collect::<Result<Vec<_>, _>>()?;

        check_unique(
            self.routes.iter().map(|r| r.model.as_str()).enumerate(),
            "routes",
            "model",
        )?;
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let field = format!("routes[{i}]");
            if r.model.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.model"),
                    "must not be empty",
                ));
            }
            if let Some((p, _)) = r.model.split_once('/')
                && providers.iter().any(|x| x.name == p)
            {
                return Err(ConfigError::new(
                    format!("{field}.model"),
                    format!(
                        "`{}` would hide the direct target of provider `{p}`; pick a name without `{p}/`",
                        r.model
                    ),
                ));
            }
            if r.targets.is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.targets"),
                    "needs at least one `provider/model` target",
                ));
            }
            let mut targets: Vec<Target> = Vec::with_capacity(r.targets.len());
            for (j, entry) in r.targets.iter().enumerate() {
                let members: Vec<(String, &str, u32)> = match entry {
                    RawTargetEntry::One(t) => {
                        vec![(format!("{field}.targets[{j}]"), t.as_str(), 1)]
                    }
                    RawTargetEntry::Tier(items) if items.is_empty() => {
                        return Err(ConfigError::new(
                            format!("{field}.targets[{j}]"),
                            "an equal-preference group needs at least one target",
                        ));
                    }
                    RawTargetEntry::Tier(items) => items
                        .iter()
                        .enumerate()
                        .map(|(k, m)| {
                            let f = format!("{field}.targets[{j}][{k}]");
                            match m {
                                RawTierMember::Plain(t) => (f, t.as_str(), 1),
                                RawTierMember::Weighted { target, weight } => {
                                    (f, target.as_str(), *weight)
                                }
                            }
                        })
                        .collect(),
                };
                for (tfield, t, weight) in members {
                    if weight == 0 {
                        return Err(ConfigError::new(&tfield, "weight must be at least 1"));
                    }
                    let (pname, model) = t
                        .split_once('/')
                        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                        .ok_or_else(|| {
                            ConfigError::new(
                                &tfield,
                                format!("`{t}` is not of the form provider/model"),
                            )
                        })?;
                    let index =
                        providers
                            .iter()
                            .position(|p| p.name == pname)
                            .ok_or_else(|| {
                                ConfigError::new(&tfield, format!("no provider is named `{pname}`"))
                            })?;
                    if targets
                        .iter()
                        .any(|x| x.provider == index && x.model == model)
                    {
                        return Err(ConfigError::new(&tfield, format!("`{t}` is listed twice")));
                    }
                    targets.push(Target {
                        provider: index,
                        provider_name: pname.to_string(),
                        model: model.to_string(),
                        tier: j as u32,
                        weight,
                    });
                }
            }
            routes.push(Route {
                model: r.model,
                targets: targets.into(),
            });
        }

        Ok(Config {
            listen,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./outlast-data")),
            redis_url: self.redis_url.map(Secret::new),
            database_url: self.database_url.map(Secret::new),
            server,
            upstream,
            auth: Auth { api_keys },
            resilience,
            providers,
            routes,
            status,
            edge: self.edge.check()?,
            admission: self.admission.check()?,
            keys: self.keys.check()?,
            usage: self.usage.check()?,
        })
    }
}

impl RawResilience {
    fn check(self) -> Result<Resilience, ConfigError> {
        let d = Resilience::default();
        let share = |field: &str, v: Option<f64>, default: f64| match v {
            None => Ok(default),
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
            Some(_) => Err(ConfigError::new(
                format!("resilience.{field}"),
                "must be between 0 and 1",
            )),
        };
        let at_least_one = |field: &str, v: Option<u32>, default: u32| match v {
            None => Ok(default),
            Some(0) => Err(ConfigError::new(
                format!("resilience.{field}"),
                "must be at least 1",
            )),
            Some(x) => Ok(x),
        };
        let r = Resilience {
            max_attempts: at_least_one("max_attempts", self.max_attempts, d.max_attempts)?,
            breaker_consecutive_failures: at_least_one(
                "breaker_consecutive_failures",
                self.breaker_consecutive_failures,
                d.breaker_consecutive_failures,
            )?,
            breaker_failure_rate: share(
                "breaker_failure_rate",
                self.breaker_failure_rate,
                d.breaker_failure_rate,
            )?,
            breaker_min_requests: at_least_one(
                "breaker_min_requests",
                self.breaker_min_requests,
                d.breaker_min_requests,
            )?,
            breaker_window: positive(
                "resilience.breaker_window",
                self.breaker_window,
                d.breaker_window,
            )?,
            ejection_base: positive(
                "resilience.ejection_base",
                self.ejection_base,
                d.ejection_base,
            )?,
            ejection_max: positive("resilience.ejection_max", self.ejection_max, d.ejection_max)?,
            retry_budget_ratio: share(
                "retry_budget_ratio",
                self.retry_budget_ratio,
                d.retry_budget_ratio,
            )?,
            retry_budget_min_per_sec: match self.retry_budget_min_per_sec {
                Some(x) if !(x.is_finite() && x >= 0.0) => {
                    return Err(ConfigError::new(
                        "resilience.retry_budget_min_per_sec",
                        "must be zero or more",
                    ));
                }
                Some(x) => x,
                None => d.retry_budget_min_per_sec,
            },
            cooldown_max: positive("resilience.cooldown_max", self.cooldown_max, d.cooldown_max)?,
            ewma_decay: positive("resilience.ewma_decay", self.ewma_decay, d.ewma_decay)?,
            default_ttft: positive("resilience.default_ttft", self.default_ttft, d.default_ttft)?,
            cascade_guard: self.cascade_guard.unwrap_or(d.cascade_guard),
            initial_concurrency: at_least_one(
                "initial_concurrency",
                self.initial_concurrency,
                d.initial_concurrency,
            )?,
            min_concurrency: at_least_one(
                "min_concurrency",
                self.min_concurrency,
                d.min_concurrency,
            )?,
        };
        if r.ejection_max < r.ejection_base {
            return Err(ConfigError::new(
                "resilience.ejection_max",
                "must not be shorter than ejection_base",
            ));
        }
        Ok(r)
    }
}

impl RawProvider {
    fn check(self, i: usize) -> Result<ProviderConfig, ConfigError> {
        let field = |f: &str| format!("providers[{i}].{f}");
        if self.name.is_empty()
            || self.name.contains('/')
            || self.name.chars().any(char::is_whitespace)
        {
            return Err(ConfigError::new(
                field("name"),
                format!("`{}` must be non-empty, without `/` or spaces", self.name),
            ));
        }
        let preset = match &self.preset {
            Some(p) => Some(presets::find(p).ok_or_else(|| {
                let known: Vec<_> = presets::PRESETS.iter().map(|p| p.name).collect();
                ConfigError::new(
                    field("preset"),
                    format!("unknown preset `{p}`; known: {}", known.join(", ")),
                )
            })?),
            None => None,
        };
        let protocol = match (self.protocol, preset) {
            (Some(p), Some(pre)) if p != pre.protocol => {
                return Err(ConfigError::new(
                    field("protocol"),
                    format!(
                        "preset `{}` speaks `{}`, not `{}`",
                        pre.name,
                        pre.protocol.as_str(),
                        p.as_str()
                    ),
                ));
            }
            (Some(p), _) => p,
            (None, Some(pre)) => pre.protocol,
            (None, None) => Protocol::Openai,
        };
        let base_url = match (self.base_url, preset) {
            (Some(u), _) => u,
            (None, Some(pre)) if !pre.base_url.is_empty() => pre.base_url.to_string(),
            (None, Some(pre)) => {
                return Err(ConfigError::new(
                    field("base_url"),
                    format!("is required with preset `{}`", pre.name),
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    field("base_url"),
                    "is required unless a `preset` gives it",
                ));
            }
        };
        let host = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || host.starts_with('/') || host.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                field("base_url"),
                format!("`{base_url}` must be an http:// or https:// URL"),
            ));
        }
        let base_url = base_url.trim_end_matches('/').to_string();
        let api_key = match self.api_key {
            Some(k) if k.trim().is_empty() => {
                return Err(ConfigError::new(
                    field("api_key"),
                    "is empty; remove it for providers that need no key",
                ));
            }
            other => other.map(Secret::new),
        };
        let models = self.models.unwrap_or_else(|| {
            preset
                .map(|p| p.models.iter().map(|m| m.to_string()).collect())
                .unwrap_or_default()
        });
        let mut headers = Vec::new();
        for (k, v) in self.headers {
            let valid_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(ConfigError::new(
                    field(&format!("headers.{k}")),
                    "is not a valid header name",
                ));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(ConfigError::new(
                    field(&format!("headers.{k}")),
                    "must not contain line breaks",
                ));
            }
            headers.push((k.to_ascii_lowercase(), Secret::new(v)));
        }
        if self.max_concurrency == Some(0) {
            return Err(ConfigError::new(
                field("max_concurrency"),
                "must be at least 1",
            ));
        }
        let dialect = match (preset.map(|p| p.name), self.api_version) {
            (Some("azure"), v) => Dialect::Azure {
                api_version: v.unwrap_or_else(|| AZURE_API_VERSION.to_string()),
            },
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    field("api_version"),
                    "only applies to preset `azure`",
                ));
            }
            (Some("mistral"), None) => Dialect::Mistral,
            _ => Dialect::Standard,
        };
        Ok(ProviderConfig {
            dialect,
            name: self.name,
            protocol,
            base_url,
            api_key,
            models,
            headers,
            max_concurrency: self.max_concurrency,
        })
    }
}
