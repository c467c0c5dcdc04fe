//! OPERATIONS.md and the Prometheus rules it points at say only what Ferry
//! does:
//!
//! - `scripts/prometheus-rules.yml` passes `promtool check rules`, and its
//!   alerts fire (and stay quiet) as intended on example series
//!   (`promtool test rules`);
//! - every metric the rules name is one that `coordinator/src/metrics.rs` or
//!   `agent/src/metrics.rs` registers (or Prometheus' own `up`), with labels
//!   and label values those files use;
//! - every alert's runbook is a section of OPERATIONS.md, and every link
//!   inside OPERATIONS.md leads to one of its sections;
//! - every `ferry`, `ferry-coordinator` and `ferry-agent` command line in
//!   OPERATIONS.md (and the flags in its `FERRY_COORDINATOR_OPTS` and
//!   `FERRY_AGENT_OPTS` examples) parses: the real binary is run with the
//!   same arguments plus `--help`, which clap answers only once every
//!   subcommand, flag and value before it is accepted. Commands quoted in
//!   the prose (with placeholders such as `NAME`) are checked for their
//!   subcommands and flags.
//!
//! promtool comes from Debian's `prometheus` package (scripts/test installs
//! it); without it these tests fail, they never skip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::bin;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

fn read(relative: &str) -> String {
    let path = repository().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const RULES: &str = "scripts/prometheus-rules.yml";

// ---------------------------------------------------------------------------
// promtool

/// Runs promtool with `args` in `dir`; fails the test when it is missing.
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (apt-get install prometheus; scripts/test does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The rules file without its `annotations:` blocks, so that the example
/// below checks expressions, `for:` and labels, not the prose (promtool
/// compares annotations whole when an alert is expected).
fn without_annotations(rules: &str) -> String {
    let mut out = String::new();
    let mut skipping_deeper_than: Option<usize> = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(limit) = skipping_deeper_than {
            if line.trim().is_empty() || indent > limit {
                continue;
            }
            skipping_deeper_than = None;
        }
        if line.trim() == "annotations:" {
            skipping_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Example series and the alerts they must (and must not) raise. Members
/// c1 (the leader), c2 and c3; times are from the start of the series.
const RULE_TESTS: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  # A healthy leader c1, a follower c2 stuck at index 100 whose hub sees no
  # agent (so it counts them all disconnected), c3 down after 2 minutes.
  - interval: 1m
    input_series:
      - series: 'up{job="ferry-coordinator", instance="c1"}'
        values: '1x30'
      - series: 'up{job="ferry-coordinator", instance="c3"}'
        values: '1 1 0x28'
      - series: 'up{job="ferry-agent", instance="a1"}'
        values: '1x30'
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="c1"}'
        values: '1x30'
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="c2"}'
        values: '0x30'
      - series: 'ferry_raft_term{job="ferry-coordinator", instance="c1"}'
        values: '5x30'
      - series: 'ferry_raft_commit_index{job="ferry-coordinator", instance="c1"}'
        values: '100+200x30'
      - series: 'ferry_raft_applied_index{job="ferry-coordinator", instance="c1"}'
        values: '100+200x30'
      - series: 'ferry_raft_commit_index{job="ferry-coordinator", instance="c2"}'
        values: '100x30'
      - series: 'ferry_raft_applied_index{job="ferry-coordinator", instance="c2"}'
        values: '100x30'
      - series: 'ferry_agents{job="ferry-coordinator", instance="c1", state="connected"}'
        values: '2x30'
      - series: 'ferry_agents{job="ferry-coordinator", instance="c1", state="disconnected"}'
        values: '1x30'
      - series: 'ferry_agents{job="ferry-coordinator", instance="c2", state="disconnected"}'
        values: '3x30'
      - series: 'ferry_queue_depth{job="ferry-coordinator", instance="c1"}'
        values: '0x30'
      - series: 'ferry_queue_depth{job="ferry-coordinator", instance="c2"}'
        values: '50x30'
      - series: 'ferry_agent_certificate_expiry_timestamp_seconds{job="ferry-coordinator", instance="c1", agent="old"}'
        values: '500000x180'
      - series: 'ferry_agent_certificate_expiry_timestamp_seconds{job="ferry-coordinator", instance="c2", agent="old"}'
        values: '500000x180'
      - series: 'ferry_agent_certificate_expiry_timestamp_seconds{job="ferry-coordinator", instance="c1", agent="fresh"}'
        values: '2500000x180'
      - series: 'ferry_source_polls_total{job="ferry-coordinator", instance="c1", result="error"}'
        values: '0+1x60'
      - series: 'ferry_source_polls_total{job="ferry-coordinator", instance="c1", result="ok"}'
        values: '0+5x60'
    alert_rule_test:
      - eval_time: 15m
        alertname: FerryMemberDown
        exp_alerts:
          - exp_labels: {severity: warning, job: ferry-coordinator, instance: c3}
      - eval_time: 15m
        alertname: FerryAgentDown
        exp_alerts: []
      - eval_time: 15m
        alertname: FerryNoLeader
        exp_alerts: []
      - eval_time: 15m
        alertname: FerrySeveralLeaders
        exp_alerts: []
      - eval_time: 15m
        alertname: FerryLeaderFlapping
        exp_alerts: []
      # Only the leader's count of disconnected agents counts.
      - eval_time: 15m
        alertname: FerryAgentsDisconnected
        exp_alerts:
          - exp_labels: {severity: warning, job: ferry-coordinator, instance: c1, state: disconnected}
      # The follower's queue depth is not the leader's.
      - eval_time: 15m
        alertname: FerryQueueBacklog
        exp_alerts: []
      - eval_time: 15m
        alertname: FerryQueuedWorkWithoutAgents
        exp_alerts: []
      - eval_time: 5m
        alertname: FerryMemberBehind
        exp_alerts: []
      - eval_time: 20m
        alertname: FerryMemberBehind
        exp_alerts:
          - exp_labels: {severity: warning, job: ferry-coordinator, instance: c2}
      - eval_time: 2h
        alertname: FerryAgentCertificateExpiring
        exp_alerts:
          - exp_labels: {severity: warning, agent: old}
      - eval_time: 20m
        alertname: FerrySourcePollsFailing
        exp_alerts: []
      - eval_time: 50m
        alertname: FerrySourcePollsFailing
        exp_alerts:
          - exp_labels: {severity: warning}
  # Leadership lost after 2 minutes, after five elections in five minutes.
  - interval: 1m
    input_series:
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="c1"}'
        values: '1 1 0x20'
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="c2"}'
        values: '0x22'
      - series: 'ferry_raft_term{job="ferry-coordinator", instance="c1"}'
        values: '1 2 3 4 5 6 6x16'
    alert_rule_test:
      - eval_time: 1m
        alertname: FerryNoLeader
        exp_alerts: []
      - eval_time: 10m
        alertname: FerryNoLeader
        exp_alerts:
          - exp_labels: {severity: critical}
      - eval_time: 10m
        alertname: FerryLeaderFlapping
        exp_alerts:
          - exp_labels: {severity: warning}
  # Two leaders (two clusters in one job); work queued with no agent
  # connected; every dispatch took between 15 minutes and an hour.
  - interval: 1m
    input_series:
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="c1"}'
        values: '1x40'
      - series: 'ferry_raft_is_leader{job="ferry-coordinator", instance="old1"}'
        values: '1x40'
      - series: 'ferry_queue_depth{job="ferry-coordinator", instance="c1"}'
        values: '4x40'
      - series: 'ferry_agents{job="ferry-coordinator", instance="c1", state="connected"}'
        values: '0x40'
      - series: 'ferry_dispatch_latency_seconds_bucket{job="ferry-coordinator", instance="c1", le="900"}'
        values: '0x40'
      - series: 'ferry_dispatch_latency_seconds_bucket{job="ferry-coordinator", instance="c1", le="3600"}'
        values: '0+1x40'
      - series: 'ferry_dispatch_latency_seconds_bucket{job="ferry-coordinator", instance="c1", le="+Inf"}'
        values: '0+1x40'
      - series: 'up{job="ferry-agent", instance="a1"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: FerrySeveralLeaders
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 10m
        alertname: FerryQueuedWorkWithoutAgents
        exp_alerts:
          - exp_labels: {severity: critical, job: ferry-coordinator, instance: c1}
      - eval_time: 35m
        alertname: FerryDispatchSlow
        exp_alerts:
          - exp_labels: {severity: warning}
      - eval_time: 10m
        alertname: FerryAgentDown
        exp_alerts:
          - exp_labels: {severity: warning, job: ferry-agent, instance: a1}
