//! Service containers of a build or test action (`services:`): a database,
//! a cache or a fake API started beside the action's own container, on a
//! network of the attempt's own, and reached by its name. Plain data, as
//! the pipeline file says it; the reader checks it (`read/services.rs`) and
//! `spec::action_spec` turns it into what an engine runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most services one action may have.
pub const MAX_SERVICES: usize = 8;

/// How long a service may take to become ready when `ready.timeout` is not
/// given (60 s), in milliseconds.
pub const DEFAULT_READY_TIMEOUT_MS: u64 = 60 * 1_000;

/// Longest accepted `ready.timeout` (10 minutes), in milliseconds.
pub const MAX_READY_TIMEOUT_MS: u64 = 10 * 60 * 1_000;

/// The name the action's own container answers to on the attempt's
/// network, besides its action's name: no service may have either.
pub const ACTION_HOST_NAME: &str = "workspace";

/// One service container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its host name on the attempt's network (the name rule).
    pub name: String,
    /// Container image; may hold `#{...}` references.
    pub image: String,
    /// Its own environment (never the action's secrets); values may hold references.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What it runs instead of the image's command (the image's entrypoint
    /// stays); `None`: the image's own.
    #[serde(default)]
    pub command: Option<ServiceCommand>,
    /// How to tell it is ready; `None`: ready once its container runs.
    #[serde(default)]
    pub ready: Option<Ready>,
}

/// A service's `command`: one string, run by `/bin/sh -c` (references reach
/// the shell as variables, as in an action's commands), or a list of
/// arguments run as they are (no shell, so no references).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceCommand {
    Shell(String),
    Args(Vec<String>),
}

/// A service's readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Run with `/bin/sh -c` inside the service's container until it exits 0.
    pub command: String,
    /// How long the service may take, once the services started, at most
    /// [`MAX_READY_TIMEOUT_MS`].
    pub timeout_ms: u64,
}

impl Service {
    /// Its texts that may hold `#{...}` references: the image, the env
    /// values, a shell command and the ready command.
    pub fn templated_texts(&self) -> impl Iterator<Item = &str> {
        let command = match &self.command {
            Some(ServiceCommand::Shell(text)) => Some(text.as_str()),
            _ => None,
        };
        std::iter::once(self.image.as_str())
            .chain(self.env.values().map(String::as_str))
            .chain(command)
            .chain(self.ready.as_ref().map(|r| r.command.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_round_trip_through_json() {
        let s = Service {
            name: "db".into(),
            image: "postgres:16".into(),
            env: [("POSTGRES_PASSWORD".to_string(), "x".to_string())].into(),
            command: Some(ServiceCommand::Args(vec!["postgres".into(), "-F".into()])),
            ready: Some(Ready {
                command: "pg_isready".into(),
                timeout_ms: 30_000,
            }),
        };
        let json = serde_json::to_string(&s).expect("serialize");
        assert_eq!(serde_json::from_str::<Service>(&json).ok(), Some(s.clone()));
        let texts: Vec<&str> = s.templated_texts().collect();
        assert_eq!(texts, vec!["postgres:16", "x", "pg_isready"]);
    }
}
