//! The agent's side of the session: keep one stream open to whichever
//! coordinator leads, register, heartbeat, accept assignments, cancels and
//! replication requests, and deliver live log lines and results. Attempts keep
//! running while no coordinator is reachable; results wait in the durable
//! outbox until acknowledged, and live log lines are replayed by offset after
//! every reconnect. Running an attempt is `attempt.rs`'s job, stopping the
//! agent `shutdown.rs`'s; this module only speaks the protocol and keeps the
//! books (running attempts, unacknowledged results).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use ferry_proto as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::attempt::Attempts;
use crate::attempt_log::{Live, tail_of};
use crate::identity::AgentIdentity;
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;
use ferry_engine::executor::Executor;
use ferry_engine::runner::{Cancel, CancelHandle};
use ferry_engine::store::Store;

pub struct AgentConfig {
    pub coordinators: Vec<String>,
    pub state_dir: PathBuf,
    /// The labels it was started with (`--labels`): sent at registration
    /// only to be compared; the cluster's bound labels are what count.
    pub labels: Vec<String>,
    pub capacity: u32,
    /// host:port other agents fetch artifacts from.
    pub address: String,
    /// The revocation list the peer server checks; kept current from the session.
    pub revoked: crate::peer::Revoked,
}

enum Event {
    /// Log bytes of an attempt starting at this offset of its log.
    Log(pb::internal::AttemptRef, u64, Vec<u8>),
    Result(Box<pb::internal::AttemptResult>),
    Held(String, u64),
    /// Cache blobs this agent deleted (its limits, or the cluster said so).
    CachesDropped(Vec<String>),
    /// An attempt began here: the leader may cancel it from now on.
    Started(pb::internal::AttemptRef),
}

struct Running {
    attempt: pb::internal::AttemptRef,
    cancel: CancelHandle,
    log_path: PathBuf,
}

pub struct Agent {
    cfg: AgentConfig,
    id: Arc<AgentIdentity>,
    attempts: Attempts,
    store: Store,
    running: Mutex<HashMap<u64, Running>>,
    /// Results not yet acknowledged, by epoch (mirrored in the outbox).
    unacked: Mutex<BTreeMap<u64, pb::internal::AttemptResult>>,
    outbox: Outbox,
    events: mpsc::UnboundedSender<Event>,
    draining: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn agent_msg(kind: pb::internal::agent_message::Kind) -> pb::internal::AgentMessage {
    pb::internal::AgentMessage { kind: Some(kind) }
}

impl Agent {
    /// Runs sessions until `shutdown` asks to stop (see [`crate::shutdown`]):
    /// `Drain` finishes running attempts and delivers their results first;
    /// `Cancel` cancels them without reporting, so they are re-run elsewhere.
    pub async fn run(
        cfg: AgentConfig,
        id: AgentIdentity,
        executor: Executor,
        store: Store,
        mut shutdown: watch::Receiver<Shutdown>,
    ) -> anyhow::Result<()> {
        let id = Arc::new(id);
        let attempts = Attempts::new(&cfg.state_dir, id.clone(), executor, store.clone())
            .context("creating the logs dir")?;
        let outbox = Outbox::open(cfg.state_dir.join("outbox")).context("opening the outbox")?;
        let unacked: BTreeMap<u64, pb::internal::AttemptResult> = outbox
            .load()
            .into_iter()
            .map(|r| (r.attempt.as_ref().map_or(0, |a| a.epoch), r))
            .collect();
        if !unacked.is_empty() {
            tracing::info!(
                results = unacked.len(),
                "results from before a restart wait for delivery"
            );
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        let agent = Arc::new(Agent {
            cfg,
            id,
            attempts,
            store,
            running: Mutex::default(),
            unacked: Mutex::new(unacked),
            outbox,
            events,
            draining: AtomicBool::new(false),
        });
        let sessions = tokio::spawn(agent.clone().sessions(events_rx));
        crate::shutdown::stop(&*agent, &mut shutdown).await;
        sessions.abort();
        Ok(())
    }

    /// Keeps a session open, reconnecting with short backoff.
    async fn sessions(self: Arc<Self>, mut events_rx: mpsc::UnboundedReceiver<Event>) {
        const FIRST_RETRY: Duration = Duration::from_millis(100);
        let mut backoff = FIRST_RETRY;
        loop {
            let began = std::time::Instant::now();
            let r = self.clone().session(&mut events_rx).await;
            // A session that lasted means the next failure is a fresh one
            // (e.g. a leader change): retry quickly again.
            if began.elapsed() > Duration::from_secs(5) {
                backoff = FIRST_RETRY;
            }
            match r {
                Ok(()) => tracing::info!("session closed by the coordinator; reconnecting"),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "no session; retrying in {backoff:?}"
                ),
            }
            tokio::time::sleep(backoff).await;
            // Short steps: after a leader loss a new one is usually elected within a second.
            backoff = (backoff * 3 / 2).min(Duration::from_secs(1));
        }
    }

