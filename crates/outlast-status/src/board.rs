//! The status board: history plus detector plus the configured components, and the views
//! built from them (Statuspage JSON, webhook notifications). The server keeps one behind a
//! mutex; every method takes `now` so tests drive time.

use std::collections::BTreeSet;

use outlast_config::StatusSettings;
use serde_json::json;

use crate::detect::{Detector, Event, EventKind, Impact, Incident, Observation, Thresholds};
use crate::history::{Counts, History, Kind};
use crate::i18n::{Lang, incident_name, reason_body};
use crate::statuspage as sp;
use crate::time::rfc3339;

/// One webhook notification, ready to store in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub event: EventKind,
    pub incident_id: String,
    /// The JSON body posted to every webhook.
    pub body: String,
}

#[derive(Debug)]
pub struct Board {
    pub title: String,
    pub history: History,
    pub detector: Detector,
    targets: Vec<String>,
    /// Route name and the targets it may use.
    routes: Vec<(String, Vec<String>)>,
    started_ms: i64,
}

/// A component's status word in the Statuspage vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComponentStatus {
    Operational,
    Degraded,
    Partial,
    Major,
}

impl ComponentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::Degraded => "degraded_performance",
            ComponentStatus::Partial => "partial_outage",
            ComponentStatus::Major => "major_outage",
        }
    }
}

pub fn component_id(kind: Kind, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{slug}", kind.as_str())
}

impl Board {
    pub fn new(
        settings: &StatusSettings,
        targets: Vec<String>,
        routes: Vec<(String, Vec<String>)>,
        now_ms: i64,
    ) -> Self {
        Self {
            title: settings.title.clone(),
            history: History::default(),
            detector: Detector::new(Thresholds::from(settings)),
            targets,
            routes,
            started_ms: now_ms,
        }
    }

    pub fn record_attempt(&mut self, target: &str, ok: bool, now_ms: i64) {
        self.history.record(Kind::Target, target, ok, now_ms);
    }

    pub fn record_request(&mut self, route: &str, answered: bool, now_ms: i64) {
        self.history.record(Kind::Route, route, answered, now_ms);
    }

    /// Targets shown: configured ones, then any other seen in traffic (direct requests).
    pub fn targets(&self) -> Vec<String> {
        let mut seen: BTreeSet<String> = self.targets.iter().cloned().collect();
        let mut out = self.targets.clone();
        for n in self.history.names(Kind::Target) {
            if seen.insert(n.clone()) {
                out.push(n);
            }
        }
        out
    }

