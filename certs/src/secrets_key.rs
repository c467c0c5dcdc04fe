//! The cluster's secrets key: 32 random bytes kept beside the CA (`secrets.key`,
//! mode 0600), created once with the CA and shared by every coordinator, which
//! uses it to encrypt secrets at rest in the replicated state and to open them
//! when it seals them again to the agent that runs an action. Agents no longer
//! receive it: each has its own wrapping key ([`crate::wrap`]). Only agents
//! enrolled before wrapping keys keep the copy they were given then.

use std::path::{Path, PathBuf};

use crate::error::CertError;
use crate::files::{create_dir, write_new};

pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// Writes a new random key into `dir`; refuses to replace an existing one.
pub fn init_secrets_key(dir: &Path) -> Result<PathBuf, CertError> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| CertError::InvalidPem {
            what: "secrets key".into(),
            reason: "no randomness available".into(),
        })?;
    create_dir(dir)?;
    let path = dir.join(SECRETS_KEY_FILE);
    write_new(&path, &format!("{}\n", hex_encode(&key)), true)?;
    Ok(path)
}

/// Stores a key received from the cluster in `dir`, 0600: the copy an agent
/// keeps when a coordinator older than wrapping keys sends it one.
pub fn save_secrets_key(dir: &Path, key: &[u8; 32]) -> Result<PathBuf, CertError> {
    create_dir(dir)?;
    let path = dir.join(SECRETS_KEY_FILE);
    write_new(&path, &format!("{}\n", hex_encode(key)), true)?;
    Ok(path)
}

/// Reads the key from `dir`.
pub fn load_secrets_key(dir: &Path) -> Result<[u8; 32], CertError> {
    let path = dir.join(SECRETS_KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| CertError::io("read", &path, e))?;
    let bytes = hex_decode(text.trim()).ok_or_else(|| CertError::InvalidPem {
        what: path.display().to_string(),
        reason: "expected 64 hex digits".into(),
    })?;
    bytes.try_into().map_err(|_| CertError::InvalidPem {
        what: path.display().to_string(),
        reason: "expected 32 bytes".into(),
    })
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_is_never_replaced() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = init_secrets_key(dir.path())?;
        let key = load_secrets_key(dir.path())?;
        assert_eq!(key.len(), 32);
        assert!(init_secrets_key(dir.path()).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(path)?.permissions().mode() & 0o777, 0o600);
        }
        Ok(())
    }
}
