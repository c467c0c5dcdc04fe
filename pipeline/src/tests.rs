//! End-to-end tests of `parse`: whole YAML documents in, a pipeline or
//! positioned diagnostics out.

use std::collections::BTreeMap;

use crate::test_support::{doc, expect_errors, expect_ok};
use crate::{
    Action, ActionKind, DEFAULT_APPROVAL_TIMEOUT_MS, DEFAULT_COMMAND_TIMEOUT_MS, Diagnostic,
    ExecutionMode, Pipeline, Resources, Source, Stage, parse,
};

/// Parses text that must fail, rendering each diagnostic as "LINE:COL: message".
fn errors(text: &str) -> Vec<String> {
    expect_errors(parse(text))
}

fn parse_ok(text: &str) -> Pipeline {
    expect_ok(parse(text))
}

/// A valid pipeline whose single action is `body`, indented under
/// `actions:` (the first body line is the action's line 8).
fn with_action(body: &[&str]) -> String {
    let mut lines = vec![
        "name: hello",
        "source:",
        "  git: file:///srv/git/hello.git",
        "  branch: main",
        "stages:",
        "  - name: build",
        "    actions:",
    ];
    let indented: Vec<String> = body
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                format!("      - {line}")
            } else {
                format!("        {line}")
            }
        })
        .collect();
    lines.extend(indented.iter().map(String::as_str));
    doc(&lines)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---- valid pipelines ------------------------------------------------------

const FULL_EXAMPLE: &str = "\
name: hello                  # a comment
source:
  git: file:///srv/git/hello.git
  branch: main
  poll_interval: 10s
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        run_order: 1
        runs_on: [docker]
        inputs: [source]
        commands: [\"sh build.sh\"]
        env: {MODE: release, LEVEL: 3, DEBUG: false, EMPTY: \"\"}
        outputs: {app: [dist/]}
        timeout: 10m
      - name: package
        type: build
        image: ferry-local/busybox
        run_order: 2
        inputs: [app]
        commands:
          - tar czf app.tgz dist
          - echo done
        outputs:
          bundle: [app.tgz, checksums/]
  - name: verify
    actions:
      - name: unit
        type: test
        image: ferry-local/busybox
        inputs: [source, bundle]
        commands: [sh test.sh]
      - name: sign-off
        type: approval
        run_order: 2
        approvers: [approver, alice]
        timeout: 2d
  - name: release
    actions:
      - name: gate
        type: approval
";

#[test]
fn full_example_parses_with_defaults() {
    let pipeline = parse_ok(FULL_EXAMPLE);
    let command_action = |name: &str, kind, run_order| Action {
        name: name.to_string(),
        kind,
        run_order,
        runs_on: Vec::new(),
        inputs: Vec::new(),
        image: Some("ferry-local/busybox".to_string()),
        commands: Vec::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
        resources: Resources::default(),
        retries: 0,
        secrets: BTreeMap::new(),
        approvers: Vec::new(),
        allow_self_approval: false,
        required: 1,
        message: String::new(),
        url: String::new(),
        when: None,
        deploy: None,
        output_when: BTreeMap::new(),
        reports: Default::default(),
        matrix: None,
        services: Vec::new(),
        caches: Vec::new(),
    };
    let approval = |name: &str, run_order| Action {
        name: name.to_string(),
        kind: ActionKind::Approval,
        run_order,
        runs_on: Vec::new(),
        inputs: Vec::new(),
        image: None,
        commands: Vec::new(),
        env: BTreeMap::new(),
        outputs: BTreeMap::new(),
        timeout_ms: DEFAULT_APPROVAL_TIMEOUT_MS,
        resources: Resources::default(),
        retries: 0,
        secrets: BTreeMap::new(),
        approvers: strings(&["approver"]),
        allow_self_approval: false,
        required: 1,
        message: String::new(),
        url: String::new(),
        when: None,
        deploy: None,
        output_when: BTreeMap::new(),
        reports: Default::default(),
        matrix: None,
        services: Vec::new(),
        caches: Vec::new(),
    };
    let expected = Pipeline {
        name: "hello".to_string(),
        source: Source {
            git: "file:///srv/git/hello.git".to_string(),
            branch: "main".to_string(),
            poll_interval_ms: Some(10_000),
            webhook_secret: None,
            triggers: Vec::new(),
            upstreams: Vec::new(),
        },
        stages: vec![
            Stage {
                name: "build".to_string(),
                actions: vec![
                    Action {
                        runs_on: strings(&["docker"]),
                        inputs: strings(&["source"]),
                        commands: strings(&["sh build.sh"]),
                        env: [
                            ("MODE", "release"),
                            ("LEVEL", "3"),
                            ("DEBUG", "false"),
                            ("EMPTY", ""),
                        ]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                        outputs: [("app".to_string(), strings(&["dist/"]))].into(),
                        timeout_ms: 600_000,
                        ..command_action("compile", ActionKind::Build, 1)
                    },
                    Action {
                        inputs: strings(&["app"]),
                        commands: strings(&["tar czf app.tgz dist", "echo done"]),
                        outputs: [("bundle".to_string(), strings(&["app.tgz", "checksums/"]))]
                            .into(),
                        ..command_action("package", ActionKind::Build, 2)
                    },
                ],
                when: None,
                on_failure: Default::default(),
            },
            Stage {
                name: "verify".to_string(),
                actions: vec![
                    Action {
                        inputs: strings(&["source", "bundle"]),
                        commands: strings(&["sh test.sh"]),
                        ..command_action("unit", ActionKind::Test, 1)
                    },
                    Action {
                        approvers: strings(&["approver", "alice"]),
                        timeout_ms: 2 * 24 * 3_600_000,
                        ..approval("sign-off", 2)
                    },
                ],
                when: None,
                on_failure: Default::default(),
            },
            Stage {
                name: "release".to_string(),
                actions: vec![approval("gate", 1)],
                when: None,
                on_failure: Default::default(),
            },
        ],
        execution_mode: ExecutionMode::Superseded,
        variables: BTreeMap::new(),
        schedule: None,
        notifications: Vec::new(),
    };
    assert_eq!(pipeline, expected);
    assert_eq!(pipeline.find_action("verify", "sign-off"), Some((1, 1)));
}

#[test]
fn minimal_pipeline_gets_defaults() {
    let pipeline = parse_ok(&with_action(&[
        "name: compile",
        "type: test",
        "image: busybox",
        "commands: [make]",
    ]));
    assert_eq!(pipeline.source.branch, "main");
    assert_eq!(pipeline.source.poll_interval_ms, None);
    let action = &pipeline.stages[0].actions[0];
    assert_eq!(action.kind, ActionKind::Test);
    assert_eq!(action.run_order, 1);
    assert_eq!(action.timeout_ms, 3_600_000);
    assert!(action.runs_on.is_empty());
    assert!(action.inputs.is_empty());
    assert!(action.env.is_empty());
    assert!(action.outputs.is_empty());
    assert!(action.approvers.is_empty());
    assert_eq!(action.retries, 0);
    assert_eq!(action.resources, Resources::default());
    assert!(action.secrets.is_empty());
    assert!(!action.allow_self_approval, "four eyes by default");
}

#[test]
fn allow_self_approval_is_a_boolean_of_approvals_only() {
    let pipeline = parse_ok(&with_action(&[
        "name: ok",
        "type: approval",
        "allow_self_approval: true",
    ]));
    assert!(pipeline.stages[0].actions[0].allow_self_approval);
    assert_eq!(
        errors(&with_action(&[
            "name: ok",
            "type: approval",
            "allow_self_approval: \"yes\"",
        ])),
        vec!["10:30: `allow_self_approval` must be true or false, found \"yes\""]
    );
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "image: busybox",
            "commands: [make]",
            "allow_self_approval: true",
        ])),
        vec![
            "12:9: `allow_self_approval` is not allowed in build actions; it is only for approval actions"
        ]
    );
}

