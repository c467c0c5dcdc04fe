//! Pipelines: applying a definition (checked for who may relax the approval
//! rule and for environments it deploys to), reading versions, and what the
//! source poller needs (which sources to poll, recording a new head).

use std::time::Duration;

use ferry_certs::Identity;

use super::{OpError, OpResult, Ops, invalid};
use crate::views::now_ms;
use ferry_state::{ClusterState, Command, Output, PipelineRecord, PipelineVersion};

/// What applying a pipeline did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    pub version: u64,
    /// The definition was the same as the latest version: nothing new.
    pub unchanged: bool,
}

/// A pipeline source the poller watches.
#[derive(Debug, Clone)]
pub struct PolledSource {
    pub pipeline: String,
    pub url: String,
    pub branch: String,
    pub every: Duration,
    /// The last head recorded in the state.
    pub seen: Option<String>,
}

impl Ops {
    /// Write: parses and applies a pipeline definition. The early checks
    /// (who may relax approvals, environments it deploys to) run after a read
    /// barrier; `apply` checks roles again.
    pub async fn apply_pipeline(
        &self,
        who: &Identity,
        file_name: &str,
        yaml: String,
        request: Option<&super::RequestId>,
    ) -> OpResult<Applied> {
        if let Some(first) = self.remembered(who, request)? {
            return applied(first);
        }
        let spec = ferry_pipeline::parse(&yaml).map_err(|d| invalid("pipeline", file_name, &d))?;
        let unknown = self
            .read(|s| {
                s.may_apply_pipeline(&who.name, &spec)?;
                Ok::<_, OpError>(crate::deployments::unknown_environments(s, &spec))
            })
            .await??;
        if !unknown.is_empty() {
            return Err(OpError::FailedPrecondition(format!(
                "{}; apply it first with `ferry env apply -f FILE`",
                unknown.join("; ")
            )));
        }
        let out = self
            .write_requested(
                who,
                request,
                Command::ApplyPipeline {
                    spec,
                    yaml,
                    by: super::access::acting(who),
                    at: now_ms(),
                },
            )
            .await?;
        applied(out)
    }

    /// Linearizable: one page of the pipelines by name, each as `view` shows
    /// it (None skips it), and the next page's token.
    pub async fn list_pipelines<R>(
        &self,
        page: &super::page::PageRequest,
        view: impl Fn(&ClusterState, &str) -> Option<R>,
    ) -> OpResult<(Vec<R>, String)> {
        self.read(|s| {
            let (names, next) = page.apply(s.pipelines.keys(), |n| n.to_string())?;
            Ok((names.into_iter().filter_map(|n| view(s, n)).collect(), next))
        })
        .await?
    }

    /// Linearizable: one version of a pipeline (0: the latest) with its record.
    pub async fn get_pipeline<R>(
        &self,
        name: &str,
        version: u64,
        view: impl FnOnce(&PipelineRecord, &PipelineVersion) -> R,
    ) -> OpResult<R> {
        self.read(|s| {
            let rec = s
                .pipelines
                .get(name)
                .ok_or_else(|| OpError::NotFound(format!("pipeline `{name}` not found")))?;
            let v = if version == 0 {
                rec.latest()
            } else {
                rec.version(version)
            }
            .ok_or_else(|| OpError::NotFound(format!("pipeline `{name}` version {version}")))?;
            Ok(view(rec, v))
        })
        .await?
    }

    /// Local read (the poller, on the leader): sources with a poll interval.
    pub fn local_polled_sources(&self) -> Vec<PolledSource> {
        self.local_read(|s| {
            s.pipelines
                .values()
                .filter_map(|p| {
                    let spec = &p.latest()?.spec;
                    Some(PolledSource {
                        pipeline: p.name.clone(),
                        url: spec.source.git.clone(),
                        branch: spec.source.branch.clone(),
                        every: Duration::from_millis(spec.source.poll_interval_ms?),
                        seen: p.last_seen_revision.clone(),
                    })
                })
                .collect()
        })
    }

    /// Write: records a new head of a pipeline's source that its triggers
    /// do not take (one they take is recorded by the execution it starts).
    pub async fn record_source_seen(&self, pipeline: &str, revision: &str) -> OpResult<()> {
        self.write(Command::SourceSeen {
            pipeline: pipeline.to_string(),
            revision: revision.to_string(),
            at: now_ms(),
        })
        .await
        .map(drop)
    }
}

/// What applying a pipeline answered.
fn applied(out: Output) -> OpResult<Applied> {
    match out {
        Output::PipelineVersion {
            name,
            version,
            unchanged,
        } => Ok(Applied {
            name,
            version,
            unchanged,
        }),
        _ => Err(OpError::Internal("unexpected apply result".into())),
    }
}
