//! The agent's content-addressed blob store: artifacts and final logs, named
//! by the sha256 of their bytes. A blob appears under its name only after its
//! bytes are complete and verified, so a crash never leaves a wrong blob.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("artifact store I/O at {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("`{0}` is not a sha256 digest")]
    BadDigest(String),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    Mismatch { expected: String, actual: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A reference to a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

pub fn check_digest(digest: &str) -> Result<(), StoreError> {
    if ferry_pipeline::execution::is_blob_digest(digest) {
        Ok(())
    } else {
        Err(StoreError::BadDigest(digest.to_string()))
    }
}

impl Store {
    pub fn open(root: PathBuf) -> Result<Store, StoreError> {
        for sub in ["sha256", "tmp"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(Store { root })
    }

    /// Path of a stored blob, if present.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        check_digest(digest).ok()?;
        let p = self
            .root
            .join("sha256")
            .join(digest.trim_start_matches("sha256:"));
        p.is_file().then_some(p)
    }

    /// A writer that hashes as it goes; `commit` files the blob under its digest.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let tmp =
            tempfile::NamedTempFile::new_in(self.root.join("tmp")).map_err(io_err(&self.root))?;
        Ok(BlobWriter {
            tmp,
            hasher: Sha256::new(),
            size: 0,
            root: self.root.clone(),
        })
    }

    /// An unnamed scratch file on the store's file system (gone when closed),
    /// for bytes on their way into a blob.
    pub fn scratch(&self) -> Result<File, StoreError> {
        tempfile::tempfile_in(self.root.join("tmp")).map_err(io_err(&self.root))
    }

    /// Stores the contents of a reader.
    pub fn put_reader(&self, mut r: impl Read) -> Result<Blob, StoreError> {
        let mut w = self.writer()?;
        io::copy(&mut r, &mut w).map_err(io_err(&self.root))?;
        w.commit(None)
    }

    /// Deletes a blob; true if it was there.
    pub fn remove(&self, digest: &str) -> bool {
        self.path(digest)
            .is_some_and(|p| std::fs::remove_file(p).is_ok())
    }

    /// Total bytes of stored blobs.
    pub fn used_bytes(&self) -> u64 {
        std::fs::read_dir(self.root.join("sha256"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Every stored blob: its digest and path.
    pub fn blobs(&self) -> Vec<(String, PathBuf)> {
        std::fs::read_dir(self.root.join("sha256"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let digest = format!("sha256:{}", e.file_name().to_str()?);
                        check_digest(&digest).ok()?;
                        Some((digest, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, StoreError> {
        check_digest(digest)?;
        let p = self
            .root
            .join("sha256")
            .join(digest.trim_start_matches("sha256:"));
        File::open(&p).map_err(io_err(&p))
    }
}

pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    root: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Files the blob; with `expected`, refuses content whose digest differs.
    pub fn commit(mut self, expected: Option<&str>) -> Result<Blob, StoreError> {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize_reset()));
        if let Some(exp) = expected
            && exp != digest
        {
            return Err(StoreError::Mismatch {
                expected: exp.to_string(),
                actual: digest,
            });
        }
        let tmp_path = self.tmp.path().to_path_buf();
        self.tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
        let dest = self
            .root
            .join("sha256")
            .join(digest.trim_start_matches("sha256:"));
        self.tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.display().to_string(),
            source: e.error,
        })?;
        Ok(Blob {
            digest,
            size: self.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_digest_and_refuses_mismatch() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().to_path_buf())?;
        let blob = store.put_reader(&b"hello"[..])?;
        assert_eq!(
            blob.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(store.path(&blob.digest).is_some());
        let mut w = store.writer()?;
        w.write_all(b"other")?;
        assert!(matches!(
            w.commit(Some(&blob.digest)),
            Err(StoreError::Mismatch { .. })
        ));
        assert!(store.path("sha256:../../etc/passwd").is_none());
        Ok(())
    }
}
