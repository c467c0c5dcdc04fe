//! Notification targets: where Ferry posts what happened (an execution
//! ended, an approval waits, a deployment rolled back), in which format,
//! signed with which secret, and for which events. Pure data, the event
//! vocabulary and its filters, and the checks shared by pipeline files
//! (`notifications:`) and cluster-wide targets set from the CLI.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::validate_name;
use crate::rules::validate_secret_name;

/// Most notification targets of one pipeline (or of the cluster).
pub const MAX_NOTIFICATION_TARGETS: usize = 10;

/// Longest accepted target URL, in bytes.
pub const MAX_NOTIFY_URL_LEN: usize = 2_048;

/// Most entries in a target's `events`.
pub const MAX_EVENT_FILTERS: usize = 32;

/// Where and how events are posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationTarget {
    /// Unique among the targets of a pipeline; `notification-N` (1-based)
    /// when not given.
    pub name: String,
    /// An http:// or https:// URL the events are POSTed to; empty when
    /// `url_secret` names it instead.
    #[serde(default)]
    pub url: String,
    /// A Ferry secret whose value is the URL (a Slack webhook URL is a
    /// credential: kept sealed, never shown).
    #[serde(default)]
    pub url_secret: Option<String>,
    /// Ferry secret whose value signs each body (HMAC-SHA256 in a header).
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: NotifyFormat,
    /// Event names and `group.*` patterns; empty means every event.
    #[serde(default)]
    pub events: Vec<String>,
}

/// The body posted to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// Ferry's own JSON event document.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

impl NotifyFormat {
    /// Every format, in documentation order.
    pub const ALL: [NotifyFormat; 2] = [NotifyFormat::Json, NotifyFormat::Slack];

    /// The spelling in YAML and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
        }
    }

    /// The format named `text`, if any.
    pub fn parse(text: &str) -> Option<NotifyFormat> {
        NotifyFormat::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl fmt::Display for NotifyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened that targets may be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionStopped,
    ExecutionSuperseded,
    ApprovalWaiting,
    ApprovalDecided,
    DeploymentStarted,
    DeploymentSucceeded,
    DeploymentFailed,
    DeploymentRolledBack,
}

impl EventKind {
    /// Every event, in documentation order.
    pub const ALL: [EventKind; 11] = [
        EventKind::ExecutionStarted,
        EventKind::ExecutionSucceeded,
        EventKind::ExecutionFailed,
        EventKind::ExecutionStopped,
        EventKind::ExecutionSuperseded,
        EventKind::ApprovalWaiting,
        EventKind::ApprovalDecided,
        EventKind::DeploymentStarted,
        EventKind::DeploymentSucceeded,
        EventKind::DeploymentFailed,
        EventKind::DeploymentRolledBack,
    ];

    /// The dotted name, `group.what`: `execution.failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ExecutionStarted => "execution.started",
            EventKind::ExecutionSucceeded => "execution.succeeded",
            EventKind::ExecutionFailed => "execution.failed",
            EventKind::ExecutionStopped => "execution.stopped",
            EventKind::ExecutionSuperseded => "execution.superseded",
            EventKind::ApprovalWaiting => "approval.waiting",
            EventKind::ApprovalDecided => "approval.decided",
            EventKind::DeploymentStarted => "deployment.started",
            EventKind::DeploymentSucceeded => "deployment.succeeded",
            EventKind::DeploymentFailed => "deployment.failed",
            EventKind::DeploymentRolledBack => "deployment.rolled_back",
        }
    }

    /// The event with the dotted name `text`, if any.
    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The part before the dot: `execution`, `approval` or `deployment`.
    pub fn group(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or_default()
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        EventKind::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event {text:?}")))
    }
}

/// Whether a target whose `events` are `filters` wants `kind`: every event
/// when `filters` is empty, else one that names it or its `group.*`.
pub fn event_filter_matches(filters: &[String], kind: EventKind) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| match f.strip_suffix(".*") {
            Some(group) => group == kind.group(),
            None => f == kind.as_str(),
        })
}

/// The groups `group.*` filters may name, in documentation order.
fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for kind in EventKind::ALL {
        if !groups.contains(&kind.group()) {
            groups.push(kind.group());
        }
    }
    groups
}

/// Checks one entry of `events`: a known event name or `group.*` of a
/// known group; the error lists what is known.
pub fn check_event_filter(filter: &str) -> Result<(), String> {
    let groups = groups();
    let known = match filter.strip_suffix(".*") {
        Some(group) => groups.contains(&group),
        None => EventKind::parse(filter).is_some(),
    };
    if known {
        return Ok(());
    }
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let patterns: Vec<String> = groups.iter().map(|g| format!("{g}.*")).collect();
    Err(format!(
        "unknown event {filter:?}; expected one of: {}, or a group: {}",
        names.join(", "),
        patterns.join(", ")
    ))
}

