//! Test reports and outputs kept on failure, end to end with real
//! containers: a test action that writes a JUnit report and then fails has
//! its counts and failed tests in `ferry status` (table and JSON) and its
//! report kept as an output (`when: always`), while an output kept only on
//! success is not; a report that is missing or hostile is named, not fatal;
//! the `execution.failed` event names the failed tests; `ferry exec` shows
//! the same summary and keeps the same outputs.

use ferry_tests::exec::text;
use ferry_tests::{Cluster, Repo, ensure_busybox_image};

/// Two passing tests, one failing with a secret in its text, one skipped.
const REPORT: &str = r#"<?xml version="1.0"?>
<testsuites time="0.75">
  <testsuite name="math">
    <testcase classname="math" name="adds" time="0.1"/>
    <testcase classname="math" name="subtracts" time="0.1"/>
    <testcase classname="math" name="divides" time="0.5">
      <failure message="assertion failed: 4 / 2 == 3">left: 2
right: 3
token was hunter2</failure>
    </testcase>
    <testcase classname="math" name="later"><skipped/></testcase>
  </testsuite>
</testsuites>
"#;

fn pipeline(name: &str, git: &str) -> String {
    format!(
        r#"name: {name}
source: {{git: {git}}}
stages:
  - name: test
    actions:
      - name: unit
        type: test
        image: ferry-local/busybox
        inputs: [source]
        env: {{TOKEN: hunter2}}
        commands:
          - mkdir -p reports bin
          - cp report.xml reports/junit.xml
          - echo built > bin/app
          - echo '<testsuite' > reports/broken.xml
          - exit 3
        outputs:
          app: [bin/]
          junit: {{paths: [reports/], when: always}}
          crash: {{paths: [bin/app], when: on_failure}}
        reports:
          junit: [reports/, missing.xml]
"#
    )
}

#[test]
fn a_failed_test_run_shows_its_failures_and_keeps_its_report() {
    ensure_busybox_image();
    let mut c = Cluster::start("reports");
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("report.xml", REPORT)], "tests");
    c.apply(&pipeline("reports", &repo.url()));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "reports"])
        .trim()
        .to_string();
    let v = c.wait_status("reports", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Failed", "{v:#}");
    let unit = Cluster::action(&v, "test", "unit");
    assert_eq!(unit["exit_code"], 3, "{unit:#}");
    let tests = &unit["tests"];
    assert_eq!(tests["total"], 4, "{tests:#}");
    assert_eq!(tests["passed"], 2);
    assert_eq!(tests["failed"], 1);
    assert_eq!(tests["skipped"], 1);
    assert_eq!(tests["duration_ms"], 750);
    let failure = &tests["failures"][0];
    assert_eq!(failure["suite"], "math");
    assert_eq!(failure["name"], "divides");
    let text = failure["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("assertion failed: 4 / 2 == 3\nleft: 2"),
        "{text}"
    );
    // The problems name the broken and the missing report.
    let problems = tests["problems"].to_string();
    assert!(problems.contains("reports/broken.xml"), "{problems}");
    assert!(problems.contains("missing.xml"), "{problems}");

    // Outputs by outcome: the report and the crash file, not the app.
    let mut kept: Vec<&str> = unit["outputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["name"].as_str()).collect())
        .unwrap_or_default();
    kept.sort();
    assert_eq!(kept, vec!["crash", "junit"], "{unit:#}");
    let dir = c.path().join("junit");
    c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "get",
            "reports",
            "--execution",
            "latest",
            "junit",
            "--out",
            &dir.display().to_string(),
        ],
    );
    let report = std::fs::read_to_string(dir.join("reports/junit.xml")).unwrap_or_default();
    assert!(report.contains("divides"), "{report}");

    // The table shows the counts and the failure under the action.
    let table = c.ferry_ok(Some("admin"), &["status", "reports", "--execution", &exec]);
    assert!(
        table.contains("test/unit tests: 2 passed, 1 failed, 1 skipped (4 tests, 0.8 s)"),
        "{table}"
    );
    assert!(table.contains("failed: math :: divides"), "{table}");

    // Notifications say which tests failed.
    let events = c.ferry_ok(Some("admin"), &["events", "--pipeline", "reports"]);
    assert!(
        events.contains(
            "failed: test/unit tests 2 passed, 1 failed, 1 skipped (4 tests, 0.8 s); failed: math :: divides"
        ),
        "{events}"
    );
}

/// The secret the action holds never reaches the status or the log, even
/// when a test prints it into its failure.
#[test]
fn a_secret_printed_by_a_test_is_masked_in_the_summary() {
    ensure_busybox_image();
    let mut c = Cluster::start("reportsec");
    c.add_agent("a", &[]);
    let file = c.path().join("token.txt");
    std::fs::write(&file, "hunter2").unwrap_or_else(|e| panic!("{e}"));
    let f = file.display().to_string();
    c.ferry_ok(
        Some("admin"),
        &["secret", "set", "token", "--from-file", &f],
    );
    let repo = Repo::new();
    repo.commit(&[("report.xml", REPORT)], "tests");
    let yaml = pipeline("reportsec", &repo.url())
        .replace("env: {TOKEN: hunter2}", "secrets: {TOKEN: token}");
    c.apply(&yaml);
    let exec = c
        .ferry_ok(Some("admin"), &["run", "reportsec"])
        .trim()
        .to_string();
    let v = c.wait_status("reportsec", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    let text = Cluster::action(&v, "test", "unit")["tests"]["failures"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("token was ***"), "{text}");
    assert!(!v.to_string().contains("hunter2"), "{v:#}");
}

#[test]
fn ferry_exec_shows_the_summary_and_keeps_outputs_by_outcome() {
    ensure_busybox_image();
    let repo = Repo::new();
    repo.commit(
        &[
            ("report.xml", REPORT),
            ("ferry.yml", &pipeline("local", "/not/fetched")),
        ],
        "tests",
    );
    let keep = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = keep.path().join("out");
    let out = ferry_tests::exec::run(
        repo.work(),
        &["--artifacts", &dir.display().to_string()],
        &[],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("tests: 2 passed, 1 failed, 1 skipped (4 tests, 0.8 s)"),
        "{all}"
    );
    assert!(all.contains("failed: math :: divides"), "{all}");
    assert!(
        dir.join("test/unit/junit/reports/junit.xml").is_file(),
        "{all}"
    );
    assert!(dir.join("test/unit/crash/bin/app").is_file(), "{all}");
    assert!(!dir.join("test/unit/app").exists(), "{all}");
}
