//! The agent's SSH client against real OpenSSH servers in network namespaces:
//! a pinned host key (or fingerprint) is accepted, a changed one refused with
//! both fingerprints named, a wrong client key refused, an unreachable host
//! fails within its timeout, and commands stream output and exit status.

use std::time::{Duration, Instant};

use ferry_engine::ssh::{Pinned, SshError, Target, connect};
use ferry_tests::net::Net;
use ferry_tests::sshd::SshHost;

fn target(h: &SshHost, pinned: Pinned) -> Target {
    Target {
        host: h.ip.clone(),
        port: 22,
        user: "root".into(),
        pinned,
        private_key: h.client_key.clone(),
    }
}

#[test]
fn ssh_to_real_hosts_with_pinned_keys() {
    ferry_certs::install_crypto_provider();
    let mut net = Net::new();
    let a = SshHost::start(&mut net, 1);
    let b = SshHost::start(&mut net, 2);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        // The pinned public key: accepted; commands run with output and status.
        let mut conn = connect(
            &target(&a, Pinned::Key(a.host_key.clone())),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let status = conn
            .exec(
                "cat; echo on-$(hostname -I | cut -d' ' -f1) >&2; exit 3",
                Some(b"from stdin\n"),
                &mut |d| out.extend_from_slice(d),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 3);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("from stdin") && text.contains(&format!("on-{}", a.ip)),
            "{text}"
        );
        conn.close().await;

        // Pinned by fingerprint: accepted.
        let conn = connect(
            &target(&a, Pinned::Fingerprint(a.fingerprint.clone())),
            Duration::from_secs(5),
        )
        .await;
        assert!(conn.is_ok(), "{:?}", conn.err());

        // Host b presents another key than the one pinned (a's): refused, both named.
        match connect(
            &target(&b, Pinned::Key(a.host_key.clone())),
            Duration::from_secs(5),
        )
        .await
        {
            Err(SshError::HostKeyMismatch {
                expected,
                presented,
                ..
            }) => {
                assert_eq!(expected, a.fingerprint);
                assert_eq!(presented, b.fingerprint);
            }
            other => panic!("expected a host key mismatch, got {:?}", other.err()),
        }

        // A key sshd does not accept.
        let mut wrong = target(&a, Pinned::Key(a.host_key.clone()));
        wrong.private_key = b.client_key.clone();
        assert!(matches!(
            connect(&wrong, Duration::from_secs(5)).await,
            Err(SshError::AuthRefused { .. })
        ));

        // Cut off: fails within the timeout.
        net.cut(2);
        let t = Instant::now();
        let r = connect(
            &target(&b, Pinned::Key(b.host_key.clone())),
            Duration::from_secs(2),
        )
        .await;
        assert!(
            matches!(r, Err(SshError::Unreachable { .. })),
            "{:?}",
            r.err()
        );
        assert!(t.elapsed() < Duration::from_secs(10));
    });
}
