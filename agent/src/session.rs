//! The agent's side of the session: keep one stream open to whichever
//! coordinator leads, register, heartbeat, accept assignments, cancels and
//! replication requests, and deliver live log lines and results. Attempts keep
//! running while no coordinator is reachable; results wait in the durable
//! outbox until acknowledged, and live log lines are replayed by offset after
//! every reconnect.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use ferry_proto as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::executor::{Executor, LogSink, PreparedInput};
use crate::identity::AgentIdentity;
use crate::outbox::Outbox;
use crate::shutdown::{SHUTDOWN_REASON, Shutdown};
use crate::source::Sources;
use crate::store::Store;

pub struct AgentConfig {
    pub coordinators: Vec<String>,
    pub state_dir: PathBuf,
    pub labels: Vec<String>,
    pub capacity: u32,
    /// host:port other agents fetch artifacts from.
    pub address: String,
    /// The revocation list the peer server checks; kept current from the session.
    pub revoked: crate::peer::Revoked,
}

enum Event {
    /// Log bytes of an attempt starting at this offset of its log.
    Log(pb::AttemptRef, u64, Vec<u8>),
    Result(Box<pb::AttemptResult>),
    Held(String, u64),
}

struct Running {
    attempt: pb::AttemptRef,
    cancel: watch::Sender<Option<String>>,
    log_path: PathBuf,
}

/// Most of a running attempt's log replayed to a coordinator after a reconnect.
const REPLAY_LIMIT: u64 = 4 * 1024 * 1024;