#[test]
fn approval_defaults() {
    let pipeline = parse_ok(&with_action(&["name: ok", "type: approval"]));
    let action = &pipeline.stages[0].actions[0];
    assert_eq!(action.kind, ActionKind::Approval);
    assert_eq!(action.image, None);
    assert!(action.commands.is_empty());
    assert_eq!(action.approvers, strings(&["approver"]));
    assert_eq!(action.timeout_ms, 7 * 24 * 3_600_000);
    assert_eq!(action.retries, 0);
    assert_eq!(action.resources, Resources::default());
    assert!(action.secrets.is_empty());
}

#[test]
fn flow_style_and_quoted_values_are_accepted() {
    let pipeline = parse_ok(
        "{name: flow, source: {git: 'git@example.com:org/repo.git', branch: \"release/1.0\"}, \
         stages: [{name: s, actions: [{name: a, type: build, image: i, commands: ['true'], \
         run_order: 3}]}]}\n",
    );
    assert_eq!(pipeline.source.git, "git@example.com:org/repo.git");
    assert_eq!(pipeline.source.branch, "release/1.0");
    assert_eq!(pipeline.stages[0].actions[0].run_order, 3);
    assert_eq!(pipeline.stages[0].actions[0].commands, strings(&["true"]));
}

#[test]
fn inputs_from_earlier_run_order_in_same_stage_are_fine() {
    let pipeline = parse_ok(&doc(&[
        "name: hello",
        "source: {git: ./repo}",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - {name: a, type: build, image: i, commands: [x], outputs: {one: [out]}}",
        "      - {name: b, type: build, image: i, commands: [x], run_order: 2, inputs: [one]}",
        "      - {name: c, type: test, image: i, commands: [x], run_order: 3, inputs: [one]}",
    ]));
    assert_eq!(pipeline.stages[0].actions[2].inputs, strings(&["one"]));
}

#[test]
fn trailing_document_markers_are_fine() {
    let text = format!("---\n{}...\n", with_action(&["name: ok", "type: approval"]));
    parse_ok(&text);
}

// ---- loader errors ----------------------------------------------------------

#[test]
fn empty_document() {
    let expected = vec![
        "1:1: the pipeline file is empty; expected a mapping with `name`, `source` and `stages`"
            .to_string(),
    ];
    assert_eq!(errors(""), expected);
    assert_eq!(errors("\n  \n# just a comment\n"), expected);
    assert_eq!(errors("---\n"), expected);
}

#[test]
fn empty_mapping_reports_missing_keys() {
    assert_eq!(
        errors("{}\n"),
        vec![
            "1:1: missing required key `name` in pipeline",
            "1:1: missing required key `source` in pipeline",
            "1:1: missing required key `stages` in pipeline",
        ]
    );
}

#[test]
fn yaml_syntax_error_has_position() {
    let diags = parse(&doc(&["name: hello", "stages: [build, test", "source: x"]))
        .expect_err("unclosed bracket");
    assert_eq!(diags.len(), 1);
    let d = &diags[0];
    assert!(d.message.starts_with("YAML syntax error: "), "{d}");
    assert_eq!((d.line, d.column), (3, 7), "{d}");

    let diags = parse("name: [unclosed\n").expect_err("unclosed bracket at end");
    assert_eq!(
        (diags[0].line, diags[0].column, diags.len()),
        (2, 1, 1),
        "{:?}",
        diags
    );
}

#[test]
fn bad_indentation_is_a_syntax_error() {
    let diags = parse("name: hello\n source: x\n").expect_err("bad indentation");
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].message.starts_with("YAML syntax error"),
        "{diags:?}"
    );
    assert_eq!(diags[0].line, 2, "{diags:?}");
}

#[test]
fn duplicate_mapping_key() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source:",
            "  git: /srv/a",
            "  git: /srv/b",
        ])),
        vec!["4:3: duplicate key `git` (first defined at 3:3)"]
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let expected = vec![
        "1:1: a pipeline file must be a mapping with `name`, `source` and `stages` at the top level",
    ];
    assert_eq!(errors("- name: hello\n"), expected);
    assert_eq!(errors("hello\n"), expected);
}

#[test]
fn anchors_and_tags_are_rejected_with_position() {
    assert_eq!(
        errors("name: &n hello\nx: *n\n"),
        vec!["1:10: YAML anchors and aliases are not supported"]
    );
    let diags = parse("name: !!str hello\n").expect_err("tag");
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].line, 1);
    assert!(diags[0].message.contains("tags"), "{diags:?}");
}

#[test]
fn second_document_is_rejected() {
    let mut text = with_action(&["name: ok", "type: approval"]);
    text.push_str("---\nname: other\n");
    assert_eq!(
        errors(&text),
        vec!["10:1: a pipeline file must contain a single YAML document"]
    );
}

