//! Facts about an issued certificate that cluster state binds and revokes:
//! its fingerprint (sha256 of the DER) and when it expires. Revocation lists
//! and agent records key on the fingerprint, so a new certificate for the
//! same name is a different credential.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use x509_parser::extensions::GeneralName;

use crate::{CertError, Identity};

/// A DNS or IP SAN as text (the form issuing takes it in).
fn host_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv4Addr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv6Addr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// What cluster state records about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Lowercase hex sha256 of the certificate's DER bytes.
    pub fingerprint: String,
    /// Its `notBefore`, in unix milliseconds.
    pub not_before_ms: i64,
    /// Its `notAfter`, in unix milliseconds.
    pub not_after_ms: i64,
    /// The host names and IP addresses it names (DNS and IP SANs).
    pub hosts: Vec<String>,
    /// Its Ferry identity.
    pub identity: Identity,
}

/// Lowercase hex sha256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

impl CertFacts {
    /// Reads the facts of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertFacts, CertError> {
        let identity = Identity::from_cert_der(der)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| CertError::InvalidCert {
                what: "reading its validity".to_string(),
                reason: e.to_string(),
            })?;
        let validity = cert.validity();
        let hosts = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(host_name)
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => {
                return Err(CertError::InvalidCert {
                    what: "reading its subject alternative names".to_string(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(CertFacts {
            fingerprint: fingerprint(der),
            not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
            not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
            hosts,
            identity,
        })
    }

    /// When a third of its lifetime is left: the moment its holder should
    /// renew it (unix ms).
    pub fn renew_at_ms(&self) -> i64 {
        let lifetime = self.not_after_ms.saturating_sub(self.not_before_ms).max(0);
        self.not_after_ms.saturating_sub(lifetime / 3)
    }

    /// Reads the facts of the first certificate in `pem`.
    pub fn from_pem(pem: &str) -> Result<CertFacts, CertError> {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| CertError::InvalidPem {
                what: "certificate".to_string(),
                reason: "no CERTIFICATE block found".to_string(),
            })?
            .map_err(|e| CertError::InvalidPem {
                what: "certificate".to_string(),
                reason: e.to_string(),
            })?;
        CertFacts::from_der(der.as_ref())
    }
}
