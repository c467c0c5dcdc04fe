//! Tests of the keys real builds use beyond commands: outputs kept by
//! outcome (`when:`), test reports (`reports: {junit: ...}`), matrices and
//! sources that are other pipelines.

use crate::reports::OutputWhen;
use crate::test_support::{doc, expect_errors, expect_ok};
use crate::{Pipeline, parse};

/// A pipeline whose one test action ends with `tail` (lines indented as
/// the action's keys; the first tail line is line 13).
fn test_action(tail: &[&str]) -> String {
    let mut lines = vec![
        "name: hello",
        "source:",
        "  git: file:///srv/git/hello.git",
        "stages:",
        "  - name: test",
        "    actions:",
        "      - name: unit",
        "        type: test",
        "        image: rust:1",
        "        inputs: [source]",
        "        commands:",
        "          - cargo test",
    ];
    let tail: Vec<String> = tail.iter().map(|l| format!("        {l}")).collect();
    lines.extend(tail.iter().map(String::as_str));
    doc(&lines)
}

fn ok(tail: &[&str]) -> Pipeline {
    expect_ok(parse(&test_action(tail)))
}

fn errors(tail: &[&str]) -> Vec<String> {
    expect_errors(parse(&test_action(tail)))
}

#[test]
fn outputs_take_a_when_and_reports_list_junit_files() {
    let p = ok(&[
        "outputs:",
        "  binary: [target/release/app]",
        "  junit:",
        "    paths: [target/junit.xml]",
        "    when: always",
        "  core:",
        "    paths: [core]",
        "    when: on_failure",
        "  docs: {paths: [doc], when: on_success}",
        "reports:",
        "  junit: [target/junit.xml, other/*.xml]",
    ]);
    let action = &p.stages[0].actions[0];
    assert_eq!(action.outputs.len(), 4);
    assert_eq!(
        action.outputs["junit"],
        vec!["target/junit.xml".to_string()]
    );
    assert_eq!(action.output_when("binary"), OutputWhen::OnSuccess);
    assert_eq!(action.output_when("junit"), OutputWhen::Always);
    assert_eq!(action.output_when("core"), OutputWhen::OnFailure);
    assert_eq!(action.output_when("docs"), OutputWhen::OnSuccess);
    assert!(
        !action.output_when.contains_key("docs"),
        "the default is not stored"
    );
    assert_eq!(action.reports.junit.len(), 2);
    assert_eq!(p.needs_version(), (0, 2));
}

#[test]
fn a_single_report_path_may_be_written_bare() {
    let p = ok(&["reports: {junit: report.xml}"]);
    assert_eq!(p.stages[0].actions[0].reports.junit, vec!["report.xml"]);
}

#[test]
fn a_pipeline_without_them_needs_what_it_did_before() {
    let p = ok(&["outputs: {binary: [app]}"]);
    assert_eq!(p.needs_version(), (0, 1));
    let json = serde_json::to_string(&p.stages[0].actions[0]).expect("serialize");
    assert!(
        !json.contains("output_when") && !json.contains("reports"),
        "stored as before: {json}"
    );
}

#[test]
fn bad_outputs_and_reports_are_named_with_their_position() {
    assert_eq!(
        errors(&[
            "outputs:",
            "  a: {paths: [x], when: sometimes}",
            "  b: {when: always}",
            "  c: {paths: [], extra: 1}",
            "  d: {paths: [../etc/passwd]}",
            "reports: {junit: /abs.xml, html: [x]}",
        ]),
        vec![
            "14:33: unknown output `when` \"sometimes\"; expected one of: on_success, on_failure, always",
            "15:14: missing required key `paths` in output `b`",
            "16:22: output `c` must list at least one path",
            "16:26: unknown key `extra` in output `c`; expected one of: paths, when",
            "17:23: output path `../etc/passwd` must not contain a `..` component",
            "18:26: output path `/abs.xml` must be relative to the workspace, not absolute",
            "18:36: unknown key `html` in reports; expected one of: junit",
        ]
    );
}

#[test]
fn too_many_reports_and_reports_on_an_approval_are_refused() {
    let many: Vec<String> = (0..17).map(|i| format!("r{i}.xml")).collect();
    let line = format!("reports: {{junit: [{}]}}", many.join(", "));
    assert_eq!(
        errors(&[&line]),
        vec!["13:26: `junit` lists 17 reports; at most 16 are read"]
    );
    let approval = doc(&[
        "name: hello",
        "source:",
        "  git: file:///srv/git/hello.git",
        "stages:",
        "  - name: gate",
        "    actions:",
        "      - name: ok",
        "        type: approval",
        "        reports: {junit: [x.xml]}",
    ]);
    assert_eq!(
        expect_errors(parse(&approval)),
        vec![
            "9:9: `reports` is not allowed in approval actions; it is only for build and test actions"
        ]
    );
}

