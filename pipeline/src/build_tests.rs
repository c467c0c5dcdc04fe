//! Tests of the keys real builds use beyond commands: outputs kept by
//! outcome (`when:`) and test reports (`reports: {junit: ...}`).

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
