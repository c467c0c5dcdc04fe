//! Environments: applying one and reading them back.

use ferry_certs::Identity;

use super::{OpError, OpResult, Ops, invalid};
use crate::views::now_ms;
use ferry_state::{ClusterState, Command, EnvironmentRecord, Output};

impl Ops {
    /// Write: parses and applies an environment; returns its name and
    /// whether it was unchanged.
    pub async fn apply_environment(
        &self,
        who: &Identity,
        file_name: &str,
        yaml: String,
    ) -> OpResult<(String, bool)> {
        let spec = ferry_pipeline::parse_environment(&yaml)
            .map_err(|d| invalid("environment", file_name, &d))?;
        let name = spec.name.clone();
        let out = self
            .write(Command::ApplyEnvironment {
                spec,
                yaml,
                by: super::access::acting(who),
                at: now_ms(),
            })
            .await?;
        let unchanged = matches!(
            out,
            Output::PipelineVersion {
                unchanged: true,
                ..
            }
        );
        Ok((name, unchanged))
    }

    /// Linearizable: one page of the environments by name, as `view` shows
    /// them, and the next page's token.
    pub async fn list_environments<R>(
        &self,
        page: &super::page::PageRequest,
        view: impl Fn(&ClusterState, &EnvironmentRecord) -> R,
    ) -> OpResult<(Vec<R>, String)> {
        self.read(|s| {
            let (envs, next) = page.apply(s.environments.iter(), |(n, _)| n.to_string())?;
            Ok((envs.into_iter().map(|(_, e)| view(s, e)).collect(), next))
        })
        .await?
    }

    /// Linearizable: environment `name`, as `view` shows it.
    pub async fn get_environment<R>(
        &self,
        name: &str,
        view: impl FnOnce(&ClusterState, &EnvironmentRecord) -> R,
    ) -> OpResult<R> {
        self.read(|s| environment(s, name, view)).await?
    }

    /// Local read right after a write here (read-your-writes): environment
    /// `name`, as `view` shows it.
    pub fn applied_environment<R>(
        &self,
        name: &str,
        view: impl FnOnce(&ClusterState, &EnvironmentRecord) -> R,
    ) -> OpResult<R> {
        self.local_read(|s| environment(s, name, view))
    }
}

fn environment<R>(
    s: &ClusterState,
    name: &str,
    view: impl FnOnce(&ClusterState, &EnvironmentRecord) -> R,
) -> OpResult<R> {
    s.environments
        .get(name)
        .map(|e| view(s, e))
        .ok_or_else(|| OpError::NotFound(format!("environment `{name}` not found")))
}