    /// Opens a session with the first coordinator that accepts one (the
    /// leader; followers refuse sessions).
    async fn open(
        &self,
    ) -> anyhow::Result<(
        mpsc::Sender<pb::internal::AgentMessage>,
        tonic::Streaming<pb::internal::CoordinatorMessage>,
    )> {
        let mut errors = Vec::new();
        for addr in &self.cfg.coordinators {
            match self.open_one(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => errors.push(format!("{addr}: {e:#}")),
            }
        }
        anyhow::bail!("no coordinator accepted a session: {}", errors.join("; "))
    }

    async fn open_one(
        &self,
        addr: &str,
    ) -> anyhow::Result<(
        mpsc::Sender<pb::internal::AgentMessage>,
        tonic::Streaming<pb::internal::CoordinatorMessage>,
    )> {
        let channel = ferry_certs::tls::endpoint(
            addr,
            &self.id.ca_pem,
            Some(&self.id.key.current()),
            ferry_certs::tls::Expected::Coordinator,
        )
        .with_context(|| format!("coordinator address {addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(4))
        .connect()
        .await?;
        let mut client = pb::internal::agent_session_client::AgentSessionClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::internal::AgentMessage>(1024);
        let running: Vec<pb::internal::AttemptRef> = lock(&self.running)
            .values()
            .map(|r| r.attempt.clone())
            .collect();
        tx.send(agent_msg(pb::internal::agent_message::Kind::Register(
            pb::internal::Register {
                labels: self.cfg.labels.clone(),
                capacity: self.cfg.capacity,
                version: env!("CARGO_PKG_VERSION").into(),
                address: self.cfg.address.clone(),
                running,
            },
        )))
        .await?;
        let inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))
            .context("opening the session")?
            .into_inner();
        Ok((tx, inbound))
    }

