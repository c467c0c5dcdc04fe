//! Benchmarks, each printing Ferry's figure beside a baseline measured in the
//! same run: a bare `docker run`, a real etcd 3.4 cluster (Debian's
//! `etcd-server`) on the same loopback layout and with the same gRPC client,
//! plain `scp` to the same SSH hosts, curl and plain HTTP over the same
//! loopback, or the same `cargo build` in a bare `docker run`.

pub mod cache;
pub mod console;
pub mod deploy;
pub mod etcd;
pub mod failover;
pub mod rust_image;
pub mod scale;
pub mod source;
pub mod throughput;
pub mod triggers;
pub mod trivial;

use std::time::Duration;

use ferry_certs::CertifiedKey;
use tonic::transport::Channel;

/// The `qs` quantiles (0.0 the minimum, 1.0 the maximum) of a sample,
/// nearest rank; zeros for an empty sample.
pub fn quantiles<const N: usize>(mut v: Vec<Duration>, qs: [f64; N]) -> [Duration; N] {
    if v.is_empty() {
        return [Duration::ZERO; N];
    }
    v.sort();
    qs.map(|q| v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize])
}

/// min, median, p99, max of a sample.
pub fn summary(v: Vec<Duration>) -> [Duration; 4] {
    quantiles(v, [0.0, 0.5, 0.99, 1.0])
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
