//! Time from SIGKILL of the leader to a new leader, and (Ferry) to the next
//! action dispatched, over several kills; the same leader measurement on a
//! three-member etcd cluster in the same run.

use std::time::{Duration, Instant};

use ferry_certs::CertifiedKey;
use ferry_proto as pb;

use super::etcd::Etcd;
use super::{channel, ms, summary};
use crate::{Cluster, Options, Repo, ensure_busybox_image};

fn pair(dir: &std::path::Path, stem: &str) -> anyhow::Result<CertifiedKey> {
    Ok(CertifiedKey {
        cert_pem: ferry_certs::read_pem(&dir.join(format!("{stem}.pem")))?,
        key_pem: ferry_certs::read_pem(&dir.join(format!("{stem}-key.pem")))?,
    })
}

/// Polls `members` until one reports a leader other than `old`.
async fn ferry_new_leader(
    ca: &str,
    peer_id: &CertifiedKey,
    addrs: &[String],
    old: u64,
) -> anyhow::Result<Instant> {
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(pb::internal::raft_peer_client::RaftPeerClient::new(
            channel(ca, peer_id, a).await?,
        ));
    }
    loop {
        for c in clients.iter_mut() {
            if let Ok(Ok(r)) = tokio::time::timeout(
                Duration::from_millis(200),
                c.member_status(pb::internal::MemberStatusRequest {}),
            )
            .await
            {
                let r = r.into_inner();
                if r.leader_id != 0 && r.leader_id != old {
                    return Ok(Instant::now());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(kills: usize) -> anyhow::Result<String> {
    ensure_busybox_image();
    let mut c = Cluster::start_members("bfo", 3, Options::default());
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "x");
    c.apply(&format!(
        "name: fo\nsource: {{git: {}}}\nexecution_mode: parallel\nstages:\n  - name: b\n    actions:\n      - {{name: a, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    ));
    let ca = ferry_certs::read_pem(&c.tls.join("ca.pem"))?;
    let peer_id = pair(&c.tls, "coordinator-1")?;
    let admin = pair(&c.users, "admin")?;
    let (mut to_leader, mut to_dispatch) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        let old = c.leader();
        let survivors: Vec<String> = (1..=3)
            .filter(|i| *i != old)
            .map(|i| c.member_addr(i))
            .collect();
        let mut op = pb::executions_client::ExecutionsClient::new(
            channel(&ca, &admin, &survivors[0]).await?,
        );
        let t0 = Instant::now();
        c.kill_member(old);
        let leader = tokio::spawn({
            let (ca, peer_id, survivors) = (ca.clone(), peer_id.clone(), survivors.clone());
            async move { ferry_new_leader(&ca, &peer_id, &survivors, old).await }
        });
        let exec = op
            .start_execution(pb::StartExecutionRequest {
                pipeline: "fo".into(),
                revision: String::new(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .execution_id;
        let dispatched = loop {
            let v = op
                .get_execution(pb::GetExecutionRequest {
                    pipeline: "fo".into(),
                    execution_id: exec.clone(),
                })
                .await?
                .into_inner();
            if v.stages
                .first()
                .and_then(|s| s.actions.first())
                .is_some_and(|a| !a.agent.is_empty())
            {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        to_leader.push(leader.await??.duration_since(t0));
        to_dispatch.push(dispatched.duration_since(t0));
        c.wait_status("fo", &exec, "the execution to finish", |v| {
            v["status"] != "InProgress"
        });
        c.start_member(old);
    }
    drop(c);

    let mut e = Etcd::start(3)?;
    let mut etcd_leader = Vec::new();
    for _ in 0..kills {
        let old = e.leader().await?;
        let (old_id, _, _) = e
            .status(old)
            .await
            .ok_or_else(|| anyhow::anyhow!("etcd leader did not answer"))?;
        let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let t0 = Instant::now();
        e.kill(old);
        let elected = 'wait: loop {
            for i in &survivors {
                if let Some((_, leader, _)) = e.status(*i).await
                    && leader != 0
                    && leader != old_id
                {
                    break 'wait Instant::now();
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        etcd_leader.push(elected.duration_since(t0));
        e.spawn(old)?;
        e.leader().await?;
    }
    let [_, fl_med, _, fl_max] = summary(to_leader);
    let [_, fd_med, _, fd_max] = summary(to_dispatch);
    let [_, el_med, _, el_max] = summary(etcd_leader);
    Ok(format!(
        "| after SIGKILL of the leader ({kills} kills) | median | max |\n| --- | --- | --- |\n\
         | Ferry: new leader elected | {} | {} |\n\
         | Ferry: next action dispatched to an agent | {} | {} |\n\
         | etcd 3.4 (baseline): new leader elected | {} | {} |\n",
        ms(fl_med),
        ms(fl_max),
        ms(fd_med),
        ms(fd_max),
        ms(el_med),
        ms(el_max)
    ))
}
