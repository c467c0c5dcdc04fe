//! Pipelines and their executions: applying a pipeline file, reading and
//! waiting for an execution's status, and approving it to the end.

use std::time::Duration;

use serde_json::Value;

use super::Cluster;
use crate::wait_for;

impl Cluster {
    /// `ferry status -o json` for an execution.
    pub fn status(&self, pipeline: &str, execution: &str) -> Value {
        let out = self.ferry_ok(
            Some("admin"),
            &["status", pipeline, "--execution", execution, "-o", "json"],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
    }

    /// Waits until the execution's status JSON satisfies `pred`.
    pub fn wait_status(
        &self,
        pipeline: &str,
        execution: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(what, Duration::from_secs(180), || {
            let r = self.ferry(
                Some("admin"),
                &["status", pipeline, "--execution", execution, "-o", "json"],
            );
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            pred(&v).then_some(v)
        })
    }

    /// Starts `pipeline` as `admin` and waits until the execution ends: its
    /// id and final status JSON.
    pub fn run_to_end(&self, pipeline: &str) -> (String, Value) {
        let exec = self
            .ferry_ok(Some("admin"), &["run", pipeline])
            .trim()
            .to_string();
        let v = self.wait_status(pipeline, &exec, "execution to end", |v| {
            v["status"] != "InProgress"
        });
        (exec, v)
    }

    /// Waits until approval `stage/action` of an execution waits, approves
    /// it as `approver`, and waits until the execution ends; its final status.
    pub fn approve_and_finish(
        &self,
        pipeline: &str,
        execution: &str,
        (stage, action): (&str, &str),
        approver: &str,
    ) -> Value {
        self.wait_status(pipeline, execution, "the approval to wait", |v| {
            Cluster::action(v, stage, action)["status"] == "WaitingForApproval"
        });
        let path = format!("{stage}/{action}");
        self.ferry_ok(
            Some(approver),
            &[
                "approve",
                pipeline,
                "--execution",
                execution,
                "--action",
                &path,
            ],
        );
        self.wait_status(pipeline, execution, "the execution to end", |v| {
            v["status"] != "InProgress"
        })
    }

    /// The status of `stage/action` in a status JSON.
    pub fn action<'a>(status: &'a Value, stage: &str, action: &str) -> &'a Value {
        status["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == stage))
            .and_then(|s| s["actions"].as_array())
            .and_then(|a| a.iter().find(|a| a["name"] == action))
            .unwrap_or(&Value::Null)
    }

    /// Writes a pipeline file and applies it.
    pub fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("pipeline.yml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
        self.ferry_ok(
            Some("admin"),
            &["pipeline", "apply", "-f", &path.display().to_string()],
        );
    }
}
