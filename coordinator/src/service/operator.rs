//! The operator API behind the `ferry` CLI: pipelines, executions, logs,
//! approvals, agents, join tokens and role bindings.

use std::pin::Pin;
use std::time::Duration;

use ferry_proto as pb;
use futures::Stream;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{SharedCtx, acting, caller};
use crate::state::{By, Command, Output, Rejection, Role};
use crate::views::{self, now_ms};

pub struct OperatorService(pub SharedCtx);

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Longest join token lifetime: enrollment secrets should not live long.
const MAX_TOKEN_TTL_SECONDS: u64 = 30 * 86_400;
/// Most agents one join token admits.
const MAX_TOKEN_USES: u32 = 10_000;
/// Largest secret value: it is replicated to every member and every assignment.
const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Most items one list call returns (and its default).
const MAX_LIST_LIMIT: u32 = 1_000;
const DEFAULT_LIST_LIMIT: u32 = 20;

/// A list call's `limit`: 0 means the default; more than the maximum is refused.
fn list_limit(limit: u32) -> Result<usize, Status> {
    match limit {
        0 => Ok(DEFAULT_LIST_LIMIT as usize),
        n if n > MAX_LIST_LIMIT => Err(Status::invalid_argument(format!(
            "--limit is at most {MAX_LIST_LIMIT}"
        ))),
        n => Ok(n as usize),
    }
}

fn new_execution_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl OperatorService {
    fn execution_view(&self, pipeline: &str, id: &str) -> Result<pb::ExecutionView, Status> {
        self.0.raft.read(|s| {
            let exec = if id.is_empty() {
                let rec = s
                    .pipelines
                    .get(pipeline)
                    .ok_or_else(|| Status::not_found(format!("pipeline `{pipeline}` not found")))?;
                rec.executions
                    .last()
                    .and_then(|id| s.executions.get(id))
                    .ok_or_else(|| {
                        Status::not_found(format!("pipeline `{pipeline}` has no executions yet"))
                    })?
            } else {
                s.executions
                    .get(id)
                    .filter(|e| pipeline.is_empty() || e.pipeline == pipeline)
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "execution {id} of pipeline `{pipeline}` not found"
                        ))
                    })?
            };
            Ok(views::execution(s, exec))
        })
    }

    /// Starts an execution at an already-resolved commit (the poller uses this too).
    pub async fn start(
        ctx: &SharedCtx,
        pipeline: &str,
        revision: String,
        trigger: String,
        started_by: Option<By>,
    ) -> Result<String, Status> {
        let id = new_execution_id();
        let cmd = Command::StartExecution {
            id: id.clone(),
            pipeline: pipeline.to_string(),
            revision,
            trigger,
            started_by,
            at: now_ms(),
        };
        match ctx.raft.propose(cmd).await {
            Ok(_) => Ok(id),
            // A retried proposal (leader change) that had committed after all:
            // ids are random, so an existing one is ours.
            Err(crate::raft::ProposeError::Rejected(Rejection::AlreadyExists(_))) => Ok(id),
            Err(e) => Err(e.into()),
        }
    }
}

