//! Per-agent wrapping keys: each agent makes an X25519 key pair at enrollment,
//! keeps the private half in its state dir (`wrapping.key`, mode 0600) and
//! gives the cluster only the public half. A coordinator that hands a secret
//! to an agent opens it with the cluster's secrets key and seals it again to
//! that agent alone ([`seal_to`]), so an agent's disk holds no key that opens
//! anything but what is sealed to it.
//!
//! The scheme: a fresh ephemeral X25519 key per sealed value; the shared
//! secret goes through HKDF-SHA256 (salt = ephemeral public key || recipient
//! public key, info = `ferry secret wrap v1`) to an AES-256-GCM key; a random
//! nonce; the secret's name as associated data, so a value cannot be moved to
//! another name. Low-order public keys (an all-zero shared secret) are
//! refused on both ends. This module never writes a plain value anywhere and
//! never replaces an existing key file.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::files::{create_dir, write_new};
use crate::{CertError, SecretBox};

/// The agent's private wrapping key in its state dir (hex, like `secrets.key`).
pub const WRAPPING_KEY_FILE: &str = "wrapping.key";

/// HKDF `info`: names the scheme and its version, so a key derived here is
/// never the key of anything else.
const INFO: &[u8] = b"ferry secret wrap v1";

#[derive(Debug, Error)]
pub enum WrapError {
    #[error(transparent)]
    File(#[from] CertError),
    #[error("{}: expected 64 hex digits (a 32-byte X25519 private key)", .0.display())]
    BadKeyFile(PathBuf),
    #[error("a wrapping public key must be exactly 32 bytes (an X25519 public key), not {0}")]
    BadLength(usize),
    #[error("the wrapping public key is a low-order point: nothing sealed to it would be secret")]
    LowOrder,
    #[error(
        "secret `{0}` does not open with this agent's wrapping key: it was sealed to another agent, or altered"
    )]
    Corrupt(String),
    #[error("cannot open secret `{0}` with the cluster's secrets key to seal it to the agent")]
    Unsealable(String),
    #[error("no randomness available")]
    Random,
}

/// A value sealed to one agent's wrapping key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The sender's one-time X25519 public key.
    pub ephemeral_public: [u8; 32],
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext with the GCM tag appended.
    pub ciphertext: Vec<u8>,
}

/// An agent's X25519 key pair (the private half is zeroed when dropped).
pub struct WrappingKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl WrappingKey {
    /// A new random key pair.
    pub fn generate() -> Result<WrappingKey, WrapError> {
        Ok(WrappingKey::from_secret(random_secret()?))
    }

    fn from_secret(secret: StaticSecret) -> WrappingKey {
        let public = PublicKey::from(&secret);
        WrappingKey { secret, public }
    }

