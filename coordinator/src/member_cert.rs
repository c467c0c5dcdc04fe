//! A member renews its own certificate, as agents do: when a third of its
//! lifetime is left, it issues itself a new one with the cluster CA it holds
//! (same identity and host names), writes it to its `--tls-dir` (so a
//! restart presents it too), and presents it from the next handshake on —
//! to clients of its gRPC and HTTPS listeners and to the peers and agents it
//! connects to — without a restart. Connections already open keep the old
//! one, which is still valid for a third of its lifetime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_certs::tls::{ReloadableCert, SharedIdentity};
use ferry_certs::{CertAuthority, CertFacts, CertifiedKey};

/// Never wait longer than this between looks (clock changes, long lifetimes).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// After a failed renewal, try again this much later.
const RETRY: Duration = Duration::from_secs(60);

/// What renewing this member's certificate touches.
pub struct MemberCert {
    pub id: u64,
    pub ca: CertAuthority,
    pub tls_dir: PathBuf,
    /// How long a renewed certificate lasts.
    pub lifetime: Duration,
    /// Presented by this member's listeners.
    pub server: Arc<ReloadableCert>,
    /// Presented by this member as a client.
    pub client: SharedIdentity,
}

impl MemberCert {
    /// Renews the certificate whenever it is due, for as long as the member runs.
    pub async fn run(self) {
        loop {
            let wait = match CertFacts::from_pem(&self.client.current().cert_pem) {
                Ok(facts) => {
                    let due = facts.renew_at_ms() - crate::views::now_ms();
                    Duration::from_millis(u64::try_from(due).unwrap_or(0))
                }
                Err(e) => {
                    tracing::error!(error = %e, "this member's certificate does not read; it is renewed now");
                    Duration::ZERO
                }
            };
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
            if wait > MAX_WAIT {
                continue;
            }
            match self.renew() {
                Ok(facts) => tracing::info!(
                    member = self.id,
                    not_after = %crate::views::rfc3339(facts.not_after_ms),
                    "this member's certificate was renewed"
                ),
                Err(e) => {
                    tracing::error!(member = self.id, error = %e, "renewing this member's certificate failed; trying again in a minute");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Issues, stores and presents a new certificate for the same identity
    /// and host names.
    fn renew(&self) -> anyhow::Result<CertFacts> {
        use anyhow::Context as _;
        let old = CertFacts::from_pem(&self.client.current().cert_pem)
            .context("reading the current certificate")?;
        let pair = self
            .ca
            .issue_coordinator_for(self.id, &old.hosts, self.lifetime)
            .context("issuing the new certificate")?;
        // Presented first: a member whose --tls-dir is read-only still serves
        // past the old certificate's expiry (until it restarts).
        self.server.set(&pair).context("presenting it")?;
        self.client.set(pair.clone());
        if let Err(e) = self.store(&pair) {
            tracing::error!(
                error = %e,
                dir = %self.tls_dir.display(),
                "the renewed certificate is presented but could not be written to --tls-dir: \
                 a restart would present the old one; make the folder writable by this member"
            );
        }
        Ok(CertFacts::from_pem(&pair.cert_pem)?)
    }

    /// Writes the pair over this member's files, each atomically (the key
    /// first: a crash between the two leaves a key the old certificate does
    /// not match, which the next start reports, rather than a silent mix).
    fn store(&self, pair: &CertifiedKey) -> std::io::Result<()> {
        let write = |name: String, text: &str| -> std::io::Result<()> {
            let path = self.tls_dir.join(name);
            let mut tmp = tempfile::NamedTempFile::new_in(&self.tls_dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write(format!("coordinator-{}-key.pem", self.id), &pair.key_pem)?;
        write(format!("coordinator-{}.pem", self.id), &pair.cert_pem)
    }
}
