//! The Statuspage-shaped JSON (field names and types of that API), the HTML page (escaping,
//! languages) and the history buckets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outlast_config::StatusSettings;
use outlast_status::html::{escape, render};
use outlast_status::i18n::Lang;
use outlast_status::{Board, Counts, History, Kind};
use serde_json::Value;

const T: &str = "a/gpt-4o-mini";

fn failing_board() -> (Board, i64) {
    let settings = StatusSettings {
        min_requests: 2,
        ..StatusSettings::default()
    };
    let mut b = Board::new(
        &settings,
        vec![T.into(), "b/m".into()],
        vec![("chat".into(), vec![T.into(), "b/m".into()])],
        1_700_000_000_000,
    );
    let now = 1_700_000_100_000;
    for _ in 0..5 {
        b.record_attempt(T, false, now);
        b.record_attempt("b/m", true, now);
        b.record_request("chat", true, now);
    }
    assert_eq!(b.detect(now, &[]).len(), 1);
    (b, now)
}

fn is_str(v: &Value) -> bool {
    v.is_string()
}
fn str_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

fn check_page(p: &Value) {
    for k in ["id", "name", "url", "time_zone", "updated_at"] {
        assert!(is_str(&p[k]), "page.{k}: {p}");
    }
}

fn check_component(c: &Value) {
    for k in [
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "page_id",
    ] {
        assert!(is_str(&c[k]), "component.{k}: {c}");
    }
    assert!(c["position"].is_u64());
    for k in ["showcase", "group", "only_show_if_degraded"] {
        assert!(c[k].is_boolean(), "component.{k}");
    }
    for k in ["description", "start_date", "group_id"] {
        assert!(str_or_null(&c[k]), "component.{k}");
    }
    assert!(
        [
            "operational",
            "degraded_performance",
            "partial_outage",
            "major_outage",
            "under_maintenance"
        ]
        .contains(&c["status"].as_str().unwrap())
    );
}

fn check_incident(i: &Value) {
    for k in [
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "impact",
        "shortlink",
        "started_at",
        "page_id",
    ] {
        assert!(is_str(&i[k]), "incident.{k}: {i}");
    }
    for k in ["monitoring_at", "resolved_at"] {
        assert!(str_or_null(&i[k]), "incident.{k}");
    }
    assert!(
        [
            "investigating",
            "identified",
            "monitoring",
            "resolved",
            "postmortem"
        ]
        .contains(&i["status"].as_str().unwrap())
    );
    assert!(["none", "minor", "major", "critical"].contains(&i["impact"].as_str().unwrap()));
    for u in i["incident_updates"].as_array().unwrap() {
        for k in [
            "id",
            "status",
            "body",
            "incident_id",
            "created_at",
            "updated_at",
            "display_at",
        ] {
            assert!(is_str(&u[k]), "update.{k}: {u}");
        }
        assert!(u["deliver_notifications"].is_boolean());
        assert!(u["custom_tweet"].is_null() || u["custom_tweet"].is_string());
        assert!(u["tweet_id"].is_null() || u["tweet_id"].is_string());
        for a in u["affected_components"].as_array().unwrap() {
            for k in ["code", "name", "old_status", "new_status"] {
                assert!(is_str(&a[k]));
            }
        }
    }
    for c in i["components"].as_array().unwrap() {
        check_component(c);
    }
    // RFC 3339 timestamps.
    assert!(i["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn summary_has_statuspage_field_names_and_types() {
    let (b, now) = failing_board();
    let v = serde_json::to_value(b.summary("http://gw", now)).unwrap();
    check_page(&v["page"]);
    assert!(v["scheduled_maintenances"].is_array());
    assert_eq!(v["status"]["indicator"], "major");
    assert!(is_str(&v["status"]["description"]));
    let comps = v["components"].as_array().unwrap();
    assert_eq!(comps.len(), 2 + 3);
    for c in comps {
        check_component(c);
    }
    let a = comps.iter().find(|c| c["name"] == T).unwrap();
    assert_eq!(a["status"], "major_outage");
    let incidents = v["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    check_incident(&incidents[0]);
    assert_eq!(incidents[0]["components"][0]["name"], T);
    assert_eq!(incidents[0]["created_at"], "2023-11-14T22:15:00.000Z");
}

#[test]
fn html_shows_incident_escapes_and_speaks_chinese() {
    let (mut b, now) = failing_board();
    b.title = "<Acme> & \"co\"".into();
    let en = render(&b, Lang::En, now);
    assert!(en.contains("&lt;Acme&gt; &amp; &quot;co&quot;"));
    assert!(!en.contains("<Acme>"));
    assert!(en.contains("Current incidents"));
    assert!(en.contains("Elevated errors on a/gpt-4o-mini"));
    assert!(en.contains("Major Outage"));
    assert!(!en.contains("<script"));
    assert!(
        !en.contains("http://") && !en.contains("https://"),
        "no external assets"
    );
    let zh = render(&b, Lang::ZhCn, now);
    assert!(zh.contains("lang=\"zh-CN\""));
    assert!(zh.contains("当前事件"));
    assert!(zh.contains("错误率升高"));
}

#[test]
fn language_choice() {
    assert_eq!(Lang::choose(Some("zh-CN"), Some("en")), Lang::ZhCn);
    assert_eq!(
        Lang::choose(None, Some("zh-CN,zh;q=0.9,en;q=0.8")),
        Lang::ZhCn
    );
    assert_eq!(Lang::choose(None, Some("fr, en;q=0.5, zh;q=0.3")), Lang::En);
    assert_eq!(Lang::choose(None, None), Lang::En);
    assert_eq!(Lang::choose(Some("xx"), Some("zh")), Lang::ZhCn);
    assert_eq!(escape("<a href='x'>"), "&lt;a href=&#39;x&#39;&gt;");
}

#[test]
fn minute_buckets_flush_and_day_bars() {
    let mut h = History::default();
    let m0 = 1_700_000_000_000 / 60_000 * 60_000;
    h.record(Kind::Target, T, true, m0 + 1_000);
    h.record(Kind::Target, T, false, m0 + 2_000);
    h.record(Kind::Target, T, true, m0 + 61_000);
    // Only the finished minute is taken.
    let rows = h.take_minutes(m0 + 62_000, false);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counts, Counts { ok: 1, fault: 1 });
    assert_eq!(rows[0].minute, m0 / 60_000);
    let rest = h.take_minutes(m0 + 62_000, true);
    assert_eq!(rest.len(), 1);
    assert!(h.take_minutes(m0 + 62_000, true).is_empty());
    let days = h.days(Kind::Target, T, m0 + 62_000);
    assert_eq!(days.len(), 90);
    assert_eq!(days.last().unwrap().1, Counts { ok: 2, fault: 1 });
    assert_eq!(h.window(Kind::Target, T, 10_000, m0 + 62_000).total(), 1);
}
