//! Scale: thousands of simulated agents that speak the real protocol over
//! mTLS (enrolled with a real join token and CSR, one TCP+TLS session each,
//! heart-beating) but run no containers — each answers an assignment at once
//! with success. Measures the leader's CPU and RSS with every agent connected,
//! dispatch latency beside the commit latency of the same cluster in the same
//! run, and actions completed per second; plus one large artifact between two
//! real agent processes beside a plain TCP copy of the same bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_certs::CertifiedKey;
use ferry_proto as pb;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{channel, ms, summary};
use crate::{Cluster, Options};

/// Assignment receipts: (execution id, when the sim agent got it).
type Receipts = Arc<Mutex<Vec<(String, Instant)>>>;

fn pair(dir: &std::path::Path, stem: &str) -> anyhow::Result<CertifiedKey> {
    Ok(CertifiedKey {
        cert_pem: ferry_certs::read_pem(&dir.join(format!("{stem}.pem")))?,
        key_pem: ferry_certs::read_pem(&dir.join(format!("{stem}-key.pem")))?,
    })
}

/// The pid of the process listening as `addr` (from /proc cmdlines).
fn pid_of(addr: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("ferry-coordinator") && cmd.contains(&format!("--listen {addr}")) {
            return Some(pid);
        }
    }
    None
}

/// (CPU seconds used so far, RSS bytes) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, rss_kb * 1024)
}

struct Sim {
    ca: String,
    leader: String,
    /// Every member: a sim agent follows leadership like a real one.
    members: Vec<String>,
    receipts: Receipts,
    done: Arc<AtomicU64>,
}

async fn enroll(ca: &str, leader: &str, token: &str, name: &str) -> anyhow::Result<CertifiedKey> {
    let (csr, key) = ferry_certs::agent_csr(name)?;
    let ch = ferry_certs::tls::endpoint(leader, ca, None, ferry_certs::tls::Expected::Coordinator)?
        .connect()
        .await?;
    let resp = pb::enrollment_client::EnrollmentClient::new(ch)
        .enroll(pb::EnrollRequest {
            token: token.into(),
            name: name.into(),
            csr_pem: csr,
            // On loopback: no host name (enrollment refuses loopback ones).
            sans: Vec::new(),
            // Required; these agents only register and heartbeat, and open no
            // secrets, so the private half is not kept.
            wrapping_public_key: ferry_certs::WrappingKey::generate()?
                .public_bytes()
                .to_vec(),
            labels: Vec::new(),
        })
        .await?
        .into_inner();
    Ok(CertifiedKey {
        cert_pem: resp.certificate_pem,
        key_pem: key,
    })
}

