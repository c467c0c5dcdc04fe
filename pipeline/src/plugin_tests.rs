//! Plugin actions from the pipeline file to the spec an engine runs: each
//! kind of setting value written as Drone's plugins read it, secrets lowered
//! into `secrets`, references resolved as `env`'s are, and every mistake
//! refused with its LINE:COL.

use std::collections::BTreeMap;

use crate::plugin::{MAX_SETTINGS, MAX_SETTINGS_BYTES};
use crate::test_support::{doc, expect_errors, expect_ok, started_spec};
use crate::{ActionKind, parse};

/// A pipeline whose one action is the plugin `ship/publish`, `body`
/// indented under it (the first body line is line 11).
fn with_plugin(body: &[&str]) -> String {
    let mut lines: Vec<String> = [
        "name: hello",
        "source: {git: /srv/git/hello.git}",
        "variables:",
        "  REGISTRY: registry.example.com",
        "stages:",
        "  - name: ship",
        "    actions:",
        "      - name: publish",
        "        type: plugin",
        "        image: plugins/docker",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    lines.extend(body.iter().map(|l| format!("        {l}")));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    doc(&lines)
}

fn errors(text: &str) -> Vec<String> {
    expect_errors(parse(text))
}

#[test]
fn settings_become_plugin_variables_in_drones_format() {
    let p = expect_ok(parse(&with_plugin(&[
        "inputs: [source]",
        "env: {EXTRA: x}",
        "secrets: {TOKEN: deploy-token}",
        "outputs: {report: [out/report.txt]}",
        "retries: 1",
        "resources: {memory: 64m}",
        "settings:",
        "  message: hello world",
        "  repo: \"#{variables.REGISTRY}/web\"",
        "  count: 3",
        "  ratio: 1.5",
        "  dry-run: true",
        "  quoted: \"007\"",
        "  tags: [latest, \"1.2\", 3]",
        "  config: {a: 1, b: [x, true], c: null, \"d e\": \"q\\\"uote\"}",
        "  hosts: [{name: a, port: 22}, b]",
        "  password: {from_secret: registry-password}",
        "  empty: \"\"",
        "  none: []",
        "  refs: [\"#{variables.REGISTRY}\", b]",
    ])));
    let action = &p.stages[0].actions[0];
    assert_eq!(action.kind, ActionKind::Plugin);
    assert_eq!(action.image.as_deref(), Some("plugins/docker"));
    assert!(action.commands.is_empty());
    assert_eq!(action.retries, 1);
    assert_eq!(action.inputs, vec!["source".to_string()]);
    assert_eq!(action.needs_version(), (0, 2));
    assert_eq!(p.needs_version(), (0, 2));
    let env: BTreeMap<&str, &str> = action
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("EXTRA", "x"),
            ("PLUGIN_MESSAGE", "hello world"),
            ("PLUGIN_REPO", "#{variables.REGISTRY}/web"),
            ("PLUGIN_COUNT", "3"),
            ("PLUGIN_RATIO", "1.5"),
            ("PLUGIN_DRY_RUN", "true"),
            ("PLUGIN_QUOTED", "007"),
            ("PLUGIN_TAGS", "latest,1.2,3"),
            (
                "PLUGIN_CONFIG",
                r#"{"a":1,"b":["x",true],"c":null,"d e":"q\"uote"}"#
            ),
            ("PLUGIN_HOSTS", r#"[{"name":"a","port":22},"b"]"#),
            ("PLUGIN_EMPTY", ""),
            ("PLUGIN_NONE", ""),
            ("PLUGIN_REFS", "#{variables.REGISTRY},b"),
        ])
    );
    assert_eq!(
        action.secrets,
        BTreeMap::from([
            (
                "PLUGIN_PASSWORD".to_string(),
                "registry-password".to_string()
            ),
            ("TOKEN".to_string(), "deploy-token".to_string()),
        ])
    );
    // What an agent is sent: the plugin flag, no commands, references
    // resolved as an `env:` value's are.
    let spec = started_spec(&p);
    assert!(spec.plugin);
    assert!(spec.commands.is_empty());
    assert_eq!(spec.image, "plugins/docker");
    assert_eq!(
        spec.env.get("PLUGIN_REPO").map(String::as_str),
        Some("registry.example.com/web")
    );
    assert_eq!(
        spec.env.get("PLUGIN_REFS").map(String::as_str),
        Some("registry.example.com,b")
    );
    assert_eq!(spec.outputs.len(), 1);
    assert!(!spec.env.contains_key("PLUGIN_PASSWORD"));
}

#[test]
fn a_build_is_not_a_plugin_and_needs_no_newer_release() {
    let p = expect_ok(parse(&doc(&[
        "name: hello",
        "source: {git: /srv/git/hello.git}",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - {name: compile, type: build, image: busybox, commands: [make]}",
    ])));
    assert_eq!(p.needs_version(), (0, 1));
    assert!(!started_spec(&p).plugin);
}