const MATRIX: &str = r##"
name: m
source: {git: /tmp/m.git}
stages:
  - name: test
    actions:
      - name: unit
        type: test
        image: "rust:#{matrix.rust}"
        env: {TARGET: "#{matrix.os}"}
        commands: ["cargo test --target #{matrix.os}"]
        outputs:
          "junit-#{matrix.os}-#{matrix.rust}": {paths: [junit.xml], when: always}
        matrix:
          rust: ["1.80", "1.85"]
          os: [linux, musl]
          exclude: [{rust: "1.80", os: musl}]
          max_parallel: 2
          fail_fast: false
      - {name: lint, type: test, image: img, commands: [true]}
  - name: after
    actions:
      - {name: done, type: build, image: img, commands: [true]}
"##;

fn matrix_pipeline(yaml: &str) -> Pipeline {
    expect_ok(parse(yaml))
}

#[test]
fn a_matrix_expands_to_one_action_per_combination() {
    let p = matrix_pipeline(MATRIX);
    let names: Vec<&str> = p.stages[0]
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "unit [rust=1.80, os=linux]",
            "unit [rust=1.85, os=linux]",
            "unit [rust=1.85, os=musl]",
            "lint"
        ]
    );
    let cell = p.stages[0].actions[2].matrix.as_ref().expect("a cell");
    assert_eq!(cell.base, "unit");
    assert_eq!(cell.value("os"), Some("musl"));
    assert_eq!((cell.max_parallel, cell.fail_fast), (2, false));
    let outputs: Vec<&String> = p.stages[0].actions[2].outputs.keys().collect();
    assert_eq!(outputs, vec!["junit-musl-1-85"], "values made name-safe");
    assert_eq!(
        p.stages[0].actions[2].output_when("junit-musl-1-85"),
        OutputWhen::Always
    );
    assert_eq!(p.needs_version(), (0, 2));
}

#[test]
fn each_cell_resolves_its_own_values_as_data() {
    use crate::execution::{ExecutionState, Gates};
    let p = matrix_pipeline(MATRIX);
    let mut e = ExecutionState::new(&p);
    let started = e.advance(&p, &Gates::open(), 1);
    // max_parallel: 2 of the 3 cells, and the other action of the group.
    assert_eq!(started.queued, vec![(0, 0), (0, 1), (0, 3)]);
    let run = e.action(0, 1).expect("cell");
    let action = &p.stages[0].actions[1];
    assert_eq!(
        run.resolved_text(action.image.as_deref().unwrap_or("")),
        "rust:1.85"
    );
    let (commands, env) = run.resolved_commands_and_env(action);
    assert_eq!(commands, vec!["cargo test --target ${FERRY_REF_0_os}"]);
    assert_eq!(env.get("FERRY_REF_0_os").map(String::as_str), Some("linux"));
    assert_eq!(env.get("TARGET").map(String::as_str), Some("linux"));
}

#[test]
fn max_parallel_and_fail_fast_false_let_every_cell_run_then_fail() {
    use crate::execution::{ActionStatus, ExecutionState, ExecutionStatus, Gates};
    let p = matrix_pipeline(MATRIX);
    let open = Gates::open();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &open, 1);
    // A cell fails: the third cell still starts (a slot freed), nothing else.
    let s = e.finish_action(&p, (0, 0), false, "exit 1".into(), &open, 2);
    assert_eq!(s.queued, vec![(0, 2)]);
    assert_eq!(e.status, ExecutionStatus::InProgress);
    e.finish_action(&p, (0, 3), true, String::new(), &open, 3);
    e.finish_action(&p, (0, 1), true, String::new(), &open, 4);
    assert_eq!(e.status, ExecutionStatus::InProgress, "a cell still runs");
    let s = e.finish_action(&p, (0, 2), true, String::new(), &open, 5);
    assert!(s.queued.is_empty(), "the next stage never starts");
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(
        e.action(1, 0).map(|r| r.status()),
        Some(ActionStatus::Pending)
    );

    // fail_fast (the default): the failure stops the cells not yet started.
    let fast = matrix_pipeline(&MATRIX.replace("fail_fast: false", "fail_fast: true"));
    let mut e = ExecutionState::new(&fast);
    e.advance(&fast, &open, 1);
    let s = e.finish_action(&fast, (0, 0), false, "exit 1".into(), &open, 2);
    assert!(s.queued.is_empty());
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(
        e.action(0, 2).map(|r| r.status()),
        Some(ActionStatus::Pending)
    );
}

