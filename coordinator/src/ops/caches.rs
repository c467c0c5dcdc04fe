//! Build caches as operators and agents reach them: listing a pipeline's
//! entries, removing some (`ferry cache rm`), an agent's report that its
//! limits evicted blobs, and what the leader tells agents to delete.

use std::collections::{BTreeMap, BTreeSet};

use ferry_certs::Identity;
use ferry_state::Command;
use ferry_state::caches::{CacheRecord, removes};

use super::{OpError, OpResult, Ops};

/// One cache entry, as `ferry cache list` shows it: its scope, its key and
/// what the state records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    pub scope: String,
    pub key: String,
    pub record: CacheRecord,
}

impl Ops {
    /// Linearizable: `pipeline`'s entries by scope, then key.
    pub async fn list_caches(&self, pipeline: &str) -> OpResult<Vec<CacheInfo>> {
        self.read(|s| {
            if !s.pipelines.contains_key(pipeline) {
                return Err(OpError::NotFound(format!("pipeline `{pipeline}`")));
            }
            Ok(s.caches
                .get(pipeline)
                .into_iter()
                .flat_map(|scopes| scopes.iter())
                .flat_map(|(scope, keys)| {
                    keys.iter().map(move |(key, rec)| CacheInfo {
                        scope: scope.clone(),
                        key: key.clone(),
                        record: rec.clone(),
                    })
                })
                .collect())
        })
        .await?
    }

    /// Write: removes `pipeline`'s entries of `scope` ("" for all) whose
    /// keys start with `key_prefix`; returns how many and their bytes (as
    /// listed just before). Their holders delete them once the leader tells
    /// them ([`Ops::local_cache_forget`]).
    pub async fn remove_caches(
        &self,
        who: &Identity,
        pipeline: &str,
        scope: &str,
        key_prefix: &str,
    ) -> OpResult<(u32, u64)> {
        let matching: Vec<CacheInfo> = self
            .list_caches(pipeline)
            .await?
            .into_iter()
            .filter(|c| removes((scope, key_prefix), (&c.scope, &c.key)))
            .collect();
        self.write(Command::RemoveCaches {
            pipeline: pipeline.to_string(),
            scope: scope.to_string(),
            key_prefix: key_prefix.to_string(),
            by: super::access::acting(who),
        })
        .await?;
        let bytes = matching.iter().map(|c| c.record.size).sum();
        tracing::info!(%pipeline, %scope, %key_prefix, removed = matching.len(), by = %who.name, "caches removed");
        Ok((u32::try_from(matching.len()).unwrap_or(u32::MAX), bytes))
    }

    /// Write (the agent session): `agent` no longer holds these cache blobs.
    pub async fn caches_dropped(&self, agent: &str, digests: Vec<String>) -> OpResult<()> {
        if digests.is_empty() {
            return Ok(());
        }
        self.write(Command::CachesDropped {
            agent: agent.to_string(),
            digests,
        })
        .await
        .map(drop)
    }

    /// Local read (the leader's retention loop): the cache blobs each agent
    /// is still to delete.
    pub fn local_cache_forget(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.local_read(|s| s.cache_forget.clone())
    }
}