    pub fn routes(&self) -> Vec<String> {
        self.routes.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Run detection: `breakers` lists `(target, breaker open)` for tracked targets.
    pub fn detect(&mut self, now_ms: i64, breakers: &[(String, bool)]) -> Vec<Event> {
        let window = self.detector.thresholds().window_ms;
        let mut names = self.targets();
        for (t, _) in breakers {
            if !names.contains(t) {
                names.push(t.clone());
            }
        }
        let observations: Vec<Observation> = names
            .iter()
            .map(|target| {
                let c = self.history.window(Kind::Target, target, window, now_ms);
                let users_affected = self
                    .routes
                    .iter()
                    .filter(|(_, ts)| ts.contains(target))
                    .any(|(r, _)| self.history.window(Kind::Route, r, window, now_ms).fault > 0);
                Observation {
                    target: target.clone(),
                    attempts: c.total(),
                    faults: c.fault,
                    breaker_open: breakers.iter().any(|(t, open)| t == target && *open),
                    users_affected,
                }
            })
            .collect();
        self.detector.observe(now_ms, &observations)
    }

    pub fn target_status(&self, target: &str) -> ComponentStatus {
        match self.detector.failing(target) {
            Some(Impact::Major | Impact::Critical) => ComponentStatus::Major,
            Some(Impact::Minor) => ComponentStatus::Partial,
            Some(Impact::None) | None => ComponentStatus::Operational,
        }
    }

    pub fn route_status(&self, route: &str, now_ms: i64) -> ComponentStatus {
        let window = self.detector.thresholds().window_ms;
        let c = self.history.window(Kind::Route, route, window, now_ms);
        match c.availability() {
            Some(a) if a < 0.5 => ComponentStatus::Major,
            Some(a) if a < 0.95 => ComponentStatus::Partial,
            Some(a) if a < 0.999 => ComponentStatus::Degraded,
            _ => ComponentStatus::Operational,
        }
    }

    /// Overall indicator: the worst of open incidents and user-facing route states.
    pub fn indicator(&self, now_ms: i64) -> Impact {
        let mut worst = Impact::None;
        for i in self.detector.incidents().iter().filter(|i| i.is_open()) {
            worst = worst.max(if i.status == crate::detect::IncidentStatus::Monitoring {
                Impact::Minor
            } else {
                i.impact
            });
        }
        for r in self.routes() {
            worst = worst.max(match self.route_status(&r, now_ms) {
                ComponentStatus::Major => Impact::Critical,
                ComponentStatus::Partial => Impact::Major,
                ComponentStatus::Degraded => Impact::Minor,
                ComponentStatus::Operational => Impact::None,
            });
        }
        worst
    }

    /// Uptime over the last 90 days for one series, or `None` without traffic.
    pub fn uptime(&self, kind: Kind, name: &str, now_ms: i64) -> Option<f64> {
        let mut total = Counts::default();
        for (_, c) in self.history.days(kind, name, now_ms) {
            total.add(c);
        }
        total.availability()
    }

    pub fn page(&self, base_url: &str, now_ms: i64) -> sp::Page {
        sp::Page {
            id: "outlast".to_owned(),
            name: self.title.clone(),
            url: base_url.to_owned(),
            time_zone: "Etc/UTC".to_owned(),
            updated_at: rfc3339(now_ms),
        }
    }

    pub fn status(&self, now_ms: i64) -> sp::Status {
        let (indicator, description) = match self.indicator(now_ms) {
            Impact::None => ("none", "All Systems Operational"),
            Impact::Minor => ("minor", "Minor Service Outage"),
            Impact::Major => ("major", "Partial System Outage"),
            Impact::Critical => ("critical", "Major Service Outage"),
        };
        sp::Status {
            indicator: indicator.to_owned(),
            description: description.to_owned(),
        }
    }

    fn component(
        &self,
        kind: Kind,
        name: &str,
        status: ComponentStatus,
        position: u32,
        group: &str,
    ) -> sp::Component {
        let description = match kind {
            Kind::Target => "Provider target: its own availability, every attempt counted.",
            Kind::Route => "Route: requests answered for clients, after failover.",
        };
        sp::Component {
            id: component_id(kind, name),
            name: name.to_owned(),
            status: status.as_str().to_owned(),
            created_at: rfc3339(self.started_ms),
            updated_at: rfc3339(self.started_ms),
            position,
            description: Some(description.to_owned()),
            showcase: true,
            start_date: Some(crate::time::day(self.started_ms)),
            group_id: Some(group.to_owned()),
            page_id: "outlast".to_owned(),
            group: false,
            only_show_if_degraded: false,
            components: None,
        }
    }

    fn group(&self, id: &str, name: &str, position: u32, members: Vec<String>) -> sp::Component {
        sp::Component {
            id: id.to_owned(),
            name: name.to_owned(),
            status: "operational".to_owned(),
            created_at: rfc3339(self.started_ms),
            updated_at: rfc3339(self.started_ms),
            position,
            description: None,
            showcase: false,
            start_date: None,
            group_id: None,
            page_id: "outlast".to_owned(),
            group: true,
            only_show_if_degraded: false,
            components: Some(members),
        }
    }

    pub fn components(&self, now_ms: i64) -> Vec<sp::Component> {
        let mut out = Vec::new();
        let routes = self.routes();
        let targets = self.targets();
        let mut route_group = self.group(
            "group-routes",
            "Routes",
            1,
            routes
                .iter()
                .map(|r| component_id(Kind::Route, r))
                .collect(),
        );
        let mut target_group = self.group(
            "group-providers",
            "Providers",
            2,
            targets
                .iter()
                .map(|t| component_id(Kind::Target, t))
                .collect(),
        );
        let mut pos = 3;
        let mut worst_r = ComponentStatus::Operational;
        let mut members = Vec::new();
        for r in &routes {
            let s = self.route_status(r, now_ms);
            worst_r = worst_r.max(s);
            members.push(self.component(Kind::Route, r, s, pos, "group-routes"));
            pos += 1;
        }
        let mut worst_t = ComponentStatus::Operational;
        for t in &targets {
            let s = self.target_status(t);
            worst_t = worst_t.max(s);
            members.push(self.component(Kind::Target, t, s, pos, "group-providers"));
            pos += 1;
        }
        route_group.status = worst_r.as_str().to_owned();
        target_group.status = worst_t.as_str().to_owned();
        out.push(route_group);
        out.push(target_group);
        out.extend(members);
        out
    }

    pub fn incident_json(&self, i: &Incident, base_url: &str, now_ms: i64) -> sp::Incident {
        let lang = Lang::En;
        let status = self.target_status(&i.target);
        let component = self.component(Kind::Target, &i.target, status, 0, "group-providers");
        let updates = i
            .updates
            .iter()
            .rev()
            .map(|u| sp::IncidentUpdate {
                id: u.id.clone(),
                status: u.status.as_str().to_owned(),
                body: reason_body(lang, &i.target, &u.reason, u.users_affected),
                incident_id: i.id.clone(),
                created_at: rfc3339(u.at_ms),
                updated_at: rfc3339(u.at_ms),
                display_at: rfc3339(u.at_ms),
                affected_components: Some(vec![sp::AffectedComponent {
                    code: component.id.clone(),
                    name: i.target.clone(),
                    old_status: "operational".to_owned(),
                    new_status: if u.status == crate::detect::IncidentStatus::Resolved {
                        "operational".to_owned()
                    } else {
                        match i.impact {
                            Impact::Minor | Impact::None => "partial_outage".to_owned(),
                            Impact::Major | Impact::Critical => "major_outage".to_owned(),
                        }
                    },
                }]),
                deliver_notifications: true,
                custom_tweet: None,
                tweet_id: None,
            })
            .collect();
        let _ = now_ms;
        sp::Incident {
            id: i.id.clone(),
            name: incident_name(lang, &i.target),
            status: i.status.as_str().to_owned(),
            created_at: rfc3339(i.created_ms),
            updated_at: rfc3339(i.updated_ms),
            monitoring_at: i.monitoring_ms.map(rfc3339),
            resolved_at: i.resolved_ms.map(rfc3339),
            impact: i.impact.as_str().to_owned(),
            shortlink: format!("{base_url}/status#incident-{}", i.id),
            started_at: rfc3339(i.created_ms),
            page_id: "outlast".to_owned(),
            incident_updates: updates,
            components: vec![component],
        }
    }

    /// Every incident, newest first (`incidents.json`), or only unresolved ones.
    pub fn incidents(&self, base_url: &str, now_ms: i64, unresolved: bool) -> Vec<sp::Incident> {
        self.detector
            .incidents()
            .iter()
            .rev()
            .filter(|i| !unresolved || i.is_open())
            .take(50)
            .map(|i| self.incident_json(i, base_url, now_ms))
            .collect()
    }

    pub fn summary(&self, base_url: &str, now_ms: i64) -> sp::Summary {
        sp::Summary {
            page: self.page(base_url, now_ms),
            components: self.components(now_ms),
            incidents: self.incidents(base_url, now_ms, true),
            scheduled_maintenances: Vec::new(),
            status: self.status(now_ms),
        }
    }

    /// The webhook body for an event: Statuspage's incident object, plus `text` for chat
    /// tools (Slack, Mattermost, Feishu/Lark bots accept it).
    pub fn notification(&self, e: &Event, base_url: &str, now_ms: i64) -> Notification {
        let incident = self.incident_json(&e.incident, base_url, now_ms);
        let latest = incident
            .incident_updates
            .first()
            .map(|u| u.body.clone())
            .unwrap_or_default();
        let text = format!(
            "[{}] {} ({}): {}",
            incident.status, incident.name, incident.impact, latest
        );
        let body = json!({
            "event": e.kind.as_str(),
            "text": text,
            "page": self.page(base_url, now_ms),
            "incident": incident,
        });
        Notification {
            event: e.kind,
            incident_id: e.incident.id.clone(),
            body: body.to_string(),
        }
    }
}