pub struct Agent {
    cfg: AgentConfig,
    id: AgentIdentity,
    executor: Executor,
    sources: Sources,
    store: Store,
    running: Mutex<HashMap<u64, Running>>,
    /// Results not yet acknowledged, by epoch (mirrored in the outbox).
    unacked: Mutex<BTreeMap<u64, pb::AttemptResult>>,
    outbox: Outbox,
    events: mpsc::UnboundedSender<Event>,
    draining: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn agent_msg(kind: pb::agent_message::Kind) -> pb::AgentMessage {
    pb::AgentMessage { kind: Some(kind) }
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
        let sources = Sources::new(cfg.state_dir.join("git"), store.clone());
        std::fs::create_dir_all(cfg.state_dir.join("logs")).context("creating the logs dir")?;
        let outbox = Outbox::open(cfg.state_dir.join("outbox")).context("opening the outbox")?;
        let unacked: BTreeMap<u64, pb::AttemptResult> = outbox
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
            executor,
            sources,
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
        mpsc::Sender<pb::AgentMessage>,
        tonic::Streaming<pb::CoordinatorMessage>,
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
        mpsc::Sender<pb::AgentMessage>,
        tonic::Streaming<pb::CoordinatorMessage>,
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
        let mut client = pb::agent_session_client::AgentSessionClient::new(channel);
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
        let running: Vec<pb::AttemptRef> = lock(&self.running)
            .values()
            .map(|r| r.attempt.clone())
            .collect();
        tx.send(agent_msg(pb::agent_message::Kind::Register(pb::Register {
            labels: self.cfg.labels.clone(),
            capacity: self.cfg.capacity,
            version: env!("CARGO_PKG_VERSION").into(),
            address: self.cfg.address.clone(),
            running,
        })))
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
        let unacked: Vec<pb::AttemptResult> = lock(&self.unacked).values().cloned().collect();
        for r in unacked {
            tx.send(agent_msg(pb::agent_message::Kind::Result(r)))
                .await?;
        }
        let replays: Vec<(pb::AttemptRef, PathBuf)> = lock(&self.running)
            .values()
            .map(|r| (r.attempt.clone(), r.log_path.clone()))
            .collect();
        for (attempt, path) in replays {
            if let Some((offset, data)) = tail_of(&path) {
                let lines = pb::LogLines {
                    attempt: Some(attempt),
                    data,
                    offset,
                };
                tx.send(agent_msg(pb::agent_message::Kind::Log(lines)))
                    .await?;
            }
        }
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let Some(msg) = msg.map_err(|s| anyhow::anyhow!("{}", s.message()))? else { return Ok(()) };
                    match msg.kind {
                        Some(pb::coordinator_message::Kind::Registered(r)) => {
                            tracing::info!(agent = %r.agent, "registered with the coordinator");
                            if r.heartbeat_seconds > 0 {
                                heartbeat_every = Duration::from_secs(r.heartbeat_seconds.into());
                                heartbeat = tokio::time::interval(heartbeat_every);
                            }
                        }
                        Some(pb::coordinator_message::Kind::Assign(a)) => self.clone().start(a),
                        Some(pb::coordinator_message::Kind::Cancel(c)) => {
                            let epoch = c.attempt.as_ref().map_or(0, |a| a.epoch);
                            if let Some(r) = lock(&self.running).get(&epoch) {
                                tracing::info!(epoch, reason = %c.reason, "cancelling attempt");
                                let _ = r.cancel.send(Some(c.reason.clone()));
                            }
                        }
                        Some(pb::coordinator_message::Kind::Ack(ack)) => {
                            let epoch = ack.attempt.as_ref().map_or(0, |a| a.epoch);
                            if !ack.accepted {
                                tracing::warn!(epoch, reason = %ack.reason, "coordinator refused a result");
                            }
                            lock(&self.unacked).remove(&epoch);
                            self.outbox.remove(epoch);
                        }
                        Some(pb::coordinator_message::Kind::Replicate(r)) => self.clone().replicate(r),
                        Some(pb::coordinator_message::Kind::Revocations(r)) => {
                            let n = r.fingerprints.len();
                            *self.cfg.revoked.write().unwrap_or_else(|p| p.into_inner()) =
                                r.fingerprints.into_iter().collect();
                            tracing::debug!(revoked = n, "revocation list updated");
                        }
                        Some(pb::coordinator_message::Kind::Forget(f)) => {
                            let n = f.digests.iter().filter(|d| self.store.remove(d)).count();
                            tracing::info!(removed = n, "retention: deleted blobs no execution keeps");
                        },
                        None => {}
                    }
                }
                Some(ev) = events.recv() => {
                    let msg = match ev {
                        Event::Log(attempt, offset, data) => {
                            pb::agent_message::Kind::Log(pb::LogLines { attempt: Some(attempt), data, offset })
                        }
                        Event::Result(r) => pb::agent_message::Kind::Result(*r),
                        Event::Held(digest, size) => pb::agent_message::Kind::Held(pb::Held { digest, size }),
                    };
                    tx.send(agent_msg(msg)).await?;
                }
                _ = heartbeat.tick() => {
                    let running = lock(&self.running).len() as u32;
                    let shutting_down = self.draining.load(Ordering::SeqCst);
                    let hb = pb::Heartbeat { running, shutting_down };
                    tx.send(agent_msg(pb::agent_message::Kind::Heartbeat(hb))).await?;
                }
            }
        }
    }

    fn start(self: Arc<Self>, a: pb::Assignment) {
        let Some(attempt) = a.attempt.clone() else {
            return;
        };
        let epoch = attempt.epoch;
        if lock(&self.unacked).contains_key(&epoch) {
            return; // finished already; the result is on its way
        }
        let (cancel, cancel_rx) = watch::channel(None);
        {
            let mut running = lock(&self.running);
            if running.contains_key(&epoch) {
                return;
            }
            let log_path = self.cfg.state_dir.join("logs").join(format!("{epoch}.log"));
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
        tracing::info!(attempt = %attempt.attempt_id, epoch, image = %a.image, "attempt started");
        tokio::spawn(async move {
            let result = self.execute(&a, cancel_rx).await;
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
        });
    }

    /// Runs one attempt; None when it was cancelled by shutdown (not to be reported).
    async fn execute(
        &self,
        a: &pb::Assignment,
        cancel: watch::Receiver<Option<String>>,
    ) -> Option<pb::AttemptResult> {
        let (opened, unseal_problem) = match crate::unseal::open(a, self.id.secrets.as_ref()) {
            Ok(opened) => (opened, None),
            Err(problem) => (a.clone(), Some(problem)),
        };
        let a = &opened;
        let attempt = a.attempt.clone().unwrap_or_default();
        let log_path = self
            .cfg
            .state_dir
            .join("logs")
            .join(format!("{}.log", attempt.epoch));
        let mut log = AttemptLog {
            file: std::fs::File::create(&log_path).ok(),
            attempt: attempt.clone(),
            events: self.events.clone(),
            offset: 0,
            masker: crate::mask::Masker::new(a.secret_env.values().cloned()),
        };
        let mut deployment = None;
        let outcome = if let Some(problem) = unseal_problem {
            Err(crate::executor::ActionError::Input(problem))
        } else if let Some(name) = a.missing_secrets.first() {
            Err(crate::executor::ActionError::Input(format!(
                "secret `{name}` is not set, or could not be sealed to this agent (the coordinator's \
                 log says which); an admin can set it with `ferry secret set {name}`"
            )))
        } else {
            match self.prepare_inputs(a, &mut log).await {
                Ok(inputs) => match &a.deploy {
                    Some(spec) => {
                        let (outcome, report) = self.deploy(a, spec, &inputs, &mut log).await;
                        deployment = report;
                        outcome
                    }
                    None => {
                        self.executor
                            .run(a, &inputs, &mut log, cancel.clone())
                            .await
                    }
                },
                Err(e) => Err(crate::executor::ActionError::Input(e)),
            }
        };
        if let Err(crate::executor::ActionError::Cancelled(reason)) = &outcome
            && reason == SHUTDOWN_REASON
        {
            return None;
        }
        let (success, exit_code, message, outputs) = match outcome {
            Ok(o) => (
                true,
                0,
                String::new(),
                o.outputs
                    .into_iter()
                    .map(|(name, b)| pb::OutputArtifact {
                        name,
                        digest: b.digest,
                        size: b.size,
                    })
                    .collect(),
            ),
            Err(e) => {
                log.write(format!("[ferry] {e}\n").as_bytes());
                let message = String::from_utf8_lossy(&log.masker.mask(e.to_string().as_bytes()))
                    .into_owned();
                (false, e.exit_code(), message, Vec::new())
            }
        };
        log.flush();
        drop(log.file.take());
        let (log_digest, log_size) =
            match std::fs::File::open(&log_path).map(|f| self.store.put_reader(f)) {
                Ok(Ok(b)) => {
                    let _ = std::fs::remove_file(&log_path);
                    (b.digest, b.size)
                }
                _ => (String::new(), 0),
            };
        Some(pb::AttemptResult {
            attempt: Some(attempt),
            success,
            exit_code,
            message,
            outputs,
            log_digest,
            log_size,
            deployment,
        })
    }

    /// Runs a deploy action: its one input is the artifact to roll out.
    async fn deploy(
        &self,
        a: &pb::Assignment,
        spec: &pb::DeploySpec,
        inputs: &[PreparedInput],
        log: &mut AttemptLog,
    ) -> (
        Result<crate::executor::Outcome, crate::executor::ActionError>,
        Option<pb::DeploymentReport>,
    ) {
        use crate::executor::{ActionError, Outcome};
        if !spec.problem.is_empty() {
            return (Err(ActionError::Input(spec.problem.clone())), None);
        }
        let Some((input, path)) = inputs
            .first()
            .and_then(|i| self.store.path(&i.digest).map(|p| (i, p)))
        else {
            return (
                Err(ActionError::Input(
                    "the artifact to deploy is not on this agent".into(),
                )),
                None,
            );
        };
        let revision = match crate::deploy::read_revision_spec(&path) {
            Ok(r) => r,
            Err(e) => return (Err(ActionError::Input(e)), None),
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // The same FERRY_* variables build and test commands get, then the
        // action's env and secrets.
        let ferry_vars = [
            ("FERRY_PIPELINE", &a.pipeline),
            ("FERRY_EXECUTION_ID", &a.execution_id),
            ("FERRY_REVISION", &a.revision),
            ("FERRY_STAGE", &a.stage),
            ("FERRY_ACTION", &a.action),
        ];
        let env = ferry_vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone().into_bytes()))
            .chain(
                a.env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            )
            .chain(a.secret_env.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        let masker = crate::mask::Masker::new(a.secret_env.values().cloned());
        let plan = crate::deploy::Plan {
            spec,
            revision: &revision,
            artifact: &path,
            artifact_size: size,
            digest: &input.digest,
            env,
            masker: &masker,
            timeout: std::time::Duration::from_secs(a.timeout_seconds.max(1)),
        };
        let finished = crate::deploy::run(plan, log).await;
        let outcome = if finished.success {
            Ok(Outcome {
                outputs: Vec::new(),
            })
        } else {
            Err(ActionError::Deploy(finished.summary))
        };
        (outcome, Some(finished.report))
    }

    async fn prepare_inputs(
        &self,
        a: &pb::Assignment,
        log: &mut AttemptLog,
    ) -> Result<Vec<PreparedInput>, String> {
        let mut out = Vec::new();
        for input in &a.inputs {
            let blob = if input.digest.is_empty() {
                log.write(format!("[ferry] source {} at {}\n", a.git_url, a.revision).as_bytes());
                self.sources.archive(&a.git_url, &a.revision).await?
            } else {
                log.write(format!("[ferry] input {} = {}\n", input.name, input.digest).as_bytes());
                crate::peer::fetch(
                    &self.store,
                    &self.id.ca_pem,
                    &self.id.key.current(),
                    &input.holders,
                    &input.digest,
                )
                .await?
            };
            out.push(PreparedInput {
                name: input.name.clone(),
                digest: blob.digest,
            });
        }
        Ok(out)
    }
}

