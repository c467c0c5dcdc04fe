//! Committed writes per second with concurrent proposers, and commit latency
//! at moderate load: Ferry (each write an `ApplyPipeline` of an unchanged
//! pipeline — a full Raft commit and apply) beside etcd 3.4 (`Put` of a
//! 256-byte value), both three members on loopback, both over mTLS gRPC
//! with the same client, both sent to the leader.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto as pb;
use tonic::transport::Channel;

use super::etcd::Etcd;
use super::{channel, ms, summary};
use crate::etcd::kv_client::KvClient;
use crate::{Cluster, Options};

pub struct Load {
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Runs `workers` loops of `op` for `secs`, over `channels` shared channels.
async fn drive<F, Fut>(
    channels: &[Channel],
    workers: usize,
    secs: u64,
    op: F,
) -> anyhow::Result<Load>
where
    F: Fn(Channel, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ch = channels[w % channels.len()].clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                op(ch.clone(), w, n).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let count = all.len();
    let [_, p50, p99, _] = summary(all);
    Ok(Load {
        ops_per_sec: count as f64 / elapsed,
        p50,
        p99,
    })
}

const PIPELINE: &str = "name: tp\nsource: {git: /srv/git/tp.git}\nexecution_mode: parallel\nstages:\n  - name: b\n    actions:\n      - {name: a, type: build, image: img, commands: [\"true\"]}\n";

pub async fn run(secs: u64, moderate: usize, high: usize) -> anyhow::Result<String> {
    let c = Cluster::start_members("btp", 3, Options::default());
    c.apply(PIPELINE);
    let leader = c.leader();
    let ca = ferry_certs::read_pem(&c.tls.join("ca.pem"))?;
    let admin = ferry_certs::CertifiedKey {
        cert_pem: ferry_certs::read_pem(&c.users.join("admin.pem"))?,
        key_pem: ferry_certs::read_pem(&c.users.join("admin-key.pem"))?,
    };
    let mut chans = Vec::new();
    for _ in 0..8 {
        chans.push(channel(&ca, &admin, &c.member_addr(leader)).await?);
    }
    let ferry_op = |ch: Channel, _w: usize, _n: u64| async move {
        let mut op = pb::pipelines_client::PipelinesClient::new(ch);
        op.apply_pipeline(pb::ApplyPipelineRequest {
            yaml: PIPELINE.into(),
            file_name: "tp.yml".into(),
            ..Default::default()
        })
        .await?;
        Ok(())
    };
    let f_mod = drive(&chans, moderate, secs, ferry_op).await?;
    let f_high = drive(&chans, high, secs, ferry_op).await?;
    drop(c);

    let e = Etcd::start(3)?;
    let leader = e.leader().await?;
    let mut chans = Vec::new();
    for _ in 0..8 {
        chans.push(e.channel(leader).await?);
    }
    let etcd_op = |ch: Channel, w: usize, n: u64| async move {
        let mut kv = KvClient::new(ch);
        Etcd::put(&mut kv, format!("bench/{w}/{n}"), vec![b'x'; 256]).await
    };
    let e_mod = drive(&chans, moderate, secs, etcd_op).await?;
    let e_high = drive(&chans, high, secs, etcd_op).await?;
    Ok(format!(
        "| 3 members, loopback, mTLS, {secs} s per row | writes/s | p50 | p99 |\n| --- | --- | --- | --- |\n\
         | Ferry, {moderate} concurrent proposers | {:.0} | {} | {} |\n\
         | etcd 3.4, {moderate} concurrent proposers (baseline) | {:.0} | {} | {} |\n\
         | Ferry, {high} concurrent proposers | {:.0} | {} | {} |\n\
         | etcd 3.4, {high} concurrent proposers (baseline) | {:.0} | {} | {} |\n",
        f_mod.ops_per_sec,
        ms(f_mod.p50),
        ms(f_mod.p99),
        e_mod.ops_per_sec,
        ms(e_mod.p50),
        ms(e_mod.p99),
        f_high.ops_per_sec,
        ms(f_high.p50),
        ms(f_high.p99),
        e_high.ops_per_sec,
        ms(e_high.p50),
        ms(e_high.p99),
    ))
}
