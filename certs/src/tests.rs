//! Crate-level tests: CA life cycle, issuance, CSR signing, chain
//! verification with rustls' WebPKI verifiers, TLS config validation and a
//! loopback mTLS handshake through tonic.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use x509_parser::extensions::GeneralName;

use crate::*;

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

fn new_ca(dir: &Path) -> CertAuthority {
    CertAuthority::init(dir, DEFAULT_TRUST_DOMAIN).expect("CA init")
}

fn roots(ca: &CertAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(der(ca.ca_pem())).expect("CA is a trust anchor");
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_verifier(ca: &CertAuthority) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("client verifier")
}

fn server_verifier(ca: &CertAuthority) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("server verifier")
}

fn verify_server(ca: &CertAuthority, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).expect("server name");
    server_verifier(ca)
        .verify_server_cert(&der(cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(ca: &CertAuthority, cert_pem: &str) -> Result<(), rustls::Error> {
    client_verifier(ca)
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

fn sans(cert_pem: &str) -> Vec<String> {
    let der = der(cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let ext = cert
        .subject_alternative_name()
        .expect("san ext")
        .expect("has SANs");
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(ip) => format!("IP:{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// (server_auth, client_auth) extended key usages of a certificate.
fn ekus(cert_pem: &str) -> (bool, bool) {
    let der = der(cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let eku = cert
        .extended_key_usage()
        .expect("eku ext")
        .expect("has EKU");
    (eku.value.server_auth, eku.value.client_auth)
}

fn validity(cert_pem: &str) -> (SystemTime, SystemTime) {
    let der = der(cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64);
    (
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    )
}

#[test]
fn init_refuses_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ca");
    new_ca(&dir);
    let err = CertAuthority::init(&dir, DEFAULT_TRUST_DOMAIN).expect_err("second init");
    assert!(matches!(err, CertError::AlreadyExists { .. }), "{err}");
    assert!(
        err.to_string().contains("ca.pem already exists in"),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");

    // A lone key also blocks init, and is left untouched.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join(CA_KEY_FILE), "precious").expect("write");
    let err = CertAuthority::init(&other, DEFAULT_TRUST_DOMAIN).expect_err("key exists");
    assert!(
        err.to_string().contains("ca-key.pem already exists"),
        "{err}"
    );
    assert_eq!(
        read_pem(&other.join(CA_KEY_FILE)).expect("read"),
        "precious"
    );
}

#[test]
fn init_rejects_bad_trust_domain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = CertAuthority::init(tmp.path(), "Bad Domain").expect_err("bad td");
    assert!(matches!(err, CertError::InvalidTrustDomain { .. }), "{err}");
    assert!(!tmp.path().join(CA_CERT_FILE).exists());
}

#[test]
fn load_round_trip_keeps_trust_domain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let created = CertAuthority::init(tmp.path(), "acme.prod").expect("init");
    let loaded = CertAuthority::load(tmp.path()).expect("load");
    assert_eq!(loaded.trust_domain(), "acme.prod");
    assert_eq!(loaded.ca_pem(), created.ca_pem());

    // The loaded CA issues certificates that chain to the original root.
    let op = loaded.issue_operator("alice").expect("issue");
    verify_client(&created, &op.cert_pem).expect("chains to the created CA");
    let id = Identity::from_cert_der(&der(&op.cert_pem)).expect("identity");
    assert_eq!(id.uri(), "spiffe://acme.prod/operator/alice");
}

#[test]
fn load_errors_are_explicit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = CertAuthority::load(tmp.path()).expect_err("empty dir");
    assert!(matches!(err, CertError::Io { .. }), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");

    // A key from another CA is detected.
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    new_ca(&a);
    new_ca(&b);
    std::fs::remove_file(a.join(CA_KEY_FILE)).expect("rm");
    std::fs::copy(b.join(CA_KEY_FILE), a.join(CA_KEY_FILE)).expect("cp");
    let err = CertAuthority::load(&a).expect_err("mismatched key");
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");

    // A leaf certificate is not a CA.
    let c = tmp.path().join("c");
    let ca = new_ca(&c);
    let leaf = ca.issue_operator("bob").expect("issue");
    std::fs::write(c.join(CA_CERT_FILE), &leaf.cert_pem).expect("write");
    std::fs::write(c.join(CA_KEY_FILE), &leaf.key_pem).expect("write");
    let err = CertAuthority::load(&c).expect_err("leaf as CA");
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
}

#[cfg(unix)]
#[test]
fn ca_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    new_ca(tmp.path());
    let mode = std::fs::metadata(tmp.path().join(CA_KEY_FILE))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn coordinator_cert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let sans_in = ["127.0.0.1".to_string(), "coord-1.example.com".to_string()];
    let pair = ca.issue_coordinator(3, &sans_in).expect("issue");

    let id = Identity::from_cert_der(&der(&pair.cert_pem)).expect("identity");
    assert_eq!(
        id,
        Identity::new("ferry", IdentityKind::Coordinator, "3").expect("id")
    );
    assert_eq!(id.coordinator_id(), Some(3));
    assert_eq!(
        sans(&pair.cert_pem),
        [
            "URI:spiffe://ferry/coordinator/3",
            "IP:[127, 0, 0, 1]",
            "DNS:coord-1.example.com"
        ]
    );
    assert_eq!(ekus(&pair.cert_pem), (true, true));

    verify_server(&ca, &pair.cert_pem, "127.0.0.1").expect("valid for its IP");
    verify_server(&ca, &pair.cert_pem, "coord-1.example.com").expect("valid for its DNS name");
    assert!(verify_server(&ca, &pair.cert_pem, "coord-2.example.com").is_err());
    verify_client(&ca, &pair.cert_pem).expect("valid client cert");

    let (not_before, not_after) = validity(&pair.cert_pem);
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    assert!(not_before < now - hour + Duration::from_secs(60));
    assert!(not_before > now - 2 * hour);
    assert!(not_after > now + Duration::from_secs(364 * 86400));
    assert!(not_after < now + Duration::from_secs(366 * 86400));
}

#[test]
fn bad_sans_are_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    for bad in ["", "has space", "a..b", "http://x"] {
        let err = ca.issue_coordinator(1, &[bad.to_string()]).expect_err(bad);
        assert!(
            matches!(err, CertError::InvalidSan { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn operator_cert_is_client_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let pair = ca.issue_operator("alice").expect("issue");
    let id = Identity::from_cert_der(&der(&pair.cert_pem)).expect("identity");
    assert_eq!(id.uri(), "spiffe://ferry/operator/alice");
    assert_eq!(ekus(&pair.cert_pem), (false, true));
    verify_client(&ca, &pair.cert_pem).expect("valid client cert");
    assert!(ca.issue_operator("Alice Smith").is_err());
}

#[test]
fn agent_csr_is_signed_with_ca_chosen_identity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());

    // A CSR from rcgen asking for a coordinator identity and a foreign name.
    let key = rcgen::KeyPair::generate().expect("key");
    let greedy =
        rcgen::CertificateParams::new(vec!["evil.example.com".to_string(), "10.0.0.1".to_string()])
            .expect("params");
    let mut greedy = greedy;
    greedy.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://ferry/coordinator/1").expect("ia5"),
    ));
    let csr_pem = greedy
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .expect("csr");

    let cert_pem = ca
        .sign_agent_csr(&csr_pem, "build-1", &["10.1.2.3".to_string()])
        .expect("sign");
    let id = Identity::from_cert_der(&der(&cert_pem)).expect("identity");
    assert_eq!(id.uri(), "spiffe://ferry/agent/build-1");
    assert_eq!(
        sans(&cert_pem),
        ["URI:spiffe://ferry/agent/build-1", "IP:[10, 1, 2, 3]"]
    );
    // Not a server certificate to anything but Ferry's peer client: no
    // serverAuth (a browser trusting the CA refuses it, whatever it names),
    // Ferry's agent-peer purpose instead.
    assert_eq!(ekus(&cert_pem), (false, true));
    let refused = verify_server(&ca, &cert_pem, "10.1.2.3").expect_err("accepted as web server");
    assert!(
        matches!(
            refused,
            rustls::Error::InvalidCertificate(rustls::CertificateError::InvalidPurpose)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::InvalidPurposeContext { .. }
                )
        ),
        "{refused:?}"
    );
    verify_client(&ca, &cert_pem).expect("client cert");
    let agent_peer = tls::PeerVerifier::new(ca.ca_pem(), tls::Expected::Agent).expect("verifier");
    let ip = ServerName::try_from("10.1.2.3").expect("name");
    agent_peer
        .verify_server_cert(&der(&cert_pem), &[], &ip, &[], UnixTime::now())
        .expect("Ferry's peer client accepts it for its host");
    let other = ServerName::try_from("10.1.2.4").expect("name");
    assert!(
        agent_peer
            .verify_server_cert(&der(&cert_pem), &[], &other, &[], UnixTime::now())
            .is_err(),
        "another host"
    );

    // The certificate carries the CSR's key.
    let cert_der = der(&cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).expect("x509");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
}

/// An agent certificate never names the local machine: a browser on a
/// coordinator's host reaches the console as `localhost` or on loopback.
#[test]
fn agent_certificates_refuse_localhost_and_loopback() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let (csr, _) = agent_csr("build-1").expect("csr");
    for host in [
        "localhost",
        "LOCALHOST.",
        "console.localhost",
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "::",
    ] {
        let refused = ca
            .sign_agent_csr(&csr, "build-1", &[host.to_string()])
            .expect_err(host);
        assert!(
            refused
                .to_string()
                .contains("must not name the local machine"),
            "{host}: {refused}"
        );
        assert!(crate::agent_host_refusal(host).is_some(), "{host}");
    }
    for host in [
        "10.0.0.7",
        "build-1.example",
        "localhost.example",
        "fd00::7",
    ] {
        assert!(crate::agent_host_refusal(host).is_none(), "{host}");
        ca.sign_agent_csr(&csr, "build-1", &[host.to_string()])
            .expect(host);
    }
}

/// An agent reached on loopback has no host name in its certificate:
/// Ferry's peer client checks none there (only this machine answers), but
/// checks the chain, the purpose and the agent identity as anywhere.
#[test]
fn agent_peers_on_loopback_are_checked_without_a_host_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(&tmp.path().join("ca"));
    let (csr, _) = agent_csr("build-1").expect("csr");
    let agent = ca.sign_agent_csr(&csr, "build-1", &[]).expect("sign");
    let peer = tls::PeerVerifier::new(ca.ca_pem(), tls::Expected::Agent).expect("verifier");
    let verify = |cert: &str, name: &str| {
        let name = ServerName::try_from(name.to_string()).expect("name");
        peer.verify_server_cert(&der(cert), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    };
    verify(&agent, "127.0.0.1").expect("on loopback");
    verify(&agent, "::1").expect("on IPv6 loopback");
    assert!(
        verify(&agent, "10.0.0.7").is_err(),
        "no host name elsewhere"
    );
    assert!(verify(&agent, "localhost").is_err(), "a name is checked");
    // A coordinator (serverAuth, no agent-peer purpose) or another CA's
    // agent is refused on loopback too.
    let coord = ca
        .issue_coordinator(1, &["127.0.0.1".to_string()])
        .expect("issue");
    assert!(verify(&coord.cert_pem, "127.0.0.1").is_err());
    let theirs = new_ca(&tmp.path().join("theirs"));
    let foreign = theirs.sign_agent_csr(&csr, "build-1", &[]).expect("sign");
    assert!(verify(&foreign, "127.0.0.1").is_err());
}

#[test]
fn agent_csr_helper_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let (csr_pem, key_pem) = agent_csr("build-1").expect("csr");
    let cert_pem = ca.sign_agent_csr(&csr_pem, "build-1", &[]).expect("sign");
    let pair = CertifiedKey { cert_pem, key_pem };
    // The agent's own key matches the certificate: usable as a TLS identity.
    tls::mtls_server(ca.ca_pem(), &pair.cert_pem, &pair.key_pem).expect("server config");
    assert!(agent_csr("Bad Name").is_err());
    assert!(ca.sign_agent_csr(&csr_pem, "../x", &[]).is_err());
}

