//! Secrets: sealed here with the cluster's key before they are proposed, so
//! the log and every member hold only ciphertext; listed by name, never value.

use ferry_certs::Identity;

use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{Command, SecretRecord};

/// Largest secret value: it is replicated to every member and every assignment.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// A secret's name and who last set it; never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub updated_by: String,
    pub updated_at: i64,
}

impl Ops {
    /// Write: seals and stores a secret.
    pub async fn set_secret(
        &self,
        who: &Identity,
        name: &str,
        value: &[u8],
    ) -> OpResult<SecretInfo> {
        ferry_pipeline::validate_secret_name(name)
            .map_err(|e| OpError::Invalid(format!("secret name `{name}`: {e}")))?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(OpError::Invalid(format!(
                "a secret's value is at most {} KiB (this one is {} bytes); keep bulk data out of \
                 the replicated state",
                MAX_SECRET_BYTES / 1024,
                value.len()
            )));
        }
        let sealer = self.ctx().secrets.as_ref().ok_or_else(|| {
            OpError::FailedPrecondition(
                "this cluster has no secrets key (secrets.key beside the CA in --tls-dir)".into(),
            )
        })?;
        let (nonce, ciphertext) = sealer
            .seal(name, value)
            .map_err(|e| OpError::Internal(e.to_string()))?;
        let at = now_ms();
        self.write(Command::SetSecret {
            name: name.to_string(),
            nonce,
            ciphertext,
            by: super::access::acting(who),
            at,
        })
        .await?;
        tracing::info!(secret = %name, by = %who.name, "secret set");
        Ok(SecretInfo {
            name: name.to_string(),
            updated_by: who.name.clone(),
            updated_at: at,
        })
    }

    /// Write: removes a secret; returns the secrets left (read-your-writes).
    pub async fn remove_secret(&self, who: &Identity, name: &str) -> OpResult<Vec<SecretInfo>> {
        self.write(Command::RemoveSecret {
            name: name.to_string(),
            by: super::access::acting(who),
        })
        .await?;
        tracing::info!(secret = %name, "secret removed");
        Ok(self.local_read(|s| infos(s.secrets.iter())))
    }

    /// Local read (after a linearizable one by the caller, or on the
    /// leader): the plain value of a secret this member uses itself — a
    /// webhook's secret to check a signature with, a notification target's
    /// to sign with. Never sent anywhere.
    pub fn local_secret_value(&self, name: &str) -> OpResult<Vec<u8>> {
        let sealed = self
            .local_read(|s| s.secrets.get(name).cloned())
            .ok_or_else(|| OpError::NotFound(format!("secret `{name}` is not set")))?;
        let opener = self.ctx().secrets.as_ref().ok_or_else(|| {
            OpError::FailedPrecondition(
                "this coordinator has no secrets key (secrets.key beside the CA in --tls-dir)"
                    .into(),
            )
        })?;
        opener
            .open(name, &sealed.nonce, &sealed.ciphertext)
            .map_err(|e| OpError::Internal(format!("secret `{name}`: {e}")))
    }

    /// Linearizable: one page of the secrets by name (who set each), and
    /// the next page's token.
    pub async fn list_secrets(
        &self,
        page: &super::page::PageRequest,
    ) -> OpResult<(Vec<SecretInfo>, String)> {
        self.read(|s| page.apply(infos(s.secrets.iter()), |i| i.name.clone()))
            .await?
    }
}

fn infos<'a>(secrets: impl Iterator<Item = (&'a String, &'a SecretRecord)>) -> Vec<SecretInfo> {
    secrets
        .map(|(name, r)| SecretInfo {
            name: name.clone(),
            updated_by: r.updated_by.clone(),
            updated_at: r.updated_at,
        })
        .collect()
}
