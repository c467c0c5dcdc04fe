//! An attempt's build caches on this agent, before and after it runs: each
//! `cache:` entry's key made (its `#{hash_files: ...}` digested from the
//! source this agent archived itself), the entry to restore chosen among
//! those the coordinator named and made local (from this agent's cache
//! store, or fetched from a peer holding it, within this agent's entry
//! limit), and afterwards the entries to report: those saved, and copies
//! now held. Nothing here fails the attempt: a cache that cannot be made
//! or fetched is a miss, named in the log.

use ferry_engine::cache_store::{CacheStore, digest_files};
use ferry_engine::runner::{ActionSpec, LogSink, PreparedInput};
use ferry_engine::source::Sources;
use ferry_engine::store::{Blob, Store};
use ferry_pipeline::SOURCE_ARTIFACT;
use ferry_pipeline::cache::{CacheEntry, KeyPart, SourceTimes, check_key, join_key};
use ferry_proto as pb;

use crate::identity::AgentIdentity;
use crate::metrics::{CacheLookup, cache_looked_up, cache_saved};

/// The digests `#{hash_files: ...}` stood for in this attempt, by globs:
/// each set of globs is read from the source archive once, however many
/// keys and restore keys name it.
type Digested = std::collections::BTreeMap<Vec<String>, String>;

/// The key `parts` make, with each `hash_files` digested from `source`.
fn make_key(
    parts: &[KeyPart],
    (store, source): (&Store, Option<&str>),
    digested: &mut Digested,
    log: &mut dyn LogSink,
) -> Result<String, String> {
    let mut problem = None;
    let key = join_key(parts, |globs| {
        if let Some(digest) = digested.get(globs) {
            return digest.clone();
        }
        let Some(source) = source else {
            problem = Some("#{hash_files: ...} needs the `source` input".to_string());
            return String::new();
        };
        let digest = match digest_files(store, source, globs) {
            Ok((digest, 0)) => {
                log.write(
                    format!(
                        "[ferry] cache key: hash_files {} matched no file\n",
                        globs.join(" ")
                    )
                    .as_bytes(),
                );
                digest
            }
            Ok((digest, _)) => digest,
            Err(e) => {
                problem = Some(e);
                return String::new();
            }
        };
        digested.insert(globs.to_vec(), digest.clone());
        digest
    });
    match problem {
        Some(p) => Err(p),
        None => check_key(&key).map(|()| key),
    }
}

/// Decides each cache of `spec` (`CachePlan::resolved`), makes the
/// entries to restore local and sets the source's file times
/// ([`source_times`]); returns the entries fetched from peers, which this
/// agent now holds too.
pub async fn prepare(
    caches: &CacheStore,
    id: &AgentIdentity,
    spec: &mut ActionSpec,
    (store, inputs): (&Store, &[PreparedInput]),
    (sources, git_url): (&Sources, &str),
    log: &mut dyn LogSink,
) -> Vec<CacheEntry> {
    let source = inputs
        .iter()
        .find(|i| i.name == SOURCE_ARTIFACT)
        .map(|i| i.digest.clone());
    let mut fetched = Vec::new();
    let mut digested = Digested::new();
    let from = (store, source.as_deref());
    for plan in spec.caches.iter_mut() {
        let made = make_key(&plan.key, from, &mut digested, log).and_then(|key| {
            let prefixes = plan
                .restore_keys
                .iter()
                .map(|parts| make_key(parts, from, &mut digested, log))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((key, prefixes))
        });
        let (key, prefixes) = match made {
            Ok(made) => made,
            Err(e) => {
                log.write(format!("[ferry] cache left out: its key: {e}\n").as_bytes());
                continue;
            }
        };
        let mut resolved = plan.decide(key, &prefixes);
        if let Some(entry) = resolved.restore.clone() {
            match make_local(caches, id, &entry).await {
                Ok(from_peer) => {
                    let exact = entry.key == resolved.key;
                    log.write(
                        format!(
                            "[ferry] cache {}: restoring {} ({}, {} bytes{})\n",
                            resolved.key,
                            if exact {
                                "the entry with this key"
                            } else {
                                "entry"
                            },
                            if exact {
                                entry.scope.clone()
                            } else {
                                format!("{} from {}", entry.key, entry.scope)
                            },
                            entry.size,
                            if from_peer {
                                ", fetched from a peer"
                            } else {
                                ""
                            }
                        )
                        .as_bytes(),
                    );
                    cache_looked_up(match exact {
                        true => CacheLookup::Hit(entry.size),
                        false => CacheLookup::Partial(entry.size),
                    });
                    if from_peer {
                        fetched.push(entry);
                    }
                }
                Err(e) => {
                    log.write(
                        format!(
                            "[ferry] cache {}: entry {} not restored: {e}\n",
                            resolved.key, entry.key
                        )
                        .as_bytes(),
                    );
                    cache_looked_up(CacheLookup::Miss);
                    resolved.restore = None;
                }
            }
        } else {
            log.write(
                format!(
                    "[ferry] cache {}: no entry in {}; saved to {} after success\n",
                    resolved.key,
                    plan.read_scopes.join(", "),
                    plan.scope
                )
                .as_bytes(),
            );
            cache_looked_up(CacheLookup::Miss);
        }
        plan.resolved = Some(resolved);
    }
    if source.is_some() && !spec.caches.is_empty() {
        let times = source_times(spec, sources, git_url).await;
        let restored = spec
            .caches
            .iter()
            .any(|p| p.resolved.as_ref().is_some_and(|r| r.restore.is_some()));
        match &times {
            _ if !restored => {}
            SourceTimes::All { .. } => log.write(
                b"[ferry] cache: what changed since the restored entry is not known: every source file counts as changed\n",
            ),
            SourceTimes::Changed { paths, .. } => log.write(
                format!(
                    "[ferry] cache: {} source files changed since the restored entries' commits (the others keep an old time)\n",
                    paths.len()
                )
                .as_bytes(),
            ),
        }
        spec.source_times = Some(times);
    }
    fetched
}

