//! Matrices end to end on a real agent with Docker: one action written once
//! runs once per combination (exclusions left out), each cell gets its own
//! `#{matrix.NAME}` values as data and its own output, at most
//! `max_parallel` cells run at once, `ferry status` groups the cells under
//! the matrix, a cell's log is read by its name, and with `fail_fast: false`
//! every cell runs before the execution fails.

use ferry_tests::{Cluster, Repo, ensure_busybox_image};
use serde_json::Value;

fn pipeline(name: &str, git: &str, fail_fast: bool) -> String {
    format!(
        r##"name: {name}
execution_mode: parallel
source: {{git: {git}}}
stages:
  - name: test
    actions:
      - name: unit
        type: test
        image: ferry-local/busybox
        env: {{WHICH: "#{{matrix.os}}"}}
        commands:
          - 'echo "cell #{{matrix.os}}/#{{matrix.v}} with $WHICH"'
          - 'test "#{{matrix.v}}" != "2.0" || test "#{{variables.fail}}" = no'
          - sleep 2
          - 'echo "#{{matrix.v}}" > v.txt'
        outputs:
          "v-#{{matrix.os}}-#{{matrix.v}}": [v.txt]
        matrix:
          os: [alpine, debian]
          v: ["1.0", "2.0"]
          exclude: [{{os: debian, v: "1.0"}}]
          max_parallel: 2
          fail_fast: {fail_fast}
variables:
  fail: {{default: "no"}}
"##
    )
}

fn cells(v: &Value) -> Vec<(String, String)> {
    v["stages"][0]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["name"].as_str().unwrap_or_default().to_string(),
                        x["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (start, end) of each cell's attempt, in RFC 3339 text (which sorts).
fn spans(v: &Value) -> Vec<(String, String)> {
    v["stages"][0]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["started_at"].as_str().unwrap_or_default().to_string(),
                        x["finished_at"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_matrix_runs_each_cell_with_its_values_and_groups_them() {
    ensure_busybox_image();
    let mut c = Cluster::start("matrix");
    c.add_agent_with_args("a", &[], &["--capacity", "4"]);
    let repo = Repo::new();
    repo.commit(&[("README", "m\n")], "init");
    c.apply(&pipeline("matrix", &repo.url(), true));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "matrix"])
        .trim()
        .to_string();
    let v = c.wait_status("matrix", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_eq!(
        cells(&v),
        vec![
            (
                "unit [os=alpine, v=1.0]".to_string(),
                "Succeeded".to_string()
            ),
            (
                "unit [os=alpine, v=2.0]".to_string(),
                "Succeeded".to_string()
            ),
            (
                "unit [os=debian, v=2.0]".to_string(),
                "Succeeded".to_string()
            ),
        ]
    );
    // max_parallel: 2 with room for 4 on the agent: the third cell starts
    // only after one of the first two ended.
    let s = spans(&v);
    let third_start = s.iter().map(|(a, _)| a.clone()).max().unwrap_or_default();
    let first_end = s.iter().map(|(_, b)| b.clone()).min().unwrap_or_default();
    assert!(third_start >= first_end, "three cells overlapped: {s:?}");
    // Each cell's output under its own name.
    let debian = Cluster::action(&v, "test", "unit [os=debian, v=2.0]");
    assert_eq!(debian["outputs"][0]["name"], "v-debian-2-0", "{debian:#}");
    // A cell's log by its name, with its values as data.
    let log = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "matrix",
            "--execution",
            &exec,
            "--action",
            "test/unit [os=debian, v=2.0]",
        ],
    );
    assert!(log.contains("cell debian/2.0 with debian"), "{log}");
    // The table groups the cells under the matrix.
    let table = c.ferry_ok(Some("admin"), &["status", "matrix", "--execution", &exec]);
    let row = table
        .lines()
        .find(|l| l.starts_with("test/unit ") && l.contains("matrix"))
        .unwrap_or_else(|| panic!("no matrix row:\n{table}"));
    assert!(row.contains("3 cells: 3 Succeeded"), "{table}");
}

#[test]
fn fail_fast_false_runs_every_cell_before_the_execution_fails() {
    ensure_busybox_image();
    let mut c = Cluster::start("matrixff");
    c.add_agent_with_args("a", &[], &["--capacity", "4"]);
    let repo = Repo::new();
    repo.commit(&[("README", "m\n")], "init");
    c.apply(&pipeline("matrixff", &repo.url(), false));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "matrixff", "--var", "fail=yes"])
        .trim()
        .to_string();
    let v = c.wait_status("matrixff", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Failed", "{v:#}");
    let statuses: Vec<String> = cells(&v).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, vec!["Succeeded", "Failed", "Failed"], "{v:#}");

    // fail_fast (the default): the cell not started when one failed never starts.
    c.apply(&pipeline("matrixff", &repo.url(), true));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "matrixff", "--var", "fail=yes"])
        .trim()
        .to_string();
    // The running cell finishes on its own after the execution failed.
    let v = c.wait_status("matrixff", &exec, "every cell to end", |v| {
        v["status"] != "InProgress" && cells(v).iter().all(|(_, s)| s != "InProgress")
    });
    assert_eq!(v["status"], "Failed", "{v:#}");
    let statuses: Vec<String> = cells(&v).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, vec!["Succeeded", "Failed", "Pending"], "{v:#}");
}