/// Checks a target URL: http:// or https:// with a host, at most
/// [`MAX_NOTIFY_URL_LEN`] bytes, no whitespace or control characters. The
/// error never quotes the URL or a part of it (its scheme included): the
/// URL may be a secret's value (`url_secret`), and errors are stored and
/// shown to viewers.
pub fn check_notify_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_NOTIFY_URL_LEN {
        return Err(format!(
            "`url` is at most {MAX_NOTIFY_URL_LEN} bytes long, found {}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("`url` must not contain whitespace or control characters".to_string());
    }
    // url's ParseError names the problem, never the input.
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid `url`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("`url` must be an http:// or https:// address".to_string());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("`url` has no host".to_string());
    }
    Ok(())
}

/// The name an unnamed target gets: `notification-N`, `index` 0-based.
pub fn default_target_name(index: usize) -> String {
    format!("notification-{}", index + 1)
}

impl NotificationTarget {
    /// Whether this target wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        event_filter_matches(&self.events, kind)
    }

    /// Every rule of one target, without positions: the name rule, the
    /// URL, the secret name rule, and known events (at most
    /// [`MAX_EVENT_FILTERS`]). The first problem is returned.
    pub fn check(&self) -> Result<(), String> {
        validate_name(&self.name)
            .map_err(|reason| format!("invalid notification name {:?}: {reason}", self.name))?;
        match (&self.url_secret, self.url.is_empty()) {
            (None, _) => check_notify_url(&self.url)?,
            (Some(secret), true) => validate_secret_name(secret)
                .map_err(|reason| format!("invalid secret name {secret:?}: {reason}"))?,
            (Some(_), false) => {
                return Err("set either `url` or `url_secret`, not both".to_string());
            }
        }
        if let Some(secret) = &self.secret {
            validate_secret_name(secret)
                .map_err(|reason| format!("invalid secret name {secret:?}: {reason}"))?;
        }
        check_event_count(self.events.len())?;
        for filter in &self.events {
            check_event_filter(filter)?;
        }
        Ok(())
    }
}

/// At most [`MAX_EVENT_FILTERS`] entries in `events`.
pub(crate) fn check_event_count(count: usize) -> Result<(), String> {
    if count > MAX_EVENT_FILTERS {
        return Err(format!(
            "`events` lists at most {MAX_EVENT_FILTERS} entries, found {count}"
        ));
    }
    Ok(())
}

/// At most [`MAX_NOTIFICATION_TARGETS`] targets.
pub(crate) fn check_target_count(count: usize) -> Result<(), String> {
    if count > MAX_NOTIFICATION_TARGETS {
        return Err(format!(
            "at most {MAX_NOTIFICATION_TARGETS} notification targets, found {count}"
        ));
    }
    Ok(())
}