"#;

#[test]
fn the_alert_rules_pass_promtool_and_fire_as_intended() {
    let root = repository();
    let (ok, text) = promtool(&root, &["check", "rules", RULES]);
    assert!(ok, "promtool check rules {RULES}:\n{text}");

    let scratch = tempfile::tempdir().expect("a scratch folder");
    std::fs::write(
        scratch.path().join("rules.yml"),
        without_annotations(&read(RULES)),
    )
    .expect("writing the rules");
    std::fs::write(scratch.path().join("tests.yml"), RULE_TESTS).expect("writing the tests");
    let (ok, text) = promtool(scratch.path(), &["test", "rules", "tests.yml"]);
    assert!(ok, "promtool test rules:\n{text}");
}

// ---------------------------------------------------------------------------
// Metric names and labels

/// The string literals of Rust source `text`, in order.
fn literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        found.push(s);
    }
    found
}

/// What the code exports: each series name as Prometheus sees it (with the
/// encoder's `_total`, `_bucket`, `_sum` and `_count`) and its labels, and
/// every string literal of the metrics files (the label values).
#[derive(Debug, Default)]
struct Exported {
    series: BTreeMap<String, BTreeSet<String>>,
    /// The names as registered (a histogram's without its suffixes).
    families: BTreeSet<String>,
    literals: BTreeSet<String>,
}

