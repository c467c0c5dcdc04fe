//! The agent session: one bidirectional stream per connected agent. It
//! registers the agent, re-sends work the agent should be running, forwards
//! live log lines to the log hub, and turns results into Raft commands —
//! refusing any from an attempt whose fencing epoch is no longer current.
//! Every message is bounded first (`bounds.rs`); one that breaks a bound
//! closes the session with the reason. A registration never changes the
//! agent's labels: the agent is told the ones it is bound to, and warned
//! when it asked for others.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Instant;

use ferry_pipeline::execution::ArtifactRef;
use ferry_proto as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{bounds, caller};
use crate::hub::Session;
use crate::ops::Ops;
use crate::ops::agents::{AttemptResult, Registration};
use crate::scheduler;

pub struct SessionService(pub Ops);

type Outbound =
    Pin<Box<dyn Stream<Item = Result<pb::internal::CoordinatorMessage, Status>> + Send>>;

fn msg(kind: pb::internal::coordinator_message::Kind) -> pb::internal::CoordinatorMessage {
    pb::internal::CoordinatorMessage { kind: Some(kind) }
}

#[tonic::async_trait]
impl pb::internal::agent_session_server::AgentSession for SessionService {
    type SessionStream = Outbound;

    async fn session(
        &self,
        req: Request<Streaming<pb::internal::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let name = caller(&req)?.name;
        let fingerprint = req
            .extensions()
            .get::<crate::authz::CallerCert>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        let cert_hosts = req
            .peer_certs()
            .and_then(|certs| certs.first().cloned())
            .and_then(|leaf| ferry_certs::CertFacts::from_der(leaf.as_ref()).ok())
            .map(|facts| facts.hosts)
            .unwrap_or_default();
        let mut inbound = req.into_inner();
        let register = match inbound.message().await? {
            Some(pb::internal::AgentMessage {
                kind: Some(pb::internal::agent_message::Kind::Register(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Register",
                ));
            }
        };
        bounds::check_register(&register, &cert_hosts).map_err(|e| {
            tracing::warn!(agent = %name, error = %e, "registration refused");
            Status::invalid_argument(format!("registration refused: {e}"))
        })?;
        let status = self.0.raft_status();
        if !status.is_leader {
            let leader = status.leader_id;
            return Err(Status::unavailable(format!(
                "not the leader; the leader is member {leader}"
            )));
        }
        let labels = self
            .0
            .register_agent(
                &name,
                Registration {
                    capacity: register.capacity,
                    version: register.version.clone(),
                    address: register.address.clone(),
                },
            )
            .await?;
        let warning = label_warning(&name, &register.labels, &labels);
        if !warning.is_empty() {
            tracing::warn!(agent = %name, asked = ?register.labels, bound = ?labels, "agent asked for other labels than it is bound to; keeping the bound ones");
        }
        let (tx, rx) = mpsc::channel(256);
        let session_id: u64 = rand::random();
        tx.send(Ok(msg(
            pb::internal::coordinator_message::Kind::Registered(pb::internal::Registered {
                agent: name.clone(),
                heartbeat_seconds: self.0.ctx().heartbeat_seconds,
                labels: labels.clone(),
                warning,
            }),
        )))
        .await
        .map_err(|_| Status::cancelled("agent went away"))?;
        let mut revocations_sent = send_revocations(&self.0, &tx, None).await;
        reconcile(&self.0, &name, &register.running, &tx).await;
        // Epochs the agent says it runs (at registration, when one starts,
        // in every heartbeat): checked against the state whenever it
        // changes, so a stop or a lost lease cancels them at once.
        let mut reported: BTreeSet<u64> = register.running.iter().map(|r| r.epoch).collect();
        cancel_unwanted(&self.0, &name, &mut reported, &tx).await;
        self.0.ctx().agents.connect(
            &name,
            Session {
                id: session_id,
                tx: tx.clone(),
                last_seen: Instant::now(),
                accepting: true,
            },
        );
        tracing::info!(agent = %name, ?labels, capacity = register.capacity, "agent connected");
        let ops = self.0.clone();
        tokio::spawn(async move {
            let mut status = ops.status_watch();
            let mut applied = ops.applied();
            loop {
                let next = tokio::select! {
                    m = inbound.message() => m,
                    // Only while the agent runs something: thousands of idle
                    // sessions must not wake on every commit.
                    _ = applied.changed(), if !reported.is_empty() => {
                        cancel_unwanted(&ops, &name, &mut reported, &tx).await;
                        continue;
                    }
                    _ = status.changed() => {
                        if status.borrow().is_leader {
                            continue;
                        }
                        // Sessions live on the leader: send the agent to the new one.
                        tracing::info!(agent = %name, "leadership moved; closing the session so the agent reconnects");
                        let _ = tx.send(Err(Status::unavailable("this coordinator is no longer the leader; reconnect"))).await;
                        break;
                    }
                };
                match next {
                    Ok(Some(m)) => {
                        if !ops.local_still_admitted(&name, &fingerprint) {
                            tracing::info!(agent = %name, "agent was removed or its certificate revoked; closing its session");
                            break;
                        }
                        revocations_sent =
                            send_revocations(&ops, &tx, Some(revocations_sent)).await;
                        ops.ctx().agents.touch(&name);
                        if let Some(kind) = m.kind {
                            if let Err(e) = bounds::check_message(&kind) {
                                tracing::warn!(agent = %name, error = %e, "message out of bounds; closing the session");
                                let _ = tx
                                    .send(Err(Status::invalid_argument(format!(
                                        "message refused: {e}"
                                    ))))
                                    .await;
                                break;
                            }
                            track(&mut reported, &kind);
                            handle(&ops, &name, kind, &tx).await;
                            cancel_unwanted(&ops, &name, &mut reported, &tx).await;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(agent = %name, error = %e.message(), "agent session broke");
                        break;
                    }
                }
            }
            ops.ctx().agents.disconnect(&name, session_id);
            tracing::info!(agent = %name, "agent disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What to tell an agent that asked for `asked` labels at registration
/// when it is bound to `bound` ("" when they are the same set): it keeps the
/// bound ones, and only an admin changes them.
fn label_warning(agent: &str, asked: &[String], bound: &[String]) -> String {
    let set = |l: &[String]| l.iter().cloned().collect::<BTreeSet<String>>();
    if set(asked) == set(bound) {
        return String::new();
    }
    format!(
        "--labels {} differ from the labels agent `{agent}` is bound to ({}); the cluster keeps \
         the bound ones. Labels are bound at enrollment and changed only by an admin: `ferry \
         agents label {agent} --set ...`",
        if asked.is_empty() {
            "(none)".to_string()
        } else {
            asked.join(",")
        },
        if bound.is_empty() {
            "none".to_string()
        } else {
            bound.join(",")
        }
    )
}

/// Sends the agent the full revocation list unless it already has the list
/// as of `sent` (a revocation counter); returns the counter it now has.
async fn send_revocations(ops: &Ops, tx: &crate::hub::SessionTx, sent: Option<u64>) -> u64 {
    let (serial, fingerprints) = ops.local_revocations(sent);
    let Some(fingerprints) = fingerprints else {
        return serial;
    };
    let m = msg(pb::internal::coordinator_message::Kind::Revocations(
        pb::internal::Revocations { fingerprints },
    ));
    match tx.send(Ok(m)).await {
        Ok(()) => serial,
        Err(_) => sent.unwrap_or_default(),
    }
}

/// After (re)connecting: re-send assignments the agent does not report
/// (what it runs and should not is [`cancel_unwanted`]'s).
async fn reconcile(
    ops: &Ops,
    agent: &str,
    running: &[pb::internal::AttemptRef],
    tx: &crate::hub::SessionTx,
) {
    let reported: BTreeSet<u64> = running.iter().map(|r| r.epoch).collect();
    let current: BTreeSet<u64> = ops.local_running_on(agent).into_iter().collect();
    let missing: Vec<pb::internal::Assignment> = current
        .iter()
        .filter(|e| !reported.contains(e))
        .filter_map(|e| scheduler::assignment_with_secrets(ops, *e))
        .collect();
    for a in missing {
        tracing::info!(%agent, attempt = ?a.attempt, "re-sending assignment after reconnect");
        let _ = tx
            .send(Ok(msg(pb::internal::coordinator_message::Kind::Assign(a))))
            .await;
    }
}

/// Keeps `reported` (the epochs an agent runs) up to date with what it says.
fn track(reported: &mut BTreeSet<u64>, kind: &pb::internal::agent_message::Kind) {
    use pb::internal::agent_message::Kind;
    match kind {
        Kind::Heartbeat(hb) => *reported = hb.running_epochs.iter().copied().collect(),
        Kind::Started(s) => {
            reported.extend(s.attempt.as_ref().map(|a| a.epoch));
        }
        Kind::Result(r) => {
            if let Some(a) = &r.attempt {
                reported.remove(&a.epoch);
            }
        }
        _ => {}
    }
}

/// Cancels the reported attempts the agent should no longer run (stale, or
/// abandoned by a person). Each is cancelled once; if the agent still runs
/// it at its next heartbeat, it is cancelled again.
async fn cancel_unwanted(
    ops: &Ops,
    agent: &str,
    reported: &mut BTreeSet<u64>,
    tx: &crate::hub::SessionTx,
) {
    if reported.is_empty() {
        return;
    }
    for (epoch, reason, stop) in ops.local_to_cancel(agent, reported.iter().copied()) {
        reported.remove(&epoch);
        tracing::info!(%agent, epoch, %reason, stop, "telling the agent to cancel an attempt");
        let attempt = pb::internal::AttemptRef {
            attempt_id: String::new(),
            epoch,
        };
        send_cancel(tx, attempt, reason, stop).await;
    }
}

/// Tells an agent to stop an attempt that is no longer current (fencing).
async fn cancel_stale(tx: &crate::hub::SessionTx, attempt: pb::internal::AttemptRef) {
    send_cancel(
        tx,
        attempt,
        "this attempt is no longer current".into(),
        false,
    )
    .await;
}

/// Sends an agent one `Cancel`; `stop`: a person stopped the execution
/// (even a deployment stops early).
async fn send_cancel(
    tx: &crate::hub::SessionTx,
    attempt: pb::internal::AttemptRef,
    reason: String,
    stop: bool,
) {
    let cancel = pb::internal::Cancel {
        attempt: Some(attempt),
        reason,
        stop,
    };
    let _ = tx
        .send(Ok(msg(pb::internal::coordinator_message::Kind::Cancel(
            cancel,
        ))))
        .await;
}

async fn handle(
    ops: &Ops,
    agent: &str,
    kind: pb::internal::agent_message::Kind,
    tx: &crate::hub::SessionTx,
) {
    use pb::internal::agent_message::Kind;
    match kind {
        Kind::Register(_) => tracing::warn!(%agent, "duplicate Register ignored"),
        Kind::Started(_) => {}
        Kind::Heartbeat(hb) => {
            if hb.shutting_down {
                ops.ctx().agents.set_accepting(agent, false);
            }
        }
        Kind::Held(held) => {
            if !ops.ctx().agents.take_replica(agent, &held.digest) {
                tracing::warn!(%agent, digest = %held.digest, "unrequested replica claim ignored");
                return;
            }
            match ops.record_held(agent, &held.digest, held.size).await {
                Ok(_) => tracing::info!(%agent, digest = %held.digest, "replica recorded"),
                Err(e) => {
                    tracing::warn!(%agent, digest = %held.digest, error = %e, "replica not recorded")
                }
            }
        }
        Kind::CachesDropped(dropped) => {
            if let Err(e) = ops.caches_dropped(agent, dropped.digests).await {
                tracing::warn!(%agent, error = %e, "dropped caches not recorded");
            }
        }
        Kind::Log(lines) => {
            let Some(attempt) = lines.attempt else { return };
            if ops.local_is_current(agent, attempt.epoch) {
                ops.ctx()
                    .logs
                    .append(attempt.epoch, lines.offset, &lines.data);
            } else {
                cancel_stale(tx, attempt).await;
            }
        }
        Kind::Result(mut result) => {
            let Some(attempt) = result.attempt.clone() else {
                return;
            };
            bounds::bound_result(&mut result);
            let outputs = result
                .outputs
                .iter()
                .map(|o| {
                    (
                        o.name.clone(),
                        ArtifactRef {
                            digest: o.digest.clone(),
                            size: o.size,
                        },
                    )
                })
                .collect();
            let log = (!result.log_digest.is_empty()).then(|| ArtifactRef {
                digest: result.log_digest.clone(),
                size: result.log_size,
            });
            let r = AttemptResult {
                epoch: attempt.epoch,
                success: result.success,
                exit_code: Some(result.exit_code).filter(|c| *c >= 0),
                message: result.message.clone(),
                outputs,
                log,
                deployment: result
                    .deployment
                    .as_ref()
                    .map(prost::Message::encode_to_vec),
                variables: result.output_variables.clone().into_iter().collect(),
                tests: result.tests.clone().map(Into::into),
                caches: result
                    .caches
                    .iter()
                    .map(|c| ferry_state::caches::CacheReport {
                        scope: c.scope.clone(),
                        key: c.key.clone(),
                        digest: c.digest.clone(),
                        size: c.size,
                    })
                    .collect(),
            };
            let ack = match ops.finish_attempt(agent, r).await {
                Ok((accepted, reason)) => {
                    if !accepted {
                        tracing::warn!(%agent, epoch = attempt.epoch, %reason, "stale result refused");
                    }
                    pb::internal::ResultAck {
                        attempt: Some(attempt.clone()),
                        accepted,
                        reason,
                    }
                }
                Err(e) => {
                    // Not committed: no ack, so the agent keeps the result and re-sends it.
                    tracing::warn!(%agent, epoch = attempt.epoch, error = %e, "result not recorded yet");
                    return;
                }
            };
            ops.ctx().logs.close(attempt.epoch);
            let _ = tx
                .send(Ok(msg(pb::internal::coordinator_message::Kind::Ack(ack))))
                .await;
        }
    }
}
