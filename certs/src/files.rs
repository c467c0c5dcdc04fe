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

/// `<path>.next`: where [`replace_pair`] stages a new file.
fn staged(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> Result<(), CertError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(CertError::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), CertError> {
    fs::rename(from, to).map_err(|e| CertError::io("move into place", to, e))?;
    // The rename is durable once the directory is.
    if let Some(dir) = to.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Replaces the certificate and key at `cert_path` and `key_path` with
/// `pair` (a renewal), so that a crash at any moment leaves the old pair, the
/// new pair, or a half-done step that [`finish_replace`] completes: the new
/// key is staged as `<key>.next`, then the certificate as `<cert>.next`
/// (written under another name and renamed, so it exists only whole), then
/// the key moves into place, then the certificate.
pub fn replace_pair(
    cert_path: &Path,
    key_path: &Path,
    pair: &CertifiedKey,
) -> Result<(), CertError> {
    let (cert_next, key_next) = (staged(cert_path), staged(key_path));
    let mut cert_partial = cert_next.as_os_str().to_owned();
    cert_partial.push(".partial");
    let cert_partial = PathBuf::from(cert_partial);
    for leftover in [&cert_next, &key_next, &cert_partial] {
        remove_if_present(leftover)?;
    }
    write_new(&key_next, &pair.key_pem, true)?;
    write_new(&cert_partial, &pair.cert_pem, false)?;
    rename(&cert_partial, &cert_next)?;
    finish_replace(cert_path, key_path).map(|_| ())
}

/// Completes a replacement that [`replace_pair`] began and a crash cut short;
/// returns whether there was one. A staged certificate means both new files
/// are whole: they move into place (the key may have already). A staged key
/// alone means the certificate never was: it is dropped, the old pair stays.
pub fn finish_replace(cert_path: &Path, key_path: &Path) -> Result<bool, CertError> {
    let (cert_next, key_next) = (staged(cert_path), staged(key_path));
    match (cert_next.exists(), key_next.exists()) {
        (true, key_staged) => {
            if key_staged {
                rename(&key_next, key_path)?;
            }
            rename(&cert_next, cert_path)?;
            Ok(true)
        }
        (false, true) => {
            remove_if_present(&key_next)?;
            Ok(false)
        }
        (false, false) => Ok(false),
    }
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
    fn a_replacement_cut_short_anywhere_ends_old_or_new_never_mixed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(tmp.path(), "agent", &pair()).expect("write");
        let new = CertifiedKey {
            cert_pem: "CERT2".to_string(),
            key_pem: "KEY2".to_string(),
        };
        let read = || (read_pem(&cert).expect("cert"), read_pem(&key).expect("key"));
        // Crash after staging the key only: the old pair stays.
        fs::write(staged(&key), "KEY2").expect("stage");
        assert!(!finish_replace(&cert, &key).expect("finish"));
        assert_eq!(read(), ("CERT".into(), "KEY".into()));
        assert!(!staged(&key).exists());
        // Crash after both were staged: the new pair.
        fs::write(staged(&key), "KEY2").expect("stage");
        fs::write(staged(&cert), "CERT2").expect("stage");
        assert!(finish_replace(&cert, &key).expect("finish"));
        assert_eq!(read(), ("CERT2".into(), "KEY2".into()));
        // Crash after the key moved: the certificate follows.
        fs::write(&key, "KEY3").expect("move");
        fs::write(staged(&cert), "CERT3").expect("stage");
        assert!(finish_replace(&cert, &key).expect("finish"));
        assert_eq!(read(), ("CERT3".into(), "KEY3".into()));
        // The whole path, over leftovers.
        fs::write(staged(&key), "junk").expect("junk");
        replace_pair(&cert, &key, &new).expect("replace");
        assert_eq!(read(), ("CERT2".into(), "KEY2".into()));
        assert!(!staged(&cert).exists() && !staged(&key).exists());
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