#[test]
fn byte_order_mark_is_ignored() {
    let text = format!("\u{feff}{}", with_action(&["name: ok", "type: approval"]));
    assert_eq!(parse_ok(&text).name, "hello");
}

#[test]
fn trailing_garbage_after_flow_mapping_is_rejected() {
    assert_eq!(
        errors(
            "{name: x, source: {git: y}, stages: [{name: s, actions: [{name: a, type: approval}]}]} x\n"
        ),
        vec!["1:88: unexpected content after the top-level mapping"]
    );
}

// ---- keys and types ---------------------------------------------------------

#[test]
fn unknown_keys_at_every_level() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "nmae: typo",
            "source:",
            "  git: /srv/git/hello.git",
            "  brnach: main",
            "stages:",
            "  - name: build",
            "    needs: [x]",
            "    actions:",
            "      - name: compile",
            "        type: build",
            "        image: busybox",
            "        commands: [make]",
            "        foo: 1",
        ])),
        vec![
            "2:1: unknown key `nmae` in pipeline; expected one of: name, source, stages, execution_mode, variables, schedule, notifications",
            "5:3: unknown key `brnach` in source; expected one of: git, branch, poll_interval, webhook_secret, triggers, pipeline, when",
            "8:5: unknown key `needs` in stage; expected one of: name, actions, when, on_failure",
            "14:9: unknown key `foo` in action; expected one of: name, type, image, run_order, \
             runs_on, inputs, commands, env, outputs, reports, matrix, timeout, approvers, allow_self_approval, required, message, url, retries, resources, secrets, \
             environment, strategy, min_healthy, rollback, keep_releases, hook_timeout, connect_timeout, when, \
             services, cache, settings",
        ]
    );
}

#[test]
fn missing_required_keys_point_at_the_mapping() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source:",
            "  branch: main",
            "stages:",
            "  - actions:",
            "      - type: build",
            "        image: busybox",
            "      - name: check",
            "        commands: [x]",
            "  - name: empty",
        ])),
        vec![
            "3:3: missing required key `git` in source",
            "5:5: missing required key `name` in stage",
            "6:9: missing required key `name` in action",
            "6:9: missing required key `commands` in build action",
            "8:9: missing required key `type` in action",
            "10:5: missing required key `actions` in stage",
        ]
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "image: [busybox]",
            "run_order: fast",
            "runs_on: {docker: true}",
            "commands: make",
            "env: [A, B]",
            "outputs: {app: dist/}",
            "inputs: [[source]]",
            "timeout: {minutes: 10}",
        ])),
        vec![
            "10:16: `image` must be a string, found a list",
            "11:20: `run_order` must be an integer, found \"fast\"",
            "12:18: `runs_on` must be a list, found a mapping",
            "13:19: `commands` must be a list, found \"make\"",
            "14:14: `env` must be a mapping, found a list",
            "15:24: output `app` must be a list, found \"dist/\"",
            "16:18: each input must be a string, found a list",
            "17:18: `timeout` must be a string, found a mapping",
        ]
    );
}

#[test]
fn wrong_structure_types() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: /srv/git/hello.git",
            "stages:",
            "  build:",
            "    actions: []",
        ])),
        vec![
            "2:9: `source` must be a mapping, found \"/srv/git/hello.git\"",
            "4:3: `stages` must be a list, found a mapping",
        ]
    );
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: x}",
            "stages:",
            "  - build",
            "  - name: test",
            "    actions: [compile]",
        ])),
        vec![
            "4:5: each stage must be a mapping, found \"build\"",
            "6:15: each action must be a mapping, found \"compile\"",
        ]
    );
}

#[test]
fn empty_lists_are_rejected() {
    assert_eq!(
        errors(&doc(&["name: hello", "source: {git: x}", "stages: []",])),
        vec!["3:9: `stages` must list at least one stage"]
    );
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: x}",
            "stages:",
            "  - name: build",
            "    actions: []",
            "  - name: test",
            "    actions:",
            "      - {name: a, type: build, image: i, commands: [], outputs: {x: []}}",
            "      - {name: b, type: approval, approvers: []}",
        ])),
        vec![
            "5:14: `actions` must list at least one action",
            "8:52: `commands` must list at least one command",
            "8:69: output `x` must list at least one path",
            "9:46: `approvers` must list at least one approver",
        ]
    );
}

#[test]
fn null_values_are_reported_at_their_key() {
    assert_eq!(
        errors(&doc(&[
            "name:",
            "source:",
            "stages:",
            "  - name: build",
            "    actions:",
            "      - name: a",
            "        type: build",
            "        image: i",
            "        commands: [x]",
            "        env:",
            "          MODE:",
        ])),
        vec![
            "1:1: `name` must be a string, found nothing (null)",
            "2:1: `source` must be a mapping, found nothing (null)",
            "11:11: the value of environment variable `MODE` must be a string, found nothing (null)",
        ]
    );
}

#[test]
fn run_order_must_be_a_positive_integer() {
    let cases = [
        ("run_order: 0", "`run_order` must be at least 1, found 0"),
        ("run_order: -3", "`run_order` must be at least 1, found -3"),
        (
            "run_order: 1.5",
            "`run_order` must be an integer, found \"1.5\"",
        ),
        (
            "run_order: \"2\"",
            "`run_order` must be an integer, found \"2\"",
        ),
        (
            "run_order: 4294967296",
            "`run_order` must be at most 4294967295, found 4294967296",
        ),
    ];
    for (line, message) in cases {
        let text = with_action(&["name: a", "type: approval", line]);
        assert_eq!(errors(&text), vec![format!("10:20: {message}")], "{line}");
    }
}

// ---- values -----------------------------------------------------------------

#[test]
fn bad_names() {
    assert_eq!(
        errors(&doc(&[
            "name: Hello",
            "source: {git: x}",
            "stages:",
            "  - name: 1st",
            "    actions:",
            "      - name: my_action",
            "        type: build",
            "        image: i",
            "        commands: [x]",
            "        inputs: [Source]",
            "        outputs: {Bad-Name: [x], source: [y], ok: [z]}",
        ])),
        vec![
            "1:7: invalid pipeline name \"Hello\": must start with a lowercase letter (a-z)",
            "4:11: invalid stage name \"1st\": must start with a lowercase letter (a-z)",
            "6:15: invalid action name \"my_action\": contains '_'; only lowercase letters, \
             digits and '-' are allowed",
            "10:18: invalid input artifact name \"Source\": must start with a lowercase letter (a-z)",
            "11:19: invalid artifact name `Bad-Name`: must start with a lowercase letter (a-z)",
            "11:34: artifact name `source` is reserved for the git checkout",
        ]
    );
    let long = "a".repeat(64);
    assert_eq!(
        errors(&with_action(&[&format!("name: {long}"), "type: approval"])),
        vec![
            "8:15: invalid action name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": \
              must be at most 63 characters long (it has 64)"
        ]
    );
}