#[test]
fn tampered_or_garbage_csr_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let err = ca
        .sign_agent_csr("hello", "build-1", &[])
        .expect_err("garbage");
    assert!(matches!(err, CertError::InvalidCsr { .. }), "{err}");

    // Flip a bit inside the signed part of a real CSR.
    let (csr_pem, _) = agent_csr("build-1").expect("csr");
    let csr_der =
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .expect("csr der");
    let mut bytes = csr_der.as_ref().to_vec();
    let pos = bytes
        .windows(b"build-1".len())
        .position(|w| w == b"build-1")
        .expect("name in CSR");
    bytes[pos] ^= 0x01; // "build-1" -> "cuild-1": same length, valid DER
    let tampered = pem_encode("CERTIFICATE REQUEST", &bytes);
    let err = ca
        .sign_agent_csr(&tampered, "build-1", &[])
        .expect_err("tampered");
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn certs_from_another_ca_do_not_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = new_ca(&tmp.path().join("ours"));
    let theirs = new_ca(&tmp.path().join("theirs"));
    let foreign_op = theirs.issue_operator("alice").expect("issue");
    let foreign_coord = theirs
        .issue_coordinator(1, &["127.0.0.1".to_string()])
        .expect("issue");

    // Same trust domain and identity, but signed by another CA.
    assert_eq!(
        Identity::from_cert_der(&der(&foreign_op.cert_pem))
            .expect("id")
            .uri(),
        "spiffe://ferry/operator/alice"
    );
    let err = verify_client(&ours, &foreign_op.cert_pem).expect_err("foreign client");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
                | rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
        ),
        "{err:?}"
    );
    assert!(verify_server(&ours, &foreign_coord.cert_pem, "127.0.0.1").is_err());
    verify_server(&theirs, &foreign_coord.cert_pem, "127.0.0.1").expect("own CA accepts");
}

