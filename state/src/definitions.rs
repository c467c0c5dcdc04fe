//! What operators define in the replicated state: pipeline versions (and
//! what the source poller last saw of each), deployment environments and
//! sealed secrets. Applying an unchanged definition keeps its version. Who
//! may apply what is checked before any of these run (`access.rs`, and
//! [`ClusterState::may_apply_pipeline`] in `approval.rs`).

use std::collections::BTreeSet;

use ferry_pipeline::{Environment, Pipeline};

use super::apply::{Applied, Output, Rejection};
use super::command::By;
use super::{ClusterState, EnvironmentRecord, PipelineRecord, PipelineVersion, SecretRecord};

/// Versions of a pipeline kept beyond those its kept executions and
/// deployments still run (each holds the whole YAML).
pub const PIPELINE_VERSIONS_KEPT: usize = 50;

impl ClusterState {
    /// A new version of pipeline `spec.name`, unless the latest is the same.
    pub(super) fn apply_pipeline(
        &mut self,
        mut spec: Pipeline,
        yaml: String,
        by: &By,
        at: i64,
    ) -> Applied {
        self.may_apply_pipeline(by.name(), &spec)?;
        self.check_upstreams(&mut spec)?;
        let name = spec.name.clone();
        let record = self
            .pipelines
            .entry(name.clone())
            .or_insert_with(|| PipelineRecord {
                name: name.clone(),
                versions: Vec::new(),
                executions: Vec::new(),
                last_seen_revision: None,
                last_polled_at: None,
                disabled_transitions: Default::default(),
                deliveries: Default::default(),
                schedule: None,
            });
        if let Some(latest) = record.latest()
            && latest.spec == spec
        {
            return Ok(Output::PipelineVersion {
                name,
                version: latest.version,
                unchanged: true,
            });
        }
        let version = record.latest().map_or(1, |v| v.version + 1);
        record.versions.push(PipelineVersion {
            version,
            spec,
            yaml,
            applied_by: by.name().to_string(),
            applied_at: at,
        });
        self.prune_pipeline_versions(&name);
        // The newest version decides the execution mode: executions that
        // waited under the old one may go on under the new one.
        self.progress(&name, None, at);
        Ok(Output::PipelineVersion {
            name,
            version,
            unchanged: false,
        })
    }

    /// Forgets versions of pipeline `name` beyond the newest
    /// [`PIPELINE_VERSIONS_KEPT`] that no kept execution or deployment runs.
    fn prune_pipeline_versions(&mut self, name: &str) {
        let Some(record) = self.pipelines.get(name) else {
            return;
        };
        let excess = record.versions.len().saturating_sub(PIPELINE_VERSIONS_KEPT);
        if excess == 0 {
            return;
        }
        let mut used: BTreeSet<u64> = record
            .executions
            .iter()
            .filter_map(|id| self.executions.get(id))
            .map(|e| e.version)
            .collect();
        used.extend(
            self.deployments
                .values()
                .filter(|d| d.pipeline == name)
                .map(|d| d.version),
        );
        let oldest_kept = record.versions[excess].version;
        if let Some(record) = self.pipelines.get_mut(name) {
            record
                .versions
                .retain(|v| v.version >= oldest_kept || used.contains(&v.version));
        }
    }

    /// The source poller saw `revision` at the head of `pipeline`'s branch.
    pub(super) fn source_seen(&mut self, pipeline: &str, revision: String, at: i64) -> Applied {
        let Some(p) = self.pipelines.get_mut(pipeline) else {
            return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
        };
        p.last_seen_revision = Some(revision);
        p.last_polled_at = Some(at);
        Ok(Output::None)
    }

    /// A new version of environment `spec.name`, unless the latest is the same.
    pub(super) fn apply_environment(
        &mut self,
        spec: Environment,
        yaml: String,
        by: &By,
        at: i64,
    ) -> Applied {
        let name = spec.name.clone();
        if let Some(old) = self.environments.get(&name)
            && old.spec == spec
        {
            return Ok(Output::PipelineVersion {
                name,
                version: old.version,
                unchanged: true,
            });
        }
        let version = self.environments.get(&name).map_or(1, |e| e.version + 1);
        self.environments.insert(
            name.clone(),
            EnvironmentRecord {
                version,
                spec,
                yaml,
                applied_by: by.name().to_string(),
                applied_at: at,
            },
        );
        Ok(Output::PipelineVersion {
            name,
            version,
            unchanged: false,
        })
    }

    /// Stores a sealed secret (the log never holds its plaintext).
    pub(super) fn set_secret(
        &mut self,
        name: String,
        (nonce, ciphertext): (Vec<u8>, Vec<u8>),
        by: &By,
        at: i64,
    ) -> Applied {
        self.secrets.insert(
            name,
            SecretRecord {
                nonce,
                ciphertext,
                updated_by: by.name().to_string(),
                updated_at: at,
            },
        );
        Ok(Output::None)
    }

    pub(super) fn remove_secret(&mut self, name: &str) -> Applied {
        match self.secrets.remove(name) {
            Some(_) => Ok(Output::None),
            None => Err(Rejection::NotFound(format!("secret `{name}`"))),
        }
    }
}
