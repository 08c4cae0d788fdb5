//! The scenario file: simulated providers, the route over them, the client load, and a
//! timeline of events (faults and load changes). Times can be scaled to shorten a drill.

use std::time::Duration;

use outlast_sim::Faults;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default)]
    pub description: Option<String>,
    pub providers: Vec<ProviderSpec>,
    /// Targets of the route "chat", in preference order, as `provider/model`.
    pub route: Vec<String>,
    pub load: Load,
    /// Extra gateway configuration appended verbatim (for example a `[resilience]` table).
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub name: String,
    /// The provider's behaviour at the start.
    #[serde(default)]
    pub faults: Faults,
    /// Known concurrency the gateway is told about (`max_concurrency`), if any.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Clients, each sending one request at a time.
    pub clients: usize,
    /// Pause between a client's requests.
    #[serde(with = "humantime_serde", default = "default_think")]
    pub think: Duration,
    /// Share of requests that stream (0 to 1).
    #[serde(default)]
    pub stream_share: f64,
    /// Hard cap on requests in the whole run.
    #[serde(default = "default_max_requests")]
    pub max_requests: u64,
}

fn default_think() -> Duration {
    Duration::from_millis(50)
}

fn default_max_requests() -> u64 {
    200_000
}

/// At `at`, a new phase begins: faults change on one provider, or the load changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The phase this event starts, as shown in the report.
    pub phase: String,
    #[serde(default)]
    pub provider: Option<String>,
    /// Fault fields to change (the others keep their value), as in `PATCH /_sim/faults`.
    #[serde(default)]
    pub faults: Option<toml::Value>,
    /// New number of clients.
    #[serde(default)]
    pub clients: Option<usize>,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        if self.providers.is_empty() || self.route.is_empty() {
            return Err("a scenario needs providers and a route".into());
        }
        for t in &self.route {
            let p = t.split_once('/').map(|(p, _)| p).unwrap_or("");
            if !self.providers.iter().any(|x| x.name == p) {
                return Err(format!(
                    "route target `{t}` names no provider of the scenario"
                ));
            }
        }
        for e in &self.events {
            if let Some(p) = &e.provider
                && !self.providers.iter().any(|x| &x.name == p)
            {
                return Err(format!("event `{}` names unknown provider `{p}`", e.phase));
            }
            if e.faults.is_some() && e.provider.is_none() {
                return Err(format!(
                    "event `{}` changes faults but names no provider",
                    e.phase
                ));
            }
            if e.at > self.duration {
                return Err(format!(
                    "event `{}` is after the end of the scenario",
                    e.phase
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.load.stream_share) {
            return Err("load.stream_share must be between 0 and 1".into());
        }
        if self.load.clients == 0 || self.load.clients > 2000 {
            return Err("load.clients must be between 1 and 2000".into());
        }
        Ok(())
    }

    /// Shorten (or stretch) every time in the scenario by `factor`, faults' latencies aside.
    pub fn scaled(mut self, factor: f64) -> Self {
        let f = factor.clamp(0.001, 1000.0);
        self.duration = self.duration.mul_f64(f);
        for e in &mut self.events {
            e.at = e.at.mul_f64(f);
        }
        self
    }

    /// The phases in order: (name, start).
    pub fn phases(&self) -> Vec<(String, Duration)> {
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.at);
        let mut phases = vec![("start".to_string(), Duration::ZERO)];
        for e in events {
            if phases
                .last()
                .is_some_and(|(name, at)| *at == e.at && name == &e.phase)
            {
                continue;
            }
            if phases.last().is_some_and(|(_, at)| *at == e.at) {
                phases.pop();
            }
            phases.push((e.phase.clone(), e.at));
        }
        phases
    }
}