/// Reads the `Registry::register` calls of a metrics.rs: the name, the
/// field registered (`m.FIELD.clone()`), the field's type and the label the
/// code gives it in `FIELD.get_or_create(...)`.
fn exported_by(source: &str, exported: &mut Exported) {
    exported.literals.extend(literals(source));
    // Struct fields (`name: Type,`), not their initializers (`name: Type::new(..),`).
    let types: HashMap<&str, &str> = source
        .lines()
        .filter_map(|l| {
            let (field, ty) = l.trim().strip_suffix(',')?.split_once(": ")?;
            let declared =
                field.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !ty.contains("::");
            declared.then_some((field, ty))
        })
        .collect();
    let mut found = 0;
    for call in source.split(".register(").skip(1) {
        let call = call.split(");").next().unwrap_or_default();
        let name = literals(call).into_iter().next().unwrap_or_default();
        // `m.FIELD.clone()`, the last argument.
        let field = call
            .split(".clone()")
            .next()
            .and_then(|before| before.split_whitespace().last())
            .and_then(|arg| arg.strip_prefix("m."))
            .unwrap_or_default();
        let ty = types
            .get(field)
            .unwrap_or_else(|| panic!("no type found for the field `{field}` of `{name}`"));
        // The label the code creates the field's series with, if any.
        let labels: BTreeSet<String> = source
            .split(&format!(".{field}"))
            .skip(1)
            .filter_map(|rest| {
                let statement = rest.split(';').next()?;
                let args = statement.trim_start().strip_prefix(".get_or_create(")?;
                literals(args).into_iter().next()
            })
            .collect();
        exported.families.insert(name.clone());
        let mut add = |series: String, extra: Option<&str>| {
            let mut labels = labels.clone();
            labels.extend(extra.map(str::to_string));
            exported.series.insert(series, labels);
        };
        if ty.contains("Histogram") {
            add(format!("{name}_bucket"), Some("le"));
            add(format!("{name}_sum"), None);
            add(format!("{name}_count"), None);
        } else if ty.contains("Counter") {
            add(format!("{name}_total"), None);
        } else {
            add(name, None);
        }
        found += 1;
    }
    assert!(found > 0, "no metric registrations found");
}

fn exported() -> Exported {
    let mut e = Exported::default();
    for file in ["coordinator/src/metrics.rs", "agent/src/metrics.rs"] {
        exported_by(&read(file), &mut e);
    }
    e
}

/// A label matcher of a selector: `label op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// What a PromQL expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric names with their matchers.
    selectors: Vec<(String, Vec<Matcher>)>,
    /// Labels named in `by`, `without`, `on` and `ignoring` clauses and in
    /// `group_left`/`group_right`.
    grouping: BTreeSet<String>,
}

/// Aggregation operators: `sum by (l) (...)` names no metric `sum`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