#[test]
fn bad_durations() {
    let diags = errors(&with_action(&[
        "name: a",
        "type: approval",
        "timeout: 10 parsecs",
    ]));
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with("10:18: invalid duration \"10 parsecs\": "),
        "{diags:?}"
    );

    assert_eq!(
        errors(&with_action(&["name: a", "type: approval", "timeout: 0s"])),
        vec!["10:18: `timeout` must be greater than zero"]
    );

    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source:",
            "  git: x",
            "  poll_interval: 500ms",
            "stages:",
            "  - {name: s, actions: [{name: a, type: approval}]}",
        ])),
        vec!["4:18: `poll_interval` must be at least 1s"]
    );

    let diags = errors(&doc(&[
        "name: hello",
        "source:",
        "  git: x",
        "  poll_interval: 10",
        "stages:",
        "  - {name: s, actions: [{name: a, type: approval}]}",
    ]));
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with("4:18: invalid duration \"10\": "),
        "{diags:?}"
    );
}

#[test]
fn action_types() {
    assert_eq!(
        errors(&with_action(&["name: ship", "type: deploy"])),
        vec![
            "8:9: missing required key `environment` in deploy action",
            "8:9: a deploy action needs exactly one input (the artifact to deploy), found 0",
        ]
    );
    assert_eq!(
        errors(&with_action(&["name: ship", "type: Build"])),
        vec![
            "9:15: unknown action type \"Build\"; expected one of: build, test, approval, deploy, plugin"
        ]
    );
}

#[test]
fn fields_depend_on_action_type() {
    assert_eq!(
        errors(&with_action(&[
            "name: gate",
            "type: approval",
            "image: busybox",
            "commands: [x]",
            "runs_on: [docker]",
            "inputs: [source]",
            "env: {A: b}",
            "outputs: {app: [x]}",
        ])),
        vec![
            "10:9: `image` is not allowed in approval actions; it is only for build, test and plugin actions",
            "11:9: `commands` is not allowed in approval actions; it is only for build and test actions",
            "12:9: `runs_on` is not allowed in approval actions; it is only for build, test, deploy and plugin actions",
            "13:9: `inputs` is not allowed in approval actions; it is only for build, test, deploy and plugin actions",
            "14:9: `env` is not allowed in approval actions; it is only for build, test, deploy and plugin actions",
            "15:9: `outputs` is not allowed in approval actions; it is only for build, test and plugin actions",
        ]
    );
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "approvers: [alice]"
        ])),
        vec![
            "8:9: missing required key `image` in build action",
            "8:9: missing required key `commands` in build action",
            "10:9: `approvers` is not allowed in build actions; it is only for approval actions",
        ]
    );
}

#[test]
fn env_rules() {
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "image: busybox",
            "commands: [make]",
            "env:",
            "  GOOD: 1",
            "  1BAD: x",
            "  FERRY_RUN_ID: x",
            "  with-dash: x",
        ])),
        vec![
            "14:11: invalid environment variable name `1BAD`: must match [A-Za-z_][A-Za-z0-9_]*",
            "15:11: environment variable `FERRY_RUN_ID` is reserved: names starting with FERRY_ \
             are set by Ferry",
            "16:11: invalid environment variable name `with-dash`: must match \
             [A-Za-z_][A-Za-z0-9_]*",
        ]
    );
}

#[test]
fn output_paths() {
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "image: busybox",
            "commands: [make]",
            "outputs:",
            "  app: [/etc/passwd, ../up, dist/../../x, \"\", ok/]",
        ])),
        vec![
            "13:17: output path `/etc/passwd` must be relative to the workspace, not absolute",
            "13:30: output path `../up` must not contain a `..` component",
            "13:37: output path `dist/../../x` must not contain a `..` component",
            "13:51: output path must not be empty",
        ]
    );
}

#[test]
fn source_values() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source:",
            "  git: ftp://example.com/repo.git",
            "  branch: -x",
            "stages:",
            "  - {name: s, actions: [{name: a, type: approval}]}",
        ])),
        vec![
            "3:8: invalid git source \"ftp://example.com/repo.git\": unsupported URL scheme `ftp`; \
             expected file://, https://, http:// or ssh://",
            "4:11: invalid branch \"-x\": must not start with '-'",
        ]
    );
}

#[test]
fn labels_images_and_commands_must_not_be_blank() {
    assert_eq!(
        errors(&with_action(&[
            "name: compile",
            "type: build",
            "image: \"\"",
            "commands: [make, \" \"]",
            "runs_on: [docker, \"big box\"]",
        ])),
        vec![
            "10:16: invalid image \"\": must not be empty",
            "11:26: a command must not be empty",
            "12:27: invalid agent label \"big box\": must not contain whitespace or control \
             characters",
        ]
    );
}

// ---- retries and resources -------------------------------------------------

/// A valid build action (lines 8-11) followed by `extra` from line 12 on.
fn build_action_with(extra: &[&str]) -> String {
    let mut body = vec![
        "name: compile",
        "type: build",
        "image: busybox",
        "commands: [make]",
    ];
    body.extend_from_slice(extra);
    with_action(&body)
}

