//! Reading and writing PEM files: certificates world-readable, private keys
//! mode 0600, and never overwriting anything that already exists.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{CertError, CertifiedKey};

/// Writes `<stem>.pem` and `<stem>-key.pem` (mode 0600) into `dir`, creating
/// `dir` if needed. Refuses to overwrite either file.
pub fn write_pair(
    dir: &Path,
    stem: &str,
    pair: &CertifiedKey,
) -> Result<(PathBuf, PathBuf), CertError> {
    if stem.is_empty()
        || stem == "."
        || stem == ".."
        || stem.contains(['/', '\\'])
        || stem.contains(std::path::MAIN_SEPARATOR)
    {
        return Err(CertError::InvalidName {
            name: stem.to_string(),
            reason: "a file name stem must be a plain, non-empty file name".to_string(),
        });
    }
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    refuse_existing(dir, &[&cert_path, &key_path])?;
    create_dir(dir)?;
    write_new(&key_path, &pair.key_pem, true)?;
    if let Err(e) = write_new(&cert_path, &pair.cert_pem, false) {
        // Do not leave half a pair behind: it would block the next attempt.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((cert_path, key_path))
}

/// Reads a PEM (or any text) file; the error names the path.
pub fn read_pem(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("read", path, e))
}

/// Fails with [`CertError::AlreadyExists`] if any of `paths` exists.
pub(crate) fn refuse_existing(dir: &Path, paths: &[&Path]) -> Result<(), CertError> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => return Err(already_exists(dir, path)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(CertError::io("check", *path, e)),
        }
    }
    Ok(())
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|e| CertError::io("create directory", dir, e))
}

/// Creates `path` exclusively (never following or replacing an existing
/// file) and writes `contents`; `secret` files get mode 0600 on Unix.
pub(crate) fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            already_exists(path.parent().unwrap_or(Path::new(".")), path)
        } else {
            CertError::io("create", path, e)
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CertError::io("write", path, e))
}

fn already_exists(dir: &Path, path: &Path) -> CertError {
    CertError::AlreadyExists {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        dir: dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> CertifiedKey {
        CertifiedKey {
            cert_pem: "CERT".to_string(),
            key_pem: "KEY".to_string(),
        }
    }

    #[test]
    fn writes_pair_and_refuses_overwrite() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nested/dir");
        let (cert, key) = write_pair(&dir, "operator-alice", &pair()).expect("first write");
        assert_eq!(cert, dir.join("operator-alice.pem"));
        assert_eq!(key, dir.join("operator-alice-key.pem"));
        assert_eq!(read_pem(&cert).expect("read"), "CERT");
        assert_eq!(read_pem(&key).expect("read"), "KEY");

        let err = write_pair(&dir, "operator-alice", &pair()).expect_err("second write");
        assert!(matches!(err, CertError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(tmp.path(), "agent", &pair()).expect("write");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(
            mode(&cert) & 0o077,
            mode(&cert) & 0o044,
            "cert never group/world-writable"
        );
    }

    #[test]
    fn bad_stems_are_rejected() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for stem in ["", ".", "..", "a/b", "../x"] {
            assert!(write_pair(tmp.path(), stem, &pair()).is_err(), "{stem:?}");
        }
    }

    #[test]
    fn read_error_names_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("missing.pem");
        let err = read_pem(&path).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
