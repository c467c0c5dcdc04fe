//! tonic TLS configurations for Ferry's endpoints, built from PEM strings.
//! Server configs validate their inputs up front so a bad certificate or key
//! is reported when the config is built, not at the first connection.
//! Every client goes through [`endpoint`], which checks the server's SPIFFE
//! identity for the role it expects ([`Expected`]), never only the CA chain.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, OtherError, SignatureScheme};
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

use crate::{CertError, CertifiedKey, Identity, IdentityKind};

/// How long a server waits for a client to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Server TLS for a coordinator as tonic's static config (the tests here
/// serve with it; members serve through [`coordinator_server_config`], whose
/// certificate they renew): presents `cert_pem`/`key_pem` and trusts
/// `ca_pem` for client certificates, which are OPTIONAL.
#[cfg(test)]
pub(crate) fn coordinator_server(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ServerTlsConfig, CertError> {
    Ok(mtls_server(ca_pem, cert_pem, key_pem)?.client_auth_optional(true))
}

/// Server TLS that requires a client certificate signed by `ca_pem`
/// (agents' artifact peer servers).
pub fn mtls_server(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ServerTlsConfig, CertError> {
    check_ca(ca_pem)?;
    check_identity(cert_pem, key_pem)?;
    Ok(ServerTlsConfig::new()
        .timeout(HANDSHAKE_TIMEOUT)
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(false))
}

/// A certificate and key a long-running client presents (a member's, to its
/// peers and agents), replaced when it is renewed: each new connection takes
/// the current one; open connections keep theirs, valid until it expires.
#[derive(Debug, Clone)]
pub struct SharedIdentity(Arc<std::sync::RwLock<CertifiedKey>>);

impl SharedIdentity {
    pub fn new(pair: CertifiedKey) -> SharedIdentity {
        SharedIdentity(Arc::new(std::sync::RwLock::new(pair)))
    }

    /// The pair to present now.
    pub fn current(&self) -> CertifiedKey {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, pair: CertifiedKey) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = pair;
    }
}

/// The certificate of a server that outlives its certificates (an agent's
/// artifact server, whose agent renews them): every handshake presents the
/// one last [`ReloadableCert::set`].
#[derive(Debug)]
pub struct ReloadableCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl ReloadableCert {
    /// Starts with `pair`, checked like any server identity.
    pub fn new(pair: &CertifiedKey) -> Result<Arc<ReloadableCert>, CertError> {
        let key = certified_key(&pair.cert_pem, &pair.key_pem)?;
        Ok(Arc::new(ReloadableCert(std::sync::RwLock::new(Arc::new(
            key,
        )))))
    }

    /// Presents `pair` from the next handshake on; connections already open
    /// keep the certificate they were made with.
    pub fn set(&self, pair: &CertifiedKey) -> Result<(), CertError> {
        let key = Arc::new(certified_key(&pair.cert_pem, &pair.key_pem)?);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ReloadableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Server TLS (as a rustls config, for [`crate::listen::tls_incoming`]) that
/// presents whatever `cert` holds, requires a client certificate signed by
/// `ca_pem`, and speaks HTTP/2 only.
pub fn mtls_server_config(
    ca_pem: &str,
    cert: Arc<ReloadableCert>,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    server_config(ca_pem, cert, true)
}

/// A coordinator's gRPC server TLS: [`mtls_server_config`], but a client
/// certificate is optional (enrollment and health checks come without one;
/// every other call is refused without one by the authz layer). The
/// member's certificate can be renewed while it runs.
pub fn coordinator_server_config(
    ca_pem: &str,
    cert: Arc<ReloadableCert>,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    server_config(ca_pem, cert, false)
}

fn server_config(
    ca_pem: &str,
    cert: Arc<ReloadableCert>,
    client_cert_required: bool,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let roots = check_ca(ca_pem)?;
    let invalid = |reason: String| CertError::InvalidPem {
        what: "CA certificate".to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let builder = if client_cert_required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let verifier = builder.build().map_err(|e| invalid(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Server TLS (as a rustls config, for [`crate::listen::tls_incoming`]) for a
/// coordinator's HTTPS listener (git webhooks, later the console): presents
/// `cert_pem`/`key_pem` and asks for NO client certificate — git hosts and
/// browsers have none; each request is authenticated on its own (a webhook by
/// its signature). Offers HTTP/2 and HTTP/1.1 by ALPN.
pub fn https_server_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let key = Arc::new(certified_key(cert_pem, key_pem)?);
    https_config(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
}

/// [`https_server_config`] presenting whatever `cert` holds (a member's
/// HTTPS listener, whose certificate the member renews while it runs).
pub fn https_server_config_reloadable(
    cert: Arc<ReloadableCert>,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    https_config(cert)
}

fn https_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::InvalidCert {
            what: "TLS identity".to_string(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name a `HOST:PORT` (or `[IPv6]:PORT`) address's server is verified as.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']'])
}

/// An endpoint for `https://ADDR` that trusts `ca_pem`, verifies the server as
/// the address's host *and* as the Ferry identity `expect`, and presents
/// `identity`; callers add their timeouts.
pub fn endpoint(
    addr: &str,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
    expect: Expected,
) -> Result<tonic::transport::Endpoint, EndpointError> {
    let verifier = PeerVerifier::new(ca_pem, expect)?;
    let config = client(identity).domain_name(host_of(addr));
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .map_err(EndpointError::Address)?
        .tls_config_with_verifier(config, Arc::new(verifier))
        .map_err(EndpointError::Tls)
}

/// Client TLS presenting `identity` as client certificate if given. The
/// server is verified by the [`PeerVerifier`] that [`endpoint`] installs.
pub(crate) fn client(identity: Option<&CertifiedKey>) -> ClientTlsConfig {
    let config = ClientTlsConfig::new();
    match identity {
        Some(pair) => config.identity(tonic::transport::Identity::from_pem(
            &pair.cert_pem,
            &pair.key_pem,
        )),
        None => config,
    }
}

/// Why an endpoint could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The CA certificate cannot be used.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The address is not a usable `HOST:PORT`.
    #[error(transparent)]
    Address(tonic::transport::Error),
    /// The client TLS settings (certificate, key) cannot be used.
    #[error(transparent)]
    Tls(tonic::transport::Error),
}

/// Who a client expects at the other end of a connection. A certificate that
/// chains to the cluster CA is not enough: every enrolled agent has one, valid
/// for server use, so each client also checks the role (and, where it knows
/// it, the name) in the server's SPIFFE identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Any coordinator of the cluster (the operator API, enrollment, sessions).
    Coordinator,
    /// Coordinator member `id` (Raft links, calls proxied to the leader).
    Member(u64),
    /// An agent's artifact server.
    Agent,
}

impl Expected {
    /// Whether `id` is the identity this client expects.
    pub fn admits(&self, id: &Identity) -> bool {
        match self {
            Expected::Coordinator => id.kind == IdentityKind::Coordinator,
            Expected::Member(m) => id.coordinator_id() == Some(*m),
            Expected::Agent => id.kind == IdentityKind::Agent,
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Coordinator => f.write_str("a coordinator (spiffe://*/coordinator/*)"),
            Expected::Member(m) => write!(f, "coordinator member {m} (spiffe://*/coordinator/{m})"),
            Expected::Agent => f.write_str("an agent (spiffe://*/agent/*)"),
        }
    }
}

/// The server presented a certificate of the CA, but not the identity expected.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server at the other end is {found}, but {expected} was expected; refusing to talk to it \
     (a certificate of this cluster's CA is not enough: check the address)"
)]
pub struct WrongPeer {
    pub found: String,
    pub expected: Expected,
}

/// Verifies the server's chain and host name with webpki against the cluster
/// CA, then checks its SPIFFE identity against [`Expected`].
///
/// Coordinators are verified as web servers are (serverAuth). Agents'
/// artifact servers are verified for Ferry's agent-peer purpose
/// ([`crate::AGENT_PEER_EKU`]), which agent certificates carry instead of
/// serverAuth so that nothing else accepts them as servers (certificates
/// issued before carry serverAuth and are still accepted until they are
/// renewed); an agent reached at a loopback address has its host name
/// unchecked, since such agents have none in their certificates
/// ([`crate::agent_host_refusal`]) and only the local machine answers there.
#[derive(Debug)]
pub struct PeerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    expected: Expected,
}

impl PeerVerifier {
    pub fn new(ca_pem: &str, expected: Expected) -> Result<PeerVerifier, CertError> {
        let roots = Arc::new(check_ca(ca_pem)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| CertError::InvalidPem {
                what: "CA certificate".to_string(),
                reason: e.to_string(),
            })?;
        Ok(PeerVerifier {
            webpki,
            roots,
            provider,
            expected,
        })
    }

    /// An agent's artifact server: the chain for the agent-peer purpose,
    /// then the host name unless it was reached at a loopback address.
    fn verify_agent_server(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(pki_error)?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            AgentPeerUsage,
            None,
            None,
        )
        .map_err(pki_error)?;
        match server_name {
            ServerName::IpAddress(ip) if std::net::IpAddr::from(*ip).is_loopback() => Ok(()),
            _ => cert
                .verify_is_valid_for_subject_name(server_name)
                .map_err(pki_error),
        }
    }
}

/// The key purposes an agent's artifact server may present: Ferry's
/// agent-peer purpose, or serverAuth on a certificate issued before it.
struct AgentPeerUsage;

/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1 (DER value).
const SERVER_AUTH_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

impl webpki::ExtendedKeyUsageValidator for AgentPeerUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let peer = webpki::KeyPurposeId::new(crate::AGENT_PEER_EKU);
        let legacy = webpki::KeyPurposeId::new(SERVER_AUTH_EKU);
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == peer || id == legacy {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(crate::AGENT_PEER_EKU),
                present,
            },
        ))
    }
}

