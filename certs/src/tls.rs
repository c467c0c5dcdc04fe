//! tonic TLS configurations for Ferry's endpoints, built from PEM strings.
//! Server configs validate their inputs up front so a bad certificate or key
//! is reported when the config is built, not at the first connection.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

use crate::{CertError, CertifiedKey};

/// Server TLS for a coordinator: presents `cert_pem`/`key_pem` and trusts
/// `ca_pem` for client certificates, which are OPTIONAL (enrollment calls
/// come without one; authorization rejects other anonymous calls later).
pub fn coordinator_server(
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
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem))
        .client_ca_root(Certificate::from_pem(ca_pem))
        .client_auth_optional(false))
}

/// Client TLS trusting only `ca_pem`, verifying the server as `domain` (a
/// DNS name or IP address in the server certificate's SANs), and presenting
/// `identity` as client certificate if given.
/// The name a `HOST:PORT` (or `[IPv6]:PORT`) address's server is verified as.
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']'])
}

/// An endpoint for `https://ADDR` that trusts `ca_pem`, verifies the server as
/// the address's host and presents `identity`; callers add their timeouts.
pub fn endpoint(
    addr: &str,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?.tls_config(client(
        ca_pem,
        identity,
        host_of(addr),
    ))
}

pub fn client(ca_pem: &str, identity: Option<&CertifiedKey>, domain: &str) -> ClientTlsConfig {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(domain);
    match identity {
        Some(pair) => config.identity(tonic::transport::Identity::from_pem(
            &pair.cert_pem,
            &pair.key_pem,
        )),
        None => config,
    }
}

/// Checks that `ca_pem` holds at least one usable trust anchor.
fn check_ca(ca_pem: &str) -> Result<(), CertError> {
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
    Ok(())
}

/// Checks that `cert_pem` and `key_pem` parse and belong together.
fn check_identity(cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
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
    })?;
    Ok(())
}
