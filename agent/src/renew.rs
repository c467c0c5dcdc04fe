//! Keeps the agent's certificate fresh. When a third of its lifetime is
//! left, the agent makes a new key, asks a coordinator to sign it over mTLS
//! with the certificate it still has (`RenewCertificate`), saves the new pair
//! so that a crash leaves the old or the new one whole, and swaps it in for
//! new sessions, peer fetches and its peer server's handshakes. Failures are
//! retried, more often as expiry nears.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ferry_certs::{CertFacts, CertifiedKey};
use ferry_proto as pb;

use crate::identity::Credentials;

/// Longest the loop sleeps before looking at the certificate again.
const LONGEST_NAP: Duration = Duration::from_secs(60 * 60);
/// Longest a renewal call may take once connected.
const RENEW_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds on the wait after a failed renewal.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);

/// What renewing needs: who to ask, how to trust them, where the pair lives.
pub struct Renewer {
    pub coordinators: Vec<String>,
    pub ca_pem: String,
    pub state_dir: PathBuf,
    pub credentials: Credentials,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(u64::MAX))
}

impl Renewer {
    /// Renews the certificate whenever it is due, forever.
    pub async fn run(self) {
        loop {
            let facts = match CertFacts::from_pem(&self.credentials.current().cert_pem) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the agent's own certificate; not renewing it");
                    return;
                }
            };
            let now = now_ms();
            let due = facts.renew_at_ms();
            if now < due {
                tokio::time::sleep(millis(due - now).min(LONGEST_NAP)).await;
                continue;
            }
            match self.renew_once().await {
                Ok(new) => tracing::info!(
                    expires_at_ms = new.not_after_ms,
                    fingerprint = %new.fingerprint,
                    "renewed the agent certificate"
                ),
                Err(e) => {
                    let left = facts.not_after_ms - now;
                    let retry = millis(left / 10).clamp(RETRY_MIN, RETRY_MAX);
                    if left <= 0 {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "the agent certificate has expired and could not be renewed; enroll the agent again with a new token"
                        );
                    } else {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            expires_in_s = left / 1000,
                            "renewing the agent certificate failed; retrying in {retry:?}"
                        );
                    }
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// One renewal: a new key, signed by the first coordinator that answers.
    pub async fn renew_once(&self) -> anyhow::Result<CertFacts> {
        let (csr_pem, key_pem) = ferry_certs::renewal_csr().context("making a new key")?;
        let current = self.credentials.current();
        let identity = CertFacts::from_pem(&current.cert_pem)?.identity;
        let request = pb::RenewCertificateRequest { csr_pem };
        let (addr, cert_pem) = crate::coordinators::first_answer(
            &self.coordinators,
            &self.ca_pem,
            Some(&current),
            Some(RENEW_TIMEOUT),
            (
                "renewal refused",
                "no coordinator could renew the certificate",
            ),
            |channel| {
                let request = request.clone();
                async move {
                    pb::access_client::AccessClient::new(channel)
                        .renew_certificate(request)
                        .await
                        .map(|r| r.into_inner().certificate_pem)
                }
            },
        )
        .await?;
        let facts = CertFacts::from_pem(&cert_pem).context("the renewed certificate")?;
        if facts.identity != identity {
            bail!(
                "{addr} signed a certificate for {} instead of {identity}",
                facts.identity
            );
        }
        let pair = CertifiedKey { cert_pem, key_pem };
        let (cert_path, key_path) = crate::identity::pair_paths(&self.state_dir);
        ferry_certs::replace_pair(&cert_path, &key_path, &pair)
            .context("saving the renewed certificate")?;
        self.credentials.replace(pair)?;
        Ok(facts)
    }
}