const PROMQL_WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metrics and labels PromQL `expr` refers to (a small lexer: enough
/// for selectors, functions, aggregations and vector matching).
fn promql_refs(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || "_:".contains(chars[*i])) {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            // A range or subquery duration.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            // A number (and its unit, if a duration).
            word(&mut i);
            i += usize::from(i < chars.len() && chars[i] == '.');
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let name = word(&mut i);
            skip_space(&mut i);
            let next = chars.get(i).copied();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&name.as_str())
            {
                if next == Some('(') {
                    let end = chars[i..].iter().position(|c| *c == ')').unwrap_or(0) + i;
                    let list: String = chars[i + 1..end].iter().collect();
                    refs.grouping.extend(
                        list.split(',')
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty()),
                    );
                    i = end + 1;
                }
            } else if next == Some('(')
                || PROMQL_WORDS.contains(&name.as_str())
                || AGGREGATIONS.contains(&name.as_str())
            {
                // A function or aggregation; its arguments are lexed next.
            } else {
                let mut matchers = Vec::new();
                if next == Some('{') {
                    let end = chars[i..].iter().position(|c| *c == '}').unwrap_or(0) + i;
                    let body: String = chars[i + 1..end].iter().collect();
                    for m in body.split(',').filter(|m| !m.trim().is_empty()) {
                        let m = m.trim();
                        let at = m.find(['=', '!']).unwrap_or(m.len());
                        let (label, rest) = m.split_at(at);
                        let op: String = rest.chars().take_while(|c| "=!~".contains(*c)).collect();
                        let value = rest[op.len()..].trim().trim_matches('"').to_string();
                        matchers.push(Matcher {
                            label: label.trim().to_string(),
                            op,
                            value,
                        });
                    }
                    i = end + 1;
                }
                refs.selectors.push((name, matchers));
            }
        } else {
            i += 1;
        }
    }
    refs
}

/// The `expr:` of every rule in a rules file (folded ones joined).
fn expressions(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expr = value.trim().to_string();
        if expr.starts_with('>') || expr.starts_with('|') {
            expr.clear();
            for more in &lines[n + 1..] {
                if !more.trim().is_empty() && more.len() - more.trim_start().len() <= indent {
                    break;
                }
                expr.push_str(more.trim());
                expr.push(' ');
            }
        }
        found.push(expr);
    }
    found
}

/// Every word of `text` that starts with `ferry_` (a metric name in prose).
fn ferry_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ferry_") && w.len() > "ferry_".len())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_alert_rules_use_only_the_metrics_and_labels_ferry_exports() {
    let exported = exported();
    // The names tests/tests/metrics.rs scrapes from real processes: the
    // reading of the registrations above is not broken.
    for name in [
        "ferry_queue_depth",
        "ferry_agents",
        "ferry_raft_is_leader",
        "ferry_dispatch_latency_seconds_bucket",
        "ferry_source_polls_total",
        "ferry_agent_certificate_expiry_timestamp_seconds",
        "ferry_agent_artifact_bytes_served_total",
        "ferry_agent_store_bytes",
    ] {
        assert!(
            exported.series.contains_key(name),
            "`{name}` not read from the metrics files: {:?}",
            exported.series
        );
    }
    assert!(exported.series["ferry_agents"].contains("state"));

    let rules = read(RULES);
    // Labels Prometheus adds to every scraped series.
    let target_labels: BTreeSet<String> = ["job", "instance"].map(String::from).into();
    let all_labels: BTreeSet<String> = exported
        .series
        .values()
        .flatten()
        .cloned()
        .chain(target_labels.iter().cloned())
        .collect();
    let mut problems = Vec::new();
    let exprs = expressions(&rules);
    assert!(exprs.len() >= 10, "only {} expressions read", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let refs = promql_refs(expr);
        for (name, matchers) in &refs.selectors {
            let labels = match exported.series.get(name) {
                Some(labels) => labels,
                None if name == "up" => &BTreeSet::new(),
                None => {
                    problems.push(format!("`{name}` is not a metric Ferry exports: {expr}"));
                    continue;
                }
            };
            used.insert(name.clone());
            for m in matchers {
                if target_labels.contains(&m.label) {
                    continue;
                }
                if !labels.contains(&m.label) {
                    problems.push(format!("`{name}` has no label `{}`: {expr}", m.label));
                } else if m.op == "=" && !exported.literals.contains(&m.value) {
                    problems.push(format!(
                        "`{name}{{{}=\"{}\"}}`: the code never sets that value: {expr}",
                        m.label, m.value
                    ));
                }
            }
        }
        for label in &refs.grouping {
            if !all_labels.contains(label) {
                problems.push(format!("no metric has the label `{label}`: {expr}"));
            }
        }
    }
    // Names and labels in the annotations' text and templates.
    let text: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for word in ferry_words(&text) {
        if !exported.series.contains_key(&word) && !exported.families.contains(&word) {
            problems.push(format!("`{word}` is not a metric Ferry exports"));
        }
    }
    for part in text.split("$labels.").skip(1) {
        let label: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !all_labels.contains(&label) {
            problems.push(format!("`$labels.{label}`: no metric has that label"));
        }
    }
    assert!(problems.is_empty(), "{RULES}:\n{}", problems.join("\n"));
    println!(
        "{} expressions use {} metrics: {}",
        exprs.len(),
        used.len(),
        used.into_iter().collect::<Vec<_>>().join(", ")
    );
}

