//! What every console page shares: the frame (title, navigation, who is
//! logged in, `Log out`), status words and chips, times and durations.

use ferry_pipeline::execution::ExecutionStatus;
use ferry_proto as pb;
use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// The page's frame. `viewer` is None on refusals and the logged-out page.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Ferry" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "Ferry" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/" { "Pipelines" }
                            a href="/approvals" { "Approvals" }
                            a href="/environments" { "Environments" }
                            a href="/agents" { "Agents" }
                            a href="/cluster" { "Cluster" }
                            @if v.user.is_admin() { a href="/sessions" { "Sessions" } }
                        }
                        span.who {
                            (v.user.operator) " ("
                            (v.user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                            ")"
                        }
                        form.inline.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An execution's status as a word (also its CSS class).
pub fn execution_word(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::InProgress => "InProgress",
        ExecutionStatus::Stopping => "Stopping",
        ExecutionStatus::Succeeded => "Succeeded",
        ExecutionStatus::Failed => "Failed",
        ExecutionStatus::Stopped => "Stopped",
        ExecutionStatus::Superseded => "Superseded",
    }
}

/// An execution's status on the wire as a word (also its CSS class).
pub fn wire_execution_word(s: pb::ExecutionStatus) -> &'static str {
    match s {
        pb::ExecutionStatus::InProgress => "InProgress",
        pb::ExecutionStatus::Stopping => "Stopping",
        pb::ExecutionStatus::Succeeded => "Succeeded",
        pb::ExecutionStatus::Failed => "Failed",
        pb::ExecutionStatus::Stopped => "Stopped",
        pb::ExecutionStatus::Superseded => "Superseded",
        pb::ExecutionStatus::Unspecified => "Unknown",
    }
}

/// An action's status on the wire as a word (also its CSS class).
pub fn action_word(s: pb::ActionStatus) -> &'static str {
    match s {
        pb::ActionStatus::Pending => "Pending",
        pb::ActionStatus::InProgress => "InProgress",
        pb::ActionStatus::WaitingForApproval => "WaitingForApproval",
        pb::ActionStatus::Succeeded => "Succeeded",
        pb::ActionStatus::Failed => "Failed",
        pb::ActionStatus::Stopped => "Stopped",
        pb::ActionStatus::Skipped => "Skipped",
        pb::ActionStatus::Unspecified => "Unknown",
    }
}

/// An execution as a small coloured chip linking to its page.
pub fn chip(pipeline: &str, id: &str, status: ExecutionStatus, when: i64) -> Markup {
    let word = execution_word(status);
    let mark = match status {
        ExecutionStatus::InProgress | ExecutionStatus::Stopping => "…",
        ExecutionStatus::Succeeded => "✓",
        ExecutionStatus::Failed => "✗",
        ExecutionStatus::Stopped | ExecutionStatus::Superseded => "–",
    };
    html! {
        a class={ "chip " (word) } href=(execution_href(pipeline, id))
            title={ (short(id)) " " (word) " " (time(Some(when))) } { (mark) }
    }
}

/// A status word in its colour.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge " (word) } { (word) } }
}

pub use crate::links::{enc, execution_path as execution_href};

/// The first 12 characters of an id or revision.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// A wire timestamp in unix milliseconds.
pub fn ms(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

/// `2026-11-30 20:30:05Z`, or `-` (`views::rfc3339` without milliseconds).
pub fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms.filter(|m| *m > 0) else {
        return "-".into();
    };
    let text = crate::views::rfc3339(ms);
    let seconds = text.split('.').next().unwrap_or(&text);
    format!("{}Z", seconds.replacen('T', " ", 1))
}

/// `1m 05s` from `started` to `finished` (or to `now` while running).
pub fn duration(started: Option<i64>, finished: Option<i64>, now: i64) -> String {
    let Some(started) = started else {
        return "-".into();
    };
    let s = (finished.unwrap_or(now) - started).max(0) / 1000;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A size in bytes, e.g. `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_times_and_sizes() {
        assert_eq!(duration(Some(0), Some(65_000), 0), "1m 05s");
        assert_eq!(duration(Some(0), Some(9_999), 0), "9s");
        assert_eq!(duration(Some(0), None, 3_720_000), "1h 02m");
        assert_eq!(duration(None, None, 5), "-");
        assert_eq!(time(Some(0)), "-");
        assert_eq!(time(Some(1_000)), "1970-01-01 00:00:01Z");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(enc("a b/c"), "a+b%2Fc");
    }
}