/// The source's file times for a run with caches: the files changed since
/// the commit of each restored entry are new, every other file old (so
/// cargo or make rebuild exactly what changed); all new when a restored
/// entry's commit is unknown or not in the mirror.
async fn source_times(spec: &ActionSpec, sources: &Sources, git_url: &str) -> SourceTimes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let revision = &spec.context.revision;
    let mut changed = std::collections::BTreeSet::new();
    for plan in &spec.caches {
        let Some(entry) = plan.resolved.as_ref().and_then(|r| r.restore.as_ref()) else {
            continue;
        };
        if &entry.revision == revision {
            continue;
        }
        match sources.changed(git_url, &entry.revision, revision).await {
            Ok(paths) => changed.extend(paths),
            Err(e) => {
                tracing::info!(from = %entry.revision, error = %e, "changes since a cache entry's commit unknown");
                return SourceTimes::All { now };
            }
        }
    }
    SourceTimes::Changed {
        paths: changed,
        now,
    }
}

/// Makes `entry`'s blob local; whether it came from a peer.
async fn make_local(
    caches: &CacheStore,
    id: &AgentIdentity,
    entry: &CacheEntry,
) -> Result<bool, String> {
    if caches.take(&entry.digest) {
        return Ok(false);
    }
    let max = caches.limits().entry_bytes;
    if entry.size > max {
        return Err(format!(
            "{} bytes, over this agent's cache entry limit of {} MiB",
            entry.size,
            max >> 20
        ));
    }
    crate::peer::fetch(
        caches.store(),
        &id.ca_pem,
        &id.key.current(),
        &entry.holders,
        &entry.digest,
    )
    .await
    .map(|_| true)
}

/// What to report with the result: each cache saved (under the key and
/// scope it was decided for) and each entry fetched from a peer.
pub fn reports(
    spec: &ActionSpec,
    saved: &[(usize, Blob)],
    fetched: Vec<CacheEntry>,
) -> Vec<pb::internal::CacheEntry> {
    let saved = saved.iter().filter_map(|(index, blob)| {
        let plan = spec.caches.get(*index)?;
        let resolved = plan.resolved.as_ref()?;
        cache_saved(blob.size);
        Some(CacheEntry {
            scope: plan.scope.clone(),
            key: resolved.key.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            holders: Vec::new(),
            created_at: 0,
            revision: spec.context.revision.clone(),
        })
    });
    saved
        .chain(fetched.into_iter().map(|e| CacheEntry {
            holders: Vec::new(),
            ..e
        }))
        .map(Into::into)
        .collect()
}
