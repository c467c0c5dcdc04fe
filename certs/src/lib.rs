//! ferry-certs: Ferry's private PKI. A per-cluster CA issues certificates
//! whose single `spiffe://<trust-domain>/<kind>/<name>` URI SAN names a
//! coordinator, agent or operator; [`tls`] turns them into tonic TLS configs
//! for the mutually-authenticated gRPC links between CLI, coordinators and
//! agents.

mod ca;
mod error;
mod facts;
mod files;
mod identity;
pub mod listen;
mod sealing;
mod secrets_key;
pub mod tls;
mod wrap;

pub use ca::{
    AGENT_PEER_EKU, AGENT_VALIDITY, CA_CERT_FILE, CA_KEY_FILE, COORDINATOR_VALIDITY, CertAuthority,
    CertifiedKey, OPERATOR_VALIDITY, agent_csr, agent_host_refusal, renewal_csr,
};
pub use error::CertError;
pub use facts::{CertFacts, fingerprint};
pub use files::{finish_replace, read_pem, replace_pair, write_pair};
pub use identity::{
    Identity, IdentityKind, RESERVED_AGENT_NAMES, clip, validate_agent_name, validate_name,
};
pub use sealing::{SecretBox, SecretError};
pub use secrets_key::{SECRETS_KEY_FILE, init_secrets_key, load_secrets_key, save_secrets_key};
pub use wrap::{
    WRAPPING_KEY_FILE, WrapError, Wrapped, WrappingKey, reseal_to, seal_to, validate_public,
};

/// Trust domain used when the operator does not choose one.
pub const DEFAULT_TRUST_DOMAIN: &str = "ferry";

/// Installs rustls' ring `CryptoProvider` as the process default. Idempotent:
/// a provider that is already installed is left in place.
pub fn install_crypto_provider() {
    // Err only means some provider is already the default; nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests;
