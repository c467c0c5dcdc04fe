//! Build cache entries in the replicated state: for each pipeline, scope
//! (`branch:NAME`, `tag:NAME`, `pipeline`) and key, the blob saved under it
//! and the agents holding a copy. The first entry saved under a key stays
//! (no racing writers); an agent's report is checked here against the
//! attempt's own action and run, so an agent can only write where that run
//! may write (its branch's scope, a key starting as the pipeline says) and
//! never into another pipeline's caches.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::cache::{CacheEntry, CachePlan, MAX_CACHES, MAX_CANDIDATES, check_key};
use ferry_pipeline::execution::is_blob_digest;
use serde::{Deserialize, Serialize};

use super::apply::{Applied, Output};
use super::{AttemptLoc, ClusterState, Execution};

/// Most entries kept per pipeline: saving one more forgets the oldest.
pub const MAX_ENTRIES_PER_PIPELINE: usize = 256;

/// A pipeline's entries: scope → key → entry.
pub type PipelineCaches = BTreeMap<String, BTreeMap<String, CacheRecord>>;

/// One saved entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheRecord {
    pub digest: String,
    pub size: u64,
    pub created_at: i64,
    /// The execution whose run saved it.
    pub execution: String,
    /// That run's commit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    pub holders: BTreeSet<String>,
}

/// An entry an agent reports with an attempt's result: saved by it, or
/// fetched from a peer and now held by it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    pub scope: String,
    pub key: String,
    pub digest: String,
    pub size: u64,
}

impl ClusterState {
    /// The plans of the caches of the action at `loc` (for its assignment):
    /// each with the entries of the scopes it reads whose keys start as it
    /// may match, newest first, holders as addresses.
    pub fn cache_plans(&self, exec: &Execution, loc: &AttemptLoc) -> Vec<CachePlan> {
        let saved = self.caches.get(&exec.pipeline);
        let mut plans = self.bare_cache_plans(exec, loc);
        if let Some(saved) = saved {
            for plan in &mut plans {
                plan.entries = self.candidates(saved, plan);
            }
        }
        plans
    }

    /// The plans of the caches of the action at `loc` without entries: the
    /// keys as far as the coordinators know them, and the scopes each run
    /// writes and reads.
    fn bare_cache_plans(&self, exec: &Execution, loc: &AttemptLoc) -> Vec<CachePlan> {
        let Some(pipeline) = self.pipeline_of(exec) else {
            return Vec::new();
        };
        let Some(action) = pipeline
            .stages
            .get(loc.stage)
            .and_then(|s| s.actions.get(loc.action))
        else {
            return Vec::new();
        };
        let Some(run) = exec.state.action(loc.stage, loc.action) else {
            return Vec::new();
        };
        action
            .caches
            .iter()
            .filter_map(|cache| {
                CachePlan::new(
                    cache,
                    &run.resolved,
                    exec.state.source.as_ref(),
                    &pipeline.source.branch,
                )
            })
            .collect()
    }

    /// The entries of `saved` that `plan` may restore: of the scopes it
    /// reads, under keys that start as its key or a restore key is known to
    /// start, newest first, at most [`MAX_CANDIDATES`].
    fn candidates(&self, saved: &PipelineCaches, plan: &CachePlan) -> Vec<CacheEntry> {
        let prefixes = plan.known_prefixes();
        let mut entries: Vec<CacheEntry> = plan
            .read_scopes
            .iter()
            .filter_map(|scope| Some((scope, saved.get(scope)?)))
            .flat_map(|(scope, keys)| {
                keys.iter()
                    .filter(|(key, _)| prefixes.iter().any(|p| key.starts_with(p)))
                    .map(|(key, rec)| CacheEntry {
                        scope: scope.clone(),
                        key: key.clone(),
                        digest: rec.digest.clone(),
                        size: rec.size,
                        holders: self.agent_addresses(&rec.holders),
                        created_at: rec.created_at,
                        revision: rec.revision.clone(),
                    })
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.created_at));
        entries.truncate(MAX_CANDIDATES);
        entries
    }

    /// Records what `agent` reported with an accepted result of the attempt
    /// at `loc`: a copy it now holds of an entry of a scope the run reads,
    /// or (after success only) a new entry in the scope the run writes,
    /// under a key that starts as the cache's key must. Anything else is
    /// ignored: a report never fails the result it came with.
    pub(super) fn record_caches(
        &mut self,
        loc: &AttemptLoc,
        agent: &str,
        (reports, success): (Vec<CacheReport>, bool),
        at: i64,
    ) {
        if reports.is_empty() {
            return;
        }
        let Some(exec) = self.executions.get(&loc.execution) else {
            return;
        };
        // Only the scopes and keys count here, not what may be restored.
        let plans = self.bare_cache_plans(exec, loc);
        let pipeline = exec.pipeline.clone();
        let execution = exec.id.clone();
        let revision = exec.revision.clone();
        let entries = self.caches.entry(pipeline.clone()).or_default();
        for r in reports.into_iter().take(MAX_CACHES) {
            if !is_blob_digest(&r.digest) || check_key(&r.key).is_err() {
                continue;
            }
            let existing = entries.get_mut(&r.scope).and_then(|k| k.get_mut(&r.key));
            match existing {
                Some(rec) => {
                    let readable = plans.iter().any(|p| p.read_scopes.contains(&r.scope));
                    if readable && rec.digest == r.digest && rec.size == r.size {
                        rec.holders.insert(agent.to_string());
                    }
                }
                None => {
                    let writable = success
                        && plans.iter().any(|p| {
                            p.scope == r.scope
                                && r.key
                                    .starts_with(ferry_pipeline::cache::known_prefix(&p.key))
                        });
                    if writable {
                        entries.entry(r.scope).or_default().insert(
                            r.key,
                            CacheRecord {
                                digest: r.digest,
                                size: r.size,
                                created_at: at,
                                execution: execution.clone(),
                                revision: revision.clone(),
                                holders: BTreeSet::from([agent.to_string()]),
                            },
                        );
                    }
                }
            }
        }
        bound_entries(entries);
        if entries.is_empty() {
            // Nothing was recorded: no empty record of the pipeline stays.
            self.caches.remove(&pipeline);
        }
    }

