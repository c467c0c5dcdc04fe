//! The agent's identity: a key pair it made itself and a certificate the
//! cluster CA signed at enrollment. The first start trades a join token and a
//! CSR for the certificate; later starts load it from the state dir (first
//! finishing a renewal a crash cut short). Renewals swap in a new pair while
//! the agent runs ([`Credentials`], `renew`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use ferry_certs::tls::ReloadableCert;
use ferry_certs::{CertifiedKey, Identity};
use ferry_proto as pb;

/// The agent's current certificate and key. Renewal replaces them; every new
/// connection (sessions, peer fetches) and every handshake of the peer
/// server uses whatever is current.
#[derive(Clone)]
pub struct Credentials {
    pair: Arc<RwLock<CertifiedKey>>,
    server: Arc<ReloadableCert>,
}

impl Credentials {
    pub fn new(pair: CertifiedKey) -> anyhow::Result<Credentials> {
        let server = ReloadableCert::new(&pair).context("the agent's certificate and key")?;
        Ok(Credentials {
            pair: Arc::new(RwLock::new(pair)),
            server,
        })
    }

    /// The pair to present on a new connection.
    pub fn current(&self) -> CertifiedKey {
        self.pair.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the peer server presents (follows [`Credentials::replace`]).
    pub fn server_cert(&self) -> Arc<ReloadableCert> {
        self.server.clone()
    }

    /// Uses `pair` from now on (after a renewal saved it).
    pub fn replace(&self, pair: CertifiedKey) -> anyhow::Result<()> {
        self.server
            .set(&pair)
            .context("the renewed certificate and key")?;
        *self.pair.write().unwrap_or_else(|p| p.into_inner()) = pair;
        Ok(())
    }
}

pub struct AgentIdentity {
    pub identity: Identity,
    pub key: Credentials,
    pub ca_pem: String,
    /// The cluster's secrets key, to open sealed secrets (None if the
    /// cluster has none, or the agent enrolled before agents got it).
    pub secrets: Option<ferry_certs::SecretBox>,
}

fn secrets_of(state: &Path) -> Option<ferry_certs::SecretBox> {
    let key = ferry_certs::load_secrets_key(state).ok()?;
    ferry_certs::SecretBox::new(&key).ok()
}

/// The agent's certificate and key files in its state dir.
pub fn pair_paths(state: &Path) -> (PathBuf, PathBuf) {
    (state.join("agent.pem"), state.join("agent-key.pem"))
}

fn files(state: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        state.join("agent.pem"),
        state.join("agent-key.pem"),
        state.join("ca.pem"),
    )
}

/// Loads the identity from `state`, or enrolls with a join token.
pub async fn load_or_enroll(
    state: &Path,
    coordinators: &[String],
    token: Option<&str>,
    ca_file: Option<&Path>,
    name: &str,
    sans: &[String],
) -> anyhow::Result<AgentIdentity> {
    let (cert_path, key_path, ca_path) = files(state);
    if ferry_certs::finish_replace(&cert_path, &key_path)
        .context("finishing a certificate renewal that was cut short")?
    {
        tracing::info!("finished saving a renewed certificate that a restart interrupted");
    }
    if cert_path.exists() {
        let key = CertifiedKey {
            cert_pem: ferry_certs::read_pem(&cert_path)?,
            key_pem: ferry_certs::read_pem(&key_path)?,
        };
        let ca_pem = ferry_certs::read_pem(&ca_path)?;
        let identity = identity_of(&key.cert_pem)?;
        return Ok(AgentIdentity {
            identity,
            key: Credentials::new(key)?,
            ca_pem,
            secrets: secrets_of(state),
        });
    }
    let Some(token) = token else {
        bail!(
            "this agent is not enrolled yet ({} has no certificate): pass --join-token (from `ferry token create`) and --ca",
            state.display()
        );
    };
    let Some(ca_file) = ca_file else {
        bail!("enrolling needs --ca FILE: the cluster's ca.pem, to verify the coordinator")
    };
    let ca_pem = ferry_certs::read_pem(ca_file)?;
    let (csr_pem, key_pem) = ferry_certs::agent_csr(name).context("making a key pair and CSR")?;
    let mut errors = Vec::new();
    for addr in coordinators {
        let endpoint = ferry_certs::tls::endpoint(
            addr,
            &ca_pem,
            None,
            ferry_certs::tls::Expected::Coordinator,
        )
        .with_context(|| format!("coordinator address {addr}"))?
        .connect_timeout(std::time::Duration::from_secs(5));
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{addr}: {e:#}"));
                continue;
            }
        };
        let mut client = pb::enrollment_client::EnrollmentClient::new(channel);
        let req = pb::EnrollRequest {
            token: token.to_string(),
            name: name.to_string(),
            csr_pem: csr_pem.clone(),
            sans: sans.to_vec(),
        };
        match client.enroll(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                std::fs::create_dir_all(state)
                    .with_context(|| format!("creating {}", state.display()))?;
                let key = CertifiedKey {
                    cert_pem: resp.certificate_pem,
                    key_pem,
                };
                ferry_certs::write_pair(state, "agent", &key)
                    .context("saving the agent certificate")?;
                std::fs::write(&ca_path, &resp.ca_pem)
                    .with_context(|| format!("writing {}", ca_path.display()))?;
                if let Ok(key) = <[u8; 32]>::try_from(resp.secrets_key.as_slice()) {
                    ferry_certs::save_secrets_key(state, &key)
                        .context("saving the cluster's secrets key")?;
                }
                let identity = identity_of(&key.cert_pem)?;
                tracing::info!(identity = %identity, "enrolled");
                return Ok(AgentIdentity {
                    identity,
                    key: Credentials::new(key)?,
                    ca_pem: resp.ca_pem,
                    secrets: secrets_of(state),
                });
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                errors.push(format!("{addr}: {}", status.message()));
            }
            Err(status) => bail!("enrollment refused by {addr}: {}", status.message()),
        }
    }
    bail!(
        "could not reach any coordinator to enroll: {}",
        errors.join("; ")
    )
}

fn identity_of(cert_pem: &str) -> anyhow::Result<Identity> {
    let der = rustls_pem_first(cert_pem).context("agent certificate is not PEM")?;
    Ok(Identity::from_cert_der(&der)?)
}

fn rustls_pem_first(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}
