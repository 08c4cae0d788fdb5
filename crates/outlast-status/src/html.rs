//! The status page as one self-contained HTML document: no scripts, no external assets, every
//! dynamic string escaped. Laid out like the status pages people know: overall banner,
//! components with 90-day uptime bars, current incidents with their timeline, past incidents.

use std::fmt::Write;

use crate::board::{Board, ComponentStatus};
use crate::detect::{Impact, Incident, IncidentStatus};
use crate::history::{Counts, Kind};
use crate::i18n::{Lang, Text, incident_name, reason_body, status_name, t};
use crate::time::{day, hhmm, rfc3339};

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
*{box-sizing:border-box}body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;color:#333;background:#fff}
.wrap{max-width:850px;margin:0 auto;padding:24px 16px 48px}
header{display:flex;justify-content:space-between;align-items:center;margin:8px 0 32px}
header h1{font-size:26px;margin:0;font-weight:600}header nav a{color:#5a7fb0;margin-left:14px;text-decoration:none;font-size:14px}
.banner{border-radius:4px;color:#fff;padding:16px 20px;font-size:20px;font-weight:600;margin-bottom:36px}
.s-none{background:#2fcc66}.s-minor{background:#f1c40f}.s-major{background:#e67e22}.s-critical{background:#e74c3c}
h2{font-size:20px;font-weight:500;margin:40px 0 12px}
.incident{border:1px solid #e0e0e0;border-radius:4px;margin-bottom:16px}
.incident h3{margin:0;padding:12px 16px;font-size:17px;color:#fff;border-radius:4px 4px 0 0}
.i-minor h3{background:#f1c40f}.i-major h3,.i-critical h3{background:#e67e22}.i-monitoring h3{background:#3498db}.i-resolved h3{background:#777}
.upd{padding:10px 16px;border-top:1px solid #eee}.upd strong{display:inline-block;min-width:100px}.upd small{color:#999;display:block}
.affects{padding:8px 16px;color:#888;font-size:13px;border-top:1px solid #eee}
.group{border:1px solid #e0e0e0;border-radius:4px;margin-bottom:20px}
.group>.gh{padding:12px 16px;font-weight:600;border-bottom:1px solid #e0e0e0;background:#fafafa}.gh small{font-weight:400;color:#888;margin-left:8px}
.comp{padding:14px 16px;border-bottom:1px solid #eee}.comp:last-child{border-bottom:0}
.ch{display:flex;justify-content:space-between;margin-bottom:6px}.ch .name{font-weight:500}
.c-operational{color:#2fcc66}.c-degraded_performance{color:#c9a800}.c-partial_outage{color:#e67e22}.c-major_outage{color:#e74c3c}
svg.bars{width:100%;height:34px;display:block}
.legend{display:flex;justify-content:space-between;color:#999;font-size:12px;margin-top:4px}
.past .day{border-bottom:1px solid #eee;padding:10px 0}.past .day h4{margin:0 0 6px;font-size:15px}
.past .day a{color:#e67e22;font-weight:600;text-decoration:none}.none{color:#999}
footer{margin-top:48px;color:#aaa;font-size:12px;text-align:center}
"#;

fn bar_color(c: Counts) -> &'static str {
    match c.availability() {
        None => "#b3bac5",
        Some(a) if a >= 0.999 => "#2fcc66",
        Some(a) if a >= 0.99 => "#a4d65e",
        Some(a) if a >= 0.95 => "#f1c40f",
        Some(a) if a >= 0.8 => "#e67e22",
        Some(_) => "#e74c3c",
    }
}

fn component_text(lang: Lang, s: ComponentStatus) -> &'static str {
    t(
        lang,
        match s {
            ComponentStatus::Operational => Text::Operational,
            ComponentStatus::Degraded => Text::Degraded,
            ComponentStatus::Partial => Text::Partial,
            ComponentStatus::Major => Text::Major,
        },
    )
}

fn component(out: &mut String, board: &Board, lang: Lang, kind: Kind, name: &str, now_ms: i64) {
    let status = match kind {
        Kind::Target => board.target_status(name),
        Kind::Route => board.route_status(name, now_ms),
    };
    let uptime = board.uptime(kind, name, now_ms).map_or_else(
        || t(lang, Text::NoData).to_owned(),
        |u| format!("{:.2}% {}", u * 100.0, t(lang, Text::Uptime)),
    );
    let _ = write!(
        out,
        "<div class=\"comp\" data-component=\"{}\"><div class=\"ch\"><span class=\"name\">{}</span><span class=\"c-{}\">{}</span></div>",
        escape(name),
        escape(name),
        status.as_str(),
        component_text(lang, status)
    );
    out.push_str("<svg class=\"bars\" viewBox=\"0 0 448 34\" preserveAspectRatio=\"none\">");
    for (i, (d, c)) in board.history.days(kind, name, now_ms).iter().enumerate() {
        let tip = match c.availability() {
            Some(a) => format!(
                "{}: {:.2}% ({}/{})",
                day(d * crate::time::DAY_MS),
                a * 100.0,
                c.ok,
                c.total()
            ),
            None => format!(
                "{}: {}",
                day(d * crate::time::DAY_MS),
                t(lang, Text::NoData)
            ),
        };
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"0\" width=\"3\" height=\"34\" rx=\"1\" fill=\"{}\"><title>{}</title></rect>",
            i * 5,
            bar_color(*c),
            escape(&tip)
        );
    }
    let _ = write!(
        out,
        "</svg><div class=\"legend\"><span>{}</span><span>{}</span><span>{}</span></div></div>",
        t(lang, Text::DaysAgo90),
        escape(&uptime),
        t(lang, Text::Today)
    );
}

fn incident(out: &mut String, lang: Lang, i: &Incident) {
    let class = match (i.status, i.impact) {
        (IncidentStatus::Resolved, _) => "i-resolved",
        (IncidentStatus::Monitoring, _) => "i-monitoring",
        (_, Impact::Major | Impact::Critical) => "i-major",
        (_, Impact::Minor | Impact::None) => "i-minor",
    };
    let _ = write!(
        out,
        "<div class=\"incident {class}\" id=\"incident-{}\"><h3>{}</h3>",
        escape(&i.id),
        escape(&incident_name(lang, &i.target))
    );
    for u in i.updates.iter().rev() {
        let _ = write!(
            out,
            "<div class=\"upd\"><strong>{}</strong> - {}<small>{} {} UTC</small></div>",
            status_name(lang, u.status),
            escape(&reason_body(lang, &i.target, &u.reason, u.users_affected)),
            day(u.at_ms),
            hhmm(u.at_ms)
        );
    }
    let _ = write!(
        out,
        "<div class=\"affects\">{}: {}</div></div>",
        t(lang, Text::Affects),
        escape(&i.target)
    );
}

/// Render the whole page.
pub fn render(board: &Board, lang: Lang, now_ms: i64) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let indicator = board.indicator(now_ms);
    let (class, text) = match indicator {
        Impact::None => ("s-none", Text::AllOperational),
        Impact::Minor => ("s-minor", Text::MinorOutage),
        Impact::Major => ("s-major", Text::PartialOutage),
        Impact::Critical => ("s-critical", Text::MajorOutage),
    };
    let other = match lang {
        Lang::En => "zh-CN",
        Lang::ZhCn => "en",
    };
    let title = escape(&board.title);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body><div class=\"wrap\"><header><h1>{title}</h1><nav><a href=\"?lang={other}\">{}</a><a href=\"api/v2/summary.json\">{}</a></nav></header>",
        lang.html_tag(),
        t(lang, Text::Language),
        t(lang, Text::Json)
    );
    let _ = write!(
        out,
        "<div class=\"banner {class}\" id=\"overall\" data-indicator=\"{}\">{}</div>",
        indicator.as_str(),
        t(lang, text)
    );

    let incidents = board.detector.incidents();
    let open: Vec<&Incident> = incidents.iter().rev().filter(|i| i.is_open()).collect();
    if !open.is_empty() {
        let _ = write!(
            out,
            "<section id=\"current\"><h2>{}</h2>",
            t(lang, Text::CurrentIncidents)
        );
        for i in open {
            incident(&mut out, lang, i);
        }
        out.push_str("</section>");
    }

    for (kind, heading, note, names) in [
        (Kind::Route, Text::Routes, Text::RoutesNote, board.routes()),
        (
            Kind::Target,
            Text::Providers,
            Text::ProvidersNote,
            board.targets(),
        ),
    ] {
        if names.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<div class=\"group\"><div class=\"gh\">{}<small>{}</small></div>",
            t(lang, heading),
            t(lang, note)
        );
        for n in &names {
            component(&mut out, board, lang, kind, n, now_ms);
        }
        out.push_str("</div>");
    }

    let _ = write!(
        out,
        "<section class=\"past\" id=\"past\"><h2>{}</h2>",
        t(lang, Text::PastIncidents)
    );
    let past: Vec<&Incident> = incidents
        .iter()
        .rev()
        .filter(|i| !i.is_open())
        .take(30)
        .collect();
    if past.is_empty() {
        let _ = write!(
            out,
            "<p class=\"none\">{}</p>",
            t(lang, Text::NoPastIncidents)
        );
    }
    for i in past {
        let _ = write!(out, "<div class=\"day\"><h4>{}</h4>", day(i.created_ms));
        incident(&mut out, lang, i);
        out.push_str("</div>");
    }
    let _ = write!(
        out,
        "</section><footer>{} {} · Outlast</footer></div></body></html>",
        t(lang, Text::Updated),
        escape(&rfc3339(now_ms))
    );
    out
}