#[test]
fn bad_matrices_are_named_with_their_position() {
    let yaml = |matrix: &str, outputs: &str| {
        doc(&[
            "name: m",
            "source: {git: x}",
            "stages:",
            "  - name: t",
            "    actions:",
            "      - name: unit",
            "        type: test",
            "        image: img",
            "        commands: [\"echo #{matrix.nope}\"]",
            &format!("        outputs: {outputs}"),
            &format!("        matrix: {matrix}"),
        ])
    };
    let seventeen: Vec<String> = (0..17).map(|i| i.to_string()).collect();
    let big = format!("{{a: [{0}], b: [{0}]}}", seventeen.join(", "));
    assert_eq!(
        expect_errors(parse(&yaml(&big, "{}"))),
        vec![
            "9:20: #{matrix.nope}: the matrix of `unit` has no axis `nope`",
            "11:17: the matrix has 289 combinations; at most 256",
        ]
    );
    assert_eq!(
        expect_errors(parse(&yaml(
            "{v: [\"a b\", x, x], exclude: [{w: 1}, {v: y}], max_parallel: 0}",
            "{report: [r.xml]}"
        ))),
        vec![
            "9:20: #{matrix.nope}: the matrix of `unit` has no axis `nope`",
            "11:22: matrix value \"a b\" contains ' '; only letters, digits, '.', '_' and '-' are allowed",
            "11:32: matrix axis `v` lists \"x\" twice",
            "11:47: `exclude` names `w`, which is not an axis of the matrix",
            "11:58: `exclude`: axis `v` has no value \"y\"",
            "11:77: `max_parallel` must be at least 1, found 0",
        ]
    );
    assert_eq!(
        expect_errors(parse(&yaml("{v: [a, b]}", "{report: [r.xml]}"))),
        vec![
            "9:20: #{matrix.nope}: the matrix of `unit` has no axis `nope`",
            "10:19: output `report` would be written by each of the matrix's 2 actions: name it with a matrix value, e.g. `report-#{matrix.v}`",
        ]
    );
    // A matrix value used where there is no matrix.
    let plain = with_no_matrix();
    assert_eq!(
        expect_errors(parse(&plain)),
        vec![
            "9:20: #{matrix.os}: only an action with a `matrix:` has matrix values",
            "10:19: output `r-#{matrix.os}` names a matrix value, but the action has no `matrix`",
        ]
    );
}

fn with_no_matrix() -> String {
    doc(&[
        "name: m",
        "source: {git: x}",
        "stages:",
        "  - name: t",
        "    actions:",
        "      - name: unit",
        "        type: test",
        "        image: img",
        "        commands: [\"echo #{matrix.os}\"]",
        "        outputs: {\"r-#{matrix.os}\": [r.xml]}",
    ])
}

#[test]
fn a_pipeline_fed_by_others_names_them_in_its_source() {
    let ok = expect_ok(parse(
        "name: d\nsource: {pipeline: [app-build, docs], branch: main, when: succeeded}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, inputs: [app-build.image, source], commands: [true]}\n",
    ));
    let ups: Vec<&str> = ok
        .source
        .upstreams
        .iter()
        .map(|u| u.pipeline.as_str())
        .collect();
    assert_eq!(ups, vec!["app-build", "docs"]);
    assert_eq!(ok.source.upstreams[0].branch.as_deref(), Some("main"));
    assert_eq!(
        ok.source.git, "",
        "filled in from the upstream when applied"
    );
    assert_eq!(ok.needs_version(), (0, 2));
    assert_eq!(
        expect_errors(parse(
            "name: d\nsource: {pipeline: [a, a], when: failed, poll_interval: 1m}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, inputs: [b.image], commands: [true]}\n",
        )),
        vec![
            "2:24: upstream `a` is named twice",
            "2:34: `when` of an upstream must be succeeded, found \"failed\"",
            "2:42: `poll_interval` cannot be used with `pipeline`: its upstreams start this pipeline",
            "6:50: input `b.image`: `b` is not an upstream of this pipeline (name it in `source: {pipeline: ...}`)",
        ]
    );
}

#[test]
fn runs_on_takes_matrix_values() {
    let p = expect_ok(parse(
        "name: m\nsource: {git: x}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [true], runs_on: [\"#{matrix.arch}\", linux], matrix: {arch: [amd64, arm64]}}\n",
    ));
    let labels: Vec<Vec<String>> = p.stages[0]
        .actions
        .iter()
        .map(|a| a.runs_on.clone())
        .collect();
    assert_eq!(
        labels,
        vec![
            vec!["amd64".to_string(), "linux".into()],
            vec!["arm64".into(), "linux".into()]
        ]
    );
    assert_eq!(
        expect_errors(parse(
            "name: m\nsource: {git: x}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [true], runs_on: [\"#{matrix.os}\"], matrix: {arch: [amd64]}}\n",
        )),
        vec!["6:94: `runs_on` label `#{matrix.os}` names no axis of this matrix"]
    );
    assert_eq!(
        expect_errors(parse(
            "name: m\nsource: {git: x}\nstages:\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [true], runs_on: [\"#{matrix.os}\"]}\n",
        )),
        vec!["6:68: `runs_on` names a matrix value, but the action has no `matrix`"]
    );
}