#[test]
fn retries_and_resources_parse() {
    let pipeline = parse_ok(&build_action_with(&[
        "retries: 3",
        "resources: {cpus: 1.5, memory: 512m}",
    ]));
    let action = &pipeline.stages[0].actions[0];
    assert_eq!(action.retries, 3);
    assert_eq!(
        action.resources,
        Resources {
            millicpus: Some(1_500),
            memory_bytes: Some(536_870_912),
            pids: None,
        }
    );

    let cases: [(&[&str], Resources); 8] = [
        (
            &["resources:", "  cpus: 2", "  memory: 1g"],
            Resources {
                millicpus: Some(2_000),
                memory_bytes: Some(1 << 30),
                pids: None,
            },
        ),
        (
            &["resources: {memory: 1048576000}"],
            Resources {
                millicpus: None,
                memory_bytes: Some(1_048_576_000),
                pids: None,
            },
        ),
        (
            &["resources: {cpus: 0.25}"],
            Resources {
                millicpus: Some(250),
                memory_bytes: None,
                pids: None,
            },
        ),
        (
            &["resources: {cpus: 1024, memory: \"6M\"}"],
            Resources {
                millicpus: Some(1_024_000),
                memory_bytes: Some(6 << 20),
                pids: None,
            },
        ),
        (
            &["resources: {memory: 2GiB}"],
            Resources {
                millicpus: None,
                memory_bytes: Some(2 << 30),
                pids: None,
            },
        ),
        (
            &["resources: {memory: 64mb}"],
            Resources {
                millicpus: None,
                memory_bytes: Some(64 << 20),
                pids: None,
            },
        ),
        (
            &["resources: {pids: 64}"],
            Resources {
                millicpus: None,
                memory_bytes: None,
                pids: Some(64),
            },
        ),
        (
            &["resources:", "  cpus: 1", "  memory: 1g", "  pids: 4194304"],
            Resources {
                millicpus: Some(1_000),
                memory_bytes: Some(1 << 30),
                pids: Some(4_194_304),
            },
        ),
    ];
    for (extra, expected) in cases {
        let pipeline = parse_ok(&build_action_with(extra));
        let action = &pipeline.stages[0].actions[0];
        assert_eq!(action.resources, expected, "{extra:?}");
        assert_eq!(action.retries, 0, "{extra:?}");
    }

    for retries in [0, 10] {
        let line = format!("retries: {retries}");
        let pipeline = parse_ok(&build_action_with(&[&line]));
        assert_eq!(pipeline.stages[0].actions[0].retries, retries);
    }
    let test_action = parse_ok(&with_action(&[
        "name: unit",
        "type: test",
        "image: busybox",
        "commands: [make test]",
        "retries: 1",
        "resources: {cpus: 4}",
    ]));
    let action = &test_action.stages[0].actions[0];
    assert_eq!(
        (action.retries, action.resources.millicpus),
        (1, Some(4_000))
    );
}