    async fn session(
        self: Arc<Self>,
        events: &mut mpsc::UnboundedReceiver<Event>,
    ) -> anyhow::Result<()> {
        let (tx, mut inbound) = self.open().await?;
        let mut heartbeat_every = Duration::from_secs(5);
        // Results that waited for this session go first, then the live logs of
        // running attempts (the coordinator skips bytes it already has).
        let unacked: Vec<pb::internal::AttemptResult> =
            lock(&self.unacked).values().cloned().collect();
        for r in unacked {
            tx.send(agent_msg(pb::internal::agent_message::Kind::Result(r)))
                .await?;
        }
        let replays: Vec<(pb::internal::AttemptRef, PathBuf)> = lock(&self.running)
            .values()
            .map(|r| (r.attempt.clone(), r.log_path.clone()))
            .collect();
        for (attempt, path) in replays {
            if let Some((offset, data)) = tail_of(&path) {
                let lines = pb::internal::LogLines {
                    attempt: Some(attempt),
                    data,
                    offset,
                };
                tx.send(agent_msg(pb::internal::agent_message::Kind::Log(lines)))
                    .await?;
            }
        }
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let Some(msg) = msg.map_err(|s| anyhow::anyhow!("{}", s.message()))? else { return Ok(()) };
                    match msg.kind {
                        Some(pb::internal::coordinator_message::Kind::Registered(r)) => {
                            tracing::info!(agent = %r.agent, labels = ?r.labels, "registered with the coordinator");
                            if !r.warning.is_empty() {
                                tracing::warn!("{}", r.warning);
                            }
                            if r.heartbeat_seconds > 0 {
                                heartbeat_every = Duration::from_secs(r.heartbeat_seconds.into());
                                heartbeat = tokio::time::interval(heartbeat_every);
                            }
                        }
                        Some(pb::internal::coordinator_message::Kind::Assign(a)) => self.clone().start(a),
                        Some(pb::internal::coordinator_message::Kind::Cancel(c)) => {
                            let epoch = c.attempt.as_ref().map_or(0, |a| a.epoch);
                            if let Some(r) = lock(&self.running).get(&epoch) {
                                tracing::info!(epoch, reason = %c.reason, stop = c.stop, "cancelling attempt");
                                if c.stop {
                                    r.cancel.stop(&c.reason);
                                } else {
                                    r.cancel.cancel(&c.reason);
                                }
                            }
                        }
                        Some(pb::internal::coordinator_message::Kind::Ack(ack)) => {
                            let epoch = ack.attempt.as_ref().map_or(0, |a| a.epoch);
                            if !ack.accepted {
                                tracing::warn!(epoch, reason = %ack.reason, "coordinator refused a result");
                            }
                            lock(&self.unacked).remove(&epoch);
                            self.outbox.remove(epoch);
                        }
                        Some(pb::internal::coordinator_message::Kind::Replicate(r)) => self.clone().replicate(r),
                        Some(pb::internal::coordinator_message::Kind::Revocations(r)) => {
                            let n = r.fingerprints.len();
                            *self.cfg.revoked.write().unwrap_or_else(|p| p.into_inner()) =
                                r.fingerprints.into_iter().collect();
                            tracing::debug!(revoked = n, "revocation list updated");
                        }
                        Some(pb::internal::coordinator_message::Kind::Forget(f)) => {
                            let n = f.digests.iter().filter(|d| self.store.remove(d)).count();
                            tracing::info!(removed = n, "retention: deleted blobs no execution keeps");
                        },
                        Some(pb::internal::coordinator_message::Kind::ForgetCaches(f)) => {
                            let gone = self.attempts.drop_caches(&f.digests);
                            tracing::info!(removed = f.digests.len(), "deleted cache entries the cluster removed");
                            self.caches_dropped(gone);
                        },
                        None => {}
                    }
                }
                Some(ev) = events.recv() => {
                    let msg = match ev {
                        Event::Log(attempt, offset, data) => {
                            pb::internal::agent_message::Kind::Log(pb::internal::LogLines { attempt: Some(attempt), data, offset })
                        }
                        Event::Result(r) => pb::internal::agent_message::Kind::Result(*r),
                        Event::Held(digest, size) => pb::internal::agent_message::Kind::Held(pb::internal::Held { digest, size }),
                        Event::CachesDropped(digests) => pb::internal::agent_message::Kind::CachesDropped(pb::internal::CachesDropped { digests }),
                        Event::Started(attempt) => pb::internal::agent_message::Kind::Started(pb::internal::AttemptStarted { attempt: Some(attempt) }),
                    };
                    tx.send(agent_msg(msg)).await?;
                }
                _ = heartbeat.tick() => {
                    let running_epochs: Vec<u64> = lock(&self.running).keys().copied().collect();
                    let running = running_epochs.len() as u32;
                    let shutting_down = self.draining.load(Ordering::SeqCst);
                    let hb = pb::internal::Heartbeat { running, shutting_down, running_epochs };
                    tx.send(agent_msg(pb::internal::agent_message::Kind::Heartbeat(hb))).await?;
                }
            }
        }
    }

    fn start(self: Arc<Self>, a: pb::internal::Assignment) {
        let Some(attempt) = a.attempt.clone() else {
            return;
        };
        let epoch = attempt.epoch;
        if lock(&self.unacked).contains_key(&epoch) {
            return; // finished already; the result is on its way
        }
        let (cancel, cancel_rx) = Cancel::new();
        {
            let mut running = lock(&self.running);
            if running.contains_key(&epoch) {
                return;
            }
            let log_path = self.attempts.log_path(epoch);
            running.insert(
                epoch,
                Running {
                    attempt: attempt.clone(),
                    cancel,
                    log_path,
                },
            );
        }
        crate::metrics::action_started();
        let _ = self.events.send(Event::Started(attempt.clone()));
        tracing::info!(attempt = %attempt.attempt_id, epoch, image = %a.image, "attempt started");
        tokio::spawn(async move {
            let events = self.events.clone();
            let live_attempt = attempt.clone();
            let live: Live = Box::new(move |offset, data| {
                let _ = events.send(Event::Log(live_attempt.clone(), offset, data));
            });
            let result = self.attempts.run(&a, cancel_rx, live).await;
            lock(&self.running).remove(&epoch);
            crate::metrics::action_ended();
            if let Some(result) = result {
                tracing::info!(attempt = %attempt.attempt_id, success = result.success, message = %result.message, "attempt finished");
                // Durable before it is sent; kept until acknowledged.
                if let Err(e) = self.outbox.put(&result) {
                    tracing::error!(epoch, error = %e, "could not write the result to the outbox");
                }
                lock(&self.unacked).insert(epoch, result.clone());
                let _ = self.events.send(Event::Result(Box::new(result)));
            }
            // After the result, which may name an entry just saved: the
            // coordinators record it before they hear it was evicted.
            let evicted = self.attempts.drop_caches(&[]);
            if !evicted.is_empty() {
                tracing::info!(
                    evicted = evicted.len(),
                    "cache entries over this agent's limit deleted"
                );
            }
            self.caches_dropped(evicted);
        });
    }
}

impl crate::shutdown::Work for Agent {
    fn running(&self) -> usize {
        lock(&self.running).len()
    }

    fn unacknowledged(&self) -> usize {
        lock(&self.unacked).len()
    }

    fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    fn cancel_all(&self, reason: &str) {
        for r in lock(&self.running).values() {
            r.cancel.cancel(reason);
        }
    }
}

impl Agent {
    /// Tells the coordinators these cache blobs are gone, a bounded batch
    /// at a time.
    fn caches_dropped(&self, digests: Vec<String>) {
        for batch in digests.chunks(1_000) {
            let _ = self.events.send(Event::CachesDropped(batch.to_vec()));
        }
    }

    /// Pulls a copy of a blob from its holders and reports it held.
    fn replicate(self: Arc<Self>, r: pb::internal::Replicate) {
        tokio::spawn(async move {
            match crate::peer::fetch(
                &self.store,
                &self.id.ca_pem,
                &self.id.key.current(),
                &r.holders,
                &r.digest,
            )
            .await
            {
                Ok(blob) => {
                    tracing::info!(digest = %r.digest, "replica stored");
                    let _ = self.events.send(Event::Held(blob.digest, blob.size));
                }
                Err(e) => tracing::warn!(digest = %r.digest, error = %e, "replication failed"),
            }
        });
    }
}
