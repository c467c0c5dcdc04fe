//! The agent's build cache store: cache entries' tars, content-addressed
//! in a [`Store`] of their own (so evicting a cache never deletes an
//! artifact), with this agent's limits: the largest entry it saves or
//! fetches, and the bytes it keeps in all, the least recently used entries
//! going first. A blob's modification time is its last use. And what a
//! cache key's `#{hash_files: ...}` stands for ([`digest_files`]).

use std::path::PathBuf;
use std::time::SystemTime;

use crate::store::{Store, StoreError};

/// This agent's cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Largest entry saved or fetched, in bytes.
    pub entry_bytes: u64,
    /// Most bytes kept in all; older entries go first.
    pub total_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            entry_bytes: 4 << 30,
            total_bytes: 20 << 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheStore {
    store: Store,
    limits: CacheLimits,
}

impl CacheStore {
    /// Opens (or makes) the store under `root`.
    pub fn open(root: PathBuf, limits: CacheLimits) -> Result<CacheStore, StoreError> {
        Ok(CacheStore {
            store: Store::open(root)?,
            limits,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Whether blob `digest` is here; if so it counts as used now.
    pub fn take(&self, digest: &str) -> bool {
        let Some(path) = self.store.path(digest) else {
            return false;
        };
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        true
    }

    /// Deletes blob `digest`; whether it was here.
    pub fn remove(&self, digest: &str) -> bool {
        self.store.remove(digest)
    }

    /// Deletes the least recently used blobs until at most
    /// `total_bytes` are held; returns their digests.
    pub fn evict(&self) -> Vec<String> {
        let mut blobs: Vec<(SystemTime, u64, String)> = self
            .store
            .blobs()
            .into_iter()
            .filter_map(|(digest, path)| {
                let meta = std::fs::metadata(path).ok()?;
                Some((meta.modified().ok()?, meta.len(), digest))
            })
            .collect();
        let mut used: u64 = blobs.iter().map(|(_, size, _)| size).sum();
        blobs.sort();
        let mut gone = Vec::new();
        for (_, size, digest) in blobs {
            if used <= self.limits.total_bytes {
                break;
            }
            if self.store.remove(&digest) {
                used = used.saturating_sub(size);
                gone.push(digest);
            }
        }
        gone
    }
}

/// What `#{hash_files: GLOB ...}` stands for: the sha256 (hex) of the
/// sorted list of every regular file of the source tar (blob
/// `source_digest` in `store`) that a glob matches, each path with its
/// content's sha256; and how many files matched. The same files give the
/// same digest whatever the commit.
pub fn digest_files(
    store: &Store,
    source_digest: &str,
    globs: &[String],
) -> Result<(String, usize), String> {
    use sha2::{Digest, Sha256};
    // Globs as branch filters and `when:` read them (`*` within a segment).
    let matchers = globs
        .iter()
        .map(|g| ferry_pipeline::condition::glob(g))
        .collect::<Result<Vec<_>, _>>()?;
    let file = store.open_blob(source_digest).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut found: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| e.to_string())?;
        let path = path.to_string_lossy().trim_start_matches("./").to_string();
        if !matchers.iter().any(|m| m.is_match(&path)) {
            continue;
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut entry, &mut hasher).map_err(|e| e.to_string())?;
        found.push((path, hex::encode(hasher.finalize())));
    }
    found.sort();
    let mut all = Sha256::new();
    for (path, digest) in &found {
        all.update(path.as_bytes());
        all.update([0]);
        all.update(digest.as_bytes());
        all.update(b"\n");
    }
    Ok((hex::encode(all.finalize()), found.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_files_digests_the_matching_files_only() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().to_path_buf())?;
        let source = |lock: &str, readme: &str| -> Result<String, Box<dyn std::error::Error>> {
            let mut b = tar::Builder::new(Vec::new());
            for (path, body) in [
                ("Cargo.lock", lock),
                ("README", readme),
                ("sub/Cargo.lock", "x"),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, path, body.as_bytes())?;
            }
            Ok(store.put_reader(&b.into_inner()?[..])?.digest)
        };
        let a = source("v1", "one")?;
        let b = source("v1", "two")?;
        let c = source("v2", "one")?;
        let top = vec!["Cargo.lock".to_string()];
        let (da, n) = digest_files(&store, &a, &top)?;
        assert_eq!(n, 1);
        assert_eq!(digest_files(&store, &b, &top)?.0, da);
        assert_ne!(digest_files(&store, &c, &top)?.0, da);
        assert_eq!(
            digest_files(&store, &a, &["**/Cargo.lock".to_string()])?.1,
            2
        );
        assert_eq!(digest_files(&store, &a, &["none".to_string()])?.1, 0);
        Ok(())
    }

    #[test]
    fn the_least_recently_used_go_first() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let caches = CacheStore::open(
            dir.path().to_path_buf(),
            CacheLimits {
                entry_bytes: 100,
                total_bytes: 25,
            },
        )?;
        let a = caches.store().put_reader(&[1u8; 10][..])?;
        let b = caches.store().put_reader(&[2u8; 10][..])?;
        let c = caches.store().put_reader(&[3u8; 10][..])?;
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        for (blob, secs) in [(&a, 3), (&b, 1), (&c, 2)] {
            let path = caches.store().path(&blob.digest).ok_or("stored")?;
            std::fs::File::options()
                .append(true)
                .open(path)?
                .set_modified(old + std::time::Duration::from_secs(secs))?;
        }
        // b is the oldest, but using it makes c the oldest.
        assert!(caches.take(&b.digest));
        assert_eq!(caches.evict(), vec![c.digest.clone()]);
        assert!(caches.take(&a.digest) && caches.take(&b.digest));
        assert!(!caches.take(&c.digest));
        Ok(())
    }
}