#[test]
fn bad_retries() {
    let cases = [
        (
            "retries: fast",
            "`retries` must be an integer, found \"fast\"",
        ),
        (
            "retries: 1.5",
            "`retries` must be an integer, found \"1.5\"",
        ),
        (
            "retries: \"2\"",
            "`retries` must be an integer, found \"2\"",
        ),
        ("retries: [1]", "`retries` must be an integer, found a list"),
        (
            "retries: 11",
            "`retries` must be between 0 and 10, found 11",
        ),
        (
            "retries: -1",
            "`retries` must be between 0 and 10, found -1",
        ),
        (
            "retries: 99999999999",
            "`retries` must be between 0 and 10, found 99999999999",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(
            errors(&build_action_with(&[line])),
            vec![format!("12:18: {message}")],
            "{line}"
        );
    }
    assert_eq!(
        errors(&build_action_with(&["retries:"])),
        vec!["12:9: `retries` must be an integer, found nothing (null)"]
    );
}

#[test]
fn bad_cpus() {
    let cases = [
        ("cpus: 0", "`cpus` must be greater than 0, found 0"),
        ("cpus: 0.0", "`cpus` must be greater than 0, found 0.0"),
        ("cpus: -2", "`cpus` must be greater than 0, found -2"),
        ("cpus: lots", "`cpus` must be a number, found \"lots\""),
        ("cpus: \"lots\"", "`cpus` must be a number, found \"lots\""),
        ("cpus: \"2\"", "`cpus` must be a number, found \"2\""),
        ("cpus: [2]", "`cpus` must be a number, found a list"),
        ("cpus: 1025", "`cpus` must be at most 1024, found 1025"),
        (
            "cpus: 0.0001",
            "`cpus` must be a multiple of 0.001, found 0.0001",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(
            errors(&build_action_with(&["resources:", &format!("  {line}")])),
            vec![format!("13:17: {message}")],
            "{line}"
        );
    }
}

#[test]
fn bad_memory() {
    let diags = errors(&build_action_with(&["resources:", "  memory: 12 parsecs"]));
    assert_eq!(
        diags,
        vec![
            "13:19: invalid memory size \"12 parsecs\": expected a number of bytes, or a number \
             with suffix k, m or g (like 512m or 2g)"
        ]
    );
    let cases = [
        (
            "memory: 1k",
            "`memory` must be at least 6m (6291456 bytes), found 1k",
        ),
        (
            "memory: 6291455",
            "`memory` must be at least 6m (6291456 bytes), found 6291455",
        ),
        (
            "memory: 99999999999g",
            "memory size \"99999999999g\" is too large",
        ),
        ("memory: [1g]", "`memory` must be a string, found a list"),
    ];
    for (line, message) in cases {
        assert_eq!(
            errors(&build_action_with(&["resources:", &format!("  {line}")])),
            vec![format!("13:19: {message}")],
            "{line}"
        );
    }
}

#[test]
fn bad_pids() {
    let cases = [
        (
            "pids: 15",
            "`pids` must be between 16 and 4194304, found 15",
        ),
        ("pids: 0", "`pids` must be between 16 and 4194304, found 0"),
        (
            "pids: -1",
            "`pids` must be between 16 and 4194304, found -1",
        ),
        (
            "pids: 4194305",
            "`pids` must be between 16 and 4194304, found 4194305",
        ),
        ("pids: many", "`pids` must be an integer, found \"many\""),
        ("pids: \"64\"", "`pids` must be an integer, found \"64\""),
        ("pids: 1.5", "`pids` must be an integer, found \"1.5\""),
        ("pids: [64]", "`pids` must be an integer, found a list"),
    ];
    for (line, message) in cases {
        assert_eq!(
            errors(&build_action_with(&["resources:", &format!("  {line}")])),
            vec![format!("13:17: {message}")],
            "{line}"
        );
    }
    assert_eq!(
        errors(&build_action_with(&["resources: {cpus: 1, pids:}"])),
        vec!["12:30: `pids` must be an integer, found nothing (null)"]
    );
}

#[test]
fn bad_resources_structure() {
    assert_eq!(
        errors(&build_action_with(&[
            "resources:",
            "  cpus: 2",
            "  disk: 10g",
            "  memory: 1g",
        ])),
        vec!["14:11: unknown key `disk` in resources; expected one of: cpus, memory, pids"]
    );
    assert_eq!(
        errors(&build_action_with(&["resources: {}"])),
        vec!["12:20: `resources` must set cpus, memory or pids"]
    );
    assert_eq!(
        errors(&build_action_with(&["resources: 2"])),
        vec!["12:20: `resources` must be a mapping, found \"2\""]
    );
    assert_eq!(
        errors(&build_action_with(&["resources:"])),
        vec!["12:9: `resources` must be a mapping, found nothing (null)"]
    );
    // Every problem is reported in one pass.
    assert_eq!(
        errors(&build_action_with(&[
            "retries: 20",
            "resources: {cpus: 0, memory: 1k, gpus: 1}",
        ])),
        vec![
            "12:18: `retries` must be between 0 and 10, found 20",
            "13:27: `cpus` must be greater than 0, found 0",
            "13:38: `memory` must be at least 6m (6291456 bytes), found 1k",
            "13:42: unknown key `gpus` in resources; expected one of: cpus, memory, pids",
        ]
    );
}

#[test]
fn retries_and_resources_are_only_for_command_actions() {
    assert_eq!(
        errors(&with_action(&[
            "name: gate",
            "type: approval",
            "retries: 2",
            "resources: {cpus: 1, memory: 64m}",
        ])),
        vec![
            "10:9: `retries` is not allowed in approval actions; it is only for build, test and \
             plugin actions",
            "11:9: `resources` is not allowed in approval actions; it is only for build, test \
             and plugin actions",
        ]
    );
    assert_eq!(
        errors(&with_action(&[
            "name: gate",
            "type: approval",
            "resources: {}"
        ])),
        vec![
            "10:9: `resources` is not allowed in approval actions; it is only for build, test \
             and plugin actions"
        ]
    );
}

// ---- secrets ----------------------------------------------------------------

#[test]
fn secrets_parse() {
    let pipeline = parse_ok(&build_action_with(&[
        "env: {MODE: release}",
        "secrets: {DEPLOY_TOKEN: prod-token, NPM_TOKEN: npm, _X1: 7.db_pass-2}",
    ]));
    let action = &pipeline.stages[0].actions[0];
    assert_eq!(
        action.secrets,
        BTreeMap::from([
            ("DEPLOY_TOKEN".to_string(), "prod-token".to_string()),
            ("NPM_TOKEN".to_string(), "npm".to_string()),
            ("_X1".to_string(), "7.db_pass-2".to_string()),
        ])
    );
    assert_eq!(action.env.len(), 1);
    let block = parse_ok(&build_action_with(&["secrets:", "  TOKEN: tok"]));
    assert_eq!(
        block.stages[0].actions[0].secrets,
        BTreeMap::from([("TOKEN".to_string(), "tok".to_string())])
    );
}

#[test]
fn secrets_may_not_repeat_env_variables() {
    assert_eq!(
        errors(&build_action_with(&[
            "env: {TOKEN: x, MODE: release}",
            "secrets:",
            "  MODE: mode",
            "  OTHER: other",
            "  TOKEN: tok",
        ])),
        vec![
            "14:11: `MODE` is set in both env and secrets",
            "16:11: `TOKEN` is set in both env and secrets",
        ]
    );
}

#[test]
fn bad_secret_names() {
    assert_eq!(
        errors(&build_action_with(&[
            "secrets:",
            "  A: Prod-Token",
            "  B: \"\"",
            "  C: prod/token",
            "  D: -x",
            "  E: ok",
        ])),
        vec![
            "13:14: invalid secret name \"Prod-Token\": must start with a lowercase letter (a-z) \
             or a digit",
            "14:14: invalid secret name \"\": must not be empty",
            "15:14: invalid secret name \"prod/token\": contains '/'; only lowercase letters, \
             digits, '.', '_' and '-' are allowed",
            "16:14: invalid secret name \"-x\": must start with a lowercase letter (a-z) or a \
             digit",
        ]
    );
    let long = format!("secrets: {{A: {}}}", "s".repeat(64));
    assert_eq!(
        errors(&build_action_with(&[&long])),
        vec![format!(
            "12:22: invalid secret name \"{}\": must be at most 63 characters long (it has 64)",
            "s".repeat(64)
        )]
    );
}

#[test]
fn bad_secret_variable_names() {
    assert_eq!(
        errors(&build_action_with(&[
            "secrets:",
            "  1BAD: a",
            "  FERRY_TOKEN: b",
            "  with-dash: c",
            "  GOOD: d",
        ])),
        vec![
            "13:11: invalid environment variable name `1BAD`: must match [A-Za-z_][A-Za-z0-9_]*",
            "14:11: environment variable `FERRY_TOKEN` is reserved: names starting with FERRY_ \
             are set by Ferry",
            "15:11: invalid environment variable name `with-dash`: must match \
             [A-Za-z_][A-Za-z0-9_]*",
        ]
    );
}

#[test]
fn bad_secrets_structure() {
    assert_eq!(
        errors(&build_action_with(&["secrets: [prod-token]"])),
        vec!["12:18: `secrets` must be a mapping, found a list"]
    );
    assert_eq!(
        errors(&build_action_with(&["secrets:"])),
        vec!["12:9: `secrets` must be a mapping, found nothing (null)"]
    );
    assert_eq!(
        errors(&build_action_with(&["secrets: {A: [x], B: {c: d}, C:}"])),
        vec![
            "12:22: the secret of environment variable `A` must be a string, found a list",
            "12:30: the secret of environment variable `B` must be a string, found a mapping",
            "12:38: the secret of environment variable `C` must be a string, found nothing \
             (null)",
        ]
    );
}

#[test]
fn secrets_are_only_for_command_actions() {
    assert_eq!(
        errors(&with_action(&[
            "name: gate",
            "type: approval",
            "secrets: {TOKEN: tok}",
        ])),
        vec![
            "10:9: `secrets` is not allowed in approval actions; it is only for build, test, \
             deploy and plugin actions"
        ]
    );
}

// ---- cross references -------------------------------------------------------

#[test]
fn duplicate_names() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: x}",
            "stages:",
            "  - name: build",
            "    actions:",
            "      - {name: a, type: build, image: i, commands: [x], outputs: {app: [d]}}",
            "      - {name: a, type: build, image: i, commands: [x], outputs: {lib: [d]}}",
            "  - name: build",
            "    actions:",
            "      - {name: a, type: build, image: i, commands: [x], outputs: {app: [d]}}",
        ])),
        vec![
            "7:16: duplicate action name `a` in stage `build` (first defined at 6:16)",
            "8:11: duplicate stage name `build` (first defined at 4:11)",
            "10:67: duplicate output artifact `app`: already produced by action `a` in stage \
             `build` at 6:67",
        ]
    );
}