#[test]
fn tls_configs_validate_inputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let coord = ca
        .issue_coordinator(1, &["localhost".to_string()])
        .expect("issue");
    let other = ca.issue_coordinator(2, &[]).expect("issue");

    let reloadable = tls::ReloadableCert::new(&coord).expect("cert");
    tls::coordinator_server_config(ca.ca_pem(), reloadable.clone()).expect("config");
    tls::mtls_server(ca.ca_pem(), &coord.cert_pem, &coord.key_pem).expect("config");

    let mismatched = CertifiedKey {
        cert_pem: coord.cert_pem.clone(),
        key_pem: other.key_pem.clone(),
    };
    let err = tls::ReloadableCert::new(&mismatched).expect_err("wrong key");
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    let err = tls::coordinator_server_config("nope", reloadable).expect_err("no CA");
    assert!(matches!(err, CertError::InvalidPem { .. }), "{err}");
    let err = tls::mtls_server(ca.ca_pem(), "nope", &coord.key_pem).expect_err("no cert");
    assert!(matches!(err, CertError::InvalidPem { .. }), "{err}");
    let err = tls::mtls_server(ca.ca_pem(), &coord.cert_pem, "nope").expect_err("no key");
    assert!(matches!(err, CertError::InvalidPem { .. }), "{err}");
}

