//! Detection with an injected clock: open, update, resolve with hysteresis, no flapping.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use outlast_config::StatusSettings;
use outlast_status::{Board, EventKind, IncidentStatus};

const T: &str = "a/gpt-4o-mini";
const B: &str = "b/gpt-4o-mini";

fn board() -> Board {
    let settings = StatusSettings {
        fault_rate: 0.5,
        min_requests: 4,
        window: Duration::from_secs(10),
        breaker_open_for: Duration::from_secs(5),
        resolve_after: Duration::from_secs(20),
        ..StatusSettings::default()
    };
    Board::new(
        &settings,
        vec![T.into(), B.into()],
        vec![("chat".into(), vec![T.into(), B.into()])],
        1_000_000,
    )
}

/// One second of traffic: `n` attempts to T with `fail` of them faults, all answered by
/// failover.
fn second(b: &mut Board, now: i64, n: u32, fail: u32) {
    for i in 0..n {
        b.record_attempt(T, i >= fail, now);
        b.record_request("chat", true, now);
    }
}

#[test]
fn opens_once_updates_and_resolves_with_hysteresis() {
    let mut b = board();
    let mut now = 1_000_000;
    // Healthy traffic: nothing.
    for _ in 0..5 {
        second(&mut b, now, 3, 0);
        assert!(b.detect(now, &[]).is_empty());
        now += 1000;
    }
    // Half the attempts fail: opened, minor, users shielded by failover.
    let mut opened = Vec::new();
    for _ in 0..10 {
        second(&mut b, now, 4, 2);
        for e in b.detect(now, &[]) {
            opened.push(e);
        }
        now += 1000;
    }
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].kind, EventKind::Opened);
    assert_eq!(opened[0].incident.target, T);
    assert_eq!(opened[0].incident.status, IncidentStatus::Investigating);
    assert_eq!(opened[0].incident.impact.as_str(), "minor");
    assert!(!opened[0].incident.updates[0].users_affected);

    // Everything fails: impact rises, one update on the same incident.
    let mut events = Vec::new();
    for _ in 0..15 {
        second(&mut b, now, 4, 4);
        events.extend(b.detect(now, &[(T.into(), true)]));
        now += 1000;
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::Updated);
    assert_eq!(events[0].incident.id, opened[0].incident.id);
    assert_eq!(events[0].incident.impact.as_str(), "major");
    assert_eq!(b.target_status(T).as_str(), "major_outage");
    assert_eq!(b.target_status(B).as_str(), "operational");

    // Recovery: monitoring at once, resolved only after 20 s healthy.
    let mut events = Vec::new();
    let recovered_at = now;
    for _ in 0..40 {
        second(&mut b, now, 4, 0);
        for e in b.detect(now, &[]) {
            events.push((now - recovered_at, e));
        }
        now += 1000;
    }
    let kinds: Vec<_> = events
        .iter()
        .map(|(_, e)| (e.kind, e.incident.status))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Updated, IncidentStatus::Monitoring),
            (EventKind::Resolved, IncidentStatus::Resolved)
        ]
    );
    // The window must clear (10 s) and then 20 s of health pass.
    assert!(events[1].0 >= 20_000, "resolved too early: {}", events[1].0);
    let inc = &b.detector.incidents()[0];
    assert_eq!(b.detector.incidents().len(), 1);
    assert_eq!(inc.updates.len(), 4);
    assert!(inc.resolved_ms.is_some() && inc.monitoring_ms.is_some());
    assert_eq!(b.status(now).indicator, "none");
}

#[test]
fn flapping_stays_one_incident() {
    let mut b = board();
    let mut now = 1_000_000;
    let mut events = Vec::new();
    // Alternate 8 s bad / 8 s good for two minutes: shorter than resolve_after.
    for round in 0..8 {
        for _ in 0..8 {
            second(&mut b, now, 4, if round % 2 == 0 { 4 } else { 0 });
            events.extend(b.detect(now, &[]));
            now += 1000;
        }
    }
    let opened = events
        .iter()
        .filter(|e| e.kind == EventKind::Opened)
        .count();
    let resolved = events
        .iter()
        .filter(|e| e.kind == EventKind::Resolved)
        .count();
    assert_eq!(opened, 1, "{events:?}");
    assert_eq!(resolved, 0);
    assert_eq!(b.detector.incidents().len(), 1);
}

#[test]
fn breaker_open_long_enough_opens_without_traffic() {
    let mut b = board();
    let mut now = 1_000_000;
    let open = [(T.to_owned(), true)];
    let mut events = Vec::new();
    for _ in 0..4 {
        events.extend(b.detect(now, &open));
        now += 1000;
    }
    assert!(
        events.is_empty(),
        "opened before breaker_open_for: {events:?}"
    );
    for _ in 0..3 {
        events.extend(b.detect(now, &open));
        now += 1000;
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Opened);
    assert_eq!(events[0].incident.impact.as_str(), "major");
}

#[test]
fn too_few_requests_do_not_open() {
    let mut b = board();
    let now = 1_000_000;
    second(&mut b, now, 3, 3);
    assert!(b.detect(now, &[]).is_empty());
}

#[test]
fn users_affected_when_route_failed() {
    let mut b = board();
    let now = 1_000_000;
    for _ in 0..5 {
        b.record_attempt(T, false, now);
        b.record_request("chat", false, now);
    }
    let e = b.detect(now, &[]);
    assert_eq!(e.len(), 1);
    assert!(e[0].incident.updates[0].users_affected);
    assert_eq!(b.route_status("chat", now).as_str(), "major_outage");
    assert_eq!(b.status(now).indicator, "critical");
}

#[test]
fn restored_open_incident_is_continued_not_reopened() {
    let mut b = board();
    let now = 1_000_000;
    second(&mut b, now, 5, 5);
    let first = b.detect(now, &[]);
    assert_eq!(first.len(), 1);
    // A restart: a new board loads the stored incidents.
    let mut b2 = board();
    b2.detector.load(b.detector.incidents().to_vec());
    second(&mut b2, now + 1000, 5, 5);
    assert!(b2.detect(now + 1000, &[]).is_empty());
    assert_eq!(b2.detector.incidents().len(), 1);
}

#[test]
fn no_traffic_is_no_evidence_of_recovery() {
    let mut b = board();
    let mut now = 1_000_000;
    second(&mut b, now, 5, 5);
    assert_eq!(b.detect(now, &[]).len(), 1);
    // A minute with no traffic at all: the incident stays open, not even monitoring.
    for _ in 0..60 {
        now += 1000;
        assert!(b.detect(now, &[]).is_empty());
    }
    assert_eq!(
        b.detector.incidents()[0].status,
        IncidentStatus::Investigating
    );
}