#[test]
fn same_action_name_in_different_stages_is_fine() {
    parse_ok(&doc(&[
        "name: hello",
        "source: {git: x}",
        "stages:",
        "  - {name: one, actions: [{name: a, type: approval}]}",
        "  - {name: two, actions: [{name: a, type: approval}]}",
    ]));
}

#[test]
fn inputs_must_come_from_earlier_actions() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: x}",
            "stages:",
            "  - name: build",
            "    actions:",
            "      - {name: a, type: build, image: i, commands: [x], inputs: [nothing, later]}",
            "      - {name: b, type: build, image: i, commands: [x], inputs: [par], outputs: {par: [d]}}",
            "      - {name: c, type: build, image: i, commands: [x], inputs: [par], outputs: {me: [d]}}",
            "      - {name: d, type: build, image: i, commands: [x], inputs: [me], run_order: 2}",
            "      - {name: e, type: build, image: i, commands: [x], inputs: [[x]], run_order: 2}",
            "  - name: test",
            "    actions:",
            "      - {name: f, type: test, image: i, commands: [x], outputs: {later: [d]}}",
        ])),
        vec![
            "6:66: input `nothing` is not produced by any earlier action; no action produces it",
            "6:75: input `later` is not produced by any earlier action; it is produced by \
             action `f` in stage `test`, which runs later",
            "7:66: input `par` is not produced by any earlier action; it is produced by \
             this same action",
            "8:66: input `par` is not produced by any earlier action; it is produced by \
             action `b` in stage `build`, which runs in parallel (same run_order 1)",
            "10:66: each input must be a string, found a list",
        ]
    );
}

#[test]
fn invalid_run_order_does_not_cascade_into_input_errors() {
    assert_eq!(
        errors(&doc(&[
            "name: hello",
            "source: {git: x}",
            "stages:",
            "  - name: build",
            "    actions:",
            "      - {name: a, type: build, image: i, commands: [x], outputs: {app: [d]}, run_order: x}",
            "      - {name: b, type: build, image: i, commands: [x], inputs: [app], run_order: 2}",
        ])),
        vec!["6:89: `run_order` must be an integer, found \"x\""]
    );
}

// ---- collecting -------------------------------------------------------------

#[test]
fn all_errors_are_collected_and_sorted() {
    let diags = parse(&doc(&[
        "name: Bad_Name",
        "source:",
        "  git: /srv/git/x.git",
        "  poll_interval: soon",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - name: compile",
        "        type: dance",
        "        extra: true",
        "      - name: compile",
        "        type: test",
        "        image: i",
        "        commands: [x]",
        "        inputs: [ghost]",
        "        env: {FERRY_X: y}",
        "unexpected: 1",
    ]))
    .expect_err("many errors");
    let rendered: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(rendered.len(), 8, "{rendered:#?}");
    let positions: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        positions,
        vec![
            (1, 7),
            (4, 18),
            (9, 15),
            (10, 9),
            (11, 15),
            (15, 18),
            (16, 15),
            (17, 1),
        ],
        "{rendered:#?}"
    );
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

#[test]
fn diagnostic_display() {
    let d = Diagnostic {
        line: 3,
        column: 14,
        message: "something is wrong".to_string(),
    };
    assert_eq!(d.to_string(), "3:14: something is wrong");
}

// ---- deploy actions ---------------------------------------------------------

const DEPLOY_PIPELINE: &[&str] = &[
    "name: hello",
    "source: {git: /srv/git/hello.git}",
    "stages:",
    "  - name: build",
    "    actions:",
    "      - {name: compile, type: build, image: i, commands: [x], outputs: {app: [out]}}",
    "  - name: prod",
    "    actions:",
    "      - name: ship",
    "        type: deploy",
    "        inputs: [app]",
    "        environment: production",
];

fn deploy_with(extra: &[&str]) -> String {
    let mut lines = DEPLOY_PIPELINE.to_vec();
    lines.extend_from_slice(extra);
    doc(&lines)
}

#[test]
fn deploy_defaults() {
    let p = parse_ok(&deploy_with(&[]));
    let ship = &p.stages[1].actions[0];
    assert_eq!(ship.kind, ActionKind::Deploy);
    assert_eq!(ship.inputs, strings(&["app"]));
    assert_eq!(
        ship.deploy,
        Some(crate::Deploy::new("production".to_string()))
    );
}

#[test]
fn deploy_settings_parse() {
    let p = parse_ok(&deploy_with(&[
        "        strategy: {batch: 25%}",
        "        min_healthy: 3",
        "        rollback: none",
        "        keep_releases: 2",
        "        hook_timeout: 30s",
        "        connect_timeout: 2s",
        "        secrets: {TOKEN: prod-token}",
        "        runs_on: [deployer]",
    ]));
    let d = p.stages[1].actions[0]
        .deploy
        .clone()
        .expect("deploy settings");
    assert_eq!(
        d.strategy,
        crate::Strategy::Batch(crate::Count::Percent(25))
    );
    assert_eq!(d.min_healthy, Some(crate::Count::Hosts(3)));
    assert!(!d.rollback);
    assert_eq!(d.keep_releases, 2);
    assert_eq!(d.hook_timeout_ms, 30_000);
    assert_eq!(d.connect_timeout_ms, 2_000);
    let p = parse_ok(&deploy_with(&["        strategy: one_at_a_time"]));
    let d = p.stages[1].actions[0]
        .deploy
        .clone()
        .expect("deploy settings");
    assert_eq!(d.strategy, crate::Strategy::OneAtATime);
}