#[test]
fn install_crypto_provider_is_idempotent() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

/// Loopback gRPC over tonic: the server reports the caller's identity (or
/// "anonymous") in the status message of every call.
mod loopback {
    use std::net::SocketAddr;

    use tonic::codegen::Service;
    use tonic::codegen::http;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Channel, Endpoint, ServerTlsConfig};
    use tonic::{Request, Status};

    use super::*;

    fn who_am_i(req: Request<()>) -> Result<Request<()>, Status> {
        let who = match req.peer_certs() {
            Some(certs) => match certs.first() {
                Some(cert) => Identity::from_cert_der(cert)
                    .map(|id| id.uri())
                    .unwrap_or_else(|e| e.to_string()),
                None => "anonymous".to_string(),
            },
            None => "anonymous".to_string(),
        };
        Err(Status::permission_denied(who))
    }

    async fn serve(tls: ServerTlsConfig) -> SocketAddr {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = incoming.local_addr().expect("local addr");
        let router = tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("tls config")
            .layer(tonic::service::InterceptorLayer::new(who_am_i))
            .add_routes(tonic::service::Routes::default());
        tokio::spawn(router.serve_with_incoming(incoming));
        addr
    }

    /// What a client connects with: the CA it trusts, its identity, the
    /// server identity it expects and the host name it verifies.
    struct Client<'a> {
        ca: &'a str,
        identity: Option<&'a CertifiedKey>,
        expect: tls::Expected,
        domain: &'a str,
    }

    async fn connect(addr: SocketAddr, c: Client<'_>) -> Result<Channel, String> {
        let verifier = tls::PeerVerifier::new(c.ca, c.expect).map_err(|e| e.to_string())?;
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .tls_config_with_verifier(
                tls::client(c.identity).domain_name(c.domain),
                std::sync::Arc::new(verifier),
            )
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| {
                let mut text = e.to_string();
                let mut next = std::error::Error::source(&e);
                while let Some(cause) = next {
                    text = format!("{text}: {cause}");
                    next = cause.source();
                }
                text
            })
    }

    fn to_coordinator<'a>(ca: &'a str, identity: Option<&'a CertifiedKey>) -> Client<'a> {
        Client {
            ca,
            identity,
            expect: tls::Expected::Coordinator,
            domain: "127.0.0.1",
        }
    }

    /// Makes one gRPC call and returns the server's status message.
    async fn call(mut channel: Channel) -> Result<String, String> {
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method("POST")
            .uri("/ferry.test.Test/WhoAmI")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .expect("request");
        let response = channel.call(request).await.map_err(|e| format!("{e:?}"))?;
        let status = Status::from_header_map(response.headers()).ok_or("no grpc-status")?;
        Ok(status.message().to_string())
    }

    #[tokio::test]
    async fn mutual_tls_over_tonic() {
        install_crypto_provider();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&tmp.path().join("ca"));
        let coord = ca
            .issue_coordinator(1, &["127.0.0.1".to_string()])
            .expect("issue");
        let alice = ca.issue_operator("alice").expect("issue");
        let stranger = new_ca(&tmp.path().join("stranger"))
            .issue_operator("mallory")
            .expect("issue");

        // Coordinator: client certificates are optional.
        let addr = serve(
            tls::coordinator_server(ca.ca_pem(), &coord.cert_pem, &coord.key_pem).expect("tls"),
        )
        .await;
        let channel = connect(addr, to_coordinator(ca.ca_pem(), Some(&alice)))
            .await
            .expect("connect with identity");
        assert_eq!(
            call(channel).await.as_deref(),
            Ok("spiffe://ferry/operator/alice")
        );
        let channel = connect(addr, to_coordinator(ca.ca_pem(), None))
            .await
            .expect("connect anonymously");
        assert_eq!(call(channel).await.as_deref(), Ok("anonymous"));

        // A client certificate from another CA is refused, not downgraded.
        let rejected = match connect(addr, to_coordinator(ca.ca_pem(), Some(&stranger))).await {
            Ok(channel) => call(channel).await.is_err(),
            Err(_) => true,
        };
        assert!(rejected, "foreign client certificate accepted");

        // The client checks the server's name and CA.
        assert!(
            connect(
                addr,
                Client {
                    domain: "10.9.9.9",
                    ..to_coordinator(ca.ca_pem(), None)
                }
            )
            .await
            .is_err(),
            "wrong server name accepted"
        );
        let other_ca = new_ca(&tmp.path().join("other"));
        assert!(
            connect(addr, to_coordinator(other_ca.ca_pem(), None))
                .await
                .is_err(),
            "server from another CA accepted"
        );

        // Agent peer server: a client certificate is required.
        let (csr, key_pem) = agent_csr("build-1").expect("csr");
        let agent = CertifiedKey {
            cert_pem: ca.sign_agent_csr(&csr, "build-1", &[]).expect("sign"),
            key_pem,
        };
        let addr =
            serve(tls::mtls_server(ca.ca_pem(), &agent.cert_pem, &agent.key_pem).expect("tls"))
                .await;
        let to_agent = |identity| Client {
            expect: tls::Expected::Agent,
            ..to_coordinator(ca.ca_pem(), identity)
        };
        let channel = connect(addr, to_agent(Some(&coord)))
            .await
            .expect("connect with identity");
        assert_eq!(
            call(channel).await.as_deref(),
            Ok("spiffe://ferry/coordinator/1")
        );
        let rejected = match connect(addr, to_agent(None)).await {
            Ok(channel) => call(channel).await.is_err(),
            Err(_) => true,
        };
        assert!(rejected, "anonymous client accepted by mTLS server");
    }

    /// An enrolled agent's certificate chains to the CA and may name the
    /// coordinator's address (an older one may carry serverAuth too); a
    /// client that expects a coordinator refuses it during the handshake,
    /// before any request (a secret, say) is sent.
    #[tokio::test]
    async fn clients_refuse_a_server_of_the_wrong_role() {
        install_crypto_provider();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&tmp.path().join("ca"));
        let alice = ca.issue_operator("alice").expect("issue");
        let (csr, key_pem) = agent_csr("evil").expect("csr");
        let agent = CertifiedKey {
            cert_pem: ca.sign_agent_csr(&csr, "evil", &[]).expect("sign"),
            key_pem,
        };
        let fake = serve(
            tls::coordinator_server(ca.ca_pem(), &agent.cert_pem, &agent.key_pem).expect("tls"),
        )
        .await;
        let refused = connect(fake, to_coordinator(ca.ca_pem(), Some(&alice)))
            .await
            .expect_err("an agent posing as coordinator was accepted");
        assert!(
            refused.contains("spiffe://ferry/agent/evil") && refused.contains("a coordinator"),
            "{refused}"
        );
        // The named member is checked, not only the role.
        let coord2 = ca
            .issue_coordinator(2, &["127.0.0.1".to_string()])
            .expect("issue");
        let member2 = serve(
            tls::coordinator_server(ca.ca_pem(), &coord2.cert_pem, &coord2.key_pem).expect("tls"),
        )
        .await;
        let as_member = |m| Client {
            expect: tls::Expected::Member(m),
            ..to_coordinator(ca.ca_pem(), Some(&alice))
        };
        assert!(connect(member2, as_member(2)).await.is_ok());
        let refused = connect(member2, as_member(3))
            .await
            .expect_err("wrong member");
        assert!(refused.contains("coordinator member 3"), "{refused}");
        // An artifact client refuses a coordinator posing as an agent.
        let refused = connect(
            member2,
            Client {
                expect: tls::Expected::Agent,
                ..to_coordinator(ca.ca_pem(), Some(&alice))
            },
        )
        .await
        .expect_err("a coordinator accepted as artifact peer");
        assert!(refused.contains("an agent"), "{refused}");
    }

    async fn serve_reloadable(ca: &CertAuthority, cert: Arc<tls::ReloadableCert>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let config = tls::mtls_server_config(ca.ca_pem(), cert).expect("tls config");
        let incoming = crate::listen::tls_incoming(
            crate::listen::incoming(listener, crate::listen::Limits::default()),
            config,
        );
        let router = tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(who_am_i))
            .add_routes(tonic::service::Routes::default());
        tokio::spawn(router.serve_with_incoming(incoming));
        addr
    }

    /// A server doing its own TLS (an agent's artifact server) still sees
    /// client certificates, refuses clients without one, and presents a
    /// renewed certificate from the next connection on.
    #[tokio::test]
    async fn a_reloadable_server_presents_the_newest_certificate() {
        install_crypto_provider();
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = new_ca(&tmp.path().join("ca"));
        let coord = ca
            .issue_coordinator(1, &["127.0.0.1".to_string()])
            .expect("issue");
        let agent_for = |host: &str| {
            let (csr, key_pem) = agent_csr("build-1").expect("csr");
            CertifiedKey {
                cert_pem: ca
                    .sign_agent_csr(&csr, "build-1", &[host.to_string()])
                    .expect("sign"),
                key_pem,
            }
        };
        let cert = tls::ReloadableCert::new(&agent_for("build-1.example")).expect("cert");
        let addr = serve_reloadable(&ca, cert.clone()).await;
        let as_agent = |domain| Client {
            expect: tls::Expected::Agent,
            domain,
            ..to_coordinator(ca.ca_pem(), Some(&coord))
        };
        let channel = connect(addr, as_agent("build-1.example"))
            .await
            .expect("connect");
        assert_eq!(
            call(channel).await.as_deref(),
            Ok("spiffe://ferry/coordinator/1")
        );
        let anonymous = Client {
            identity: None,
            ..as_agent("build-1.example")
        };
        let rejected = match connect(addr, anonymous).await {
            Ok(channel) => call(channel).await.is_err(),
            Err(_) => true,
        };
        assert!(rejected, "anonymous client accepted");

        // The renewed certificate names another host: only it verifies now.
        cert.set(&agent_for("build-2.example")).expect("set");
        assert!(connect(addr, as_agent("build-1.example")).await.is_err());
        let channel = connect(addr, as_agent("build-2.example"))
            .await
            .expect("connect to the renewed certificate");
        assert_eq!(
            call(channel).await.as_deref(),
            Ok("spiffe://ferry/coordinator/1")
        );
        // A pair that does not belong together is refused, the old one kept.
        let mut mixed = agent_for("build-2.example");
        mixed.key_pem = agent_for("build-2.example").key_pem;
        assert!(cert.set(&mixed).is_err());
        assert!(connect(addr, as_agent("build-2.example")).await.is_ok());
    }
}