#[test]
fn bad_settings_are_refused_where_they_are_written() {
    assert_eq!(
        errors(&with_plugin(&[
            "env: {PLUGIN_MESSAGE: x, OTHER: y}",
            "secrets: {PLUGIN_TOKEN: tok}",
            "settings:",
            "  message: hi",
            "  token: {from_secret: Bad_Name}",
            "  2fast: x",
            "  a.b: x",
            "  dry_run: x",
            "  dry-run: y",
            "  nothing:",
            "  list: [a, ~, [b]]",
            "  items: [a, ~]",
            "  mixed: {from_secret: a, other: b}",
            "  nested: {inner: {from_secret: a}}",
            "  json: {a: \"#{variables.REGISTRY}\"}",
            "  bad: \"#{oops\"",
            "  unknown: \"#{variables.NOPE}\"",
            "  nul: \"a\\0b\"",
        ])),
        vec![
            "11:15: `PLUGIN_MESSAGE` is set in env and by setting `message` (at 14:11)",
            "12:19: `PLUGIN_TOKEN` is set in secrets and by setting `token` (at 15:11)",
            "15:32: invalid secret name \"Bad_Name\": must start with a lowercase letter (a-z) or a digit",
            "16:11: invalid setting name \"2fast\": must start with a letter and hold only letters, digits, `_` and `-`",
            "17:11: invalid setting name \"a.b\": must start with a letter and hold only letters, digits, `_` and `-`",
            "19:11: settings `dry_run` (at 18:11) and `dry-run` both become PLUGIN_DRY_RUN",
            "20:11: setting `nothing` has no value; write \"\" for an empty one",
            "22:22: an item of setting `items` must be a value, found nothing (null)",
            "23:18: setting `mixed`: a secret is written {from_secret: NAME}, with no other keys",
            "24:28: `from_secret` must be the whole value of a setting, not inside setting `nested`",
            "25:21: setting `json` is written as JSON, where a `#{...}` reference cannot be; use it in a setting that is text or a list of texts",
            "26:16: `#{` without a closing `}`",
            "27:20: #{variables.NOPE}: the pipeline declares no variable `NOPE` under `variables:`",
            "28:16: setting `nul` holds a NUL character, which no environment can",
        ]
    );
}

#[test]
fn settings_are_a_bounded_mapping() {
    assert_eq!(
        errors(&with_plugin(&["settings: [a, b]"])),
        vec!["11:19: `settings` must be a mapping, found a list"]
    );
    let many: Vec<String> = (0..=MAX_SETTINGS).map(|i| format!("  s{i}: x")).collect();
    let mut body = vec!["settings:".to_string()];
    body.extend(many);
    let body: Vec<&str> = body.iter().map(String::as_str).collect();
    assert_eq!(
        errors(&with_plugin(&body)),
        vec![format!(
            "12:11: `settings` has more than {MAX_SETTINGS} settings"
        )]
    );
    let half = "x".repeat(MAX_SETTINGS_BYTES / 2);
    let big = [
        "settings:".to_string(),
        format!("  a: {half}"),
        format!("  b: {half}"),
    ];
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    assert_eq!(
        errors(&with_plugin(&big)),
        vec![format!(
            "13:11: `settings` are over {MAX_SETTINGS_BYTES} bytes once written as environment \
             variables"
        )]
    );
    // A mapping that JSON makes larger than the bound stops being written there.
    let wide: String = (0..MAX_SETTINGS_BYTES / 8)
        .map(|i| format!("k{i}: 1"))
        .collect::<Vec<_>>()
        .join(", ");
    let wide = ["settings:".to_string(), format!("  wide: {{{wide}}}")];
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    assert_eq!(
        errors(&with_plugin(&wide)),
        vec![format!(
            "12:17: setting `wide` is over {MAX_SETTINGS_BYTES} bytes written as JSON"
        )]
    );
}

#[test]
fn plugins_take_only_their_own_keys() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: /srv/git/hello.git}",
            "stages:",
            "  - name: ship",
            "    actions:",
            "      - name: publish",
            "        type: plugin",
            "        commands: [make]",
            "        services: [{name: db, image: postgres}]",
            "        cache: [{key: k, paths: [x]}]",
            "        matrix: {os: [a, b]}",
            "        reports: {junit: [x.xml]}",
            "        approvers: [alice]",
            "        environment: prod",
            "      - name: compile",
            "        type: build",
            "        image: busybox",
            "        commands: [make]",
            "        settings: {a: b}",
        ])),
        vec![
            "6:9: missing required key `image` in plugin action",
            "8:9: `commands` is not allowed in plugin actions; it is only for build and test actions",
            "9:9: `services` is not allowed in plugin actions; it is only for build and test actions",
            "10:9: `cache` is not allowed in plugin actions; it is only for build and test actions",
            "11:9: `matrix` is not allowed in plugin actions; it is only for build and test actions",
            "12:9: `reports` is not allowed in plugin actions; it is only for build and test actions",
            "13:9: `approvers` is not allowed in plugin actions; it is only for approval actions",
            "14:9: `environment` is not allowed in plugin actions; it is only for deploy actions",
            "19:9: `settings` is not allowed in build actions; it is only for plugin actions",
        ]
    );
}

#[test]
fn a_plugin_may_run_without_settings_and_write_output_variables() {
    let p = expect_ok(parse(&doc(&[
        "name: hello",
        "source: {git: /srv/git/hello.git}",
        "stages:",
        "  - name: ship",
        "    actions:",
        "      - {name: publish, type: plugin, image: plugins/docker}",
        "  - name: after",
        "    actions:",
        "      - name: show",
        "        type: build",
        "        image: busybox",
        "        commands: [\"echo #{ship.publish.DIGEST}\"]",
    ])));
    let action = &p.stages[0].actions[0];
    assert!(action.env.is_empty() && action.secrets.is_empty());
    assert_eq!(action.timeout_ms, crate::DEFAULT_COMMAND_TIMEOUT_MS);
}