    /// Writes the private key to `dir/wrapping.key` (0600); refuses to
    /// replace an existing file.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, WrapError> {
        create_dir(dir)?;
        let path = dir.join(WRAPPING_KEY_FILE);
        let text = Zeroizing::new(format!("{}\n", hex::encode(self.secret.as_bytes())));
        write_new(&path, &text, true)?;
        Ok(path)
    }

    /// Reads `dir/wrapping.key`.
    pub fn load(dir: &Path) -> Result<WrappingKey, WrapError> {
        let path = dir.join(WRAPPING_KEY_FILE);
        let text = Zeroizing::new(
            std::fs::read_to_string(&path).map_err(|e| CertError::io("read", &path, e))?,
        );
        let bytes = Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| WrapError::BadKeyFile(path.clone()))?,
        );
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| WrapError::BadKeyFile(path.clone()))?;
        Ok(WrappingKey::from_secret(StaticSecret::from(raw)))
    }

    /// The key in `dir` if there is one, else a new one saved there: an
    /// existing key is never replaced (a retried enrollment sends the same
    /// public key).
    pub fn load_or_create(dir: &Path) -> Result<WrappingKey, WrapError> {
        if dir.join(WRAPPING_KEY_FILE).exists() {
            return WrappingKey::load(dir);
        }
        let key = WrappingKey::generate()?;
        match key.save(dir) {
            Ok(_) => Ok(key),
            // Another process made one meanwhile: that one is the key.
            Err(WrapError::File(CertError::AlreadyExists { .. })) => WrappingKey::load(dir),
            Err(e) => Err(e),
        }
    }

    /// The public half, sent to the cluster at enrollment.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// Opens a value sealed to this key by [`seal_to`] as `name`.
    pub fn open(
        &self,
        name: &str,
        ephemeral_public: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, WrapError> {
        let corrupt = || WrapError::Corrupt(name.to_string());
        let ephemeral: [u8; 32] = ephemeral_public.try_into().map_err(|_| corrupt())?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(ephemeral));
        if !shared.was_contributory() {
            return Err(corrupt());
        }
        let key = derive(shared.as_bytes(), &ephemeral, self.public.as_bytes())?;
        let mut data = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

/// Checks a wrapping public key received from an agent: 32 bytes, and not a
/// low-order point.
pub fn validate_public(bytes: &[u8]) -> Result<[u8; 32], WrapError> {
    let public: [u8; 32] = bytes
        .try_into()
        .map_err(|_| WrapError::BadLength(bytes.len()))?;
    // Clamping makes every scalar a multiple of the cofactor, so the result
    // is all zeros exactly when the point has small order, whatever the
    // scalar: a fixed one will do.
    let probe = StaticSecret::from([1u8; 32]).diffie_hellman(&PublicKey::from(public));
    if probe.was_contributory() {
        Ok(public)
    } else {
        Err(WrapError::LowOrder)
    }
}

/// Seals `value`, stored as `name`, to the holder of the private key for
/// `public` alone.
pub fn seal_to(public: &[u8; 32], name: &str, value: &[u8]) -> Result<Wrapped, WrapError> {
    let ephemeral = random_secret()?;
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(WrapError::LowOrder);
    }
    let key = derive(shared.as_bytes(), &ephemeral_public, public)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| WrapError::Random)?;
    let mut ciphertext = value.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(name.as_bytes()),
        &mut ciphertext,
    )
    .map_err(|_| WrapError::Random)?;
    Ok(Wrapped {
        ephemeral_public,
        nonce,
        ciphertext,
    })
}

/// Opens a value sealed under the cluster's secrets key and seals it to
/// `public`; the plain value lives only in memory that is zeroed before
/// this returns.
pub fn reseal_to(
    cluster: &SecretBox,
    public: &[u8; 32],
    name: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Wrapped, WrapError> {
    let plain = Zeroizing::new(
        cluster
            .open(name, nonce, ciphertext)
            .map_err(|_| WrapError::Unsealable(name.to_string()))?,
    );
    seal_to(public, name, &plain)
}

fn random_secret() -> Result<StaticSecret, WrapError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(&mut *raw)
        .map_err(|_| WrapError::Random)?;
    Ok(StaticSecret::from(*raw))
}