#[test]
fn renewing_keeps_identity_and_hosts_with_a_new_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(&tmp.path().join("ca"));
    let sans = ["127.0.0.1".to_string(), "ferry-1.example".to_string()];
    let coord = ca.issue_coordinator(4, &sans).expect("issue");
    let renewed = ca.renew(&coord.cert_pem).expect("renew");
    let (old, new) = (
        CertFacts::from_pem(&coord.cert_pem).expect("facts"),
        CertFacts::from_pem(&renewed.cert_pem).expect("facts"),
    );
    assert_eq!(new.identity, old.identity);
    assert_eq!(new.hosts, sans);
    assert_ne!(new.fingerprint, old.fingerprint);
    assert_ne!(renewed.key_pem, coord.key_pem);

    let alice = ca.issue_operator("alice").expect("issue");
    let renewed = ca.renew(&alice.cert_pem).expect("renew operator");
    let facts = CertFacts::from_pem(&renewed.cert_pem).expect("facts");
    assert_eq!(facts.identity.uri(), "spiffe://ferry/operator/alice");
    let lifetime = facts.not_after_ms - facts.not_before_ms;
    let expected = i64::try_from(OPERATOR_VALIDITY.as_millis()).expect("ms") + 3_600_000;
    assert!((lifetime - expected).abs() < 5_000, "{lifetime}");

    // Agents renew over their session; another CA's certificates not at all.
    let (csr, _) = agent_csr("build-1").expect("csr");
    let agent = ca.sign_agent_csr(&csr, "build-1", &[]).expect("sign");
    assert!(
        ca.renew(&agent)
            .is_err_and(|e| e.to_string().contains("session"))
    );
    let theirs = CertAuthority::init(&tmp.path().join("theirs"), "other").expect("init");
    let foreign = theirs.issue_operator("alice").expect("issue");
    assert!(ca.renew(&foreign.cert_pem).is_err());
}

