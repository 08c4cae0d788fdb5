//! Incident detection: a state machine per target, fed an observation every few seconds with
//! the current time passed in.
//!
//! A target is **failing** when, over the last `window`, at least `min_requests` attempts
//! were made to it and the share of provider faults reached `fault_rate`, or when its breaker
//! has been open (ejected) for at least `breaker_open_for`.
//!
//! - Failing with no open incident for the target: an incident is **opened** (`investigating`).
//! - Failing with an open incident: it is **updated** only when something changes (impact
//!   rises from minor to major, or faults return while it was `monitoring`).
//! - Not failing with an open incident, and answering (successful attempts in the window): it
//!   moves to `monitoring` at once, and is **resolved** only after the target has stayed
//!   healthy for `resolve_after` (hysteresis). Without traffic nothing changes. Faults during
//!   monitoring move it back to `identified`: the same incident, never a second one.
//!
//! At most one incident per target is open at any time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Detection thresholds in milliseconds (built from `[status]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub fault_rate: f64,
    pub min_requests: u64,
    pub window_ms: i64,
    pub breaker_open_for_ms: i64,
    pub resolve_after_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl From<&outlast_config::StatusSettings> for Thresholds {
    fn from(s: &outlast_config::StatusSettings) -> Self {
        Self {
            fault_rate: s.fault_rate,
            min_requests: u64::from(s.min_requests),
            window_ms: ms(s.window),
            breaker_open_for_ms: ms(s.breaker_open_for),
            resolve_after_ms: ms(s.resolve_after),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

/// Why an update was written; the page renders it in the reader's language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Fault share over the window.
    Faults {
        faults: u64,
        attempts: u64,
        window_s: i64,
    },
    /// Breaker open (target ejected) for this long.
    BreakerOpen { for_s: i64 },
    /// Healthy again; watching before resolving.
    Recovering { resolve_after_s: i64 },
    /// Healthy for `resolve_after`.
    Recovered { healthy_s: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub id: String,
    pub status: IncidentStatus,
    pub at_ms: i64,
    pub reason: Reason,
    /// Were clients of the routes through this target still answered (failover)?
    pub users_affected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// The target (`provider/model`) it is about: the affected component.
    pub target: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub monitoring_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    /// Newest last.
    pub updates: Vec<Update>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    Updated,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "incident.opened",
            EventKind::Updated => "incident.updated",
            EventKind::Resolved => "incident.resolved",
        }
    }
}

/// A change to an incident, with the incident as it is after the change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub incident: Incident,
}

/// What the detector is told about one target at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub target: String,
    /// Attempts and provider faults over the window.
    pub attempts: u64,
    pub faults: u64,
    /// Breaker open (target ejected) right now.
    pub breaker_open: bool,
    /// Did clients of routes through this target fail over the window.
    pub users_affected: bool,
}

#[derive(Debug, Default, Clone)]
struct TargetState {
    breaker_open_since: Option<i64>,
    healthy_since: Option<i64>,
}

#[derive(Debug)]
pub struct Detector {
    thresholds: Thresholds,
    targets: BTreeMap<String, TargetState>,
    /// Every incident known, oldest first.
    incidents: Vec<Incident>,
    seq: u64,
}

