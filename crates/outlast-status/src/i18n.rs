//! The page's strings in English and Simplified Chinese, chosen by `?lang=` or
//! `Accept-Language`.

use crate::detect::{IncidentStatus, Reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhCn,
}

impl Lang {
    /// `?lang=` wins; else the first supported language in `Accept-Language` by q-value.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(q) = query.and_then(Self::parse) {
            return q;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(l) = Self::parse(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, l));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }

    fn parse(tag: &str) -> Option<Lang> {
        let t = tag.to_ascii_lowercase();
        if t == "zh" || t.starts_with("zh-cn") || t.starts_with("zh-hans") || t == "zh-sg" {
            Some(Lang::ZhCn)
        } else if t.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    pub fn html_tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }
}

/// A UI string.
#[derive(Debug, Clone, Copy)]
pub enum Text {
    AllOperational,
    MinorOutage,
    PartialOutage,
    MajorOutage,
    Providers,
    Routes,
    RoutesNote,
    ProvidersNote,
    Operational,
    Degraded,
    Partial,
    Major,
    Uptime,
    DaysAgo90,
    Today,
    NoData,
    CurrentIncidents,
    PastIncidents,
    NoPastIncidents,
    Affects,
    UsersAffected,
    UsersShielded,
    Updated,
    Language,
    Json,
}

pub fn t(lang: Lang, text: Text) -> &'static str {
    use Text::*;
    match (lang, text) {
        (Lang::En, AllOperational) => "All Systems Operational",
        (Lang::ZhCn, AllOperational) => "所有系统运行正常",
        (Lang::En, MinorOutage) => "Minor Service Outage",
        (Lang::ZhCn, MinorOutage) => "部分服务轻微中断",
        (Lang::En, PartialOutage) => "Partial System Outage",
        (Lang::ZhCn, PartialOutage) => "部分系统中断",
        (Lang::En, MajorOutage) => "Major Service Outage",
        (Lang::ZhCn, MajorOutage) => "重大服务中断",
        (Lang::En, Providers) => "Providers",
        (Lang::ZhCn, Providers) => "上游提供商",
        (Lang::En, Routes) => "Routes (as your users see them)",
        (Lang::ZhCn, Routes) => "路由（用户实际体验）",
        (Lang::En, RoutesNote) => "Requests answered after failover.",
        (Lang::ZhCn, RoutesNote) => "经故障转移后成功应答的请求。",
        (Lang::En, ProvidersNote) => "Each provider's own availability, from every attempt.",
        (Lang::ZhCn, ProvidersNote) => "各提供商自身的可用性，按每次上游调用统计。",
        (Lang::En, Operational) => "Operational",
        (Lang::ZhCn, Operational) => "正常",
        (Lang::En, Degraded) => "Degraded Performance",
        (Lang::ZhCn, Degraded) => "性能下降",
        (Lang::En, Partial) => "Partial Outage",
        (Lang::ZhCn, Partial) => "部分中断",
        (Lang::En, Major) => "Major Outage",
        (Lang::ZhCn, Major) => "严重中断",
        (Lang::En, Uptime) => "uptime",
        (Lang::ZhCn, Uptime) => "可用率",
        (Lang::En, DaysAgo90) => "90 days ago",
        (Lang::ZhCn, DaysAgo90) => "90 天前",
        (Lang::En, Today) => "Today",
        (Lang::ZhCn, Today) => "今天",
        (Lang::En, NoData) => "No data",
        (Lang::ZhCn, NoData) => "无数据",
        (Lang::En, CurrentIncidents) => "Current incidents",
        (Lang::ZhCn, CurrentIncidents) => "当前事件",
        (Lang::En, PastIncidents) => "Past incidents",
        (Lang::ZhCn, PastIncidents) => "历史事件",
        (Lang::En, NoPastIncidents) => "No incidents reported.",
        (Lang::ZhCn, NoPastIncidents) => "暂无事件报告。",
        (Lang::En, Affects) => "This incident affects",
        (Lang::ZhCn, Affects) => "受影响的组件",
        (Lang::En, UsersAffected) => "Some user requests failed.",
        (Lang::ZhCn, UsersAffected) => "部分用户请求失败。",
        (Lang::En, UsersShielded) => "Failover answered users' requests meanwhile.",
        (Lang::ZhCn, UsersShielded) => "期间故障转移已正常应答用户请求。",
        (Lang::En, Updated) => "Updated",
        (Lang::ZhCn, Updated) => "更新于",
        (Lang::En, Language) => "中文",
        (Lang::ZhCn, Language) => "English",
        (Lang::En, Json) => "JSON API",
        (Lang::ZhCn, Json) => "JSON 接口",
    }
}

pub fn status_name(lang: Lang, s: IncidentStatus) -> &'static str {
    match (lang, s) {
        (Lang::En, IncidentStatus::Investigating) => "Investigating",
        (Lang::En, IncidentStatus::Identified) => "Identified",
        (Lang::En, IncidentStatus::Monitoring) => "Monitoring",
        (Lang::En, IncidentStatus::Resolved) => "Resolved",
        (Lang::ZhCn, IncidentStatus::Investigating) => "调查中",
        (Lang::ZhCn, IncidentStatus::Identified) => "已确认",
        (Lang::ZhCn, IncidentStatus::Monitoring) => "监控中",
        (Lang::ZhCn, IncidentStatus::Resolved) => "已解决",
    }
}

/// The incident title.
pub fn incident_name(lang: Lang, target: &str) -> String {
    match lang {
        Lang::En => format!("Elevated errors on {target}"),
        Lang::ZhCn => format!("{target} 错误率升高"),
    }
}

/// One timeline entry's text.
pub fn reason_body(lang: Lang, target: &str, reason: &Reason, users_affected: bool) -> String {
    let mut s = match (lang, reason) {
        (
            Lang::En,
            Reason::Faults {
                faults,
                attempts,
                window_s,
            },
        ) => format!("{faults} of {attempts} requests to {target} failed in the last {window_s}s."),
        (
            Lang::ZhCn,
            Reason::Faults {
                faults,
                attempts,
                window_s,
            },
        ) => {
            format!("过去 {window_s} 秒内发往 {target} 的 {attempts} 个请求中有 {faults} 个失败。")
        }
        (Lang::En, Reason::BreakerOpen { for_s }) => format!(
            "{target} is not answering; Outlast stopped sending it traffic {for_s}s ago (breaker open)."
        ),
        (Lang::ZhCn, Reason::BreakerOpen { for_s }) => {
            format!("{target} 无响应；Outlast 已于 {for_s} 秒前停止向其发送流量（熔断器打开）。")
        }
        (Lang::En, Reason::Recovering { resolve_after_s }) => format!(
            "{target} is answering again. Monitoring; resolved after {resolve_after_s}s without errors."
        ),
        (Lang::ZhCn, Reason::Recovering { resolve_after_s }) => {
            format!("{target} 已恢复应答。监控中；连续 {resolve_after_s} 秒无错误后关闭。")
        }
        (Lang::En, Reason::Recovered { healthy_s }) => {
            format!("{target} has been healthy for {healthy_s}s. Resolved.")
        }
        (Lang::ZhCn, Reason::Recovered { healthy_s }) => {
            format!("{target} 已连续健康 {healthy_s} 秒。事件已解决。")
        }
    };
    if matches!(reason, Reason::Faults { .. } | Reason::BreakerOpen { .. }) {
        s.push(' ');
        s.push_str(t(
            lang,
            if users_affected {
                Text::UsersAffected
            } else {
                Text::UsersShielded
            },
        ));
    }
    s
}
