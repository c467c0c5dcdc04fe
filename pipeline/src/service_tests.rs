//! `services:` from the pipeline file to the spec an engine runs: a good
//! file read into the model, every bad input refused with its LINE:COL,
//! references resolved as the action's are (as shell variables in
//! commands), and a service image that resolves to no image failing the
//! action before it starts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::execution::{ActionStatus, ExecutionState, Gates};
use crate::parse;
use crate::service::{DEFAULT_READY_TIMEOUT_MS, Ready, Service, ServiceCommand};
use crate::test_support::{doc, expect_errors, expect_ok, started_spec};

/// A pipeline whose one action (`type`, named `unit`) has `services` as
/// given, indented under the action (the first line is line 11).
fn with_services(kind: &str, services: &[&str]) -> String {
    let mut lines = vec![
        "name: hello",
        "source: {git: /srv/git/hello.git}",
        "variables:",
        "  PORT: \"8080\"",
        "stages:",
        "  - name: test",
        "    actions:",
        "      - name: unit",
    ];
    let kind_line = format!("        type: {kind}");
    lines.push(&kind_line);
    let rest: &[&str] = match kind {
        "build" | "test" => &[
            "        image: ferry-local/busybox",
            "        commands: [make]",
        ],
        "deploy" => &["        environment: prod", "        inputs: [source]"],
        _ => &[],
    };
    let mut owned: Vec<String> = rest.iter().map(|l| l.to_string()).collect();
    owned.push("        services:".into());
    owned.extend(services.iter().map(|l| format!("          {l}")));
    let mut all: Vec<&str> = lines;
    all.extend(owned.iter().map(String::as_str));
    doc(&all)
}

fn errors(text: &str) -> Vec<String> {
    expect_errors(parse(text))
}

const GOOD: &[&str] = &[
    "- name: web",
    "  image: \"ferry-local/busybox\"",
    "  env: {GREETING: hello, PORT: \"#{variables.PORT}\"}",
    "  command: \"mkdir -p /www && exec httpd -f -p #{variables.PORT} -h /www\"",
    "  ready: {command: \"wget -q -O- http://127.0.0.1:#{variables.PORT}/\", timeout: 30s}",
    "- name: cache",
    "  image: ferry-local/busybox",
    "  command: [sleep, \"3600\"]",
    "- name: queue",
    "  image: ferry-local/busybox",
    "  ready:",
    "    command: \"true\"",
];

#[test]
fn a_test_action_reads_its_services() {
    let p = expect_ok(parse(&with_services("test", GOOD)));
    let services = &p.stages[0].actions[0].services;
    assert_eq!(
        services,
        &vec![
            Service {
                name: "web".into(),
                image: "ferry-local/busybox".into(),
                env: BTreeMap::from([
                    ("GREETING".to_string(), "hello".to_string()),
                    ("PORT".to_string(), "#{variables.PORT}".to_string()),
                ]),
                command: Some(ServiceCommand::Shell(
                    "mkdir -p /www && exec httpd -f -p #{variables.PORT} -h /www".into()
                )),
                ready: Some(Ready {
                    command: "wget -q -O- http://127.0.0.1:#{variables.PORT}/".into(),
                    timeout_ms: 30_000,
                }),
            },
            Service {
                name: "cache".into(),
                image: "ferry-local/busybox".into(),
                env: BTreeMap::new(),
                command: Some(ServiceCommand::Args(vec!["sleep".into(), "3600".into()])),
                ready: None,
            },
            Service {
                name: "queue".into(),
                image: "ferry-local/busybox".into(),
                env: BTreeMap::new(),
                command: None,
                ready: Some(Ready {
                    command: "true".into(),
                    timeout_ms: DEFAULT_READY_TIMEOUT_MS,
                }),
            },
        ]
    );
    expect_ok(parse(&with_services("build", GOOD)));
}