#[tonic::async_trait]
impl pb::operator_server::Operator for OperatorService {
    async fn apply_pipeline(
        &self,
        req: Request<pb::ApplyPipelineRequest>,
    ) -> Result<Response<pb::ApplyPipelineResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let spec = ferry_pipeline::parse(&req.yaml)
            .map_err(|d| invalid("pipeline", &req.file_name, &d))?;
        self.0.fresh().await?;
        self.0
            .raft
            .read(|s| s.may_apply_pipeline(&who.name, &spec))?;
        let unknown = self
            .0
            .raft
            .read(|s| crate::deployments::unknown_environments(s, &spec));
        if !unknown.is_empty() {
            return Err(Status::failed_precondition(format!(
                "{}; apply it first with `ferry env apply -f FILE`",
                unknown.join("; ")
            )));
        }
        let out = self
            .0
            .raft
            .propose(Command::ApplyPipeline {
                spec,
                yaml: req.yaml,
                by: acting(&who),
                at: now_ms(),
            })
            .await?;
        match out {
            Output::PipelineVersion {
                name,
                version,
                unchanged,
            } => Ok(Response::new(pb::ApplyPipelineResponse {
                name,
                version,
                unchanged,
            })),
            _ => Err(Status::internal("unexpected apply result")),
        }
    }

    async fn list_pipelines(
        &self,
        _req: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        self.0.fresh().await?;
        let pipelines = self.0.raft.read(|s| {
            s.pipelines
                .keys()
                .filter_map(|n| views::pipeline_summary(s, n))
                .collect()
        });
        Ok(Response::new(pb::ListPipelinesResponse { pipelines }))
    }

    async fn get_pipeline(
        &self,
        req: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::PipelineView>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        self.0.raft.read(|s| {
            let rec = s
                .pipelines
                .get(&req.name)
                .ok_or_else(|| Status::not_found(format!("pipeline `{}` not found", req.name)))?;
            let v = if req.version == 0 {
                rec.latest()
            } else {
                rec.version(req.version)
            }
            .ok_or_else(|| {
                Status::not_found(format!("pipeline `{}` version {}", req.name, req.version))
            })?;
            Ok(Response::new(pb::PipelineView {
                name: rec.name.clone(),
                version: v.version,
                yaml: v.yaml.clone(),
                applied_by: v.applied_by.clone(),
                applied_at: views::ts(Some(v.applied_at)),
                versions: rec.versions.iter().map(|v| v.version).collect(),
                last_seen_revision: rec.last_seen_revision.clone().unwrap_or_default(),
            }))
        })
    }

    async fn start_execution(
        &self,
        req: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let (url, branch, version) = self.0.raft.read(|s| {
            s.pipelines
                .get(&req.pipeline)
                .and_then(|p| p.latest())
                .map(|v| {
                    (
                        v.spec.source.git.clone(),
                        v.spec.source.branch.clone(),
                        v.version,
                    )
                })
                .ok_or_else(|| Status::not_found(format!("pipeline `{}` not found", req.pipeline)))
        })?;
        let rev = if req.revision.is_empty() {
            branch
        } else {
            req.revision.clone()
        };
        let revision = self
            .0
            .git
            .resolve(&url, &rev)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let id = OperatorService::start(
            &self.0,
            &req.pipeline,
            revision.clone(),
            format!("manual by {}", who.name),
            Some(acting(&who)),
        )
        .await?;
        tracing::info!(pipeline = %req.pipeline, execution = %id, %revision, "execution started by hand");
        Ok(Response::new(pb::StartExecutionResponse {
            execution_id: id,
            revision,
            pipeline_version: version,
        }))
    }

    async fn get_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::ExecutionView>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        self.execution_view(&req.pipeline, &req.execution_id)
            .map(Response::new)
    }

    type WatchExecutionStream = Stream_<pb::ExecutionView>;

    async fn watch_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        let first = self.execution_view(&req.pipeline, &req.execution_id)?;
        let id = first.execution_id.clone();
        let pipeline = req.pipeline.clone();
        let ctx = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut applied = ctx.raft.applied();
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            while last.status == "InProgress" {
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = tx.closed() => return,
                }
                let svc = OperatorService(ctx.clone());
                let Ok(view) = svc.execution_view(&pipeline, &id) else {
                    return;
                };
                if view != last {
                    last = view;
                    if tx.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_executions(
        &self,
        req: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        let limit = list_limit(req.limit)?;
        let executions = self.0.raft.read(|s| {
            let rec = s.pipelines.get(&req.pipeline).ok_or_else(|| {
                Status::not_found(format!("pipeline `{}` not found", req.pipeline))
            })?;
            Ok::<_, Status>(
                rec.executions
                    .iter()
                    .rev()
                    .take(limit)
                    .filter_map(|id| s.executions.get(id))
                    .map(|e| views::execution(s, e))
                    .collect(),
            )
        })?;
        Ok(Response::new(pb::ListExecutionsResponse { executions }))
    }

    type StreamLogsStream = Stream_<pb::LogChunk>;

    async fn stream_logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let req = req.into_inner();
        let (exec_id, loc) = self.0.raft.read(|s| {
            let exec = s
                .executions
                .get(&req.execution_id)
                .filter(|e| e.pipeline == req.pipeline)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "execution {} of pipeline `{}` not found",
                        req.execution_id, req.pipeline
                    ))
                })?;
            Ok::<_, Status>((exec.id.clone(), views::locate_action(s, exec, &req.action)?))
        })?;
        let running = self.0.raft.read(|s| {
            s.executions
                .get(&exec_id)
                .and_then(|e| e.state.action(loc.0, loc.1))
                .is_some_and(|r| !r.status().is_final())
        });
        if running && !self.0.raft.status().is_leader {
            // Live lines are held by the leader only.
            let upstream = self
                .0
                .leader_operator()?
                .stream_logs(req)
                .await?
                .into_inner();
            return Ok(Response::new(Box::pin(upstream)));
        }
        let ctx = self.0.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            if let Err(status) = stream_logs(ctx, exec_id, loc, req.follow, tx.clone()).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn decide(
        &self,
        req: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let who = caller(&req)?;
        if who.kind != ferry_certs::IdentityKind::Operator {
            return Err(Status::permission_denied(format!(
                "{who} is not an operator"
            )));
        }
        let req = req.into_inner();
        // The early check runs on fresh state; `apply` checks again regardless.
        self.0.fresh().await?;
        let (stage, action) = self.0.raft.read(|s| {
            let exec = s
                .executions
                .get(&req.execution_id)
                .filter(|e| e.pipeline == req.pipeline)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "execution {} of pipeline `{}` not found",
                        req.execution_id, req.pipeline
                    ))
                })?;
            let (si, ai) = views::locate_action(s, exec, &req.action)?;
            s.may_decide(&who.name, exec, si, ai)?;
            Ok::<_, Status>((si, ai))
        })?;
        if !req.approve && req.comment.trim().is_empty() {
            return Err(Status::invalid_argument(
                "a rejection needs a --comment saying why",
            ));
        }
        self.0
            .raft
            .propose(Command::Decide {
                execution: req.execution_id.clone(),
                stage,
                action,
                by: who.name.clone(),
                approve: req.approve,
                comment: req.comment,
                at: now_ms(),
            })
            .await?;
        tracing::info!(execution = %req.execution_id, action = %req.action, by = %who.name, approve = req.approve, "approval decided");
        let view = self.execution_view(&req.pipeline, &req.execution_id)?;
        let action_status = view
            .stages
            .get(stage)
            .and_then(|s| s.actions.get(action))
            .map(|a| a.status.clone())
            .unwrap_or_default();
        Ok(Response::new(pb::DecideResponse {
            action_status,
            execution_status: view.status,
        }))
    }

    async fn list_agents(
        &self,
        _req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.0.fresh().await?;
        if !self.0.raft.status().is_leader {
            // Who is connected right now is known to the leader only.
            return self
                .0
                .leader_operator()?
                .list_agents(pb::ListAgentsRequest {})
                .await;
        }
        let hub = &self.0.agents;
        let agents = self.0.raft.read(|s| {
            let running = s.running_counts();
            s.agents
                .values()
                .map(|a| {
                    let connected = hub.get(&a.name).is_some();
                    let seen = hub.last_seen(&a.name).map(|t| {
                        let ago = t.elapsed();
                        views::ts(Some(now_ms() - ago.as_millis() as i64))
                    });
                    pb::AgentView {
                        name: a.name.clone(),
                        labels: a.labels.clone(),
                        capacity: a.capacity,
                        running: running.get(a.name.as_str()).copied().unwrap_or(0) as u32,
                        last_seen: seen.unwrap_or_else(|| views::ts(a.registered_at)),
                        state: if a.draining {
                            "Draining"
                        } else if connected {
                            "Connected"
                        } else if a.registered_at.is_some() {
                            "Disconnected"
                        } else {
                            "Enrolled"
                        }
                        .into(),
                        version: a.version.clone(),
                        address: a.address.clone(),
                        connected,
                        draining: a.draining,
                        cert_expires_at: views::ts(a.cert.as_ref().map(|c| c.not_after)),
                    }
                })
                .collect()
        });
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn drain_agent(
        &self,
        req: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::AgentView>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        self.0
            .raft
            .propose(Command::SetDraining {
                agent: req.name.clone(),
                draining: !req.undo,
                by: acting(&who),
            })
            .await?;
        tracing::info!(agent = %req.name, draining = !req.undo, "agent drain changed");
        let list = self
            .list_agents(Request::new(pb::ListAgentsRequest {}))
            .await?
            .into_inner();
        list.agents
            .into_iter()
            .find(|a| a.name == req.name)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("agent `{}`", req.name)))
    }

    async fn remove_agent(
        &self,
        req: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        self.0
            .raft
            .propose(Command::RemoveAgent {
                agent: req.name.clone(),
                by: acting(&who),
                at: now_ms(),
            })
            .await?;
        tracing::info!(agent = %req.name, "agent removed; its certificate is refused from now on");
        // Close its session if it is connected here.
        self.0.agents.disconnect_all(&req.name);
        self.list_agents(Request::new(pb::ListAgentsRequest {}))
            .await
    }

    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        let limit = list_limit(req.limit)?;
        let out = self
            .0
            .raft
            .read(|s| crate::deployments::list(s, &req.environment, limit))?;
        Ok(Response::new(out))
    }

    async fn get_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentView>, Status> {
        self.0.fresh().await?;
        let id = req.into_inner().id;
        let view = self.0.raft.read(|s| crate::deployments::get(s, id))?;
        Ok(Response::new(view))
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        self.0.fresh().await?;
        let (from, pipeline, release) = self.0.raft.read(|s| {
            crate::deployments::rollback_source(s, &req.environment, &req.to_execution)
        })?;
        let id = new_execution_id();
        let cmd = Command::Redeploy {
            id: id.clone(),
            from,
            trigger: format!(
                "rollback of {} to release {release} by {}",
                req.environment, who.name
            ),
            started_by: Some(acting(&who)),
            at: now_ms(),
        };
        match self.0.raft.propose(cmd).await {
            Ok(_) | Err(crate::raft::ProposeError::Rejected(Rejection::AlreadyExists(_))) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Response::new(pb::RollbackResponse {
            pipeline,
            execution_id: id,
            release,
            from_deployment: from,
        }))
    }

    async fn list_artifacts(
        &self,
        req: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        self.0.fresh().await?;
        let req = req.into_inner();
        let artifacts = self.0.raft.read(|s| {
            let exec = s
                .executions
                .get(&req.execution_id)
                .filter(|e| e.pipeline == req.pipeline)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "execution {} of pipeline `{}` not found",
                        req.execution_id, req.pipeline
                    ))
                })?;
            let spec = s.pipeline_of(exec);
            let mut out = Vec::new();
            for (si, runs) in exec.state.actions.iter().enumerate() {
                for (ai, run) in runs.iter().enumerate() {
                    let path = spec
                        .and_then(|p| p.stages.get(si).map(|st| (st, p)))
                        .and_then(|(st, _)| {
                            st.actions
                                .get(ai)
                                .map(|a| format!("{}/{}", st.name, a.name))
                        })
                        .unwrap_or_default();
                    let entry = |name: &str, art: &ferry_pipeline::execution::ArtifactRef| {
                        pb::ArtifactEntry {
                            name: name.to_string(),
                            action: path.clone(),
                            digest: art.digest.clone(),
                            size: art.size,
                            holders: views::holders(s, &art.digest),
                            attempt: run.attempt,
                        }
                    };
                    out.extend(run.outputs.iter().map(|(n, a)| entry(n, a)));
                    out.extend(run.log.iter().map(|a| entry("log", a)));
                }
            }
            Ok::<_, Status>(out)
        })?;
        Ok(Response::new(pb::ListArtifactsResponse { artifacts }))
    }

    type GetArtifactStream = Stream_<pb::Chunk>;

    async fn get_artifact(
        &self,
        req: Request<pb::GetArtifactRequest>,
    ) -> Result<Response<Self::GetArtifactStream>, Status> {
        let digest = req.into_inner().digest;
        let holders = self.0.raft.read(|s| {
            s.artifacts
                .contains_key(&digest)
                .then(|| views::holder_addresses(s, &digest))
                .ok_or_else(|| Status::not_found(format!("no artifact {digest} is recorded")))
        })?;
        let stream = crate::peer::fetch(self.0.ca.ca_pem(), &self.0.identity, &holders, &digest)
            .await
            .map_err(|e| Status::unavailable(format!("no holder of {digest} answered: {e}")))?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn apply_environment(
        &self,
        req: Request<pb::ApplyEnvironmentRequest>,
    ) -> Result<Response<pb::EnvironmentView>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let spec = ferry_pipeline::parse_environment(&req.yaml)
            .map_err(|d| invalid("environment", &req.file_name, &d))?;
        let name = spec.name.clone();
        let out = self
            .0
            .raft
            .propose(Command::ApplyEnvironment {
                spec,
                yaml: req.yaml,
                by: acting(&who),
                at: now_ms(),
            })
            .await?;
        let unchanged = matches!(
            out,
            Output::PipelineVersion {
                unchanged: true,
                ..
            }
        );
        let mut view = self.environment_view(&name)?;
        view.unchanged = unchanged;
        Ok(Response::new(view))
    }

    async fn list_environments(
        &self,
        _req: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        self.0.fresh().await?;
        let environments = self.0.raft.read(|s| {
            s.environments
                .values()
                .map(|e| views::environment(s, e))
                .collect()
        });
        Ok(Response::new(pb::ListEnvironmentsResponse { environments }))
    }

    async fn get_environment(
        &self,
        req: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::EnvironmentView>, Status> {
        self.0.fresh().await?;
        self.environment_view(&req.into_inner().name)
            .map(Response::new)
    }

    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretView>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        ferry_pipeline::validate_secret_name(&req.name)
            .map_err(|e| Status::invalid_argument(format!("secret name `{}`: {e}", req.name)))?;
        if req.value.len() > MAX_SECRET_BYTES {
            return Err(Status::invalid_argument(format!(
                "a secret's value is at most {} KiB (this one is {} bytes); keep bulk data out of \
                 the replicated state",
                MAX_SECRET_BYTES / 1024,
                req.value.len()
            )));
        }
        let sealer = self.0.secrets.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this cluster has no secrets key (secrets.key beside the CA in --tls-dir)",
            )
        })?;
        let (nonce, ciphertext) = sealer
            .seal(&req.name, &req.value)
            .map_err(|e| Status::internal(e.to_string()))?;
        let at = now_ms();
        self.0
            .raft
            .propose(Command::SetSecret {
                name: req.name.clone(),
                nonce,
                ciphertext,
                by: acting(&who),
                at,
            })
            .await?;
        tracing::info!(secret = %req.name, by = %who.name, "secret set");
        Ok(Response::new(pb::SecretView {
            name: req.name,
            updated_by: who.name,
            updated_at: views::ts(Some(at)),
        }))
    }

    async fn list_secrets(
        &self,
        _req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        self.0.fresh().await?;
        Ok(Response::new(self.secret_list()))
    }

    async fn remove_secret(
        &self,
        req: Request<pb::SecretRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let who = caller(&req)?;
        let name = req.into_inner().name;
        self.0
            .raft
            .propose(Command::RemoveSecret {
                name: name.clone(),
                by: acting(&who),
            })
            .await?;
        tracing::info!(secret = %name, "secret removed");
        Ok(Response::new(self.secret_list()))
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        let who = caller(&req)?;
        let pem = req.into_inner().certificate_pem;
        if pem.len() > 64 * 1024 {
            return Err(Status::invalid_argument(
                "that is not a certificate (too large)",
            ));
        }
        let facts = ferry_certs::CertFacts::from_pem(&pem)
            .map_err(|e| Status::invalid_argument(format!("cannot revoke: {e}")))?;
        if facts.identity.trust_domain != self.0.ca.trust_domain() {
            return Err(Status::invalid_argument(format!(
                "{} is not of this cluster's trust domain `{}`",
                facts.identity,
                self.0.ca.trust_domain()
            )));
        }
        let now = now_ms();
        if facts.not_after_ms <= now {
            return Err(Status::failed_precondition(format!(
                "the certificate of {} has already expired; it is refused anyway",
                facts.identity
            )));
        }
        self.0
            .raft
            .propose(Command::RevokeCertificate {
                fingerprint: facts.fingerprint.clone(),
                identity: facts.identity.uri(),
                not_after: facts.not_after_ms,
                by: acting(&who),
                at: now,
            })
            .await?;
        tracing::info!(identity = %facts.identity, fingerprint = %facts.fingerprint, by = %who.name, "certificate revoked");
        Ok(Response::new(pb::RevokeCertificateResponse {
            identity: facts.identity.uri(),
            fingerprint: facts.fingerprint,
            expires_at: views::ts(Some(facts.not_after_ms)),
        }))
    }

    async fn renew_certificate(
        &self,
        req: Request<pb::RenewCertificateRequest>,
    ) -> Result<Response<pb::RenewCertificateResponse>, Status> {
        super::renew::renew_certificate(&self.0, req).await
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let ttl = match req.ttl_seconds {
            0 => 3600,
            t if t > MAX_TOKEN_TTL_SECONDS => {
                return Err(Status::invalid_argument(format!(
                    "a join token lives at most {} days; ask for a shorter --ttl",
                    MAX_TOKEN_TTL_SECONDS / 86_400
                )));
            }
            t => t,
        };
        let uses = match req.uses {
            0 => 1,
            u if u > MAX_TOKEN_USES => {
                return Err(Status::invalid_argument(format!(
                    "a join token admits at most {MAX_TOKEN_USES} agents; ask for fewer --uses"
                )));
            }
            u => u,
        };
        let secret: [u8; 24] = rand::random();
        let token = format!("ferry-join-{}", hex::encode(secret));
        let now = now_ms();
        // `ttl` is bounded above, so this neither wraps nor passes year 9999.
        let expires_at =
            now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX).saturating_mul(1000));
        self.0
            .raft
            .propose(Command::CreateToken {
                hash: super::enroll::hash_token(&token),
                expires_at,
                uses,
                by: acting(&who),
                at: now,
            })
            .await?;
        Ok(Response::new(pb::CreateTokenResponse {
            token,
            expires_at: views::ts(Some(expires_at)),
        }))
    }

    async fn grant_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let (subject, role) = parse_binding(&req)?;
        self.0
            .raft
            .propose(Command::Grant {
                subject,
                role,
                by: acting(&who),
            })
            .await?;
        Ok(Response::new(self.bindings()))
    }

    async fn revoke_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let (subject, role) = parse_binding(&req)?;
        self.0
            .raft
            .propose(Command::Revoke {
                subject,
                role,
                by: acting(&who),
            })
            .await?;
        Ok(Response::new(self.bindings()))
    }

    async fn list_role_bindings(
        &self,
        _req: Request<pb::ListRoleBindingsRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        self.0.fresh().await?;
        Ok(Response::new(self.bindings()))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(cluster_status(&self.0).await))
    }

    async fn add_member(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let req = req.into_inner();
        if !self.0.raft.status().is_leader {
            return self.0.leader_operator()?.add_member(req).await;
        }
        if req.id == 0 {
            return Err(Status::invalid_argument("a member needs --id (non-zero)"));
        }
        validate_member_address(&req.address).map_err(Status::invalid_argument)?;
        let learner = self.0.raft.status().learners.contains(&req.id);
        if !learner {
            if self.0.raft.read(|s| s.members.contains_key(&req.id)) {
                return Err(Status::already_exists(format!(
                    "member {} is already in the cluster",
                    req.id
                )));
            }
            // A voter that cannot answer would cost the cluster its quorum:
            // the new member must be up and prove it is that member first.
            answers_as_member(&self.0, req.id, &req.address).await?;
            self.0
                .raft
                .change_membership(
                    req.id,
                    crate::raft::MembershipChange::AddLearner(req.address.clone()),
                )
                .await?;
            tracing::info!(member = req.id, address = %req.address, "member added as a learner");
        }
        // It votes only once it holds the log the cluster has committed.
        let target = self.0.raft.status().commit;
        let caught_up = self
            .0
            .wait_for_status(Duration::from_secs(60), |s| {
                s.matched.get(&req.id).is_some_and(|m| *m >= target)
            })
            .await;
        if !caught_up {
            return Err(Status::deadline_exceeded(format!(
                "member {} was added as a learner but has not caught up with the log \
                 within 60 s; it does not vote yet. Check that it runs, then run \
                 `ferry cluster add` again to promote it",
                req.id
            )));
        }
        self.0
            .raft
            .change_membership(req.id, crate::raft::MembershipChange::Promote)
            .await?;
        tracing::info!(member = req.id, address = %req.address, "member promoted to voter");
        Ok(Response::new(cluster_status(&self.0).await))
    }

    async fn remove_member(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let req = req.into_inner();
        if !self.0.raft.status().is_leader {
            return self.0.leader_operator()?.remove_member(req).await;
        }
        self.0.member(req.id)?;
        if req.id == self.0.raft.status().id {
            // Hand leadership over first so the cluster keeps a leader.
            let to = self
                .0
                .raft
                .read(|s| s.members.keys().copied().find(|m| *m != req.id));
            let Some(to) = to else {
                return Err(Status::failed_precondition("cannot remove the last member"));
            };
            self.0.raft.transfer_leader(to)?;
            self.0
                .wait_for_status(Duration::from_secs(5), |s| !s.is_leader)
                .await;
            return self.0.leader_operator()?.remove_member(req).await;
        }
        self.0
            .raft
            .change_membership(req.id, crate::raft::MembershipChange::Remove)
            .await?;
        tracing::info!(member = req.id, "member removed");
        Ok(Response::new(cluster_status(&self.0).await))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let req = req.into_inner();
        if !self.0.raft.status().is_leader {
            return self.0.leader_operator()?.transfer_leader(req).await;
        }
        self.0.member(req.id)?;
        self.0.raft.transfer_leader(req.id)?;
        if !self
            .0
            .wait_for_status(Duration::from_secs(5), |s| s.leader_id == req.id)
            .await
        {
            return Err(Status::deadline_exceeded(format!(
                "member {} did not take over within 5s",
                req.id
            )));
        }
        Ok(Response::new(cluster_status(&self.0).await))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let who = caller(&req)?;
        let roles = self
            .0
            .raft
            .read(|s| s.roles_of(&who.name))
            .iter()
            .map(|r| r.to_string())
            .collect();
        Ok(Response::new(pb::WhoAmIResponse {
            identity: who.uri(),
            roles,
        }))
    }
}