#[test]
fn short_lifetimes_are_backdated_a_tenth_and_due_for_renewal_at_two_thirds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(&tmp.path().join("ca"));
    let (csr, _) = renewal_csr().expect("csr");
    let pem = ca
        .sign_operator_csr(&csr, "bob", Duration::from_secs(60))
        .expect("sign");
    let facts = CertFacts::from_pem(&pem).expect("facts");
    assert_eq!(facts.identity.uri(), "spiffe://ferry/operator/bob");
    // notBefore 6 s back, notAfter 60 s ahead: due 22 s before expiry.
    assert_eq!(facts.not_after_ms - facts.not_before_ms, 66_000);
    assert_eq!(facts.renew_at_ms(), facts.not_after_ms - 22_000);
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    assert!((facts.not_after_ms - now - 60_000).abs() < 5_000);
    // Something that is not a valid request is refused.
    let tampered = csr.replacen('A', "B", 1);
    assert!(
        ca.sign_operator_csr(&tampered, "bob", Duration::from_secs(60))
            .is_err()
    );
}

/// The HTTPS listener's config: the member's own certificate, HTTP/2 and
/// HTTP/1.1 by ALPN, and a key that does not match is refused up front.
#[test]
fn https_server_config_checks_the_pair_and_offers_h2_and_http11() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = new_ca(tmp.path());
    let one = ca
        .issue_coordinator(1, &["127.0.0.1".to_string()])
        .expect("issue");
    let two = ca.issue_coordinator(2, &[]).expect("issue");
    let config = tls::https_server_config(&one.cert_pem, &one.key_pem).expect("config");
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let err = tls::https_server_config(&one.cert_pem, &two.key_pem).expect_err("mismatch");
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    let err = tls::https_server_config("", &one.key_pem).expect_err("no cert");
    assert!(matches!(err, CertError::InvalidPem { .. }), "{err}");
}
