//! Reads `source`: the git repository, its branch and how often it is
//! polled, or the upstream pipelines whose executions start this one
//! (`pipeline`); `webhook_secret` and `triggers` are read in `triggers`.

use crate::model::{DEFAULT_BRANCH, MIN_POLL_INTERVAL_MS, Source};
use crate::name::validate_name;
use crate::parse::Pos;
use crate::rules;
use crate::upstream::{MAX_UPSTREAMS, Upstream};
use crate::yaml::{Reader, Value, field};

const SOURCE_KEYS: &[&str] = &[
    "git",
    "branch",
    "poll_interval",
    "webhook_secret",
    "triggers",
    "pipeline",
    "when",
];

/// Keys that start a pipeline on their own: not beside `pipeline`.
const OWN_STARTS: &[&str] = &["poll_interval", "webhook_secret", "triggers"];

impl Reader<'_> {
    pub(super) fn source(&mut self, value: Value<'_>) -> Option<Source> {
        let map = self.mapping(value, "`source`")?;
        self.check_keys(map, "source", SOURCE_KEYS);
        let upstreams = field(map, "pipeline")
            .map(|value| self.upstreams(value, map))
            .unwrap_or_default();
        // A pipeline fed by others builds their repository unless it names one.
        let git_value = match upstreams.is_empty() {
            true => self.required(map, "git", "source"),
            false => field(map, "git"),
        };
        let git = git_value
            .and_then(|value| self.string(value, "`git`"))
            .map(|(git, at)| {
                if let Err(reason) = rules::check_git_source(&git) {
                    self.error(at, format!("invalid git source {git:?}: {reason}"));
                }
                git
            })
            .unwrap_or_default();
        let branch = field(map, "branch")
            .and_then(|value| self.string(value, "`branch`"))
            .map(|(branch, at)| {
                if let Err(reason) = rules::check_branch(&branch) {
                    self.error(at, format!("invalid branch {branch:?}: {reason}"));
                }
                branch
            })
            .unwrap_or_else(|| DEFAULT_BRANCH.to_string());
        let poll_interval_ms = field(map, "poll_interval").and_then(|value| {
            let (ms, at) = self.duration(value, "`poll_interval`")?;
            if ms < MIN_POLL_INTERVAL_MS {
                self.error(at, "`poll_interval` must be at least 1s");
            }
            Some(ms)
        });
        let webhook_secret = field(map, "webhook_secret").and_then(|v| self.webhook_secret(v));
        let triggers = field(map, "triggers")
            .map(|value| self.triggers(value))
            .unwrap_or_default();
        Some(Source {
            git,
            branch,
            poll_interval_ms,
            webhook_secret,
            triggers,
            upstreams,
        })
    }

    /// `pipeline: NAME | [NAME, ...]`, with `branch` (only that branch's
    /// executions count) and `when: succeeded`.
    fn upstreams(
        &mut self,
        value: Value<'_>,
        map: &marked_yaml::types::MarkedMappingNode,
    ) -> Vec<Upstream> {
        let names: Vec<(String, Pos)> = match value.node.as_sequence() {
            Some(list) => list
                .iter()
                .filter_map(|item| self.string(Value::item(item), "each upstream pipeline"))
                .collect(),
            None => self.string(value, "`pipeline`").into_iter().collect(),
        };
        if names.is_empty() || names.len() > MAX_UPSTREAMS {
            self.error(
                value.pos(),
                format!(
                    "`pipeline` names 1 to {MAX_UPSTREAMS} upstream pipelines, found {}",
                    names.len()
                ),
            );
        }
        for key in OWN_STARTS {
            if let Some(v) = field(map, key) {
                self.error(
                    v.key_pos(),
                    format!(
                        "`{key}` cannot be used with `pipeline`: its upstreams start this pipeline"
                    ),
                );
            }
        }
        if let Some((when, at)) = field(map, "when").and_then(|v| self.string(v, "`when`"))
            && when != "succeeded"
        {
            self.error(
                at,
                format!("`when` of an upstream must be succeeded, found {when:?}"),
            );
        }
        let branch = field(map, "branch")
            .and_then(|v| self.string(v, "`branch`"))
            .map(|(b, _)| b);
        let mut out: Vec<Upstream> = Vec::new();
        for (name, at) in names {
            if let Err(reason) = validate_name(&name) {
                self.error(
                    at,
                    format!("invalid upstream pipeline name {name:?}: {reason}"),
                );
            } else if out.iter().any(|u| u.pipeline == name) {
                self.error(at, format!("upstream `{name}` is named twice"));
            } else {
                out.push(Upstream {
                    pipeline: name,
                    branch: branch.clone(),
                });
            }
        }
        out
    }
}
