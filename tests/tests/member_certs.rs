//! End to end: a member renews its own certificate (issue 23 item 6) when a
//! third of its lifetime is left, stores it in its TLS folder, and presents
//! it from the next handshake on without a restart: the cluster keeps
//! answering after the certificate it started with has expired.

use std::time::Duration;

use ferry_certs::{CertAuthority, CertFacts, CertifiedKey};
use ferry_tests::{Cluster, wait_for};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn facts(path: &std::path::Path) -> CertFacts {
    let pem = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    CertFacts::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_member_renews_its_certificate_and_serves_on_past_the_old_ones_expiry() {
    ferry_certs::install_crypto_provider();
    let mut c = Cluster::start("membercert");
    // Member 1 again, with a certificate of 30 seconds (the shortest lifetime).
    c.kill_member(1);
    let ca = CertAuthority::load(&c.tls).unwrap_or_else(|e| panic!("{e}"));
    let cert_path = c.tls.join("coordinator-1.pem");
    let hosts = facts(&cert_path).hosts;
    let short: CertifiedKey = ca
        .issue_coordinator_for(1, &hosts, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&cert_path, &short.cert_pem).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(c.tls.join("coordinator-1-key.pem"), &short.key_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    let first = facts(&cert_path);
    c.start_member_with(1, &["--member-certificate-lifetime", "30s"]);

    // A third of its lifetime before it expires, a new one is in the folder.
    let renewed = wait_for("the member to renew", Duration::from_secs(60), || {
        let now = facts(&cert_path);
        (now.fingerprint != first.fingerprint).then_some(now)
    });
    assert!(renewed.not_after_ms > first.not_after_ms, "{renewed:?}");
    assert_eq!(renewed.identity, first.identity);
    assert_eq!(renewed.hosts, first.hosts);

    // Past the first certificate's expiry, new connections still succeed:
    // the member presents the renewed one without a restart.
    let left = first.not_after_ms + 2_000 - now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
    let status = c.cluster_status(Some(1));
    assert!(
        status.as_ref().is_some_and(|v| v["leader_id"] == 1),
        "the member answers past its first certificate's expiry: {status:?}"
    );
    let whoami = c.ferry(Some("admin"), &["whoami"]);
    assert!(whoami.success, "{whoami:?}");
}
