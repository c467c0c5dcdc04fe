//! The trust boundary, tried as an attacker would: an operator approving
//! their own change, an enrolled agent posing as the coordinator, hostile
//! enrollment names and addresses. Each test fails on code without the
//! defence it names.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_tests::{Cluster, Repo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;

/// Writes a one-approval pipeline file sourced from `r`; returns its path.
/// Its executions run in parallel: several wait for a decision at once.
fn gated(c: &Cluster, r: &Repo, name: &str, approval: &str) -> String {
    let path = c.path().join(format!("{name}.yml"));
    let yaml = format!(
        "name: {name}\nsource: {{git: {}}}\nexecution_mode: parallel\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval{approval}}}\n",
        r.url()
    );
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn run_waiting(c: &Cluster, user: &str, pipeline: &str) -> String {
    let exec = c
        .ferry_ok(Some(user), &["run", pipeline])
        .trim()
        .to_string();
    c.wait_status(pipeline, &exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
    });
    exec
}

fn approve(c: &Cluster, user: &str, pipeline: &str, exec: &str) -> ferry_tests::Run {
    c.ferry(
        Some(user),
        &[
            "approve",
            pipeline,
            "--execution",
            exec,
            "--action",
            "gate/ok",
        ],
    )
}

/// Naming yourself in `approvers:` grants nothing; nobody approves what they
/// applied or started; only an admin may relax that per approval.
#[test]
fn the_approval_gate_is_a_four_eyes_control() {
    let c = Cluster::start("foureyes");
    c.grant("bob", "operator");
    c.grant("carol", "operator");
    c.grant("carol", "approver");
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "init");
    let file = gated(&c, &repo, "gated", ", approvers: [bob, carol]");
    c.ferry_ok(Some("bob"), &["pipeline", "apply", "-f", &file]);
    let e1 = run_waiting(&c, "bob", "gated");

    let r = approve(&c, "bob", "gated", &e1);
    assert!(
        !r.success && r.stderr.contains("needs the approver role"),
        "listed but not an approver: {}",
        r.stderr
    );
    c.grant("bob", "approver");
    let r = approve(&c, "bob", "gated", &e1);
    assert!(
        !r.success && r.stderr.contains("four-eyes"),
        "bob applied and started it: {}",
        r.stderr
    );
    let e2 = run_waiting(&c, "carol", "gated");
    let r = approve(&c, "carol", "gated", &e2);
    assert!(
        !r.success && r.stderr.contains("started execution"),
        "carol started it: {}",
        r.stderr
    );
    let v = c.status("gated", &e2);
    assert_eq!(
        Cluster::action(&v, "gate", "ok")["approvals"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "refused decisions record nothing"
    );
    // carol neither applied nor started e1.
    approve(&c, "carol", "gated", &e1);
    let v = c.wait_status("gated", &e1, "e1 to succeed", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded");
    assert_eq!(
        Cluster::action(&v, "gate", "ok")["approvals"][0]["by"],
        "carol"
    );

    // Relaxing the rule takes an admin.
    let relaxed = gated(&c, &repo, "relaxed", ", allow_self_approval: true");
    let r = c.ferry(Some("bob"), &["pipeline", "apply", "-f", &relaxed]);
    assert!(
        !r.success && r.stderr.contains("only an admin"),
        "{}",
        r.stderr
    );
    c.ferry_ok(Some("admin"), &["pipeline", "apply", "-f", &relaxed]);
    let e3 = run_waiting(&c, "carol", "relaxed");
    let r = approve(&c, "carol", "relaxed", &e3);
    assert!(r.success, "allowed by an admin: {}", r.stderr);
}

/// A TLS server holding a real agent certificate (which chains to the
/// cluster CA and names 127.0.0.1): counts the bytes any client sends it
/// after a completed handshake.
struct FakeCoordinator {
    addr: String,
    received: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeCoordinator {
    fn start(cert_pem: &str, key_pem: &str) -> FakeCoordinator {
        ferry_certs::install_crypto_provider();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .filter_map(Result::ok)
                .collect();
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap_or_else(|e| panic!("{e}"));
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let received = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (r, h) = (received.clone(), handshakes.clone());
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, r, h) = (acceptor.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        r.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        FakeCoordinator {
            addr,
            received,
            handshakes,
            _runtime: runtime,
        }
    }
}

/// An enrolled agent's certificate is valid for server use and chains to the
/// CA; the CLI must still refuse to send a secret to a server holding it.
#[test]
fn the_cli_refuses_an_agent_posing_as_coordinator() {
    let c = Cluster::start("fakecoord");
    let token = c.token("10m", 1);
    let (ok, log, state) = c.enroll("evil", &token);
    assert!(ok, "{log}");
    let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap_or_else(|e| panic!("{e}"));
    let fake = FakeCoordinator::start(&read("agent.pem"), &read("agent-key.pem"));

    let mut child = Command::new(ferry_tests::bin("ferry"))
        .args(["secret", "set", "prod-db"])
        .env("FERRY_COORDINATOR", &fake.addr)
        .env("FERRY_CA", c.tls.join("ca.pem"))
        .env("FERRY_CERT", c.users.join("admin.pem"))
        .env("FERRY_KEY", c.users.join("admin-key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        // The CLI may give up before it reads the value; a broken pipe is fine.
        let _ = stdin.write_all(b"hunter2-very-secret\n");
    }
    // Against a fake that holds the connection open the CLI would wait;
    // what matters is what reached the fake, so bound the wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the CLI talked to a fake: {err}");
    assert!(
        err.contains("not a coordinator") && err.contains("spiffe://ferry/agent/"),
        "{err}"
    );
    assert_eq!(
        fake.received.load(Ordering::SeqCst),
        0,
        "the fake coordinator received application data"
    );
    assert_eq!(fake.handshakes.load(Ordering::SeqCst), 0);
}

fn commit_index(c: &Cluster) -> u64 {
    c.cluster_status(None)
        .and_then(|v| v["commit_index"].as_u64())
        .unwrap_or_else(|| panic!("no cluster status"))
}

/// Enrollment is the one call without a certificate: bad tokens, reserved
/// names, extra SANs, host names of a coordinator or of the local machine,
/// missing or bad wrapping keys and labels the token does not grant are
/// refused before anything reaches the Raft log (without burning the token),
/// no answer ever carries the cluster's secrets key, and a flood from one
/// address is cut off.
#[test]
fn unauthenticated_enrollment_costs_the_cluster_nothing_durable() {
    let c = Cluster::start("enrolload");
    let ca = std::fs::read_to_string(c.tls.join("ca.pem")).unwrap_or_else(|e| panic!("{e}"));
    let token = c.token("10m", 1);
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let mut client = runtime.block_on(async {
        let endpoint =
            ferry_certs::tls::endpoint(&c.addr, &ca, None, ferry_certs::tls::Expected::Coordinator)
                .unwrap_or_else(|e| panic!("{e}"));
        let channel = endpoint.connect().await.unwrap_or_else(|e| panic!("{e}"));
        ferry_proto::enrollment_client::EnrollmentClient::new(channel)
    });
    let (csr, _key) = ferry_certs::agent_csr("a1").unwrap_or_else(|e| panic!("{e}"));
    let wrapping = ferry_certs::WrappingKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let call = |token: &str, name: &str, sans: &[&str]| ferry_proto::EnrollRequest {
        token: token.into(),
        name: name.into(),
        csr_pem: csr.clone(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        wrapping_public_key: wrapping.public_bytes().to_vec(),
        labels: Vec::new(),
    };
    let refused = |req: ferry_proto::EnrollRequest| {
        let why = format!("{req:?}");
        runtime
            .block_on(client.clone().enroll(req))
            .expect_err(&why)
    };
    let before = commit_index(&c);
    // Reserved names and a second SAN are refused.
    for (name, sans) in [
        ("coordinator", &["10.77.0.9"][..]),
        ("admin", &["10.77.0.9"][..]),
        ("12", &["10.77.0.9"][..]),
        ("a1", &["10.77.0.9", "coordinator.example"][..]),
    ] {
        let no = refused(call(&token, name, sans));
        assert_eq!(no.code(), tonic::Code::InvalidArgument, "{no:?}");
    }
    // An agent certificate never names a coordinator (its address, its
    // certificate's names, its console's host) nor the local machine: a
    // browser on a coordinator's host reaches the console as `localhost`.
    let coordinator_host = ferry_certs::tls::host_of(&c.addr).to_string();
    for san in [
        coordinator_host.as_str(),
        "127.0.0.1",
        "localhost",
        "::1",
        "0.0.0.0",
    ] {
        let no = refused(call(&token, "a1", &[san]));
        assert_eq!(no.code(), tonic::Code::InvalidArgument, "{san}: {no:?}");
        assert!(
            no.message().contains("coordinator") || no.message().contains("local machine"),
            "{san}: {}",
            no.message()
        );
    }
    // So are wrapping keys that are not X25519 public keys: the wrong length,
    // or a low-order point that would make every secret sealed to it public.
    for bad in [vec![7u8; 31], vec![0u8; 32]] {
        let mut req = call(&token, "a1", &[]);
        req.wrapping_public_key = bad;
        let no = refused(req);
        assert_eq!(no.code(), tonic::Code::InvalidArgument, "{no:?}");
    }
    // An agent without a wrapping key (older than them) used to get the
    // cluster's secrets key back: now it is refused, saying why.
    let mut old = call(&token, "a1", &[]);
    old.wrapping_public_key = Vec::new();
    let no = refused(old);
    assert_eq!(no.code(), tonic::Code::FailedPrecondition, "{no:?}");
    assert!(no.message().contains("no wrapping key"), "{}", no.message());
    // Labels out of bounds, and labels a token does not grant.
    let mut long = call(&token, "a1", &[]);
    long.labels = vec!["x".repeat(65)];
    assert_eq!(refused(long).code(), tonic::Code::InvalidArgument);
    let granting = c.ferry_ok(
        Some("admin"),
        &["token", "create", "--ttl", "10m", "--labels", "build,linux"],
    );
    let granting = granting.trim().to_string();
    let before_granting = commit_index(&c);
    let mut greedy = call(&granting, "a3", &[]);
    greedy.labels = vec!["build".into(), "prod-deploy".into()];
    let no = refused(greedy);
    assert_eq!(no.code(), tonic::Code::PermissionDenied, "{no:?}");
    assert!(no.message().contains("prod-deploy"), "{}", no.message());
    assert_eq!(
        commit_index(&c),
        before_granting,
        "refusals became Raft entries"
    );
    let _ = before;
    // The token's single use survived the refusals; the answer carries no
    // cluster key (field 4 is reserved) and the labels bound.
    let mut req = call(&token, "a1", &["10.77.0.9"]);
    req.labels = vec!["docker".into(), "docker".into(), "arm".into()];
    let enrolled = runtime
        .block_on(client.enroll(req))
        .unwrap_or_else(|e| panic!("the real token was burnt: {e}"))
        .into_inner();
    assert_eq!(enrolled.labels, ["arm", "docker"]);
    let facts = ferry_certs::CertFacts::from_pem(&enrolled.certificate_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(facts.hosts, ["10.77.0.9"]);
    // The granting token: no labels asked for, all of its own granted.
    let enrolled = runtime
        .block_on(client.enroll(call(&granting, "a3", &[])))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(enrolled.labels, ["build", "linux"]);
    let before = commit_index(&c);
    let codes: Vec<tonic::Code> = (0..60)
        .map(|i| {
            let forged = call(&format!("ferry-join-forged-{i}"), "a2", &[]);
            match runtime.block_on(client.enroll(forged)) {
                Ok(_) => tonic::Code::Ok,
                Err(s) => s.code(),
            }
        })
        .collect();
    assert!(
        codes.iter().all(|c| *c != tonic::Code::Ok),
        "a forged token was accepted"
    );
    assert!(
        codes.contains(&tonic::Code::PermissionDenied)
            && codes.contains(&tonic::Code::ResourceExhausted),
        "bad tokens are refused, then the source is rate-limited: {codes:?}"
    );
    assert_eq!(
        commit_index(&c),
        before,
        "refused enrollments must not become Raft entries"
    );
}

/// Connections that complete TCP (or TLS) and then say nothing must not
/// starve the coordinator: with 1,024 open files and 1,100 idle sockets held
/// from one address, the CLI still works from another, and the idle sockets
/// are closed.
#[test]
fn idle_connection_flood_does_not_hang_the_cli() {
    let c = Cluster::start_members(
        "idleflood",
        1,
        ferry_tests::Options {
            open_files: Some(1024),
            coordinator_args: vec!["--idle-timeout-seconds".into(), "5".into()],
            ..Default::default()
        },
    );
    let addr: std::net::SocketAddr = c.addr.parse().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..1100 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
            socket
                .bind("127.0.0.2:0".parse().unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
            if let Ok(Ok(s)) =
                tokio::time::timeout(std::time::Duration::from_secs(2), socket.connect(addr)).await
            {
                held.push(s);
            }
        }
        held
    });
    assert!(held.len() > 1000, "only {} connections opened", held.len());
    for _ in 0..3 {
        let r = c.ferry(Some("admin"), &["pipeline", "list"]);
        assert!(
            r.success,
            "the CLI hung or failed under the flood: {}",
            r.stderr
        );
    }
    // Every idle socket is closed by the server (refused at once beyond the
    // per-source cap, or at the idle deadline).
    let open = runtime.block_on(async {
        let mut open = 0;
        for mut s in held {
            let mut byte = [0u8; 1];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(20), s.read(&mut byte)).await;
            if read.is_err() {
                open += 1;
            }
        }
        open
    });
    assert_eq!(open, 0, "idle connections left open");
    assert!(c.ferry(Some("admin"), &["pipeline", "list"]).success);
}

fn pair(dir: &std::path::Path, cert: &str, key: &str) -> ferry_certs::CertifiedKey {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{e}"));
    ferry_certs::CertifiedKey {
        cert_pem: read(cert),
        key_pem: read(key),
    }
}

/// Opens an agent session with `key` and returns the status it ends with.
fn open_session(
    runtime: &tokio::runtime::Runtime,
    c: &Cluster,
    ca: &str,
    key: &ferry_certs::CertifiedKey,
) -> Result<(), tonic::Status> {
    runtime.block_on(async {
        let channel = ferry_certs::tls::endpoint(
            &c.addr,
            ca,
            Some(key),
            ferry_certs::tls::Expected::Coordinator,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut client =
            ferry_proto::internal::agent_session_client::AgentSessionClient::new(channel);
        let register = ferry_proto::internal::AgentMessage {
            kind: Some(ferry_proto::internal::agent_message::Kind::Register(
                ferry_proto::internal::Register {
                    labels: vec![],
                    capacity: 1,
                    version: "test".into(),
                    address: "127.0.0.1:1".into(),
                    running: vec![],
                },
            )),
        };
        let mut stream = client
            .session(tokio_stream::iter(vec![register]))
            .await?
            .into_inner();
        stream.message().await.map(|_| ())
    })
}

/// A removed agent's certificate stays dead when its name is enrolled again,
/// is refused by other agents' artifact servers, and `ferry certs revoke`
/// shuts out an operator.
#[test]
fn removed_and_revoked_certificates_stay_dead() {
    let mut c = Cluster::start("revoked");
    let ca = std::fs::read_to_string(c.tls.join("ca.pem")).unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let token = c.token("10m", 2);
    let (ok, log, old_state) = c.enroll("a1", &token);
    assert!(ok, "{log}");
    let old = pair(&old_state, "agent.pem", "agent-key.pem");
    let name = c.agent_name("a1");
    c.ferry_ok(Some("admin"), &["agents", "remove", &name]);

    // The same name enrolled again, with a new key.
    let new_state = c.path().join("agent-a1-again");
    let out = Command::new(ferry_tests::bin("ferry-agent"))
        .args([
            "--coordinator",
            &c.addr,
            "--name",
            &name,
            "--join-token",
            &token,
        ])
        .arg("--enroll-only")
        .arg("--state-dir")
        .arg(&new_state)
        .arg("--ca")
        .arg(c.tls.join("ca.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = pair(&new_state, "agent.pem", "agent-key.pem");

    let refused = open_session(&runtime, &c, &ca, &old).expect_err("the old certificate came back");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("revoked"), "{refused:?}");
    assert!(
        open_session(&runtime, &c, &ca, &new).is_ok(),
        "the new certificate is the agent's"
    );

    // Another agent's artifact server refuses the removed certificate.
    let b = c.add_agent("b", &[]);
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    let agents: serde_json::Value = serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}"));
    let b_view = agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == b.as_str()))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        b_view["cert_expires_at"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "agents list shows when the certificate expires: {b_view}"
    );
    let peer = b_view["address"].as_str().unwrap_or_default().to_string();
    let fetched = runtime.block_on(async {
        let channel =
            ferry_certs::tls::endpoint(&peer, &ca, Some(&old), ferry_certs::tls::Expected::Agent)
                .unwrap_or_else(|e| panic!("{e}"))
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let mut client =
            ferry_proto::internal::artifact_peer_client::ArtifactPeerClient::new(channel);
        client
            .fetch(ferry_proto::internal::FetchRequest {
                digest: format!("sha256:{}", "0".repeat(64)),
                offset: 0,
            })
            .await
            .map(|_| ())
    });
    let refused = fetched.expect_err("a removed agent fetched from a peer");
    assert!(refused.message().contains("revoked"), "{refused:?}");

    // An operator certificate, revoked by an admin.
    c.grant("bob", "viewer");
    assert!(c.ferry(Some("bob"), &["pipeline", "list"]).success);
    let bob = c.users.join("bob.pem").display().to_string();
    let r = c.ferry(Some("bob"), &["certs", "revoke", &bob]);
    assert!(!r.success, "a viewer may not revoke");
    c.ferry_ok(Some("admin"), &["certs", "revoke", &bob]);
    let r = c.ferry(Some("bob"), &["pipeline", "list"]);
    assert!(!r.success && r.stderr.contains("revoked"), "{}", r.stderr);
}

/// The fingerprint and expiry of the certificate in `path`.
fn cert_facts(path: &std::path::Path) -> ferry_certs::CertFacts {
    let pem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    ferry_certs::CertFacts::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"))
}

/// Certificates have lifetimes and renewal paths. Agents renew their own over
/// mTLS before they expire, and keep working long after the first
/// certificate expired: sessions and artifact fetches between two agents use
/// the renewed ones. An operator renews with `ferry certs renew`; a member's
/// certificate is renewed with the CA key and loaded on restart.
#[test]
fn certificates_are_renewed_before_they_expire() {
    ferry_tests::ensure_busybox_image();
    let mut c = Cluster::start_members(
        "renewal",
        1,
        ferry_tests::Options {
            coordinator_args: vec![
                "--agent-certificate-lifetime".into(),
                "40s".into(),
                "--operator-certificate-lifetime".into(),
                "2h".into(),
            ],
            ..Default::default()
        },
    );
    c.add_agent("maker", &["builder"]);
    c.add_agent("user", &["tester"]);
    let maker_cert = c.path().join("agent-maker").join("agent.pem");
    let first = cert_facts(&maker_cert);
    assert!(
        first.not_after_ms - first.not_before_ms < 60_000,
        "the coordinator's lifetime applies at enrollment"
    );
    // Wait past the first certificate's expiry: by then it was renewed (at
    // two thirds of its lifetime), maybe more than once.
    let expired_at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(first.not_after_ms).unwrap_or(0));
    ferry_tests::wait_for(
        "the first agent certificate to expire",
        std::time::Duration::from_secs(90),
        || {
            (std::time::SystemTime::now() > expired_at + std::time::Duration::from_secs(2))
                .then_some(())
        },
    );
    let now = cert_facts(&maker_cert);
    assert_ne!(
        now.fingerprint, first.fingerprint,
        "the agent renewed its certificate"
    );
    assert!(now.not_after_ms > first.not_after_ms);
    assert!(
        c.agent_log(&c.agent_name("maker"))
            .contains("renewed the agent certificate"),
        "{}",
        c.agent_log(&c.agent_name("maker"))
    );
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    let agents: serde_json::Value = serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        agents
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["connected"] == true)),
        "{list}"
    );
    // Work still flows, through sessions and peer fetches on renewed certificates.
    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    c.apply(&format!(
        r#"name: renewed
source: {{git: {}}}
stages:
  - name: build
    actions:
      - {{name: make, type: build, image: ferry-local/busybox, runs_on: [builder], commands: ["mkdir -p out", "echo renewed > out/app"], outputs: {{app: [out/]}}}}
  - name: test
    actions:
      - {{name: use, type: test, image: ferry-local/busybox, runs_on: [tester], inputs: [app], commands: ["grep -q renewed out/app"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "renewed"])
        .trim()
        .to_string();
    let v = c.wait_status("renewed", &exec, "the run to finish", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");

    // An operator renews through the cluster, with the cluster's lifetime.
    c.grant("bob", "viewer");
    let bob = c.users.join("bob.pem");
    let before = cert_facts(&bob);
    let said = c.ferry_ok(Some("bob"), &["certs", "renew"]);
    assert!(
        said.contains("renewed spiffe://ferry/operator/bob"),
        "{said}"
    );
    let after = cert_facts(&bob);
    assert_ne!(after.fingerprint, before.fingerprint);
    let lifetime = after.not_after_ms - after.not_before_ms;
    // Two hours, and a tenth of that backdated for clock skew.
    assert!((7_920_000..7_930_000).contains(&lifetime), "{lifetime}");
    assert!(c.ferry(Some("bob"), &["pipeline", "list"]).success);
    // Someone without a role renews nothing.
    c.user("nobody");
    let r = c.ferry(Some("nobody"), &["certs", "renew"]);
    assert!(!r.success && r.stderr.contains("may not"), "{}", r.stderr);

    // A member's certificate, renewed with the CA key, is used after a restart.
    let member_cert = c.tls.join("coordinator-1.pem");
    let old = cert_facts(&member_cert);
    let tls_dir = c.tls.display().to_string();
    let key = c.tls.join("coordinator-1-key.pem").display().to_string();
    let said = c.ferry_ok(
        None,
        &[
            "certs",
            "renew",
            "--ca-dir",
            &tls_dir,
            "--cert",
            &member_cert.display().to_string(),
            "--key",
            &key,
        ],
    );
    assert!(said.contains("coordinator/1"), "{said}");
    let new = cert_facts(&member_cert);
    assert_ne!(new.fingerprint, old.fingerprint);
    assert_eq!(new.hosts, old.hosts);
    c.kill_member(1);
    c.start_member(1);
    assert!(c.ferry(Some("bob"), &["pipeline", "list"]).success);
}
