//! Deployments: the history per environment, one deployment, and rollback
//! (a new execution redeploying an earlier release).

use ferry_certs::Identity;

use super::page::PageRequest;
use super::{OpError, OpResult, Ops, new_execution_id};
use crate::views::{holders, now_ms};
use ferry_state::{ClusterState, Command, DeploymentRecord};

/// A rollback started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub pipeline: String,
    pub execution_id: String,
    pub release: String,
    pub from_deployment: u64,
}

impl Ops {
    /// Linearizable: one page of the deployments of `environment`, newest
    /// first, as `view` shows them (with the state, for the hosts'
    /// releases), and the next page's token.
    pub async fn list_deployments<R>(
        &self,
        environment: &str,
        page: &PageRequest,
        view: impl FnOnce(&ClusterState, Vec<&DeploymentRecord>) -> R,
    ) -> OpResult<(R, String)> {
        self.read(|s| {
            if !s.environments.contains_key(environment)
                && s.deployments_of(environment).next().is_none()
            {
                return Err(OpError::NotFound(format!(
                    "environment `{environment}` not found"
                )));
            }
            let (deployments, next) =
                page.apply(s.deployments_of(environment), |d| d.id.to_string())?;
            Ok((view(s, deployments), next))
        })
        .await?
    }

    /// Linearizable: deployment `id`, as `view` shows it.
    pub async fn get_deployment<R>(
        &self,
        id: u64,
        view: impl FnOnce(&ClusterState, &DeploymentRecord) -> R,
    ) -> OpResult<R> {
        self.read(|s| {
            s.deployments
                .get(&id)
                .map(|d| view(s, d))
                .ok_or_else(|| OpError::NotFound(format!("deployment {id} not found")))
        })
        .await?
    }

    /// Write (new id): redeploys the release of `environment` that
    /// `to_execution` deployed (empty: the one before the current), refused
    /// when its artifact is no longer held by any agent.
    pub async fn rollback(
        &self,
        who: &Identity,
        environment: &str,
        to_execution: &str,
    ) -> OpResult<RolledBack> {
        let (from, pipeline, release) = self
            .read(|s| {
                let d = s
                    .rollback_target(environment, to_execution)
                    .map_err(OpError::FailedPrecondition)?;
                if let Some(art) = &d.artifact
                    && holders(s, &art.digest).is_empty()
                {
                    return Err(OpError::FailedPrecondition(format!(
                        "the artifact of release {} is no longer held by any agent",
                        d.release
                    )));
                }
                Ok((d.id, d.pipeline.clone(), d.release.clone()))
            })
            .await??;
        let id = new_execution_id();
        self.write_new(Command::Redeploy {
            id: id.clone(),
            from,
            trigger: format!(
                "rollback of {environment} to release {release} by {}",
                who.name
            ),
            started_by: Some(super::access::acting(who)),
            at: now_ms(),
        })
        .await?;
        Ok(RolledBack {
            pipeline,
            execution_id: id,
            release,
            from_deployment: from,
        })
    }
}
