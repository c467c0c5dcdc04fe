//! A channel to one coordinator over mutual TLS. The server must present a
//! certificate of the cluster's CA for the address's host *and* the
//! identity of a coordinator (`spiffe://TRUST_DOMAIN/coordinator/ID`): an
//! enrolled agent's certificate, though signed by the same CA, is refused.

use std::path::Path;
use std::time::Duration;

use ferry_certs::CertifiedKey;
use ferry_certs::tls::{EndpointError, Expected, endpoint};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the coordinator is and what the client trusts and presents.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` (`[IPv6]:PORT`).
    pub address: String,
    /// The cluster's CA certificate, PEM.
    pub ca_pem: String,
    /// The client's certificate and key (an operator's), PEM; None only
    /// for the calls that need none (enrollment, health).
    pub identity: Option<CertifiedKey>,
}

impl Config {
    /// The configuration from PEM files: the cluster's `ca.pem` and the
    /// client's certificate and key.
    pub fn from_files(
        address: &str,
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Config, ConnectError> {
        let read = |p: &Path| {
            ferry_certs::read_pem(p).map_err(|e| ConnectError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        Ok(Config {
            address: address.to_string(),
            ca_pem: read(ca.as_ref())?,
            identity: Some(CertifiedKey {
                cert_pem: read(cert.as_ref())?,
                key_pem: read(key.as_ref())?,
            }),
        })
    }
}

/// Why no channel could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot use the TLS settings for {address}: {source}")]
    Tls {
        address: String,
        source: EndpointError,
    },
    #[error("cannot connect to the coordinator at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
}

/// A channel to the coordinator `config` names, connected now (so a wrong
/// address or certificate fails here, not at the first call).
pub async fn connect(config: &Config) -> Result<tonic::transport::Channel, ConnectError> {
    let address = config.address.clone();
    let endpoint = endpoint(
        &config.address,
        &config.ca_pem,
        config.identity.as_ref(),
        Expected::Coordinator,
    )
    .map_err(|source| ConnectError::Tls {
        address: address.clone(),
        source,
    })?
    .connect_timeout(CONNECT_TIMEOUT);
    endpoint
        .connect()
        .await
        .map_err(|source| ConnectError::Connect { address, source })
}
