//! An attempt's build caches in its container: the entries the agent chose
//! (`CachePlan::resolved`) restored under `/workspace` with the inputs, and
//! after success the paths of each cache whose key had no entry packed into
//! the agent's cache store (modification times kept: build tools compare
//! them). A cache never fails the action: a path missing after success or
//! an entry over this agent's limit is named in the log and not saved.

use std::time::Duration;

use super::Executor;
use super::outputs::{Download, pack_tars};
use crate::archive;
use crate::runner::{ActionSpec, LogSink};
use crate::store::Blob;

/// Longest one cache's saving may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The blobs to restore, in the order of the spec's caches: a name for
/// messages and the digest (in the agent's cache store).
pub(super) fn restores(a: &ActionSpec) -> Vec<(String, String)> {
    a.caches
        .iter()
        .filter_map(|c| {
            let r = c.resolved.as_ref()?;
            let entry = r.restore.as_ref()?;
            Some((format!("cache {}", r.key), entry.digest.clone()))
        })
        .collect()
}

impl Executor {
    /// Packs each cache to be saved; what could not be is named in the log.
    pub(super) async fn save_caches(
        &self,
        container: &str,
        a: &ActionSpec,
        log: &mut dyn LogSink,
    ) -> Vec<(usize, Blob)> {
        let mut saved = Vec::new();
        let Some(caches) = &self.caches else {
            return saved;
        };
        for (index, cache) in a.caches.iter().enumerate() {
            let Some(resolved) = cache.resolved.as_ref().filter(|r| r.save) else {
                continue;
            };
            let started = tokio::time::Instant::now();
            let packed = tokio::time::timeout(
                SAVE_TIMEOUT,
                self.pack_cache(container, &cache.paths, caches),
            )
            .await
            .unwrap_or_else(|_| Err(format!("took over {SAVE_TIMEOUT:?}")));
            match packed {
                Ok(blob) => {
                    log.write(
                        format!(
                            "[ferry] cache {} saved to {}: {} bytes in {:.1?}\n",
                            resolved.key,
                            cache.scope,
                            blob.size,
                            started.elapsed()
                        )
                        .as_bytes(),
                    );
                    saved.push((index, blob));
                }
                Err(why) => log
                    .write(format!("[ferry] cache {} not saved: {why}\n", resolved.key).as_bytes()),
            }
        }
        saved
    }

    /// The paths' tars from the engine, to scratch files (bounded by the
    /// cache entry limit), packed into the cache store keeping times.
    async fn pack_cache(
        &self,
        container: &str,
        paths: &[String],
        caches: &crate::cache_store::CacheStore,
    ) -> Result<Blob, String> {
        let max = caches.limits().entry_bytes;
        let over = || format!("over this agent's cache entry limit of {} MiB", max >> 20);
        let (tars, incoming) = match self
            .download_paths(container, paths, caches.store(), max)
            .await
        {
            Ok(downloaded) => downloaded,
            Err(Download::Missing(path)) => return Err(format!("path {path} is missing")),
            Err(Download::OverLimit) => return Err(over()),
            Err(Download::Failed(e)) => return Err(e.to_string()),
        };
        if incoming > max {
            return Err(over());
        }
        pack_tars(
            caches.store().clone(),
            tars,
            archive::OutputTar::keeping_times,
        )
        .await
        .map_err(|e| e.to_string())
    }
}