impl OperatorService {
    fn environment_view(&self, name: &str) -> Result<pb::EnvironmentView, Status> {
        self.0.raft.read(|s| {
            s.environments
                .get(name)
                .map(|e| views::environment(s, e))
                .ok_or_else(|| Status::not_found(format!("environment `{name}` not found")))
        })
    }

    /// Names and who set them; never values.
    fn secret_list(&self) -> pb::ListSecretsResponse {
        let secrets = self.0.raft.read(|s| {
            s.secrets
                .iter()
                .map(|(name, r)| pb::SecretView {
                    name: name.clone(),
                    updated_by: r.updated_by.clone(),
                    updated_at: views::ts(Some(r.updated_at)),
                })
                .collect()
        });
        pb::ListSecretsResponse { secrets }
    }

    fn bindings(&self) -> pb::RoleBindingsResponse {
        let bindings = self.0.raft.read(|s| {
            s.roles
                .iter()
                .map(|(subject, role)| pb::RoleBinding {
                    subject: subject.clone(),
                    role: role.to_string(),
                })
                .collect()
        });
        pb::RoleBindingsResponse { bindings }
    }
}

/// A file that failed validation: every problem as FILE:LINE:COL: message.
fn invalid(kind: &str, file: &str, diags: &[ferry_pipeline::Diagnostic]) -> Status {
    let file = if file.is_empty() { "<input>" } else { file };
    let lines: Vec<String> = diags.iter().map(|d| format!("{file}:{d}")).collect();
    Status::invalid_argument(format!(
        "{kind} is invalid; nothing was applied:\n{}",
        lines.join("\n")
    ))
}