    /// `agent` no longer holds these cache blobs (its limits evicted them,
    /// or it was told to forget them); an entry no agent holds is forgotten.
    pub(super) fn caches_dropped(&mut self, agent: &str, digests: &[String]) -> Applied {
        let dropped: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
        for scopes in self.caches.values_mut() {
            for keys in scopes.values_mut() {
                for rec in keys.values_mut() {
                    if dropped.contains(rec.digest.as_str()) {
                        rec.holders.remove(agent);
                    }
                }
                keys.retain(|_, rec| !rec.holders.is_empty());
            }
            scopes.retain(|_, keys| !keys.is_empty());
        }
        self.caches.retain(|_, scopes| !scopes.is_empty());
        if let Some(pending) = self.cache_forget.get_mut(agent) {
            pending.retain(|d| !dropped.contains(d.as_str()));
            if pending.is_empty() {
                self.cache_forget.remove(agent);
            }
        }
        Ok(Output::None)
    }

    /// `ferry cache rm`: forgets `pipeline`'s entries of `scope` (every
    /// scope when empty) whose keys start with `key_prefix`; their holders
    /// are to delete the blobs no other entry names.
    pub(super) fn remove_caches(
        &mut self,
        pipeline: &str,
        scope: &str,
        key_prefix: &str,
    ) -> Applied {
        let Some(scopes) = self.caches.get_mut(pipeline) else {
            return Ok(Output::None);
        };
        let mut removed = Vec::new();
        for (s, keys) in scopes.iter_mut() {
            keys.retain(|key, rec| {
                let keep = !removes((scope, key_prefix), (s, key));
                if !keep {
                    removed.push(std::mem::take(rec));
                }
                keep
            });
        }
        scopes.retain(|_, keys| !keys.is_empty());
        if scopes.is_empty() {
            self.caches.remove(pipeline);
        }
        let still_named: BTreeSet<&str> = self
            .caches
            .values()
            .flat_map(|s| s.values())
            .flat_map(|k| k.values())
            .map(|r| r.digest.as_str())
            .collect();
        let mut forget: Vec<(String, String)> = Vec::new();
        for rec in removed {
            if still_named.contains(rec.digest.as_str()) {
                continue;
            }
            for holder in rec.holders {
                forget.push((holder, rec.digest.clone()));
            }
        }
        for (holder, digest) in forget {
            if self.agents.contains_key(&holder) {
                self.cache_forget.entry(holder).or_default().insert(digest);
            }
        }
        Ok(Output::None)
    }

    /// A removed agent holds nothing.
    pub(super) fn forget_cache_holder(&mut self, agent: &str) {
        let digests: Vec<String> = self
            .caches
            .values()
            .flat_map(|s| s.values())
            .flat_map(|k| k.values())
            .filter(|r| r.holders.contains(agent))
            .map(|r| r.digest.clone())
            .collect();
        let _ = self.caches_dropped(agent, &digests);
        self.cache_forget.remove(agent);
    }
}

/// Whether `ferry cache rm` of scope `filter.0` ("" for every scope) and
/// key prefix `filter.1` removes the entry of `scope` and `key`.
pub fn removes((filter_scope, key_prefix): (&str, &str), (scope, key): (&str, &str)) -> bool {
    (filter_scope.is_empty() || filter_scope == scope) && key.starts_with(key_prefix)
}

/// Keeps at most [`MAX_ENTRIES_PER_PIPELINE`] entries, forgetting the oldest.
fn bound_entries(entries: &mut PipelineCaches) {
    let count: usize = entries.values().map(BTreeMap::len).sum();
    let mut excess = count.saturating_sub(MAX_ENTRIES_PER_PIPELINE);
    while excess > 0 {
        let oldest = entries
            .iter()
            .flat_map(|(scope, keys)| {
                keys.iter()
                    .map(move |(key, rec)| (rec.created_at, scope, key))
            })
            .min()
            .map(|(_, scope, key)| (scope.clone(), key.clone()));
        let Some((scope, key)) = oldest else { break };
        if let Some(keys) = entries.get_mut(&scope) {
            keys.remove(&key);
            if keys.is_empty() {
                entries.remove(&scope);
            }
        }
        excess -= 1;
    }
}
