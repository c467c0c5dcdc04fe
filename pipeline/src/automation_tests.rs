//! End-to-end tests of `parse` for what starts a pipeline and whom it
//! tells: `source.triggers`, `source.webhook_secret`, `schedule` and
//! `notifications`, valid and broken (each rule at its position).

use crate::test_support::{doc, expect_errors, expect_ok};
use crate::{
    GitRefEvent, GlobFilter, NotificationTarget, NotifyFormat, Pipeline, RefKind, Schedule,
    Trigger, parse,
};

/// A pipeline whose `source:` ends with `source` (from line 5 on) and
/// that ends with the top-level lines `top` (from line 9 on).
fn pipeline(source: &[&str], top: &[&str]) -> String {
    let mut lines = vec![
        "name: hello",
        "source:",
        "  git: /srv/git/hello.git",
        "  branch: main",
    ];
    lines.extend_from_slice(source);
    lines.extend_from_slice(&[
        "stages:",
        "  - name: gate",
        "    actions:",
        "      - {name: ok, type: approval}",
    ]);
    lines.extend_from_slice(top);
    doc(&lines)
}

fn errors(source: &[&str], top: &[&str]) -> Vec<String> {
    expect_errors(parse(&pipeline(source, top)))
}

fn parse_ok(source: &[&str], top: &[&str]) -> Pipeline {
    expect_ok(parse(&pipeline(source, top)))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const TRIGGERS: &[&str] = &[
    "  webhook_secret: github-hook",
    "  triggers:",
    "    - branches: {include: [\"main\", \"release/*\"], exclude: [\"release/old*\"]}",
    "      paths: {include: [\"src/**\", \"Cargo.*\"], exclude: [\"docs/**\"]}",
    "    - tags: {include: [\"v*\"]}",
];

#[test]
fn triggers_and_webhook_secret_are_read() {
    let p = parse_ok(TRIGGERS, &[]);
    assert_eq!(p.source.webhook_secret.as_deref(), Some("github-hook"));
    assert_eq!(
        p.source.triggers,
        vec![
            Trigger {
                branches: Some(GlobFilter {
                    include: strings(&["main", "release/*"]),
                    exclude: strings(&["release/old*"]),
                }),
                paths: Some(GlobFilter {
                    include: strings(&["src/**", "Cargo.*"]),
                    exclude: strings(&["docs/**"]),
                }),
                tags: None,
            },
            Trigger {
                tags: Some(GlobFilter {
                    include: strings(&["v*"]),
                    exclude: Vec::new(),
                }),
                ..Trigger::default()
            },
        ]
    );
    let changed = strings(&["docs/readme.md"]);
    let ev = GitRefEvent {
        kind: RefKind::Branch,
        name: "release/2",
        changed_paths: Some(&changed),
    };
    assert_eq!(
        p.source.trigger_for(&ev),
        Err("no changed file matches paths (src/**, Cargo.*); changed: docs/readme.md".into())
    );
    // Without triggers or a secret, nothing changes.
    let plain = parse_ok(&[], &[]);
    assert_eq!(plain.source.webhook_secret, None);
    assert!(plain.source.triggers.is_empty());
    assert_eq!(plain.schedule, None);
    assert!(plain.notifications.is_empty());
}

#[test]
fn trigger_rules_are_reported_at_their_positions() {
    assert_eq!(
        errors(
            &[
                "  webhook_secret: GitHub",
                "  triggers:",
                "    - {branches: {include: [main]}, tags: {include: [v*]}}",
                "    - paths: {include: [src]}",
                "    - tags: {include: []}",
                "      paths: {include: [\"*\"]}",
                "    - branches: {exclude: [x], incl: [y]}",
                "    - branches: {include: [\"[\", \"\"]}",
                "    - colour: red",
            ],
            &[]
        ),
        vec![
            "5:19: invalid secret name \"GitHub\": must start with a lowercase letter (a-z) or a digit",
            "7:37: a trigger sets `branches` or `tags`, not both; write two triggers",
            "8:7: a trigger needs `branches` or `tags`",
            "8:7: `paths` is only allowed together with `branches` (a tag push changes no files)",
            "9:23: `tags`: `include` must list at least one glob",
            "10:7: `paths` is only allowed together with `branches` (a tag push changes no files)",
            "11:17: missing required key `include` in branches",
            "11:32: unknown key `incl` in branches; expected one of: include, exclude",
            "12:28: `branches`: invalid glob \"[\": unclosed character class; missing ']'",
            "12:33: `branches`: a glob must not be empty",
            "13:7: unknown key `colour` in trigger; expected one of: branches, tags, paths",
            "13:7: a trigger needs `branches` or `tags`",
        ]
    );
}

#[test]
fn trigger_and_glob_counts_are_bounded() {
    let eleven: Vec<String> = (0..11)
        .map(|i| format!("    - branches: {{include: [b{i}]}}"))
        .collect();
    let mut source = vec!["  triggers:"];
    source.extend(eleven.iter().map(String::as_str));
    let errs = errors(&source, &[]);
    assert_eq!(
        errs,
        vec!["6:5: `triggers` lists at most 10 triggers, found 11"]
    );
    let globs = (0..51)
        .map(|i| format!("g{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!("    - branches: {{include: [{globs}]}}");
    assert_eq!(
        errors(&["  triggers:", &line], &[]),
        vec![
            "6:17: `branches`: a filter has at most 50 globs (include and exclude together), found 51"
        ]
    );
    let long = format!("    - branches: {{include: [{}]}}", "a".repeat(257));
    assert_eq!(
        errors(&["  triggers:", &long], &[]),
        vec!["6:28: `branches`: a glob is at most 256 bytes long, found 257"]
    );
    assert_eq!(
        errors(&["  triggers: []"], &[]),
        vec![
            "5:13: `triggers` must list at least one trigger (leave it out to build pushes to `branch`)"
        ]
    );
}

#[test]
fn schedule_is_read_with_a_default_timezone() {
    let p = parse_ok(
        &[],
        &["schedule: {cron: \"0 3 * * 1-5\", timezone: Europe/Berlin}"],
    );
    assert_eq!(
        p.schedule,
        Some(Schedule {
            cron: "0 3 * * 1-5".into(),
            timezone: "Europe/Berlin".into(),
        })
    );
    let p = parse_ok(&[], &["schedule:", "  cron: \"*/2 * * * * *\""]);
    let schedule = p.schedule.expect("a schedule");
    assert_eq!(schedule.timezone, "UTC");
    assert_eq!(schedule.next_after(1_000), Some(2_000));
}

#[test]
fn schedule_rules_are_reported_at_their_positions() {
    assert_eq!(
        errors(
            &[],
            &[
                "schedule:",
                "  cron: \"0 0 30 2 *\"",
                "  timezone: Europe/Bonn",
                "  every: 5m",
            ]
        ),
        vec![
            "10:9: `cron` \"0 0 30 2 *\" never fires",
            "11:13: unknown time zone \"Europe/Bonn\"; expected an IANA name such as UTC, Europe/Berlin or America/New_York",
            "12:3: unknown key `every` in schedule; expected one of: cron, timezone",
        ]
    );
    let errs = errors(&[], &["schedule: {cron: \"* * *\"}"]);
    assert_eq!(
        errs,
        vec![
            "9:18: `cron` needs 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found 3 in \"* * *\""
        ]
    );
    let errs = errors(&[], &["schedule: {cron: \"99 * * * *\"}"]);
    assert!(
        errs.len() == 1 && errs[0].starts_with("9:18: invalid `cron` \"99 * * * *\""),
        "{errs:?}"
    );
    assert_eq!(
        errors(&[], &["schedule: {timezone: UTC}"]),
        vec!["9:11: missing required key `cron` in schedule"]
    );
    assert_eq!(
        errors(&[], &["schedule: \"0 3 * * *\""]),
        vec!["9:11: `schedule` must be a mapping, found \"0 3 * * *\""]
    );
}

#[test]
fn notifications_are_read_with_defaults() {
    let p = parse_ok(
        &[],
        &[
            "notifications:",
            "  - name: team-chat",
            "    url: https://hooks.slack.com/services/XXX",
            "    secret: chat-hook",
            "    format: slack",
            "    events: [execution.failed, \"approval.*\"]",
            "  - url: http://127.0.0.1:9000/ferry",
        ],
    );
    assert_eq!(
        p.notifications,
        vec![
            NotificationTarget {
                name: "team-chat".into(),
                url: "https://hooks.slack.com/services/XXX".into(),
                url_secret: None,
                secret: Some("chat-hook".into()),
                format: NotifyFormat::Slack,
                events: strings(&["execution.failed", "approval.*"]),
            },
            NotificationTarget {
                name: "notification-2".into(),
                url: "http://127.0.0.1:9000/ferry".into(),
                url_secret: None,
                secret: None,
                format: NotifyFormat::Json,
                events: Vec::new(),
            },
        ]
    );
    assert!(p.notifications.iter().all(|t| t.check().is_ok()));
}

#[test]
fn notification_rules_are_reported_at_their_positions() {
    let errs = errors(
        &[],
        &[
            "notifications:",
            "  - name: Chat",
            "    url: ftp://example.com/x",
            "    secret: Chat_Hook",
            "    format: xml",
            "    events: [execution.exploded, \"approval.*\"]",
            "  - {name: notification-3, url: \"https://example.com\"}",
            "  - url: https://example.com/a",
            "  - {name: notification-3, url: \"https://example.com\", colour: red}",
            "  - {name: x}",
        ],
    );
    let known = "expected one of: execution.started, execution.succeeded, execution.failed, \
                 execution.stopped, execution.superseded, approval.waiting, approval.decided, \
                 deployment.started, deployment.succeeded, deployment.failed, \
                 deployment.rolled_back, or a group: execution.*, approval.*, deployment.*";
    assert_eq!(
        errs,
        vec![
            "10:11: invalid notification name \"Chat\": must start with a lowercase letter (a-z)".to_string(),
            "11:10: `url` must be an http:// or https:// address".to_string(),
            "12:13: invalid secret name \"Chat_Hook\": must start with a lowercase letter (a-z) or a digit".to_string(),
            "13:13: unknown notification format \"xml\"; expected json or slack".to_string(),
            format!("14:14: unknown event \"execution.exploded\"; {known}"),
            // The third target defaults to notification-3, named already.
            "16:5: duplicate notification name `notification-3` (first defined at 15:12)".to_string(),
            "17:12: duplicate notification name `notification-3` (first defined at 15:12)".to_string(),
            "17:56: unknown key `colour` in notification; expected one of: name, url, url_secret, secret, format, events".to_string(),
            "18:5: missing required key `url` in notification".to_string(),
        ]
    );
    let eleven: Vec<String> = (0..11)
        .map(|i| format!("  - {{name: n{i}, url: \"https://example.com\"}}"))
        .collect();
    let mut top = vec!["notifications:"];
    top.extend(eleven.iter().map(String::as_str));
    assert_eq!(
        errors(&[], &top),
        vec!["10:3: at most 10 notification targets, found 11"]
    );
    let long = format!("  - url: https://example.com/{}", "a".repeat(2_048));
    let errs = errors(&[], &["notifications:", &long]);
    assert_eq!(
        errs,
        vec!["10:10: `url` is at most 2048 bytes long, found 2068"]
    );
}