/// The AES-256-GCM key for one (ephemeral, recipient) pair.
fn derive(
    shared: &[u8; 32],
    ephemeral_public: &[u8; 32],
    recipient_public: &[u8; 32],
) -> Result<LessSafeKey, WrapError> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(recipient_public);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared);
    let okm = prk
        .expand(&[INFO], &AES_256_GCM)
        .map_err(|_| WrapError::Random)?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_value_round_trips_to_its_recipient() -> TestResult {
        let agent = WrappingKey::generate()?;
        let w = seal_to(&agent.public_bytes(), "prod-token", b"hunter2")?;
        assert!(!w.ciphertext.windows(7).any(|x| x == b"hunter2"));
        let plain = agent.open("prod-token", &w.ephemeral_public, &w.nonce, &w.ciphertext)?;
        assert_eq!(plain, b"hunter2");
        // A fresh ephemeral key each time: two seals of one value differ.
        let again = seal_to(&agent.public_bytes(), "prod-token", b"hunter2")?;
        assert_ne!(again.ephemeral_public, w.ephemeral_public);
        assert_ne!(again.ciphertext, w.ciphertext);
        Ok(())
    }

    #[test]
    fn another_name_does_not_open() -> TestResult {
        let agent = WrappingKey::generate()?;
        let w = seal_to(&agent.public_bytes(), "prod-token", b"hunter2")?;
        let r = agent.open("other", &w.ephemeral_public, &w.nonce, &w.ciphertext);
        assert!(matches!(r, Err(WrapError::Corrupt(n)) if n == "other"));
        Ok(())
    }

    #[test]
    fn another_agent_cannot_open() -> TestResult {
        let agent = WrappingKey::generate()?;
        let thief = WrappingKey::generate()?;
        let w = seal_to(&agent.public_bytes(), "prod-token", b"hunter2")?;
        assert!(
            thief
                .open("prod-token", &w.ephemeral_public, &w.nonce, &w.ciphertext)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn tampering_is_detected() -> TestResult {
        let agent = WrappingKey::generate()?;
        let w = seal_to(&agent.public_bytes(), "prod-token", b"hunter2")?;
        let open = |eph: &[u8], nonce: &[u8], ct: &[u8]| agent.open("prod-token", eph, nonce, ct);
        for i in [0, w.ciphertext.len() - 1] {
            let mut ct = w.ciphertext.clone();
            ct[i] ^= 1;
            assert!(open(&w.ephemeral_public, &w.nonce, &ct).is_err());
        }
        let mut nonce = w.nonce;
        nonce[0] ^= 1;
        assert!(open(&w.ephemeral_public, &nonce, &w.ciphertext).is_err());
        let mut eph = w.ephemeral_public;
        eph[5] ^= 1;
        assert!(open(&eph, &w.nonce, &w.ciphertext).is_err());
        // Truncated fields are refused, not panicked on.
        assert!(open(&w.ephemeral_public[..31], &w.nonce, &w.ciphertext).is_err());
        assert!(open(&w.ephemeral_public, &w.nonce[..11], &w.ciphertext).is_err());
        assert!(open(&w.ephemeral_public, &w.nonce, &w.ciphertext[..4]).is_err());
        Ok(())
    }

    #[test]
    fn low_order_and_short_keys_are_refused() -> TestResult {
        // The identity point (0) and the point of order 2 (1) give an
        // all-zero shared secret with every private key.
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one] {
            assert!(matches!(validate_public(&bad), Err(WrapError::LowOrder)));
            assert!(matches!(seal_to(&bad, "n", b"v"), Err(WrapError::LowOrder)));
        }
        // An ephemeral key of low order does not open to anything.
        let agent = WrappingKey::generate()?;
        let w = seal_to(&agent.public_bytes(), "n", b"v")?;
        assert!(
            agent
                .open("n", &[0u8; 32], &w.nonce, &w.ciphertext)
                .is_err()
        );
        assert!(matches!(
            validate_public(&[9u8; 31]),
            Err(WrapError::BadLength(31))
        ));
        assert_eq!(
            validate_public(&agent.public_bytes())?,
            agent.public_bytes()
        );
        Ok(())
    }

    #[test]
    fn a_cluster_sealed_value_is_resealed_to_one_agent() -> TestResult {
        let cluster = SecretBox::new(&[7u8; 32])?;
        let agent = WrappingKey::generate()?;
        let (nonce, ct) = cluster.seal("db", b"pw")?;
        let w = reseal_to(&cluster, &agent.public_bytes(), "db", &nonce, &ct)?;
        assert_eq!(
            agent.open("db", &w.ephemeral_public, &w.nonce, &w.ciphertext)?,
            b"pw"
        );
        // Sealed as another name, or under another cluster's key: refused.
        assert!(matches!(
            reseal_to(&cluster, &agent.public_bytes(), "other", &nonce, &ct),
            Err(WrapError::Unsealable(_))
        ));
        let other = SecretBox::new(&[8u8; 32])?;
        assert!(reseal_to(&other, &agent.public_bytes(), "db", &nonce, &ct).is_err());
        Ok(())
    }

    #[test]
    fn the_key_file_round_trips_is_private_and_never_replaced() -> TestResult {
        let dir = tempfile::tempdir()?;
        let key = WrappingKey::generate()?;
        let path = key.save(dir.path())?;
        let loaded = WrappingKey::load(dir.path())?;
        assert_eq!(loaded.public_bytes(), key.public_bytes());
        assert!(WrappingKey::generate()?.save(dir.path()).is_err());
        assert_eq!(
            WrappingKey::load_or_create(dir.path())?.public_bytes(),
            key.public_bytes()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        // A fresh dir gets a new key, saved.
        let fresh = tempfile::tempdir()?;
        let made = WrappingKey::load_or_create(&fresh.path().join("state"))?;
        let back = WrappingKey::load(&fresh.path().join("state"))?;
        assert_eq!(made.public_bytes(), back.public_bytes());
        // A damaged file is an error that names it.
        std::fs::write(&path, "not hex\n")?;
        let err = WrappingKey::load(dir.path()).err().ok_or("loaded")?;
        assert!(err.to_string().contains(WRAPPING_KEY_FILE), "{err}");
        Ok(())
    }
}