impl Detector {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            targets: BTreeMap::new(),
            incidents: Vec::new(),
            seq: 0,
        }
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Seed with incidents from the store (at startup), so an incident open before a restart
    /// is continued rather than opened twice.
    pub fn load(&mut self, mut incidents: Vec<Incident>) {
        incidents.sort_by_key(|i| i.created_ms);
        self.incidents = incidents;
    }

    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    fn next_id(&mut self, now_ms: i64) -> String {
        self.seq += 1;
        format!("{now_ms:x}{:x}", self.seq)
    }

    /// Feed one round of observations; returns what changed.
    pub fn observe(&mut self, now_ms: i64, observations: &[Observation]) -> Vec<Event> {
        let mut events = Vec::new();
        for o in observations {
            if let Some(e) = self.observe_one(now_ms, o) {
                events.push(e);
            }
        }
        events
    }

    fn observe_one(&mut self, now: i64, o: &Observation) -> Option<Event> {
        let t = self.thresholds.clone();
        let state = self.targets.entry(o.target.clone()).or_default();
        if o.breaker_open {
            state.breaker_open_since.get_or_insert(now);
        } else {
            state.breaker_open_since = None;
        }
        let breaker_for = state.breaker_open_since.map_or(0, |s| now - s);
        let rate_bad = o.attempts >= t.min_requests.max(1)
            && o.faults as f64 >= t.fault_rate * o.attempts as f64;
        let breaker_bad =
            state.breaker_open_since.is_some() && breaker_for >= t.breaker_open_for_ms;
        let failing = rate_bad || breaker_bad;
        let impact = if breaker_bad || (o.attempts > 0 && o.faults * 10 >= o.attempts * 9) {
            Impact::Major
        } else {
            Impact::Minor
        };
        let reason = if rate_bad {
            Reason::Faults {
                faults: o.faults,
                attempts: o.attempts,
                window_s: t.window_ms / 1000,
            }
        } else {
            Reason::BreakerOpen {
                for_s: breaker_for / 1000,
            }
        };
        // Health needs evidence: the clock toward resolving starts at the first observation
        // with successful attempts; a target nobody sends to stays as it was.
        if failing {
            state.healthy_since = None;
        } else if state.healthy_since.is_none() && o.attempts > o.faults {
            state.healthy_since = Some(now);
        }
        let healthy_since = state.healthy_since;

        let open = self
            .incidents
            .iter()
            .position(|i| i.target == o.target && i.is_open());
        match (open, failing) {
            (None, false) => None,
            (None, true) => {
                let id = self.next_id(now);
                let update_id = self.next_id(now);
                let incident = Incident {
                    id,
                    target: o.target.clone(),
                    status: IncidentStatus::Investigating,
                    impact,
                    created_ms: now,
                    updated_ms: now,
                    monitoring_ms: None,
                    resolved_ms: None,
                    updates: vec![Update {
                        id: update_id,
                        status: IncidentStatus::Investigating,
                        at_ms: now,
                        reason,
                        users_affected: o.users_affected,
                    }],
                };
                self.incidents.push(incident.clone());
                Some(Event {
                    kind: EventKind::Opened,
                    incident,
                })
            }
            (Some(i), true) => {
                let (status, cur_impact) = {
                    let inc = self.incidents.get(i)?;
                    (inc.status, inc.impact)
                };
                let back = status == IncidentStatus::Monitoring;
                let worse = impact > cur_impact;
                let newly_affected = o.users_affected
                    && !self
                        .incidents
                        .get(i)
                        .is_some_and(|inc| inc.updates.iter().any(|u| u.users_affected));
                if !(back || worse || newly_affected) {
                    return None;
                }
                let update_id = self.next_id(now);
                let inc = self.incidents.get_mut(i)?;
                inc.status = IncidentStatus::Identified;
                inc.impact = inc.impact.max(impact);
                inc.updated_ms = now;
                inc.updates.push(Update {
                    id: update_id,
                    status: IncidentStatus::Identified,
                    at_ms: now,
                    reason,
                    users_affected: o.users_affected,
                });
                Some(Event {
                    kind: EventKind::Updated,
                    incident: inc.clone(),
                })
            }
            (Some(i), false) => {
                let since = healthy_since?;
                let healthy_for = now - since;
                let status = self.incidents.get(i)?.status;
                if healthy_for >= t.resolve_after_ms {
                    let update_id = self.next_id(now);
                    let inc = self.incidents.get_mut(i)?;
                    inc.status = IncidentStatus::Resolved;
                    inc.resolved_ms = Some(now);
                    inc.updated_ms = now;
                    inc.updates.push(Update {
                        id: update_id,
                        status: IncidentStatus::Resolved,
                        at_ms: now,
                        reason: Reason::Recovered {
                            healthy_s: healthy_for / 1000,
                        },
                        users_affected: false,
                    });
                    Some(Event {
                        kind: EventKind::Resolved,
                        incident: inc.clone(),
                    })
                } else if status != IncidentStatus::Monitoring {
                    let update_id = self.next_id(now);
                    let inc = self.incidents.get_mut(i)?;
                    inc.status = IncidentStatus::Monitoring;
                    inc.monitoring_ms = Some(now);
                    inc.updated_ms = now;
                    inc.updates.push(Update {
                        id: update_id,
                        status: IncidentStatus::Monitoring,
                        at_ms: now,
                        reason: Reason::Recovering {
                            resolve_after_s: t.resolve_after_ms / 1000,
                        },
                        users_affected: false,
                    });
                    Some(Event {
                        kind: EventKind::Updated,
                        incident: inc.clone(),
                    })
                } else {
                    None
                }
            }
        }
    }

    /// Is the target failing as of the last observation (for component status).
    pub fn failing(&self, target: &str) -> Option<Impact> {
        self.incidents
            .iter()
            .rev()
            .find(|i| i.target == target && i.is_open() && i.status != IncidentStatus::Monitoring)
            .map(|i| i.impact)
    }

    /// Forget resolved incidents older than `keep_ms`.
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        self.incidents
            .retain(|i| i.is_open() || i.resolved_ms.is_some_and(|r| now_ms - r < keep_ms));
    }
}
