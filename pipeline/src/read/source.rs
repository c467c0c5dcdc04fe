//! Reads `source`: the git repository, its branch and how often it is
//! polled; `webhook_secret` and `triggers` are read in `triggers`.

use crate::model::{DEFAULT_BRANCH, MIN_POLL_INTERVAL_MS, Source};
use crate::rules;
use crate::yaml::{Reader, Value, field};

const SOURCE_KEYS: &[&str] = &[
    "git",
    "branch",
    "poll_interval",
    "webhook_secret",
    "triggers",
];

impl Reader<'_> {
    pub(super) fn source(&mut self, value: Value<'_>) -> Option<Source> {
        let map = self.mapping(value, "`source`")?;
        self.check_keys(map, "source", SOURCE_KEYS);
        let git = self
            .required(map, "git", "source")
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
        })
    }
}