/// A webpki refusal as rustls reports certificate errors.
fn pki_error(e: webpki::Error) -> rustls::Error {
    use rustls::CertificateError as C;
    rustls::Error::InvalidCertificate(match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::CertNotValidForName(_) => C::NotValidForName,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        other => C::Other(OtherError(Arc::new(other))),
    })
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let wrong = |found: String| {
            // `Other` displays the whole reason (`InvalidCertificate` would show only Debug).
            rustls::Error::Other(OtherError(Arc::new(WrongPeer {
                found,
                expected: self.expected.clone(),
            })))
        };
        match self.expected {
            Expected::Agent => {
                self.verify_agent_server(end_entity, intermediates, server_name, now)?;
            }
            Expected::Coordinator | Expected::Member(_) => {
                let checked = self.webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
                if let Err(e) = checked {
                    // An agent's certificate has no serverAuth: say whose
                    // it is rather than only that its purpose is wrong.
                    return Err(match Identity::from_cert_der(end_entity.as_ref()) {
                        Ok(id) if !self.expected.admits(&id) => wrong(id.uri()),
                        _ => e,
                    });
                }
            }
        }
        match Identity::from_cert_der(end_entity.as_ref()) {
            Ok(id) if self.expected.admits(&id) => Ok(ServerCertVerified::assertion()),
            Ok(id) => Err(wrong(id.uri())),
            Err(e) => Err(wrong(format!(
                "a certificate without a usable identity ({e})"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Checks that `ca_pem` holds at least one usable trust anchor, and returns them.
fn check_ca(ca_pem: &str) -> Result<rustls::RootCertStore, CertError> {
    let invalid = |reason: String| CertError::InvalidPem {
        what: "CA certificate".to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let der = der.map_err(|e| invalid(format!("bad PEM: {e}")))?;
        roots
            .add(der)
            .map_err(|e| invalid(format!("not a usable trust anchor: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid(
            "no CERTIFICATE block found; pass the contents of the CA's ca.pem".to_string(),
        ));
    }
    Ok(roots)
}

/// Checks that `cert_pem` and `key_pem` parse and belong together.
fn check_identity(cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
    certified_key(cert_pem, key_pem).map(|_| ())
}

/// The rustls signing identity of `cert_pem` and `key_pem`, which must parse
/// and belong together.
fn certified_key(cert_pem: &str, key_pem: &str) -> Result<rustls::sign::CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::InvalidPem {
            what: "certificate".to_string(),
            reason: format!("bad PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(CertError::InvalidPem {
            what: "certificate".to_string(),
            reason: "no CERTIFICATE block found".to_string(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CertError::InvalidPem {
            what: "private key".to_string(),
            reason: format!("no PEM private key found ({e})"),
        })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            what: "TLS identity".to_string(),
        },
        other => CertError::InvalidCert {
            what: "TLS identity".to_string(),
            reason: other.to_string(),
        },
    })
}