/// A whole list of targets (the cluster's, set from the CLI): at most
/// [`MAX_NOTIFICATION_TARGETS`], names unique, each valid.
pub fn check_targets(targets: &[NotificationTarget]) -> Result<(), String> {
    check_target_count(targets.len())?;
    let mut names = HashSet::new();
    for target in targets {
        target.check()?;
        if !names.insert(target.name.as_str()) {
            return Err(format!("duplicate notification name `{}`", target.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> NotificationTarget {
        NotificationTarget {
            name: "team-chat".to_string(),
            url: "https://hooks.example.com/services/XXX".to_string(),
            url_secret: None,
            secret: Some("chat-hook".to_string()),
            format: NotifyFormat::Slack,
            events: vec!["execution.failed".to_string(), "approval.*".to_string()],
        }
    }

    #[test]
    fn event_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).ok(), Some(kind));
        }
        assert_eq!(
            EventKind::DeploymentRolledBack.as_str(),
            "deployment.rolled_back"
        );
        assert_eq!(EventKind::parse("execution"), None);
        assert!(serde_json::from_str::<EventKind>("\"execution.exploded\"").is_err());
        assert_eq!(groups(), vec!["execution", "approval", "deployment"]);
    }

    #[test]
    fn filters_match_names_and_groups() {
        assert!(event_filter_matches(&[], EventKind::ApprovalWaiting));
        let t = target();
        assert!(t.wants(EventKind::ExecutionFailed));
        assert!(t.wants(EventKind::ApprovalWaiting));
        assert!(t.wants(EventKind::ApprovalDecided));
        assert!(!t.wants(EventKind::ExecutionSucceeded));
        assert!(!t.wants(EventKind::DeploymentFailed));
        // A group pattern names a whole group, not a prefix of letters.
        let partial = vec!["approv.*".to_string()];
        assert!(!event_filter_matches(&partial, EventKind::ApprovalWaiting));
    }

    #[test]
    fn filter_checks_list_what_is_known() {
        for ok in ["execution.failed", "approval.*", "deployment.rolled_back"] {
            assert_eq!(check_event_filter(ok), Ok(()), "{ok}");
        }
        for bad in [
            "execution.exploded",
            "*",
            "approv.*",
            "",
            "Execution.failed",
        ] {
            let err = check_event_filter(bad).expect_err(bad);
            assert!(
                err.contains("expected one of: execution.started,")
                    && err.ends_with("or a group: execution.*, approval.*, deployment.*"),
                "{err}"
            );
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "https://hooks.slack.com/services/T0/B0/XXX",
            "http://127.0.0.1:8080/hook?x=1",
            "https://[::1]/x",
        ] {
            assert_eq!(check_notify_url(ok), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("ftp://example.com/x", "http:// or https://"),
            ("mailto:a@example.com", "http:// or https://"),
            ("https://", "invalid `url`"),
            ("example.com/hook", "invalid `url`"),
            ("https://exa mple.com", "whitespace"),
            (" https://example.com", "whitespace"),
            ("", "invalid `url`"),
        ] {
            let err = check_notify_url(bad).expect_err(bad);
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_NOTIFY_URL_LEN));
        assert!(check_notify_url(&long).is_err_and(|e| e.contains("at most 2048")));
    }

    #[test]
    fn url_errors_never_quote_the_url() {
        // The URL may be a secret's value: no part of it in the error.
        for bad in [
            "hunter2",
            "hunter2:opaque",
            "hunter2://x",
            "https://",
            "https://hunter2:99999999/x",
            "http://[hunter2]/",
            "file:///hunter2",
            "data:text/plain,hunter2",
            "hunter2 https://x",
        ] {
            let err = check_notify_url(bad).expect_err(bad);
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
    }

    #[test]
    fn targets_check_without_positions() {
        assert_eq!(target().check(), Ok(()));
        let bad_name = NotificationTarget {
            name: "Team".into(),
            ..target()
        };
        assert!(
            bad_name
                .check()
                .is_err_and(|e| e.starts_with("invalid notification name"))
        );
        let bad_secret = NotificationTarget {
            secret: Some("Chat".into()),
            ..target()
        };
        assert!(
            bad_secret
                .check()
                .is_err_and(|e| e.starts_with("invalid secret name"))
        );
        let bad_event = NotificationTarget {
            events: vec!["approval.granted".into()],
            ..target()
        };
        assert!(bad_event.check().is_err());
        let too_many = NotificationTarget {
            events: vec!["approval.*".into(); MAX_EVENT_FILTERS + 1],
            ..target()
        };
        assert!(too_many.check().is_err());
        let sealed_url = NotificationTarget {
            url: String::new(),
            url_secret: Some("slack-url".into()),
            ..target()
        };
        assert_eq!(sealed_url.check(), Ok(()));
        let both = NotificationTarget {
            url_secret: Some("slack-url".into()),
            ..target()
        };
        assert!(both.check().is_err_and(|e| e.contains("not both")));
        assert_eq!(check_targets(&[target()]), Ok(()));
        assert_eq!(
            check_targets(&[target(), target()]),
            Err("duplicate notification name `team-chat`".into())
        );
        let eleven: Vec<NotificationTarget> = (0..=MAX_NOTIFICATION_TARGETS)
            .map(|i| NotificationTarget {
                name: default_target_name(i),
                ..target()
            })
            .collect();
        assert!(check_targets(&eleven).is_err_and(|e| e.contains("at most 10")));
        assert_eq!(default_target_name(0), "notification-1");
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let t = target();
        let json = serde_json::to_string(&t).expect("serialize");
        assert!(json.contains("\"format\":\"slack\""), "{json}");
        assert_eq!(
            serde_json::from_str::<NotificationTarget>(&json).ok(),
            Some(t)
        );
        let minimal: NotificationTarget =
            serde_json::from_str(r#"{"name":"n","url":"https://example.com"}"#)
                .expect("deserialize");
        assert_eq!(minimal.format, NotifyFormat::Json);
        assert_eq!(minimal.secret, None);
        assert!(minimal.events.is_empty());
    }
}