#[test]
fn references_reach_service_commands_as_shell_variables() {
    let p = expect_ok(parse(&with_services("test", GOOD)));
    let spec = started_spec(&p);
    let web = &spec.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.image, "ferry-local/busybox");
    // Numbered as in an action's commands: one variable per reference.
    assert_eq!(
        web.command,
        vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "mkdir -p /www && exec httpd -f -p ${FERRY_REF_0_PORT} -h /www".to_string(),
        ]
    );
    assert_eq!(
        web.ready_command,
        "wget -q -O- http://127.0.0.1:${FERRY_REF_0_PORT}/"
    );
    assert_eq!(
        web.env,
        BTreeMap::from([
            ("FERRY_REF_0_PORT".to_string(), "8080".to_string()),
            ("GREETING".to_string(), "hello".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ])
    );
    assert_eq!(web.ready_timeout, Duration::from_secs(30));
    let cache = &spec.services[1];
    assert_eq!(cache.command, vec!["sleep".to_string(), "3600".to_string()]);
    assert_eq!(
        (cache.ready_command.as_str(), cache.ready_timeout),
        ("", Duration::from_secs(60))
    );
    assert!(spec.services[2].command.is_empty());
    assert_eq!(crate::spec::check_services(&spec), Ok(()));
}

#[test]
fn the_agent_check_refuses_what_the_reader_would() {
    let p = expect_ok(parse(&with_services("test", GOOD)));
    let good = started_spec(&p);
    let bad = |change: &dyn Fn(&mut crate::spec::ActionSpec)| {
        let mut spec = good.clone();
        change(&mut spec);
        crate::spec::check_services(&spec).expect_err("refused")
    };
    assert!(bad(&|s| s.services[1].name = "web".into()).contains("twice"));
    assert!(bad(&|s| s.services[0].name = "Web".into()).contains("service name"));
    assert!(bad(&|s| s.services[0].name = "workspace".into()).contains("answers to"));
    assert!(bad(&|s| s.services[0].name = "unit".into()).contains("answers to"));
    assert!(bad(&|s| s.services[0].image.clear()).contains("no image"));
    assert!(bad(&|s| s.services[0].ready_timeout = Duration::ZERO).contains("ready timeout"));
    assert!(
        bad(&|s| s.services[0].ready_timeout = Duration::from_secs(601)).contains("ready timeout")
    );
    let nine = |s: &mut crate::spec::ActionSpec| {
        s.services = (0..9)
            .map(|i| crate::spec::ServiceSpec {
                name: format!("s{i}"),
                ..s.services[0].clone()
            })
            .collect()
    };
    assert!(bad(&nine).contains("at most 8"));
}

#[test]
fn only_build_and_test_actions_have_services() {
    assert_eq!(
        errors(&with_services("approval", &["- {name: db, image: x}"])),
        vec![
            "10:9: `services` is not allowed in approval actions; it is only for build and test actions"
        ]
    );
    assert_eq!(
        errors(&with_services("deploy", &["- {name: db, image: x}"])),
        vec![
            "12:9: `services` is not allowed in deploy actions; it is only for build and test actions"
        ]
    );
}

#[test]
fn service_names_follow_the_rule_once_each_and_leave_the_actions_own() {
    assert_eq!(
        errors(&with_services(
            "test",
            &[
                "- {name: Db, image: x}",
                "- {name: db, image: x}",
                "- {name: db, image: y}",
                "- {name: workspace, image: x}",
                "- {name: unit, image: x}",
                "- {image: x}",
            ]
        )),
        vec![
            "13:20: invalid service name \"Db\": must start with a lowercase letter (a-z)",
            "15:20: service `db` is listed twice (first at 14:20)",
            "16:20: service name `workspace` is reserved: the action's own container answers to it",
            "17:20: service `unit` has its action's name, which the action's own container answers to",
            "18:13: missing required key `name` in service",
        ]
    );
}