/// Writes an attempt's output to its log file and to the live stream.
struct AttemptLog {
    file: Option<std::fs::File>,
    attempt: pb::AttemptRef,
    events: mpsc::UnboundedSender<Event>,
    /// Bytes written so far: the offset of the next chunk.
    offset: u64,
    /// Replaces the values of the attempt's secrets with `***`.
    masker: crate::mask::Masker,
}

impl LogSink for AttemptLog {
    fn write(&mut self, bytes: &[u8]) {
        let masked = self.masker.push(bytes);
        self.emit(masked);
    }
}

impl AttemptLog {
    fn emit(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(&bytes);
        }
        let len = bytes.len() as u64;
        let _ = self
            .events
            .send(Event::Log(self.attempt.clone(), self.offset, bytes));
        self.offset += len;
    }

    /// Writes out a partial last line held back by the masker.
    fn flush(&mut self) {
        let rest = self.masker.finish();
        self.emit(rest);
    }
}

/// The last `REPLAY_LIMIT` bytes of a log file and their offset.
fn tail_of(path: &std::path::Path) -> Option<(u64, Vec<u8>)> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(REPLAY_LIMIT);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).ok()?;
    (!data.is_empty()).then_some((start, data))
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
            let _ = r.cancel.send(Some(reason.to_string()));
        }
    }
}

impl Agent {
    /// Pulls a copy of a blob from its holders and reports it held.
    fn replicate(self: Arc<Self>, r: pb::Replicate) {
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
