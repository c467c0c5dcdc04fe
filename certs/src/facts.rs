//! Facts about an issued certificate that cluster state binds and revokes:
//! its fingerprint (sha256 of the DER) and when it expires. Revocation lists
//! and agent records key on the fingerprint, so a new certificate for the
//! same name is a different credential.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{CertError, Identity};

/// What cluster state records about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Lowercase hex sha256 of the certificate's DER bytes.
    pub fingerprint: String,
    /// Its `notAfter`, in unix milliseconds.
    pub not_after_ms: i64,
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
        let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
        Ok(CertFacts {
            fingerprint: fingerprint(der),
            not_after_ms,
            identity,
        })
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