#[test]
fn an_action_has_at_most_eight_services() {
    let many: Vec<String> = (0..9)
        .map(|i| format!("- {{name: s{i}, image: x}}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        errors(&with_services("test", &many)),
        vec!["13:11: `services` lists 9 services; an action has at most 8"]
    );
}

#[test]
fn each_bad_service_field_is_reported_where_it_is() {
    assert_eq!(
        errors(&with_services(
            "test",
            &[
                "- name: a",
                "  imgae: x",
                "- name: b",
                "  image: \"has space\"",
                "  env: {FERRY_X: \"1\", 9x: \"2\"}",
                "  command: []",
                "- name: c",
                "  image: x",
                "  command: {run: x}",
                "- name: d",
                "  image: x",
                "  command: [sh, -c, \"echo #{variables.PORT}\"]",
                "- name: e",
                "  image: x",
                "  command: \" \"",
                "  ready: {command: \"true\", timeout: 11m, every: 1s}",
                "- name: f",
                "  image: x",
                "  ready: {timeout: 0s}",
                "- name: g",
                "  image: x",
                "  ready: {command: \"true\", timeout: soon}",
                "- name: h",
                "  image: \"#{variables.NOPE}\"",
                "  ready: \"true\"",
            ]
        )),
        vec![
            "13:13: missing required key `image` in service",
            "14:13: unknown key `imgae` in service; expected one of: name, image, env, command, ready",
            "16:20: invalid image \"has space\": must not contain whitespace or control characters",
            "17:19: environment variable `FERRY_X` is reserved: names starting with FERRY_ are set by Ferry",
            "17:33: invalid environment variable name `9x`: must match [A-Za-z_][A-Za-z0-9_]*",
            "18:22: `command` must list at least one argument",
            "21:22: `command` must be a string or a list, found a mapping",
            "24:31: a `command` list runs without a shell, so it takes no `#{...}` references: \
             write `command` as one string, where they reach the shell as variables",
            "27:22: `command` must not be empty",
            "28:47: the ready `timeout` must be greater than zero and at most 10 minutes",
            "28:52: unknown key `every` in ready; expected one of: command, timeout",
            "31:20: missing required key `command` in `ready`",
            "31:30: the ready `timeout` must be greater than zero and at most 10 minutes",
            "34:47: invalid duration \"soon\": expected number at 0",
            "36:20: #{variables.NOPE}: the pipeline declares no variable `NOPE` under `variables:`",
            "37:20: `ready` must be a mapping, found \"true\"",
        ]
    );
}

#[test]
fn services_must_be_a_list_of_mappings() {
    let text = with_services("test", &[]).replace("services:\n", "services: db\n");
    assert_eq!(
        errors(&text),
        vec!["12:19: `services` must be a list, found \"db\""]
    );
    assert_eq!(
        errors(&with_services("test", &["- db"])),
        vec!["13:13: each service must be a mapping, found \"db\""]
    );
}

#[test]
fn a_service_image_that_resolves_to_no_image_fails_the_action() {
    let p = expect_ok(parse(&with_services(
        "test",
        &["- {name: db, image: \"db:#{variables.PORT}\"}"],
    )));
    let mut state = ExecutionState::new(&p);
    state.variables.insert("PORT".into(), "1; rm -rf /".into());
    let started = state.advance(&p, &Gates::open(), 1);
    assert!(started.queued.is_empty());
    let run = state.action(0, 0).cloned().unwrap_or_default();
    assert_eq!(run.status(), ActionStatus::Failed);
    assert_eq!(
        run.message,
        "the `image` of service `db` resolved to \"db:1; rm -rf /\" is not an image reference"
    );
    // A value that names an image is what the service runs.
    let mut state = ExecutionState::new(&p);
    state.variables.insert("PORT".into(), "16".into());
    state.advance(&p, &Gates::open(), 1);
    let run = state.action(0, 0).cloned().unwrap_or_default();
    let spec = crate::spec::action_spec(&p, (0, 0), &run, ("e-1", "abc"), 7).unwrap_or_default();
    assert_eq!(spec.services[0].image, "db:16");
}
