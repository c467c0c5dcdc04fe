//! Benchmarks, each printing Ferry's figure beside a baseline measured in the
//! same run: a bare `docker run`, a real etcd 3.4 cluster (Debian's
//! `etcd-server`) on the same loopback layout and with the same gRPC client,
//! plain `scp` to the same SSH hosts, or curl and plain HTTP over the same
//! loopback.

pub mod deploy;
pub mod etcd;
pub mod failover;
pub mod scale;
pub mod throughput;
pub mod triggers;
pub mod trivial;

use std::time::Duration;

use ferry_certs::CertifiedKey;
use tonic::transport::Channel;

/// min, median, p99, max of a sample.
pub fn summary(mut v: Vec<Duration>) -> [Duration; 4] {
    if v.is_empty() {
        return [Duration::ZERO; 4];
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [v[0], at(0.5), at(0.99), v[v.len() - 1]]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// An mTLS channel to the coordinator at `addr` (host:port on loopback).
pub async fn channel(ca_pem: &str, identity: &CertifiedKey, addr: &str) -> anyhow::Result<Channel> {
    let expect = ferry_certs::tls::Expected::Coordinator;
    Ok(
        ferry_certs::tls::endpoint(addr, ca_pem, Some(identity), expect)?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
            .connect()
            .await?,
    )
}
