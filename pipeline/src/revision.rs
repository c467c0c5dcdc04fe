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
//!
//! Hosts reached through a Docker Engine use the `docker` section instead
//! of hooks: which image to run (loaded from a `docker save` archive in the
//! artifact when one is named), the container, and its health check.
//!
//! ```yaml
//! docker:
//!   image: shop:1.4
//!   image_archive: image.tar      # optional: `docker save` output in the artifact
//!   container: shop
//!   ports: ["8080:80"]            # HOST:CONTAINER
//!   env: {MODE: production}
//!   command: [httpd, -f]          # optional: overrides the image's command
//!   healthcheck: wget -qO- http://127.0.0.1/health   # optional: else the image's own
//!   health_timeout: 60s
//! ```

use std::collections::BTreeMap;

use marked_yaml::types::MarkedMappingNode;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration_ms;
use crate::limits::MAX_REVISION_SPEC_BYTES;
use crate::parse::Diagnostic;
use crate::rules;
use crate::yaml::{self, DocumentKind, Reader, Value, field, pos};

/// Where the spec sits in the artifact.
pub const REVISION_SPEC_FILE: &str = "ferry-deploy.yml";

const SPEC_KEYS: &[&str] = &["files", "hook_timeout", "hooks", "docker"];
const DOCKER_KEYS: &[&str] = &[
    "image",
    "image_archive",
    "container",
    "ports",
    "env",
    "command",
    "healthcheck",
    "health_timeout",
];

/// Time a container has to become healthy when `health_timeout` is not given.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 60_000;

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
    /// What runs on Docker Engine targets.
    pub docker: Option<DockerSpec>,
}

/// The container a Docker Engine target runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DockerSpec {
    pub image: String,
    /// Path in the artifact of a `docker save` archive to load first.
    pub image_archive: Option<String>,
    pub container: String,
    /// `HOST:CONTAINER` port pairs (TCP).
    pub ports: Vec<(u16, u16)>,
    pub env: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// A shell command run inside the container; else the image's HEALTHCHECK.
    pub healthcheck: Option<String>,
    pub health_timeout_ms: u64,
}

impl RevisionSpec {
    pub fn commands(&self, hook: Hook) -> &[String] {
        self.hooks.get(&hook).map_or(&[], Vec::as_slice)
    }
}

