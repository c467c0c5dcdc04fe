//! The revision spec: `ferry-deploy.yml` at the root of a deployed artifact
//! says which of its files to install and which commands to run at each
//! lifecycle hook (after CodeDeploy's `appspec.yml`). Read like pipeline
//! files, with a line and column for every problem.
//!
//! ```yaml
//! files: [app, www]          # optional; default: the whole artifact
//! hook_timeout: 30s          # optional; default: the action's hook_timeout
//! hooks:
//!   stop: ./app/stop.sh      # one command, or a list of commands
//!   start: ./app/start.sh
//!   validate:
//!     - curl -fsS http://127.0.0.1:8080/health
//! ```

use std::collections::BTreeMap;

use marked_yaml::types::MarkedMappingNode;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration_ms;
use crate::parse::Diagnostic;
use crate::rules;
use crate::yaml::{self, DocumentKind, Reader, Value, field, pos};

/// Where the spec sits in the artifact.
pub const REVISION_SPEC_FILE: &str = "ferry-deploy.yml";

const SPEC_KEYS: &[&str] = &["files", "hook_timeout", "hooks"];

/// A lifecycle hook, in the order a deployment runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Stops the running release (before anything on the host changes).
    Stop,
    BeforeInstall,
    /// Runs in the unpacked release before the `current` link moves to it.
    Install,
    /// Runs right after the `current` link moved to the new release.
    AfterInstall,
    Start,
    /// Checks the started release; a failure fails the host.
    Validate,
}

impl Hook {
    pub const ALL: [Hook; 6] = [
        Hook::Stop,
        Hook::BeforeInstall,
        Hook::Install,
        Hook::AfterInstall,
        Hook::Start,
        Hook::Validate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Stop => "stop",
            Hook::BeforeInstall => "before_install",
            Hook::Install => "install",
            Hook::AfterInstall => "after_install",
            Hook::Start => "start",
            Hook::Validate => "validate",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated revision spec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RevisionSpec {
    /// Artifact paths to install; empty means everything. The spec file
    /// itself is always installed.
    pub files: Vec<String>,
    pub hook_timeout_ms: Option<u64>,
    /// Commands per hook, run in order with `sh -e`; missing hooks do nothing.
    pub hooks: BTreeMap<Hook, Vec<String>>,
}

impl RevisionSpec {
    pub fn commands(&self, hook: Hook) -> &[String] {
        self.hooks.get(&hook).map_or(&[], Vec::as_slice)
    }
}

const REVISION_FILE: DocumentKind = DocumentKind {
    name: "a revision spec (ferry-deploy.yml)",
    empty_message: "ferry-deploy.yml is empty; expected a mapping with `hooks` (and optionally `files`)",
    top_level_message: "ferry-deploy.yml must be a mapping with `hooks` at the top level",
};

/// Parses and validates a `ferry-deploy.yml`; every error, sorted by position.
pub fn parse_revision_spec(text: &str) -> Result<RevisionSpec, Vec<Diagnostic>> {
    yaml::load(text, &REVISION_FILE, |map, diags| {
        Reader::new(diags).revision(map)
    })
}

impl Reader<'_> {
    fn revision(&mut self, root: &MarkedMappingNode) -> RevisionSpec {
        self.check_keys(root, "ferry-deploy.yml", SPEC_KEYS);
        let mut spec = RevisionSpec::default();
        if let Some(list) = field(root, "files").and_then(|v| self.sequence(v, "`files`")) {
            for item in list.iter() {
                if let Some((path, at)) = self.string(Value::item(item), "each file") {
                    match rules::check_output_path(&path) {
                        Ok(()) => spec.files.push(path.trim_end_matches('/').to_string()),
                        Err(message) => self.error(at, message.replace("output path", "file")),
                    }
                }
            }
        }
        if let Some((text, at)) =
            field(root, "hook_timeout").and_then(|v| self.string(v, "`hook_timeout`"))
        {
            match parse_duration_ms(&text) {
                Ok(0) => self.error(at, "`hook_timeout` must be greater than zero"),
                Ok(ms) => spec.hook_timeout_ms = Some(ms),
                Err(e) => self.error(at, e.to_string()),
            }
        }
        let Some(hooks) = field(root, "hooks").and_then(|v| self.mapping(v, "`hooks`")) else {
            return spec;
        };
        let names: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        self.check_keys(hooks, "hooks", &names);
        for hook in Hook::ALL {
            let Some(value) = field(hooks, hook.as_str()) else {
                continue;
            };
            let what = format!("hook `{hook}`");
            let commands = match value.node.as_sequence() {
                Some(list) => list
                    .iter()
                    .filter_map(|item| self.string(Value::item(item), &what))
                    .collect(),
                None => self.string(value, &what).into_iter().collect::<Vec<_>>(),
            };
            for (command, at) in &commands {
                if command.trim().is_empty() {
                    self.error(*at, format!("{what}: a command must not be empty"));
                }
            }
            if commands.is_empty() {
                self.error(
                    pos(value.node.span()),
                    format!("{what} must list at least one command"),
                );
            }
            spec.hooks
                .insert(hook, commands.into_iter().map(|(c, _)| c).collect());
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse_revision_spec(text)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn hooks_files_and_timeout_parse() {
        let spec = parse_revision_spec(
            "files: [app/, www]\nhook_timeout: 30s\nhooks:\n  start: ./start.sh\n  validate:\n    - a\n    - b\n",
        )
        .expect("valid spec");
        assert_eq!(spec.files, vec!["app", "www"]);
        assert_eq!(spec.hook_timeout_ms, Some(30_000));
        assert_eq!(spec.commands(Hook::Start), ["./start.sh"]);
        assert_eq!(spec.commands(Hook::Validate), ["a", "b"]);
        assert!(spec.commands(Hook::Stop).is_empty());
    }

    #[test]
    fn problems_have_positions() {
        assert_eq!(
            errors("files: [/etc]\nhooks:\n  strat: x\n  stop: []\n"),
            vec![
                "1:9: file `/etc` must be relative to the workspace, not absolute",
                "3:3: unknown key `strat` in hooks; expected one of: stop, before_install, \
                 install, after_install, start, validate",
                "4:9: hook `stop` must list at least one command",
            ]
        );
        assert_eq!(
            errors(""),
            vec![
                "1:1: ferry-deploy.yml is empty; expected a mapping with `hooks` (and optionally `files`)"
            ]
        );
    }
}
