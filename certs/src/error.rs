//! The crate's single error type, [`CertError`]. Every message says what
//! failed and, where there is one, what the user can do about it.

use std::path::PathBuf;

/// Everything that can go wrong while creating, issuing, reading or using
/// Ferry certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A coordinator, agent or operator name is not acceptable.
    #[error(
        "invalid name {name:?}: {reason}; names are 1-63 characters of a-z, 0-9, '.', '_' and '-'"
    )]
    InvalidName { name: String, reason: String },

    /// A trust domain is not acceptable.
    #[error(
        "invalid trust domain {trust_domain:?}: {reason}; trust domains are 1-255 characters of a-z, 0-9, '.', '_' and '-'"
    )]
    InvalidTrustDomain {
        trust_domain: String,
        reason: String,
    },

    /// A string is not a Ferry identity URI.
    #[error(
        "invalid identity URI {uri:?}: {reason}; expected spiffe://<trust-domain>/<coordinator|agent|operator>/<name>"
    )]
    InvalidUri { uri: String, reason: String },

    /// A certificate carries no `spiffe://` URI SAN.
    #[error(
        "the certificate carries no spiffe:// URI SAN, so it has no Ferry identity; use a certificate issued by the Ferry CA"
    )]
    NoIdentity,

    /// A certificate carries more than one `spiffe://` URI SAN.
    #[error(
        "the certificate carries {} spiffe:// URI SANs ({}); a Ferry certificate must carry exactly one",
        uris.len(),
        uris.join(", ")
    )]
    AmbiguousIdentity { uris: Vec<String> },

    /// A file that would be written already exists.
    #[error("{file} already exists in {}; refusing to overwrite (move it away or choose another directory)", dir.display())]
    AlreadyExists { file: String, dir: PathBuf },

    /// A file system operation failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },

    /// PEM text (certificate or key) could not be decoded.
    #[error("invalid {what}: {reason}")]
    InvalidPem { what: String, reason: String },

    /// A certificate decoded from PEM/DER is malformed or unsuitable.
    #[error("unusable certificate ({what}): {reason}")]
    InvalidCert { what: String, reason: String },

    /// A private key does not match the certificate it is paired with.
    #[error(
        "{what}: the private key does not belong to the certificate; use the key file that was written together with this certificate"
    )]
    KeyMismatch { what: String },

    /// A subject alternative name requested for a certificate is invalid.
    #[error("invalid subject alternative name {san:?}: {reason}; give an IP address or a DNS name")]
    InvalidSan { san: String, reason: String },

    /// An agent's certificate signing request was rejected.
    #[error("rejected certificate signing request: {reason}")]
    InvalidCsr { reason: String },

    /// Key generation, certificate or CSR encoding failed inside rcgen.
    #[error("cannot {action}: {error}")]
    Generate {
        action: &'static str,
        error: rcgen::Error,
    },
}

impl CertError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            error,
        }
    }

    pub(crate) fn generate(action: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |error| CertError::Generate { action, error }
    }
}