#[test]
fn bad_deploy_settings() {
    assert_eq!(
        errors(&deploy_with(&[
            "        strategy: two_at_a_time",
            "        min_healthy: 0",
            "        rollback: maybe",
            "        keep_releases: 0",
            "        hook_timeout: 0s",
            "        image: busybox",
            "        approvers: [x]",
        ])),
        vec![
            "13:19: unknown strategy \"two_at_a_time\"; expected all_at_once, one_at_a_time, \
             half_at_a_time or a mapping such as `{batch: 2}` or `{batch: 25%}`",
            "14:22: `min_healthy`: expected a number of hosts (at least 1) or a percentage such \
             as 25%, found \"0\"",
            "15:19: `rollback` must be `auto` or `none`, found \"maybe\"",
            "16:24: `keep_releases` must be between 1 and 100, found 0",
            "17:23: `hook_timeout` must be greater than zero",
            "18:9: `image` is not allowed in deploy actions; it is only for build, test and plugin actions",
            "19:9: `approvers` is not allowed in deploy actions; it is only for approval actions",
        ]
    );
    assert_eq!(
        errors(&deploy_with(&["        strategy: {batch: 101%}"])),
        vec!["13:27: `batch`: a percentage must be a whole number from 1% to 100%, found \"101%\""]
    );
}

#[test]
fn execution_mode_defaults_to_superseded_and_is_checked() {
    let base = "name: m\nsource: {git: /x}\nstages:\n  - name: s\n    actions:\n      - {name: a, type: approval}\n";
    assert_eq!(parse_ok(base).execution_mode, ExecutionMode::Superseded);
    for mode in ExecutionMode::ALL {
        let text = format!("{base}execution_mode: {mode}\n");
        assert_eq!(parse_ok(&text).execution_mode, mode);
    }
    assert_eq!(
        errors(&format!("{base}execution_mode: fifo\n")),
        vec!["7:17: unknown execution_mode \"fifo\"; expected superseded, queued or parallel"]
    );
}

#[test]
fn a_version_stored_before_modes_existed_runs_in_parallel() {
    let mut stored = match serde_json::to_value(parse_ok(
        "name: m\nsource: {git: /x}\nstages:\n  - name: s\n    actions:\n      - {name: a, type: approval}\n",
    )) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    if let Some(map) = stored.as_object_mut() {
        map.remove("execution_mode");
    }
    let old: Pipeline = match serde_json::from_value(stored) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(old.execution_mode, ExecutionMode::Parallel);
}

#[test]
fn approvals_may_need_several_people_and_carry_a_message_and_link() {
    let base = "name: a\nsource: {git: /x}\nstages:\n  - name: s\n    actions:\n";
    let p = parse_ok(&format!(
        "{base}      - {{name: ok, type: approval, required: 2, message: \"Ship it?\", url: \"https://tickets.example/42\"}}\n"
    ));
    let ok = &p.stages[0].actions[0];
    assert_eq!((ok.required, ok.message.as_str()), (2, "Ship it?"));
    assert_eq!(ok.url, "https://tickets.example/42");
    assert_eq!(
        parse_ok(&format!("{base}      - {{name: ok, type: approval}}\n")).stages[0].actions[0]
            .required,
        1
    );
    assert_eq!(
        errors(&format!(
            "{base}      - {{name: ok, type: approval, required: 0, url: \"ftp://x\"}}\n"
        )),
        vec![
            "6:46: `required` must be between 1 and 10, found 0",
            "6:54: `url` must be an http:// or https:// address without spaces, at most 2048 bytes",
        ]
    );
    assert!(
        errors(&format!(
            "{base}      - {{name: b, type: build, image: i, commands: [x], required: 2}}\n"
        ))[0]
            .contains("`required`"),
        "approval-only keys are refused elsewhere"
    );
}

#[test]
fn variables_are_declared_and_references_linted_with_positions() {
    let text = doc(&[
        "name: v",
        "source: {git: /x}",
        "variables:",
        "  REGION: {default: eu-west-1, description: where to deploy}",
        "  DRY_RUN: \"false\"",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - {name: compile, type: build, image: i, commands: [\"echo VERSION=1 > $FERRY_OUTPUT_VARS\"]}",
        "      - {name: pack, type: build, image: \"img:#{build.compile.VERSION}\", run_order: 2, commands: [\"echo #{variables.REGION}\"]}",
        "  - name: gate",
        "    actions:",
        "      - {name: ok, type: approval, message: \"Ship #{build.compile.VERSION} to #{variables.REGION}?\"}",
    ]);
    let p = parse_ok(&text);
    assert_eq!(p.variables["REGION"].default, "eu-west-1");
    assert_eq!(p.variables["REGION"].description, "where to deploy");
    assert_eq!(p.variables["DRY_RUN"].default, "false");

    let bad = doc(&[
        "name: v",
        "source: {git: /x}",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - {name: a, type: build, image: i, commands: [\"echo #{variables.NOPE}\", \"echo #{build.b.X}\"]}",
        "      - {name: b, type: build, image: i, commands: [\"echo #{gate.ok.X} #{nope.x.Y}\", \"#{bad}\"]}",
        "  - name: gate",
        "    actions:",
        "      - {name: ok, type: approval}",
    ]);
    assert_eq!(
        errors(&bad),
        vec![
            "6:53: #{variables.NOPE}: the pipeline declares no variable `NOPE` under `variables:`",
            "6:79: #{build.b.X}: `build.b` does not finish before this action starts",
            "7:53: #{gate.ok.X}: `gate.ok` is not a build, test or plugin action; only those write output variables",
            "7:53: #{nope.x.Y}: there is no action `x` in a stage `nope`",
            "7:86: invalid variable reference `#{bad}`: write #{variables.NAME}, #{STAGE.ACTION.NAME} or #{matrix.NAME}",
        ]
    );
}

#[test]
fn on_failure_reads_fail_rollback_and_retry() {
    use crate::condition::OnFailure;
    let with = |policy: &str| {
        format!(
            "name: o\nsource: {{git: /x}}\nstages:\n  - name: s\n    on_failure: {policy}\n    actions:\n      - {{name: ok, type: approval}}\n"
        )
    };
    assert_eq!(
        parse_ok(&with("fail")).stages[0].on_failure,
        OnFailure::Fail
    );
    assert_eq!(
        parse_ok(&with("rollback")).stages[0].on_failure,
        OnFailure::Rollback
    );
    assert_eq!(
        parse_ok(&with("{retry: 3}")).stages[0].on_failure,
        OnFailure::Retry(3)
    );
    assert_eq!(
        errors(&with("later")),
        vec!["5:17: unknown on_failure \"later\"; expected fail, rollback or {retry: N}"]
    );
    assert_eq!(
        errors(&with("{retry: 0}")),
        vec!["5:25: `retry` must be between 1 and 10, found 0"]
    );
}
