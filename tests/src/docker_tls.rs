//! A Docker Engine behind mutual TLS, as `dockerd --tlsverify` would serve
//! it: a TCP listener on loopback that requires a client certificate from
//! its own CA and relays each connection to the local engine's Unix socket.
//! Deploy tests reach it at `tcp://127.0.0.1:PORT` with the PEM bundle a
//! `tls_secret` would hold.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, UnixStream};

pub struct TlsEngine {
    /// `tcp://127.0.0.1:PORT`.
    pub endpoint: String,
    /// CA certificate, client certificate and client key (PEM), in that order.
    pub bundle: String,
    /// A client bundle from another CA: refused by the engine.
    pub foreign_bundle: String,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

impl TlsEngine {
    pub fn start() -> TlsEngine {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = ferry_certs::CertAuthority::init(&dir.path().join("ca"), "engine")
            .unwrap_or_else(|e| panic!("{e}"));
        let server = ca
            .issue_coordinator(1, &["127.0.0.1".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let client = ca
            .issue_operator("deployer")
            .unwrap_or_else(|e| panic!("{e}"));
        let other = ferry_certs::CertAuthority::init(&dir.path().join("other"), "other")
            .unwrap_or_else(|e| panic!("{e}"));
        let stranger = other
            .issue_operator("stranger")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca.ca_pem()) {
            roots.add(c).unwrap_or_else(|e| panic!("{e}"));
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&server.cert_pem), key)
            .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client without a certificate of this CA fails the handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        TlsEngine {
            endpoint: format!("tcp://127.0.0.1:{port}"),
            bundle: format!("{}{}{}", ca.ca_pem(), client.cert_pem, client.key_pem),
            foreign_bundle: format!("{}{}{}", ca.ca_pem(), stranger.cert_pem, stranger.key_pem),
            runtime: Some(runtime),
            _dir: dir,
        }
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