/// One simulated agent: sessions with whichever member accepts (the leader),
/// answering every assignment at once and re-sending unacknowledged results.
async fn agent(sim: Arc<Sim>, id: CertifiedKey, connected: mpsc::Sender<()>) {
    let mut unacked: HashMap<u64, pb::internal::AttemptResult> = HashMap::new();
    let mut first = Some(connected);
    loop {
        for addr in std::iter::once(&sim.leader).chain(sim.members.iter()) {
            let _ = session(&sim, &id, addr, &mut unacked, &mut first).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session(
    sim: &Sim,
    id: &CertifiedKey,
    addr: &str,
    unacked: &mut HashMap<u64, pb::internal::AttemptResult>,
    first: &mut Option<mpsc::Sender<()>>,
) -> anyhow::Result<()> {
    let ch = channel(&sim.ca, id, addr).await?;
    let mut client = pb::internal::agent_session_client::AgentSessionClient::new(ch);
    let (tx, rx) = mpsc::channel::<pb::internal::AgentMessage>(64);
    let send = |k: pb::internal::agent_message::Kind| pb::internal::AgentMessage { kind: Some(k) };
    tx.send(send(pb::internal::agent_message::Kind::Register(
        pb::internal::Register {
            labels: vec![],
            capacity: 1,
            version: "sim".into(),
            address: "127.0.0.1:9".into(),
            running: vec![],
        },
    )))
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    if let Some(c) = first.take() {
        let _ = c.send(()).await;
    }
    for r in unacked.values() {
        tx.send(send(pb::internal::agent_message::Kind::Result(r.clone())))
            .await?;
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            m = inbound.message() => {
                let Some(m) = m? else { return Ok(()) };
                match m.kind {
                    Some(pb::internal::coordinator_message::Kind::Assign(a)) => {
                        sim.receipts.lock().unwrap_or_else(|p| p.into_inner()).push((a.execution_id.clone(), Instant::now()));
                        let epoch = a.attempt.as_ref().map_or(0, |r| r.epoch);
                        let result = pb::internal::AttemptResult { attempt: a.attempt, success: true, exit_code: 0, ..Default::default() };
                        unacked.insert(epoch, result.clone());
                        tx.send(send(pb::internal::agent_message::Kind::Result(result))).await?;
                    }
                    Some(pb::internal::coordinator_message::Kind::Ack(ack)) => {
                        let epoch = ack.attempt.as_ref().map_or(0, |r| r.epoch);
                        if unacked.remove(&epoch).is_some() && ack.accepted {
                            sim.done.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    _ => {}
                }
            }
            _ = heartbeat.tick() => {
                tx.send(send(pb::internal::agent_message::Kind::Heartbeat(pb::internal::Heartbeat { running: 0, shutting_down: false, running_epochs: Vec::new() }))).await?;
            }
        }
    }
}

fn pipeline(actions: usize) -> String {
    let mut y = String::from(
        "name: scale\nsource: {git: REPO}\nexecution_mode: parallel\nstages:\n  - name: s\n    actions:\n",
    );
    for i in 0..actions {
        y.push_str(&format!(
            "      - {{name: a{i}, type: build, image: sim, commands: [\"true\"]}}\n"
        ));
    }
    y
}

pub async fn run(
    agents: usize,
    bursts: usize,
    actions: usize,
    load_execs: usize,
) -> anyhow::Result<String> {
    let c = Cluster::start_members(
        "bscale",
        3,
        Options {
            coordinator_args: vec![
                "--snapshot-every".into(),
                "10000000".into(),
                "--heartbeat-seconds".into(),
                "5".into(),
                // Every simulated agent enrolls and connects from 127.0.0.1.
                "--max-connections-per-source".into(),
                (agents + 64).to_string(),
                "--max-connections".into(),
                (agents + 1024).to_string(),
                "--enroll-per-minute".into(),
                (agents + 64).to_string(),
            ],
            ..Default::default()
        },
    );
    let leader_id = c.leader();
    let leader = c.member_addr(leader_id);
    let pid = pid_of(&leader).ok_or_else(|| anyhow::anyhow!("leader process not found"))?;
    let ca = ferry_certs::read_pem(&c.tls.join("ca.pem"))?;
    let admin = pair(&c.users, "admin")?;
    let token = c.ferry_ok(
        Some("admin"),
        &[
            "token",
            "create",
            "--ttl",
            "2h",
            "--uses",
            &agents.to_string(),
        ],
    );
    let token = token.trim().to_string();

    // Enroll and connect every simulated agent.
    let t = Instant::now();
    let members = (1..=3).map(|i| c.member_addr(i)).collect();
    let sim = Arc::new(Sim {
        ca: ca.clone(),
        leader: leader.clone(),
        members,
        receipts: Arc::default(),
        done: Arc::default(),
    });
    let gate = Arc::new(Semaphore::new(64));
    let (conn_tx, mut conn_rx) = mpsc::channel(agents.max(1));
    for i in 0..agents {
        let (sim, gate, conn_tx, token, ca, leader) = (
            sim.clone(),
            gate.clone(),
            conn_tx.clone(),
            token.clone(),
            ca.clone(),
            leader.clone(),
        );
        tokio::spawn(async move {
            let id = {
                let _permit = gate.acquire().await;
                match enroll(&ca, &leader, &token, &format!("sim-{i}")).await {
                    Ok(id) => id,
                    Err(e) => {
                        eprintln!("enroll sim-{i}: {e:#}");
                        return;
                    }
                }
            };
            agent(sim, id, conn_tx).await;
        });
    }
    drop(conn_tx);
    let mut n = 0;
    while n < agents {
        if conn_rx.recv().await.is_none() {
            break;
        }
        n += 1;
    }
    anyhow::ensure!(
        n == agents,
        "only {n} of {agents} simulated agents connected"
    );
    let connect_time = t.elapsed();
    // Idle: every agent connected and heart-beating.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, _) = usage(pid);
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    let (cpu1, rss_idle) = usage(pid);
    let idle_cores = (cpu1 - cpu0) / window.as_secs_f64();

    let repo = crate::Repo::new();
    repo.commit(&[("README", "scale")], "scale");
    c.apply(&pipeline(actions).replace("REPO", &repo.url()));
    let op_channel = channel(&ca, &admin, &leader).await?;
    let access = pb::access_client::AccessClient::new(op_channel.clone());
    let mut op = pb::executions_client::ExecutionsClient::new(op_channel);
    // Resolve the branch once; later runs name the commit, which needs no git fetch.
    let revision = op
        .start_execution(pb::StartExecutionRequest {
            pipeline: "scale".into(),
            revision: String::new(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .revision;
    while sim.done.load(Ordering::SeqCst) < actions as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = |op: &mut pb::executions_client::ExecutionsClient<tonic::transport::Channel>| {
        let mut op = op.clone();
        let revision = revision.clone();
        async move {
            let r = op
                .start_execution(pb::StartExecutionRequest {
                    pipeline: "scale".into(),
                    revision,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok::<_, anyhow::Error>((r.execution_id, Instant::now()))
        }
    };

    // Phase 1: bursts of `actions` queued at once, one burst at a time, with the
    // commit latency of an unrelated write sampled alongside.
    let mut dispatch = Vec::new();
    let mut commit = Vec::new();
    for _ in 0..bursts {
        let before = sim.done.load(Ordering::SeqCst);
        let (exec, t0) = start(&mut op).await?;
        let probe = tokio::spawn({
            let mut access = access.clone();
            async move {
                let mut lat = Vec::new();
                for _ in 0..20 {
                    let t = Instant::now();
                    access
                        .grant_role(pb::RoleRequest {
                            subject: "probe".into(),
                            role: pb::Role::Viewer.into(),
                        })
                        .await?;
                    lat.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok::<_, anyhow::Error>(lat)
            }
        });
        while sim.done.load(Ordering::SeqCst) < before + actions as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let receipts = sim
            .receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        dispatch.extend(
            receipts
                .iter()
                .filter(|(e, _)| *e == exec)
                .map(|(_, t)| t.saturating_duration_since(t0)),
        );
        commit.extend(probe.await??);
    }

    // Phase 2: throughput with many executions queued at once.
    sim.receipts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let before = sim.done.load(Ordering::SeqCst);
    let total = (load_execs * actions) as u64;
    let t = Instant::now();
    let (cpu2, _) = usage(pid);
    for _ in 0..load_execs {
        start(&mut op).await?;
    }
    while sim.done.load(Ordering::SeqCst) < before + total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = t.elapsed();
    let (cpu3, rss_load) = usage(pid);
    let per_sec = total as f64 / elapsed.as_secs_f64();

    let [_, d50, d99, dmax] = summary(dispatch);
    let [_, c50, c99, _] = summary(commit);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(format!(
        "| scale: 3 members on loopback, {agents} simulated agents (mTLS, 5 s heartbeats) | value |\n| --- | --- |\n\
         | agents enrolled (CSR + join token) and connected in | {:.1} s |\n\
         | leader RSS, all agents connected, idle | {:.0} MiB |\n\
         | leader CPU, all agents connected, idle (cores) | {idle_cores:.2} |\n\
         | dispatch latency, queued → agent received ({bursts} bursts of {actions}) p50 / p99 / max | {} / {} / {} |\n\
         | commit latency of a write in the same run (baseline) p50 / p99 | {} / {} |\n\
         | actions completed per second ({load_execs} executions × {actions} actions = {total}) | {per_sec:.0} |\n\
         | leader CPU during that load (cores) / RSS after | {:.2} / {:.0} MiB |\n",
        connect_time.as_secs_f64(),
        mib(rss_idle),
        ms(d50),
        ms(d99),
        ms(dmax),
        ms(c50),
        ms(c99),
        (cpu3 - cpu2) / elapsed.as_secs_f64(),
        mib(rss_load),
    ))
}

/// A large blob from one real agent's peer server to a fetch by the agent
/// library (mTLS, sha256 verified while written), beside a plain TCP copy of
/// the same bytes on loopback written to a file.
/// Sends `src` over a plain loopback TCP socket into `out` (synced); the time taken.
fn tcp_copy(src: &std::path::Path, out: &std::path::Path) -> anyhow::Result<Duration> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let src = src.to_path_buf();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut f = std::fs::File::open(src)?;
        std::io::copy(&mut f, &mut s)?;
        Ok(())
    });
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let mut f = std::fs::File::create(out)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n])?;
    }
    f.sync_all()?;
    let took = t.elapsed();
    let _ = server.join();
    Ok(took)
}

pub async fn artifact(mib: u64, rounds: usize) -> anyhow::Result<String> {
    let mut c = Cluster::start("bart");
    let holder = c.add_agent("holder", &[]);
    let agent_dir = c.path().join("agent-holder");
    // Put a blob straight into the holder's store.
    let store = ferry_engine::store::Store::open(agent_dir.join("artifacts"))?;
    let mut w = store.writer()?;
    let mut block = vec![0u8; 1024 * 1024];
    for i in 0..mib {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
        }
        w.write_all(&block)?;
    }
    let blob = w.commit(None)?;
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&list)?;
    let addr = v
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == holder.as_str()))
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| anyhow::anyhow!("holder address unknown"))?
        .to_string();
    // A second agent identity for the fetching side.
    let token = c.token("10m", 1);
    let (ok, log, state) = c.enroll("fetcher", &token);
    anyhow::ensure!(ok, "enroll: {log}");
    let id = pair(&state, "agent")?;
    let ca = ferry_certs::read_pem(&c.tls.join("ca.pem"))?;
    let src = store
        .path(&blob.digest)
        .ok_or_else(|| anyhow::anyhow!("blob missing"))?;
    // Alternate the two, flushing dirty pages before each, and take medians:
    // both end with an fsync, so leftover writeback would skew whichever runs second.
    let (mut ferry_times, mut tcp_times) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dest_dir = c.path().join(format!("fetched-{round}"));
        let _ = Command::new("sync").status();
        let dest = ferry_engine::store::Store::open(dest_dir.clone())?;
        let t = Instant::now();
        ferry_agent::peer::fetch(&dest, &ca, &id, std::slice::from_ref(&addr), &blob.digest)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        ferry_times.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dest_dir);

        let _ = Command::new("sync").status();
        let out = c.path().join(format!("tcp-copy-{round}"));
        tcp_times.push(tcp_copy(&src, &out)?);
        let _ = std::fs::remove_file(&out);
    }
    let [_, ferry_time, _, _] = summary(ferry_times);
    let [_, tcp_time, _, _] = summary(tcp_times);
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    Ok(format!(
        "| {mib} MiB artifact, agent to agent on loopback | time | MiB/s |\n| --- | --- | --- |\n\
         | plain TCP copy into a file (baseline) | {} | {:.0} |\n\
         | Ferry peer fetch (mTLS gRPC, sha256 verified, synced) | {} | {:.0} |\n\n\
         Ferry reaches {:.0} % of the plain copy (medians of {rounds} alternating rounds).\n",
        ms(tcp_time),
        rate(tcp_time),
        ms(ferry_time),
        rate(ferry_time),
        100.0 * tcp_time.as_secs_f64() / ferry_time.as_secs_f64()
    ))
}
