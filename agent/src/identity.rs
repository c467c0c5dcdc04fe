//! The agent's identity: a key pair it made itself and a certificate the
//! cluster CA signed at enrollment. The first start trades a join token and a
//! CSR for the certificate; later starts load it from the state dir (first
//! finishing a renewal a crash cut short). Renewals swap in a new pair while
//! the agent runs ([`Credentials`], `renew`). At enrollment the agent also
//! makes its X25519 wrapping key (`wrapping.key`, kept beside the
//! certificate, never replaced) and sends its public half: the secrets of its
//! actions are sealed to that key, so the agent never holds the cluster's
//! secrets key. It also sends the labels it asks for (`--labels`), which the
//! cluster binds to it. An agent enrolled before wrapping keys may still have
//! a copy of the cluster's key (`secrets.key`) in its state dir: it is never
//! read, and the agent says at every start that it must be enrolled again.

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
    /// What opens sealed secrets: the agent's wrapping key (None when it
    /// has none, as agents enrolled before wrapping keys).
    pub secrets: Option<Keys>,
}

/// The keys in `state`. A wrapping key file that exists but cannot be read
/// is an error: running on without it would fail every action with secrets.
/// A copy of the cluster's secrets key left by an enrollment before
/// wrapping keys is not read; the agent warns that it must be re-enrolled.
fn keys_of(state: &Path) -> anyhow::Result<Option<Keys>> {
    if state.join(ferry_certs::SECRETS_KEY_FILE).exists() {
        tracing::warn!(
            file = %state.join(ferry_certs::SECRETS_KEY_FILE).display(),
            "this agent's state dir holds a copy of the cluster's secrets key from an enrollment \
             before wrapping keys: anyone with this disk (or a backup of it) can open every \
             secret in the coordinators' state. The agent never uses it and gets no secrets \
             until it is enrolled again: `ferry agents remove NAME`, wipe this state dir \
             (shred the key), start the agent with a new join token"
        );
    }
    let wrapping = if state.join(ferry_certs::WRAPPING_KEY_FILE).exists() {
        Some(WrappingKey::load(state).context("loading the agent's wrapping key")?)
    } else {
        None
    };
    Ok(wrapping.is_some().then_some(Keys { wrapping }))
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

/// What an agent enrolls as: its name, the host names of its artifact
/// server, and the labels it asks for.
pub struct Enrollment<'a> {
    pub name: &'a str,
    pub sans: &'a [String],
    pub labels: &'a [String],
}

/// The host names an agent advertised at `host` asks for in its
/// certificate: none on loopback (or an unspecified address), which
/// enrollment refuses and its peers do not check there.
pub fn sans_for(host: &str) -> Vec<String> {
    match ferry_certs::agent_host_refusal(host) {
        Some(_) => Vec::new(),
        None => vec![host.to_string()],
    }
}

/// Loads the identity from `state`, or enrolls with a join token.
pub async fn load_or_enroll(
    state: &Path,
    coordinators: &[String],
    token: Option<&str>,
    ca_file: Option<&Path>,
    who: Enrollment<'_>,
) -> anyhow::Result<AgentIdentity> {
    let Enrollment { name, sans, labels } = who;
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
        labels: labels.to_vec(),
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
    // A coordinator older than this agent may still send the cluster's
    // secrets key in field 4, now reserved: prost skips it unread, and it
    // is never saved.
    let identity = identity_of(&key.cert_pem)?;
    tracing::info!(identity = %identity, labels = ?resp.labels, "enrolled");
    Ok(AgentIdentity {
        identity,
        key: Credentials::new(key)?,
        ca_pem: resp.ca_pem,
        secrets: Some(Keys {
            wrapping: Some(wrapping),
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