// ---------------------------------------------------------------------------
// OPERATIONS.md

/// A heading's anchor as GitHub and mdBook make it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A fenced code block: the line of its opening fence, its info string and
/// its lines.
struct Block {
    line: usize,
    info: String,
    text: Vec<String>,
}

/// The fenced blocks of `markdown` (backtick fences, indented or not), and
/// the text outside them with each block's lines blanked.
fn split_markdown(markdown: &str) -> (Vec<Block>, String) {
    let mut blocks = Vec::new();
    let mut prose = String::new();
    let mut open: Option<Block> = None;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => {
                    open = Some(Block {
                        line: n + 1,
                        info: trimmed.trim_start_matches('`').trim().to_string(),
                        text: Vec::new(),
                    })
                }
            }
            prose.push('\n');
            continue;
        }
        match open.as_mut() {
            Some(block) => {
                block.text.push(line.to_string());
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    (blocks, prose)
}

#[test]
fn every_alert_has_its_runbook_and_every_link_a_section() {
    let ops = read("OPERATIONS.md");
    let (_, prose) = split_markdown(&ops);
    let anchors: BTreeSet<String> = prose
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#')))
        .collect();
    let mut problems = Vec::new();
    for link in prose.split("](#").skip(1) {
        let anchor = link.split(')').next().unwrap_or_default();
        if !anchors.contains(anchor) {
            problems.push(format!(
                "OPERATIONS.md links to #{anchor}, which is no section"
            ));
        }
    }
    let rules = read(RULES);
    let mut alerts = 0;
    let mut current = String::new();
    for line in rules.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            current = name.trim().to_string();
            alerts += 1;
        } else if let Some(url) = line.strip_prefix("runbook_url:") {
            let expected = format!("OPERATIONS.md#{}", current.to_lowercase());
            let url = url.trim().trim_matches('"');
            if url != expected {
                problems.push(format!("{current}: runbook_url {url}, expected {expected}"));
            }
            if !anchors.contains(&current.to_lowercase()) {
                problems.push(format!(
                    "{current}: no section `#### {current}` in OPERATIONS.md"
                ));
            }
        }
    }
    assert!(alerts >= 10, "only {alerts} alerts read from {RULES}");
    let urls = rules.matches("runbook_url:").count();
    if urls != alerts {
        problems.push(format!(
            "{alerts} alerts but {urls} runbook_url annotations"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_code_block_says_what_it_is() {
    // The book includes OPERATIONS.md (docs/src/operations/runbooks.md), but
    // tests/tests/docs.rs reads the chapters unexpanded: the same rule here.
    let (blocks, _) = split_markdown(&read("OPERATIONS.md"));
    assert!(!blocks.is_empty());
    for block in &blocks {
        let mut words = block.info.split_whitespace();
        match words.next() {
            None => panic!(
                "OPERATIONS.md:{}: a code block needs an info string",
                block.line
            ),
            Some("yaml" | "yml") => assert!(
                words.next() == Some("ignore") && words.next().is_some(),
                "OPERATIONS.md:{}: ```{} is not checked by Ferry: write ```yaml ignore REASON",
                block.line,
                block.info
            ),
            Some(_) => {}
        }
    }
}

/// One simple command of a shell line: its words, quotes removed.
type Words = Vec<String>;

/// The simple commands of a shell text (already joined at `\` line ends):
/// words split at blanks outside quotes, `$(...)` kept inside its word,
/// commands split at `|`, `||`, `&&` and `;`, comments dropped.
fn shell_commands(line: &str) -> Vec<Words> {
    let mut commands = Vec::new();
    let mut words: Words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Words| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                word.push('$');
                let mut depth = 0;
                for c in chars.by_ref() {
                    word.push(c);
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '#' if !in_word => break,
            '|' | '&' | ';' => {
                end_word(&mut word, &mut in_word, &mut words);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

const BINARIES: [&str; 3] = ["ferry", "ferry-coordinator", "ferry-agent"];

/// The Ferry command a simple command runs, as (binary, arguments): after
/// `sudo` and its options and any `NAME=value` assignments; or the flags of
/// a `FERRY_COORDINATOR_OPTS=`/`FERRY_AGENT_OPTS=` line (an env file).
fn ferry_command(mut words: &[String]) -> Option<(&'static str, Vec<String>)> {
    if words.first().is_some_and(|w| w == "sudo") {
        words = &words[1..];
        while let Some(w) = words.first().filter(|w| w.starts_with('-')) {
            let skip = if w == "-u" || w == "-g" { 2 } else { 1 };
            words = words.get(skip..).unwrap_or_default();
        }
    }
    let mut opts = None;
    while let Some((name, value)) = words.first().and_then(|w| w.split_once('=')) {
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            break;
        }
        let binary = match name {
            "FERRY_COORDINATOR_OPTS" => Some("ferry-coordinator"),
            "FERRY_AGENT_OPTS" => Some("ferry-agent"),
            _ => None,
        };
        if let Some(binary) = binary {
            opts = Some((binary, value.split_whitespace().map(String::from).collect()));
        }
        words = &words[1..];
    }
    match words.first() {
        None => opts,
        Some(first) => {
            let binary = BINARIES.into_iter().find(|b| first == b)?;
            Some((binary, words[1..].to_vec()))
        }
    }
}

/// `binary args... --help`, with no FERRY_* variable of this process's
/// environment in the way: (success, stdout and stderr).
fn help(binary: &str, args: &[String]) -> (bool, String) {
    let mut cmd = Command::new(bin(binary));
    cmd.args(args).arg("--help");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FERRY_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `--version` answers before `--help` does.
    let answered = if args.iter().any(|a| a == "--version") {
        text.starts_with(&format!("{binary} "))
    } else {
        text.contains("Usage:")
    };
    (out.status.success() && answered, text)
}

/// The subcommand names a `--help` text lists under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

/// Whether `help` documents the flag `--name`.
fn documents(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(at, _)| {
        help[at + flag.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

/// Checks a command quoted in prose, which may hold placeholders: each word
/// that names a subcommand of the command so far is followed into it, and
/// every `--flag` must be in the help of the subcommand reached.
fn check_quoted(
    binary: &str,
    words: &[String],
    helps: &mut HashMap<(String, Vec<String>), (bool, String)>,
) -> Result<(), String> {
    let mut path: Vec<String> = Vec::new();
    let mut get = |path: &[String]| {
        helps
            .entry((binary.to_string(), path.to_vec()))
            .or_insert_with(|| help(binary, path))
            .clone()
    };
    let mut flags = Vec::new();
    let mut after_flag = false;
    for word in words {
        if word.starts_with('-') {
            flags.push(word.split('=').next().unwrap_or_default().to_string());
            after_flag = !word.contains('=');
            continue;
        }
        let help = get(&path).1;
        let commands = subcommands(&help);
        if commands.contains(word) {
            path.push(word.clone());
        } else if !after_flag
            && help.contains("<COMMAND>")
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        {
            // Where a subcommand is required, a word like one must be one.
            return Err(format!(
                "`{binary} {}` has no subcommand `{word}` (it has {})",
                path.join(" "),
                commands.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        after_flag = false;
    }
    let (ok, text) = get(&path);
    if !ok {
        return Err(format!(
            "`{binary} {} --help` fails: {text}",
            path.join(" ")
        ));
    }
    for flag in flags.iter().filter(|f| f.starts_with("--")) {
        if !documents(&text, flag) {
            return Err(format!("`{binary} {}` has no flag {flag}", path.join(" ")));
        }
    }
    Ok(())
}

#[test]
fn every_ferry_command_in_operations_md_parses() {
    let ops = read("OPERATIONS.md");
    let (blocks, prose) = split_markdown(&ops);
    let mut problems = Vec::new();
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();

    // Command lines of shell blocks: the real parser, arguments and all.
    for block in blocks.iter().filter(|b| b.info == "sh") {
        let mut joined: Vec<(usize, String)> = Vec::new();
        let mut continued = false;
        for (n, line) in block.text.iter().enumerate() {
            let text = line.trim_end();
            match (continued, joined.last_mut()) {
                (true, Some((_, last))) => last.push_str(text.trim_end_matches('\\')),
                _ => joined.push((block.line + 1 + n, text.trim_end_matches('\\').to_string())),
            }
            continued = text.ends_with('\\');
        }
        for (line, text) in joined {
            for words in shell_commands(&text) {
                let Some((binary, args)) = ferry_command(&words) else {
                    continue;
                };
                *checked.entry(binary).or_default() += 1;
                let (ok, out) = help(binary, &args);
                if !ok {
                    problems.push(format!(
                        "OPERATIONS.md:{line}: `{binary} {}` does not parse:\n{out}",
                        args.join(" ")
                    ));
                }
            }
        }
    }
    for binary in BINARIES {
        assert!(
            checked.get(binary).copied().unwrap_or(0) > 0,
            "no `{binary}` command found in OPERATIONS.md's sh blocks: {checked:?}"
        );
    }
    let in_blocks: usize = checked.values().sum();

    // Commands quoted in the prose: subcommands and flags.
    let mut helps = HashMap::new();
    let mut quoted = 0;
    for (n, span) in prose.split('`').enumerate() {
        if n % 2 == 0 {
            continue;
        }
        let words: Words = span.split_whitespace().map(String::from).collect();
        let Some(binary) = BINARIES
            .into_iter()
            .find(|b| words.first().is_some_and(|w| w == b))
        else {
            continue;
        };
        if words.len() < 2 {
            continue;
        }
        quoted += 1;
        if let Err(e) = check_quoted(binary, &words[1..], &mut helps) {
            problems.push(format!("OPERATIONS.md, `{span}`: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} command(s) in OPERATIONS.md do not match the binaries:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        in_blocks >= 25 && quoted >= 10,
        "checked {in_blocks} command lines and {quoted} quoted commands"
    );
    println!("checked {in_blocks} command lines ({checked:?}) and {quoted} quoted commands");
}

#[test]
fn commands_are_read_as_the_shell_reads_them() {
    let words = |line: &str| shell_commands(line);
    assert_eq!(
        words(r#"sudo -u x ferry cluster backup --out "/b/c-$day.backup"  # note"#),
        vec![vec![
            "sudo",
            "-u",
            "x",
            "ferry",
            "cluster",
            "backup",
            "--out",
            "/b/c-$day.backup"
        ]]
    );
    assert_eq!(
        words("day=$(date +%F) && ferry run a | tail -n 1; ferry whoami"),
        vec![
            vec!["day=$(date +%F)"],
            vec!["ferry", "run", "a"],
            vec!["tail", "-n", "1"],
            vec!["ferry", "whoami"],
        ]
    );
    let command = |line: &str| {
        let words = &shell_commands(line)[0];
        ferry_command(words).map(|(b, a)| (b, a.join(" ")))
    };
    assert_eq!(
        command(r#"FERRY_AGENT_OPTS="--ca /etc/ferry/ca.pem --capacity 4""#),
        Some((
            "ferry-agent",
            "--ca /etc/ferry/ca.pem --capacity 4".to_string()
        ))
    );
    assert_eq!(
        command("sudo ferry-coordinator restore --from f"),
        Some(("ferry-coordinator", "restore --from f".to_string()))
    );
    assert_eq!(
        command("FERRY_CERT=a.pem ferry whoami"),
        Some(("ferry", "whoami".to_string()))
    );
    assert_eq!(command("FERRY_COORDINATOR=10.0.0.1:7400"), None);
    assert_eq!(command("sudo systemctl start ferry-agent"), None);
    assert!(documents("  --ca-dir <DIR>", "--ca-dir"));
    assert!(!documents("  --ca-dir <DIR>", "--ca"));
    assert_eq!(
        slug("Adding and removing coordinator members"),
        "adding-and-removing-coordinator-members"
    );
    assert_eq!(slug(" FerryNoLeader"), "ferrynoleader");
}
