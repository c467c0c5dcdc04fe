//! The public API behind the `ferry` CLI, as one gRPC service per resource
//! (package `ferry.v1`), all served by [`ApiService`]: each method delegates
//! to the adapter of its resource (`service/<resource>.rs`), which decodes
//! the request, calls `ops` and encodes the answer.

use std::pin::Pin;

use ferry_proto as pb;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::ops::Ops;

/// Every public service (`Pipelines`, `Executions`, ...) over the same `Ops`.
#[derive(Clone)]
pub struct ApiService(pub Ops);

/// A server stream of an operator call.
pub type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::pipelines_server::Pipelines for ApiService {
    async fn apply_pipeline(
        &self,
        req: Request<pb::ApplyPipelineRequest>,
    ) -> Result<Response<pb::ApplyPipelineResponse>, Status> {
        super::pipelines::apply_pipeline(&self.0, req).await
    }

    async fn list_pipelines(
        &self,
        req: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        super::pipelines::list_pipelines(&self.0, req).await
    }

    async fn get_pipeline(
        &self,
        req: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::PipelineView>, Status> {
        super::pipelines::get_pipeline(&self.0, req).await
    }

    async fn set_transition(
        &self,
        req: Request<pb::SetTransitionRequest>,
    ) -> Result<Response<pb::SetTransitionResponse>, Status> {
        super::pipelines::set_transition(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::executions_server::Executions for ApiService {
    type WatchExecutionStream = Stream_<pb::ExecutionView>;
    type StreamLogsStream = Stream_<pb::LogChunk>;

    async fn start_execution(
        &self,
        req: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        super::executions::start_execution(&self.0, req).await
    }

    async fn get_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::ExecutionView>, Status> {
        super::executions::get_execution(&self.0, req).await
    }

    async fn watch_execution(
        &self,
        req: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        super::executions::watch_execution(&self.0, req).await
    }

    async fn list_executions(
        &self,
        req: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        super::executions::list_executions(&self.0, req).await
    }

    async fn stream_logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        super::executions::stream_logs(&self.0, req).await
    }

    async fn stop_execution(
        &self,
        req: Request<pb::StopExecutionRequest>,
    ) -> Result<Response<pb::StopExecutionResponse>, Status> {
        super::executions::stop_execution(&self.0, req).await
    }

    async fn retry_stage(
        &self,
        req: Request<pb::RetryStageRequest>,
    ) -> Result<Response<pb::RetryStageResponse>, Status> {
        super::executions::retry_stage(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::approvals_server::Approvals for ApiService {
    async fn decide(
        &self,
        req: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        super::approvals::decide(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::agents_server::Agents for ApiService {
    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        super::agents::list_agents(&self.0, req).await
    }

    async fn drain_agent(
        &self,
        req: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::AgentView>, Status> {
        super::agents::drain_agent(&self.0, req).await
    }

    async fn remove_agent(
        &self,
        req: Request<pb::AgentRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        super::agents::remove_agent(&self.0, req).await
    }

    async fn set_agent_labels(
        &self,
        req: Request<pb::SetAgentLabelsRequest>,
    ) -> Result<Response<pb::AgentView>, Status> {
        super::agents::set_agent_labels(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::environments_server::Environments for ApiService {
    async fn apply_environment(
        &self,
        req: Request<pb::ApplyEnvironmentRequest>,
    ) -> Result<Response<pb::EnvironmentView>, Status> {
        super::environments::apply_environment(&self.0, req).await
    }

    async fn list_environments(
        &self,
        req: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        super::environments::list_environments(&self.0, req).await
    }

    async fn get_environment(
        &self,
        req: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::EnvironmentView>, Status> {
        super::environments::get_environment(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::deployments_server::Deployments for ApiService {
    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        super::deployments::list_deployments(&self.0, req).await
    }

    async fn get_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::DeploymentView>, Status> {
        super::deployments::get_deployment(&self.0, req).await
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        super::deployments::rollback(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::artifacts_server::Artifacts for ApiService {
    type GetArtifactStream = Stream_<pb::Chunk>;

    async fn list_artifacts(
        &self,
        req: Request<pb::ListArtifactsRequest>,
    ) -> Result<Response<pb::ListArtifactsResponse>, Status> {
        super::artifacts::list_artifacts(&self.0, req).await
    }

    async fn get_artifact(
        &self,
        req: Request<pb::GetArtifactRequest>,
    ) -> Result<Response<Self::GetArtifactStream>, Status> {
        super::artifacts::get_artifact(&self.0, req).await
    }

    async fn list_caches(
        &self,
        req: Request<pb::ListCachesRequest>,
    ) -> Result<Response<pb::ListCachesResponse>, Status> {
        super::artifacts::list_caches(&self.0, req).await
    }

    async fn remove_caches(
        &self,
        req: Request<pb::RemoveCachesRequest>,
    ) -> Result<Response<pb::RemoveCachesResponse>, Status> {
        super::artifacts::remove_caches(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::secrets_server::Secrets for ApiService {
    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretView>, Status> {
        super::secrets::set_secret(&self.0, req).await
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        super::secrets::list_secrets(&self.0, req).await
    }

    async fn remove_secret(
        &self,
        req: Request<pb::SecretRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        super::secrets::remove_secret(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::access_server::Access for ApiService {
    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        super::access::revoke_certificate(&self.0, req).await
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
        super::access::create_token(&self.0, req).await
    }

    async fn create_login_link(
        &self,
        req: Request<pb::CreateLoginLinkRequest>,
    ) -> Result<Response<pb::CreateLoginLinkResponse>, Status> {
        super::access::create_login_link(&self.0, req).await
    }

    async fn grant_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        super::access::grant_role(&self.0, req).await
    }

    async fn revoke_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        super::access::revoke_role(&self.0, req).await
    }

    async fn list_role_bindings(
        &self,
        req: Request<pb::ListRoleBindingsRequest>,
    ) -> Result<Response<pb::RoleBindingsResponse>, Status> {
        super::access::list_role_bindings(&self.0, req).await
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        super::access::who_am_i(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ApiService {
    type BackupStream = Stream_<pb::Chunk>;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        super::cluster::backup(&self.0, req).await
    }

    async fn cluster_status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        super::cluster::cluster_status(&self.0, req).await
    }

    async fn add_member(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        super::cluster::add_member(&self.0, req).await
    }

    async fn remove_member(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        super::cluster::remove_member(&self.0, req).await
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        super::cluster::transfer_leader(&self.0, req).await
    }
}

#[tonic::async_trait]
impl pb::notifications_server::Notifications for ApiService {
    type WatchEventsStream = Stream_<pb::Event>;

    async fn set_target(
        &self,
        req: Request<pb::NotificationTarget>,
    ) -> Result<Response<pb::NotifyStatusResponse>, Status> {
        super::notifications::set_target(&self.0, req).await
    }

    async fn remove_target(
        &self,
        req: Request<pb::RemoveTargetRequest>,
    ) -> Result<Response<pb::NotifyStatusResponse>, Status> {
        super::notifications::remove_target(&self.0, req).await
    }

    async fn notify_status(
        &self,
        req: Request<pb::NotifyStatusRequest>,
    ) -> Result<Response<pb::NotifyStatusResponse>, Status> {
        super::notifications::notify_status(&self.0, req).await
    }

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        super::notifications::watch_events(&self.0, req).await
    }
}