const REVISION_FILE: DocumentKind = DocumentKind {
    name: "a revision spec (ferry-deploy.yml)",
    subject: "ferry-deploy.yml",
    max_bytes: MAX_REVISION_SPEC_BYTES,
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
        if let Some(value) = field(root, "docker") {
            spec.docker = self.docker_spec(value);
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

    fn docker_spec(&mut self, value: Value<'_>) -> Option<DockerSpec> {
        let map = self.mapping(value, "`docker`")?;
        self.check_keys(map, "docker", DOCKER_KEYS);
        let mut d = DockerSpec {
            health_timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            ..Default::default()
        };
        for (key, slot) in [("image", &mut d.image), ("container", &mut d.container)] {
            let what = format!("`{key}`");
            if let Some((text, at)) = self
                .required(map, key, "docker")
                .and_then(|v| self.string(v, &what))
            {
                let checked = match key {
                    "container" => check_container_name(&text),
                    _ => rules::check_plain_text(&text),
                };
                if let Err(reason) = checked {
                    self.error(at, format!("invalid {key} {text:?}: {reason}"));
                }
                *slot = text;
            }
        }
        if let Some((path, at)) =
            field(map, "image_archive").and_then(|v| self.string(v, "`image_archive`"))
        {
            match rules::check_output_path(&path) {
                Ok(()) => d.image_archive = Some(path),
                Err(message) => self.error(at, message.replace("output path", "image_archive")),
            }
        }
        if let Some(list) = field(map, "ports").and_then(|v| self.sequence(v, "`ports`")) {
            for item in list.iter() {
                let Some((text, at)) = self.string(Value::item(item), "each port") else {
                    continue;
                };
                let pair = text
                    .split_once(':')
                    .and_then(|(h, c)| Some((h.parse().ok()?, c.parse().ok()?)))
                    .filter(|(h, c)| *h > 0 && *c > 0);
                match pair {
                    Some(pair) => d.ports.push(pair),
                    None => self.error(
                        at,
                        format!(
                            "a port must be HOST:CONTAINER with numbers 1-65535, found {text:?}"
                        ),
                    ),
                }
            }
        }
        if let Some(env) = field(map, "env").and_then(|v| self.mapping(v, "`env`")) {
            for (key, value) in env.iter() {
                let what = format!("the value of `{}`", key.as_str());
                if let Some((text, _)) = self.string(Value::entry(key, value), &what) {
                    d.env.insert(key.as_str().to_string(), text);
                }
            }
        }
        if let Some(list) = field(map, "command").and_then(|v| self.sequence(v, "`command`")) {
            d.command = list
                .iter()
                .filter_map(|item| self.string(Value::item(item), "each command word"))
                .map(|(w, _)| w)
                .collect();
        }
        d.healthcheck = field(map, "healthcheck")
            .and_then(|v| self.string(v, "`healthcheck`"))
            .map(|(c, _)| c);
        if let Some((text, at)) =
            field(map, "health_timeout").and_then(|v| self.string(v, "`health_timeout`"))
        {
            match parse_duration_ms(&text) {
                Ok(0) => self.error(at, "`health_timeout` must be greater than zero"),
                Ok(ms) => d.health_timeout_ms = ms,
                Err(e) => self.error(at, e.to_string()),
            }
        }
        Some(d)
    }
}

/// Suffix of the stopped container a Docker deployment keeps for rollback.
pub const PREVIOUS_CONTAINER_SUFFIX: &str = ".ferry-previous";

/// A container name as Docker accepts it (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at
/// most 128 characters), and not one Ferry keeps for rollback. (A name the
/// engine also reads as an id prefix resolves to that container, whose
/// ownership the deployer then checks like any other.)
fn check_container_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || name.len() > 128
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(
            "a container name is 1-128 of a-z, A-Z, 0-9, `_`, `.`, `-`, starting with a letter or digit"
                .into(),
        );
    }
    if name.ends_with(PREVIOUS_CONTAINER_SUFFIX) {
        return Err(format!(
            "names ending in `{PREVIOUS_CONTAINER_SUFFIX}` are the containers Ferry keeps for rollback"
        ));
    }
    Ok(())
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
    fn docker_section_parses() {
        let spec = parse_revision_spec(
            "docker:\n  image: shop:1\n  image_archive: image.tar\n  container: shop\n  ports: [\"18080:80\"]\n  env: {A: b}\n  healthcheck: wget -qO- http://127.0.0.1/\n  health_timeout: 5s\n",
        )
        .expect("valid spec");
        let d = spec.docker.expect("docker section");
        assert_eq!(d.image, "shop:1");
        assert_eq!(d.image_archive.as_deref(), Some("image.tar"));
        assert_eq!(d.ports, vec![(18080, 80)]);
        assert_eq!(d.health_timeout_ms, 5_000);
        assert_eq!(
            errors("docker:\n  container: x\n  ports: [\"80\"]\n"),
            vec![
                "2:3: missing required key `image` in docker",
                "3:11: a port must be HOST:CONTAINER with numbers 1-65535, found \"80\"",
            ]
        );
    }

    #[test]
    fn container_names_cannot_reach_other_containers() {
        let spec = |name: &str| format!("docker:\n  image: shop:1\n  container: {name}\n");
        for bad in ["shop.ferry-previous", "-shop", "shop/../x", "\"a b\""] {
            let errs = errors(&spec(bad));
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("3:14: invalid container")),
                "{bad}: {errs:?}"
            );
        }
        for good in ["shop", "shop-staging.v2", "web_1"] {
            assert!(parse_revision_spec(&spec(good)).is_ok(), "{good}");
        }
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
