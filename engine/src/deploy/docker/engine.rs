//! The connection to one Docker Engine target: over a Unix socket, plain
//! TCP, or TCP with the client certificate from the host's TLS secret
//! (split into the files bollard reads, kept for as long as the run), and
//! a ping within the deployment's connect timeout.

use std::io::Write as _;
use std::time::{Duration, Instant};

use bollard::Docker;

use super::DockerRun;
use crate::deploy::{Deployment, HookPhase, StepError, fail};

impl DockerRun {
    pub(super) async fn connect(&mut self, d: &Deployment<'_>) -> Result<Docker, StepError> {
        let started = Instant::now();
        let result = self.open(d.connect_timeout).await;
        let shown = match &result {
            Ok(_) => Ok(format!("connected to {}", self.host.endpoint)),
            Err(e) => Err(e.clone()),
        };
        self.step(d, ("connect", HookPhase::Deploy), started, &shown);
        let docker = result.map_err(fail("connect"))?;
        self.docker = Some(docker.clone());
        Ok(docker)
    }

    async fn open(&mut self, timeout: Duration) -> Result<Docker, String> {
        let endpoint = self.host.endpoint.as_str();
        let secs = timeout.as_secs().max(1) + 120;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, version)
        } else if self.host.tls_bundle.is_empty() {
            Docker::connect_with_http(endpoint, secs, version)
        } else {
            let dir = write_tls_files(&self.host.tls_bundle)?;
            let p = |f: &str| dir.path().join(f);
            let docker = Docker::connect_with_ssl(
                endpoint,
                &p("key.pem"),
                &p("cert.pem"),
                &p("ca.pem"),
                secs,
                version,
            );
            self._tls = Some(dir);
            docker
        }
        .map_err(|e| format!("cannot use endpoint {endpoint}: {e}"))?;
        match tokio::time::timeout(timeout, docker.ping()).await {
            Err(_) => Err(format!("{endpoint} did not answer within {timeout:?}")),
            Ok(Err(e)) => Err(format!("{endpoint} is unreachable: {e}")),
            Ok(Ok(_)) => Ok(docker),
        }
    }
}

/// Splits the TLS secret (CA certificate, client certificate, client key,
/// PEM, in that order) into the three files bollard reads.
fn write_tls_files(bundle: &[u8]) -> Result<tempfile::TempDir, String> {
    let text = String::from_utf8_lossy(bundle);
    let mut certs = Vec::new();
    let mut key = None;
    let mut rest = text.as_ref();
    while let Some(begin) = rest.find("-----BEGIN ") {
        let block = &rest[begin..];
        let Some(end_marker) = block.find("-----END ") else {
            break;
        };
        let end = block[end_marker..]
            .find("\n")
            .map_or(block.len(), |n| end_marker + n + 1);
        let pem = &block[..end];
        if pem.contains("PRIVATE KEY") {
            key = Some(pem.to_string());
        } else {
            certs.push(pem.to_string());
        }
        rest = &block[end..];
    }
    let (Some(key), [ca, cert, ..]) = (key, certs.as_slice()) else {
        return Err(
            "the TLS secret must hold the CA certificate, the client certificate and its key (PEM)"
                .into(),
        );
    };
    let dir = tempfile::tempdir().map_err(|e| format!("cannot write TLS files: {e}"))?;
    for (name, pem) in [("ca.pem", ca), ("cert.pem", cert), ("key.pem", &key)] {
        let mut f = std::fs::File::create(dir.path().join(name))
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
        f.write_all(pem.as_bytes())
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";
    #[test]
    fn tls_bundle_is_split_into_ca_cert_and_key() {
        let dir = write_tls_files(format!("{CA}{CERT}{KEY}").as_bytes()).expect("bundle");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("file");
        assert_eq!(read("ca.pem"), CA);
        assert_eq!(read("cert.pem"), CERT);
        assert_eq!(read("key.pem"), KEY);
        assert!(write_tls_files(format!("{CA}{KEY}").as_bytes()).is_err());
        assert!(write_tls_files(b"not pem").is_err());
    }
}