fn parse_binding(req: &pb::RoleRequest) -> Result<(String, Role), Status> {
    ferry_certs::validate_name(&req.subject)
        .map_err(|e| Status::invalid_argument(format!("subject `{}`: {e}", req.subject)))?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        Status::invalid_argument(format!(
            "unknown role `{}`; roles are: {}",
            req.role,
            Role::ALL.map(|r| r.as_str()).join(", ")
        ))
    })?;
    Ok((req.subject.clone(), role))
}

type LogTx = mpsc::Sender<Result<pb::LogChunk, Status>>;

/// Streams one action's log: the stored blob once the attempt ended, the live
/// lines while it runs, and (with `follow`) waits for it to start.
async fn stream_logs(
    ctx: SharedCtx,
    exec: String,
    (si, ai): (usize, usize),
    follow: bool,
    tx: LogTx,
) -> Result<(), Status> {
    let mut applied = ctx.raft.applied();
    loop {
        let (epoch, status, log) = ctx.raft.read(|s| {
            let run = s
                .executions
                .get(&exec)
                .and_then(|e| e.state.action(si, ai))
                .cloned()
                .unwrap_or_default();
            let log = run
                .log
                .as_ref()
                .map(|l| (l.digest.clone(), views::holder_addresses(s, &l.digest)));
            (run.epoch, run.status(), log)
        });
        if epoch == 0 {
            if !follow || views::is_final(status) {
                return Ok(());
            }
            applied
                .changed()
                .await
                .map_err(|_| Status::unavailable("coordinator stopping"))?;
            continue;
        }
        if status.is_final()
            && let Some((digest, holders)) = log
        {
            {
                match crate::peer::fetch(ctx.ca.ca_pem(), &ctx.identity, &holders, &digest).await {
                    Ok(mut stream) => {
                        while let Some(chunk) = stream.message().await? {
                            if tx
                                .send(Ok(pb::LogChunk {
                                    data: chunk.data.to_vec(),
                                }))
                                .await
                                .is_err()
                            {
                                return Ok(());
                            }
                        }
                        return Ok(());
                    }
                    Err(e) => {
                        if let Some(data) = ctx.logs.complete(epoch) {
                            let _ = tx.send(Ok(pb::LogChunk { data })).await;
                            return Ok(());
                        }
                        return Err(Status::unavailable(format!(
                            "the log {digest} is kept by agents that cannot be reached now: {e}"
                        )));
                    }
                }
            }
        }
        let (head, closed, mut rx) = ctx.logs.subscribe(epoch);
        if !head.is_empty() && tx.send(Ok(pb::LogChunk { data: head })).await.is_err() {
            return Ok(());
        }
        if !follow || closed {
            return Ok(());
        }
        loop {
            match rx.recv().await {
                Ok(data) => {
                    if tx.send(Ok(pb::LogChunk { data })).await.is_err() {
                        return Ok(());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = format!("[ferry: {n} log chunks skipped: reader too slow]\n");
                    let _ = tx
                        .send(Ok(pb::LogChunk {
                            data: note.into_bytes(),
                        }))
                        .await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// A member's gRPC address: HOST:PORT with a non-zero port and a host that is
/// an IP address or a DNS name (what its certificate can name).
fn validate_member_address(address: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "member address {:?} {why}; give HOST:PORT, e.g. 10.0.0.2:7400",
            ferry_certs::clip(address)
        ))
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("has no port");
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return bad("has no valid port");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_err()
        && rustls_pki_types::DnsName::try_from(host.to_string()).is_err()
    {
        return bad("has a host that is neither an IP address nor a DNS name");
    }
    Ok(())
}

/// Whether member `id` answers at `address` with its own certificate.
async fn answers_as_member(ctx: &SharedCtx, id: u64, address: &str) -> Result<(), Status> {
    // A member started a moment ago may not listen yet: ask for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let why = match member_status(ctx, id, address, Duration::from_secs(5)).await {
            Ok(_) => return Ok(()),
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Status::failed_precondition(format!(
                "member {id} does not answer at {address} ({why}); start it first \
                 (ferry-coordinator --join ...) and check the address"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Member `id`'s own status, asked at `address` (which must answer as that
/// member) within `limit`; the reason when it does not.
async fn member_status(
    ctx: &SharedCtx,
    id: u64,
    address: &str,
    limit: Duration,
) -> Result<pb::MemberStatusResponse, String> {
    let ch = ctx
        .raft
        .tls()
        .channel(id, address)
        .map_err(|e| e.to_string())?;
    let mut client = pb::raft_peer_client::RaftPeerClient::new(ch);
    let ask = client.member_status(pb::MemberStatusRequest {});
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// This member's view of the cluster, with each other member asked directly.
async fn cluster_status(ctx: &SharedCtx) -> pb::ClusterStatusResponse {
    let own = super::peer::own_status(ctx);
    let status = ctx.raft.status();
    let members = ctx.raft.read(|s| s.members.clone());
    let mut views = Vec::new();
    for (id, address) in members {
        let answer = if id == own.id {
            Some(own.clone())
        } else {
            member_status(ctx, id, &address, Duration::from_secs(1))
                .await
                .ok()
        };
        views.push(pb::MemberView {
            id,
            address,
            role: answer
                .as_ref()
                .map(|a| a.role.clone())
                .unwrap_or_else(|| "Unreachable".into()),
            applied_index: answer.as_ref().map_or(0, |a| a.applied_index),
            reachable: answer.is_some(),
            match_index: status.matched.get(&id).copied().unwrap_or(0),
            state_digest: answer.map(|a| a.state_digest).unwrap_or_default(),
        });
    }
    pb::ClusterStatusResponse {
        leader_id: own.leader_id,
        term: own.term,
        commit_index: own.commit_index,
        members: views,
        answered_by: own.id,
    }
}
