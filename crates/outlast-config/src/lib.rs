//! Outlast's configuration: TOML parsed into raw serde structs (unknown keys are errors), `${VAR}`
//! interpolated from the environment, then checked into the immutable [`Config`] the gateway
//! runs on. Every error names the field it is about.

mod interpolate;
mod limits;
pub mod presets;
mod raw;
mod secret;
mod status;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use interpolate::interpolate;
pub use limits::{Admission, Edge, Keys, Usage};
pub use secret::Secret;
pub use status::StatusSettings;

/// Wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Openai,
    Anthropic,
    Gemini,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Openai => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
        }
    }
}

/// A configuration error: the dotted path of the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The checked configuration. Immutable once built; reload swaps a whole new one.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub redis_url: Option<Secret>,
    pub database_url: Option<Secret>,
    pub server: ServerLimits,
    pub upstream: UpstreamSettings,
    pub auth: Auth,
    pub resilience: Resilience,
    pub providers: Vec<ProviderConfig>,
    pub routes: Vec<Route>,
    pub status: StatusSettings,
    pub edge: Edge,
    pub admission: Admission,
    pub keys: Keys,
    pub usage: Usage,
}

/// Limits at the edge, against slow, large or abusive clients.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to receive the request headers.
    pub header_read_timeout: Duration,
    /// Time allowed to receive the whole request body.
    pub body_read_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM/SIGINT before the process exits.
    pub shutdown_grace: Duration,
}

/// Timeouts and pooling toward providers.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    /// Per attempt: time until response headers (and, for streams, the first event).
    pub first_byte_timeout: Duration,
    /// Inside a stream: the longest silence tolerated between two events.
    pub stream_stall_timeout: Duration,
    /// The request's deadline, shared by all its attempts.
    pub request_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

/// How the router protects providers and itself; see docs/configuration.md for the meaning
/// and the sources of each default.
#[derive(Debug, Clone, PartialEq)]
pub struct Resilience {
    /// Upstream attempts one client request may make.
    pub max_attempts: u32,
    pub breaker_consecutive_failures: u32,
    pub breaker_failure_rate: f64,
    pub breaker_min_requests: u32,
    pub breaker_window: Duration,
    pub ejection_base: Duration,
    pub ejection_max: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min_per_sec: f64,
    /// Longest a provider's Retry-After is honoured.
    pub cooldown_max: Duration,
    pub ewma_decay: Duration,
    /// TTFT assumed for a target before it has answered.
    pub default_ttft: Duration,
    /// Per-provider adaptive concurrency limits (AIMD). Off: only breakers and budgets.
    pub cascade_guard: bool,
    pub initial_concurrency: u32,
    pub min_concurrency: u32,
}

impl Default for Resilience {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            breaker_consecutive_failures: 5,
            breaker_failure_rate: 0.2,
            breaker_min_requests: 10,
            breaker_window: Duration::from_secs(10),
            ejection_base: Duration::from_secs(1),
            ejection_max: Duration::from_secs(10),
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 1.0,
            cooldown_max: Duration::from_secs(300),
            ewma_decay: Duration::from_secs(10),
            default_ttft: Duration::from_millis(500),
            cascade_guard: true,
            initial_concurrency: 32,
            min_concurrency: 2,
        }
    }
}

/// Client authentication. With no keys the gateway is open (a warning is logged).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub api_keys: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub protocol: Protocol,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Models advertised in `/v1/models` as `name/model`. Any model may still be named directly.
    pub models: Vec<String>,
    /// Extra request headers (values may hold credentials, so they are secrets).
    pub headers: Vec<(String, Secret)>,
    /// Most concurrent requests the provider is known to accept: the cascade guard's ceiling.
    pub max_concurrency: Option<u32>,
    /// Where an OpenAI-compatible provider departs from OpenAI's API.
    pub dialect: Dialect,
}

/// Known departures from OpenAI's API among OpenAI-compatible providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    Standard,
    /// Azure OpenAI: the deployment is in the URL, `api-version` in the query, the key in an
    /// `api-key` header.
    Azure {
        api_version: String,
    },
    /// Mistral: tool-call ids must be 9 letters or digits; `random_seed` instead of `seed`;
    /// `tool_choice: "any"` instead of `"required"`.
    Mistral,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The model name clients send.
    pub model: String,
    /// In preference order.
    pub targets: Arc<[Target]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub provider_name: String,
    pub model: String,
    /// Preference: lower tiers are tried first; targets in one tier share load (P2C).
    pub tier: u32,
    /// Share of load within its tier.
    pub weight: u32,
}

