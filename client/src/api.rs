//! [`Api`]: one client per public service over one transport, each taking
//! messages up to [`MAX_MESSAGE`]. The transport is a plain channel
//! ([`crate::connect`]) or one of the caller's own (the CLI's failover
//! transport over every member).

use ferry_proto as pb;
use tonic::client::GrpcService;

/// Largest message a client decodes (a pipeline's full YAML, a long page).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One client per public service, all over clones of one transport.
#[derive(Debug, Clone)]
pub struct Api<T> {
    pub pipelines: pb::pipelines_client::PipelinesClient<T>,
    pub executions: pb::executions_client::ExecutionsClient<T>,
    pub approvals: pb::approvals_client::ApprovalsClient<T>,
    pub agents: pb::agents_client::AgentsClient<T>,
    pub environments: pb::environments_client::EnvironmentsClient<T>,
    pub deployments: pb::deployments_client::DeploymentsClient<T>,
    pub artifacts: pb::artifacts_client::ArtifactsClient<T>,
    pub secrets: pb::secrets_client::SecretsClient<T>,
    pub notifications: pb::notifications_client::NotificationsClient<T>,
    pub access: pb::access_client::AccessClient<T>,
    pub cluster: pb::cluster_client::ClusterClient<T>,
}

impl<T> Api<T>
where
    T: GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
{
    /// The clients over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            pipelines: pb::pipelines_client::PipelinesClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            executions: pb::executions_client::ExecutionsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            approvals: pb::approvals_client::ApprovalsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            agents: pb::agents_client::AgentsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            environments: pb::environments_client::EnvironmentsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            deployments: pb::deployments_client::DeploymentsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            artifacts: pb::artifacts_client::ArtifactsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            secrets: pb::secrets_client::SecretsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            notifications: pb::notifications_client::NotificationsClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            access: pb::access_client::AccessClient::new(transport.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            cluster: pb::cluster_client::ClusterClient::new(transport)
                .max_decoding_message_size(MAX_MESSAGE),
        }
    }
}
