//! Sealed secrets: values are sealed with AES-256-GCM under the cluster's
//! secrets key (beside the CA) by the coordinator that receives them, so the
//! Raft log, snapshots and every member's disk hold only ciphertext. The
//! secret's name is the associated data, so a ciphertext cannot be moved to
//! another name. Agents do not receive this key: at dispatch the coordinator
//! opens each secret an assignment names and seals it again to the assigned
//! agent's wrapping key ([`crate::wrap`]), so only that agent opens it. The
//! key itself cannot be read back out of a [`SecretBox`]: no code path sends
//! it anywhere. No API answer ever carries a value.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SecretError {
    #[error(
        "no secrets key in --tls-dir ({0}); create one with `ferry certs init` for new clusters"
    )]
    NoKey(String),
    #[error("secret `{0}` does not decrypt with this cluster's secrets key")]
    Corrupt(String),
    #[error("no randomness available")]
    Random,
}

pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Result<SecretBox, SecretError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| SecretError::NoKey("bad key".into()))?;
        Ok(SecretBox {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// (nonce, ciphertext with tag) for `value` stored as `name`.
    pub fn seal(&self, name: &str, value: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let mut data = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Random)?;
        Ok((nonce.to_vec(), data))
    }

    pub fn open(
        &self,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretError::Corrupt(name.into()))?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Corrupt(name.into()))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_name() -> Result<(), SecretError> {
        let b = SecretBox::new(&[7u8; 32])?;
        let (nonce, ct) = b.seal("prod-token", b"hunter2")?;
        assert!(!ct.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open("prod-token", &nonce, &ct)?, b"hunter2");
        assert!(b.open("other", &nonce, &ct).is_err());
        let other = SecretBox::new(&[8u8; 32])?;
        assert!(other.open("prod-token", &nonce, &ct).is_err());
        Ok(())
    }
}