impl Target {
    /// `provider/model`, as shown in `x-outlast-target`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider_name, self.model)
    }
}

impl Config {
    /// Read and check a TOML file, interpolating `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read the file: {e}"),
            )
        })?;
        Self::from_toml(&text, &|name| std::env::var(name).ok())
    }

    /// Parse and check TOML text with the given environment lookup.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut tree: toml::Value = toml::from_str(text)
            .map_err(|e| ConfigError::new("(file)", format!("not valid TOML: {}", e.message())))?;
        interpolate_tree(&mut tree, String::new(), env)?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                e.into_inner().message().to_string(),
            )
        })?;
        raw.check()
    }

    /// Build a configuration from provider API-key variables (`OPENAI_API_KEY`, ...), as
    /// `outlast serve` does without `--config`, keeping only providers whose protocol `usable`
    /// accepts. `None` when no usable provider's variable is set.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        usable: &dyn Fn(Protocol) -> bool,
    ) -> Option<Result<Self, ConfigError>> {
        let chosen: Vec<_> = presets::FROM_ENV
            .iter()
            .filter_map(|name| presets::find(name))
            .filter(|p| usable(p.protocol))
            .filter(|p| p.key_env.and_then(env).is_some_and(|v| !v.is_empty()))
            .collect();
        if chosen.is_empty() {
            return None;
        }
        let mut raw = raw::RawConfig::default();
        for p in &chosen {
            raw.providers.push(raw::RawProvider {
                name: p.name.into(),
                preset: Some(p.name.into()),
                api_key: p.key_env.and_then(env),
                ..Default::default()
            });
        }
        // One route per default model: that provider first, then the first model of every other
        // provider, so a client naming "gpt-4o-mini" still gets an answer when OpenAI is down.
        let firsts: Vec<String> = chosen
            .iter()
            .filter_map(|p| p.models.first().map(|m| format!("{}/{m}", p.name)))
            .collect();
        raw.routes.push(raw::RawRoute {
            model: "default".into(),
            targets: firsts
                .iter()
                .cloned()
                .map(raw::RawTargetEntry::One)
                .collect(),
        });
        for p in &chosen {
            for m in p.models {
                let own = format!("{}/{m}", p.name);
                let mut targets = vec![own.clone()];
                targets.extend(
                    firsts
                        .iter()
                        .filter(|t| !t.starts_with(&format!("{}/", p.name)))
                        .cloned(),
                );
                raw.routes.push(raw::RawRoute {
                    model: (*m).into(),
                    targets: targets.into_iter().map(raw::RawTargetEntry::One).collect(),
                });
            }
        }
        Some(raw.check())
    }

    pub fn provider(&self, name: &str) -> Option<(usize, &ProviderConfig)> {
        self.providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
    }

    /// Resolve the model a client sent: a route name, or `provider/model` naming a target.
    /// Cheap to call per request: a route's targets are shared, not copied.
    pub fn resolve(&self, model: &str) -> Option<Arc<[Target]>> {
        if let Some(route) = self.routes.iter().find(|r| r.model == model) {
            return Some(Arc::clone(&route.targets));
        }
        let (provider, target_model) = model.split_once('/')?;
        let (index, p) = self.provider(provider)?;
        if target_model.is_empty() {
            return None;
        }
        Some(Arc::from(vec![Target {
            provider: index,
            provider_name: p.name.clone(),
            model: target_model.to_string(),
            tier: 0,
            weight: 1,
        }]))
    }
}

fn interpolate_tree(
    value: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate(s, env).map_err(|m| ConfigError::new(path, m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_tree(v, child, env)?;
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
    Ok(())
}

fn check_unique<'a>(
    names: impl Iterator<Item = (usize, &'a str)>,
    what: &str,
    field: &str,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, name) in names {
        if !seen.insert(name) {
            return Err(ConfigError::new(
                format!("{what}[{i}].{field}"),
                format!("`{name}` is used twice; each must be unique"),
            ));
        }
    }
    Ok(())
}
