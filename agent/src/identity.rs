//! The agent's identity: a key pair it made itself and a certificate the
//! cluster CA signed at enrollment. The first start trades a join token and a
//! CSR for the certificate; later starts load it from the state dir (first
//! finishing a renewal a crash cut short). Renewals swap in a new pair while
//! the agent runs ([`Credentials`], `renew`). At enrollment the agent also
//! makes its X25519 wrapping key (`wrapping.key`, kept beside the
//! certificate, never replaced) and sends its public half: the secrets of its
//! actions are sealed to that key, so the agent never holds the cluster's
//! secrets key. Agents enrolled before wrapping keys keep the copy of the
//! cluster's key they received then.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use ferry_certs::tls::ReloadableCert;
use ferry_certs::{CertifiedKey, Identity, WrappingKey};
use ferry_proto as pb;

use crate::unseal::Keys;

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
    /// What opens sealed secrets: the agent's wrapping key and, for an agent
    /// enrolled before wrapping keys, its copy of the cluster's secrets key
    /// (None when it has neither).
    pub secrets: Option<Keys>,
}

/// The keys in `state`. A wrapping key file that exists but cannot be read
/// is an error: running on without it would fail every action with secrets.
fn keys_of(state: &Path) -> anyhow::Result<Option<Keys>> {
    let wrapping = if state.join(ferry_certs::WRAPPING_KEY_FILE).exists() {
        Some(WrappingKey::load(state).context("loading the agent's wrapping key")?)
    } else {
        None
    };
    let cluster = cluster_key(state);
    Ok((wrapping.is_some() || cluster.is_some()).then_some(Keys { wrapping, cluster }))
}

/// The agent's copy of the cluster's secrets key, if it has one.
fn cluster_key(state: &Path) -> Option<ferry_certs::SecretBox> {
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
            secrets: keys_of(state)?,
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
    // Saved before it is sent, so an enrolled agent always has it; one left
    // by an earlier attempt is used again, never replaced.
    let wrapping = WrappingKey::load_or_create(state).context("making the wrapping key")?;
    let request = pb::EnrollRequest {
        token: token.to_string(),
        name: name.to_string(),
        csr_pem,
        sans: sans.to_vec(),
        wrapping_public_key: wrapping.public_bytes().to_vec(),
    };
    let (_, resp) = crate::coordinators::first_answer(
        coordinators,
        &ca_pem,
        None,
        None,
        (
            "enrollment refused",
            "could not reach any coordinator to enroll",
        ),
        |channel| {
            let request = request.clone();
            async move {
                pb::enrollment_client::EnrollmentClient::new(channel)
                    .enroll(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        },
    )
    .await?;
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let key = CertifiedKey {
        cert_pem: resp.certificate_pem,
        key_pem,
    };
    ferry_certs::write_pair(state, "agent", &key).context("saving the agent certificate")?;
    std::fs::write(&ca_path, &resp.ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    // Only a coordinator older than wrapping keys still sends it.
    if let Ok(key) = <[u8; 32]>::try_from(resp.secrets_key.as_slice()) {
        ferry_certs::save_secrets_key(state, &key).context("saving the cluster's secrets key")?;
    }
    let identity = identity_of(&key.cert_pem)?;
    tracing::info!(identity = %identity, "enrolled");
    Ok(AgentIdentity {
        identity,
        key: Credentials::new(key)?,
        ca_pem: resp.ca_pem,
        secrets: Some(Keys {
            wrapping: Some(wrapping),
            cluster: cluster_key(state),
        }),
    })
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
