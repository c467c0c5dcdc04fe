//! Authentication and authorization, in one place. A tower layer in front of
//! every gRPC service maps the method to the permission it needs, reads the
//! caller's identity from its verified client certificate, checks it against
//! the role bindings in cluster state, and hands the identity to the handler.
//! Handlers never decide who may call them; the only finer check — who may
//! decide a particular approval — is `ClusterState::may_decide`
//! (`state/approval.rs`), because `apply` runs it again. This check is the
//! fast error: `apply` checks the role every permissioned command needs again
//! (`state/access.rs`, `Need` mirrors `Permission::{Operate, Admin}`),
//! against the state the command lands on, so a member with stale state
//! cannot let a revoked operator through.

use std::task::{Context, Poll};

use ferry_certs::{Identity, IdentityKind};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use crate::ops::Ops;
use ferry_state::{ClusterState, Reason, Role};

use crate::service::status::refused;

/// What a method requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// No client certificate needed (enrollment: the token is the credential).
    Public,
    /// An enrolled agent.
    Agent,
    /// Another coordinator of this cluster.
    Coordinator,
    /// Any bound role: read pipelines, executions, logs, agents.
    View,
    /// `operator` or `admin`: apply pipelines, start and stop runs.
    Operate,
    /// Any operator identity; the approval itself is checked by
    /// `ClusterState::may_decide`, in the handler and again in `apply`.
    Decide,
    /// `admin`: tokens, role bindings.
    Admin,
    /// Renewing one's own certificate: an enrolled agent, or an operator
    /// with any role (coordinators renew theirs offline, with the CA key).
    Renew,
}

/// The permission each RPC needs, by its gRPC path
/// (`/ferry.v1.<Service>/<Method>`, `/ferry.internal.v1.<Service>/<Method>`).
/// Unknown methods are denied.
pub fn permission_for(path: &str) -> Option<Permission> {
    use Permission::{Admin, Agent, Coordinator, Decide, Operate, Public, Renew, View};
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    Some(match (service, method) {
        // Enroll (the token is the credential) and GetClusterCa (the CA
        // certificate, which `ferry-agent install` checks against a pinned hash).
        ("ferry.v1.Enrollment", "Enroll" | "GetClusterCa") => Public,
        // Standard health probes carry no client certificate.
        ("grpc.health.v1.Health", "Check" | "Watch") => Public,
        // The public API's schema only (what docs/api.md and the protos
        // show); any role may read it.
        (
            "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection",
            "ServerReflectionInfo",
        ) => View,
        ("ferry.internal.v1.AgentSession", _) => Agent,
        ("ferry.internal.v1.RaftPeer", _) => Coordinator,
        ("ferry.v1.Pipelines", "ApplyPipeline" | "SetTransition") => Operate,
        ("ferry.v1.Pipelines", "ListPipelines" | "GetPipeline") => View,
        ("ferry.v1.Executions", "StartExecution" | "StopExecution" | "RetryStage") => Operate,
        (
            "ferry.v1.Executions",
            "GetExecution" | "WatchExecution" | "ListExecutions" | "StreamLogs",
        ) => View,
        ("ferry.v1.Approvals", "Decide") => Decide,
        ("ferry.v1.Agents", "ListAgents") => View,
        ("ferry.v1.Agents", "DrainAgent" | "RemoveAgent" | "SetAgentLabels") => Admin,
        ("ferry.v1.Environments", "ApplyEnvironment") => Operate,
        ("ferry.v1.Environments", "ListEnvironments" | "GetEnvironment") => View,
        ("ferry.v1.Deployments", "Rollback") => Operate,
        ("ferry.v1.Deployments", "ListDeployments" | "GetDeployment") => View,
        ("ferry.v1.Artifacts", "ListArtifacts" | "GetArtifact" | "ListCaches") => View,
        ("ferry.v1.Artifacts", "RemoveCaches") => Operate,
        ("ferry.v1.Secrets", "SetSecret" | "RemoveSecret") => Admin,
        ("ferry.v1.Secrets", "ListSecrets") => View,
        ("ferry.v1.Notifications", "SetTarget" | "RemoveTarget") => Admin,
        ("ferry.v1.Notifications", "NotifyStatus" | "WatchEvents") => View,
        (
            "ferry.v1.Access",
            "CreateToken" | "GrantRole" | "RevokeRole" | "ListRoleBindings" | "RevokeCertificate",
        ) => Admin,
        ("ferry.v1.Access", "RenewCertificate") => Renew,
        ("ferry.v1.Access", "WhoAmI") => Decide,
        ("ferry.v1.Access", "CreateLoginLink") => View,
        ("ferry.v1.Cluster", "ClusterStatus") => View,
        ("ferry.v1.Cluster", "AddMember" | "RemoveMember" | "TransferLeader" | "Backup") => Admin,
        _ => return None,
    })
}

/// The public services, by their gRPC names (every method of one is found
/// in [`permission_for`] under `/<name>/<Method>`).
pub const PUBLIC_SERVICES: [&str; 12] = [
    "ferry.v1.Pipelines",
    "ferry.v1.Executions",
    "ferry.v1.Approvals",
    "ferry.v1.Agents",
    "ferry.v1.Environments",
    "ferry.v1.Deployments",
    "ferry.v1.Artifacts",
    "ferry.v1.Secrets",
    "ferry.v1.Notifications",
    "ferry.v1.Access",
    "ferry.v1.Cluster",
    "ferry.v1.Enrollment",
];

/// The verified caller, placed in request extensions for handlers.
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

/// The sha256 fingerprint of the caller's certificate, beside [`Caller`].
#[derive(Debug, Clone)]
pub struct CallerCert(pub String);

/// Reads the caller's identity and certificate fingerprint from the TLS
/// client certificate, if any.
pub fn identity_from_extensions(
    ext: &http::Extensions,
) -> Result<Option<(Identity, String)>, Status> {
    let certs = ext
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs());
    let Some(certs) = certs else { return Ok(None) };
    let Some(leaf) = certs.first() else {
        return Ok(None);
    };
    Identity::from_cert_der(leaf.as_ref())
        .map(|id| Some((id, ferry_certs::fingerprint(leaf.as_ref()))))
        .map_err(|e| {
            refused(
                Code::Unauthenticated,
                Reason::Unauthenticated,
                format!("client certificate has no usable Ferry identity: {e}"),
            )
        })
}

fn has_any(state: &ClusterState, name: &str, roles: &[Role]) -> bool {
    state.roles_of(name).iter().any(|r| roles.contains(r))
}

/// Whether this very certificate is still good: not revoked, and for an
/// agent, the one its record was bound to at enrollment (a certificate for a
/// removed agent's name stays dead when the name is enrolled again).
pub fn check_certificate(
    state: &ClusterState,
    id: &Identity,
    fingerprint: &str,
) -> Result<(), Status> {
    if state.is_revoked(fingerprint) {
        return Err(unauthenticated(match id.kind {
            IdentityKind::Agent => format!(
                "agent `{}` is not enrolled in this cluster with this certificate: it was \
                 revoked (removing an agent revokes it); enroll again with a new token",
                id.name
            ),
            _ => format!("the certificate of {id} was revoked; ask an admin for a new one"),
        }));
    }
    if id.kind == IdentityKind::Agent
        && let Some(record) = state.agents.get(&id.name)
        && record.cert.is_some()
        && !record.bound_certs().any(|c| c.fingerprint == fingerprint)
    {
        return Err(unauthenticated(format!(
            "this certificate for {id} is not the one agent `{}` is enrolled with \
             (the agent was removed and enrolled again?); enroll with a new token",
            id.name
        )));
    }
    Ok(())
}

/// The single authorization decision for an RPC.
pub fn authorize(
    state: &ClusterState,
    caller: Option<&Identity>,
    perm: Permission,
) -> Result<(), Status> {
    if perm == Permission::Public {
        return Ok(());
    }
    let Some(id) = caller else {
        return Err(unauthenticated(
            "no client certificate presented: this call needs mutual TLS with a certificate \
             the cluster's CA issued",
        ));
    };
    if !state.trust_domain.is_empty() && id.trust_domain != state.trust_domain {
        return Err(unauthenticated(format!(
            "identity {id} belongs to trust domain `{}`, this cluster is `{}`",
            id.trust_domain, state.trust_domain
        )));
    }
    let denied = |reason: Reason, what: &str| {
        Err(refused(
            Code::PermissionDenied,
            reason,
            format!("{id} may not {what}"),
        ))
    };
    let wrong_kind = |what: &str| denied(Reason::WrongIdentityKind, what);
    let missing_role = |what: &str| denied(Reason::MissingRole, what);
    match perm {
        Permission::Public => Ok(()),
        Permission::Agent => match id.kind {
            IdentityKind::Agent if state.agents.contains_key(&id.name) => Ok(()),
            IdentityKind::Agent => Err(refused(
                Code::PermissionDenied,
                Reason::NotEnrolled,
                format!(
                    "agent `{}` is not enrolled in this cluster (it may have been removed); \
                     enroll it again",
                    id.name
                ),
            )),
            _ => wrong_kind("open an agent session (agent certificate required)"),
        },
        Permission::Coordinator => match id.kind {
            IdentityKind::Coordinator => Ok(()),
            _ => wrong_kind("call coordinator peer APIs"),
        },
        Permission::Renew => match id.kind {
            IdentityKind::Agent => authorize(state, caller, Permission::Agent),
            IdentityKind::Operator => authorize(state, caller, Permission::View),
            IdentityKind::Coordinator => wrong_kind(
                "renew its certificate over the API (a member's certificate is renewed on its \
                 host with the cluster's CA directory, then the member restarted)",
            ),
        },
        // Members hold the CA key; they proxy operator calls to the leader.
        Permission::View | Permission::Operate | Permission::Admin
            if id.kind == IdentityKind::Coordinator =>
        {
            Ok(())
        }
        _ if id.kind != IdentityKind::Operator => {
            wrong_kind("call operator APIs (an operator certificate is required)")
        }
        // No one holds a role before the bootstrap is applied (a moment
        // after a new cluster's first election): say so, not "needs role".
        Permission::View | Permission::Operate | Permission::Admin
            if !state.bootstrapped && state.roles.is_empty() =>
        {
            Err(refused(
                Code::Unavailable,
                Reason::NoLeader,
                "the cluster is not bootstrapped yet (its first leader applies the bootstrap \
                 a moment after it is elected); retry shortly",
            ))
        }
        Permission::View => {
            if has_any(state, &id.name, &Role::ALL) {
                Ok(())
            } else {
                missing_role(
                    "read cluster state (no role bound; an admin can grant one, e.g. viewer)",
                )
            }
        }
        Permission::Operate => {
            if has_any(state, &id.name, &[Role::Admin, Role::Operator]) {
                Ok(())
            } else {
                missing_role("apply pipelines or start runs (needs role operator or admin)")
            }
        }
        Permission::Decide => Ok(()),
        Permission::Admin => {
            if has_any(state, &id.name, &[Role::Admin]) {
                Ok(())
            } else {
                missing_role("administer the cluster (needs role admin)")
            }
        }
    }
}

/// Tower layer that runs [`authorize`] before every RPC.
#[derive(Clone)]
pub struct AuthLayer {
    ops: Ops,
}

impl AuthLayer {
    pub fn new(ops: Ops) -> Self {
        AuthLayer { ops }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            ops: self.ops.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    ops: Ops,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let decision = (|| {
            let perm = permission_for(req.uri().path()).ok_or_else(|| {
                Status::unimplemented(format!("unknown method {}", req.uri().path()))
            })?;
            let presented = identity_from_extensions(req.extensions())?;
            self.ops.local_read(|state| {
                if let Some((id, fingerprint)) = &presented {
                    check_certificate(state, id, fingerprint)?;
                }
                authorize(state, presented.as_ref().map(|(id, _)| id), perm)
            })?;
            Ok::<_, Status>(presented)
        })();
        match decision {
            Ok(identity) => {
                if let Some((id, fingerprint)) = identity {
                    req.extensions_mut().insert(Caller(id));
                    req.extensions_mut().insert(CallerCert(fingerprint));
                }
                // Take the service that was driven to readiness; leave a fresh clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await.map(clip_status_message) })
            }
            Err(status) => {
                tracing::info!(path = req.uri().path(), code = ?status.code(), "request refused: {}", status.message());
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Longest status message sent, in bytes. Messages quote what the caller
/// sent; a huge input must not make the error itself too large to deliver
/// (a metadata-size error instead of INVALID_ARGUMENT).
const MAX_STATUS_MESSAGE: usize = 1024;

/// Cuts an over-long status message in the response headers to
/// [`MAX_STATUS_MESSAGE`] bytes (at a character boundary), saying how long it was.
fn clip_status_message<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let message = status.message();
    if message.len() <= MAX_STATUS_MESSAGE {
        return response;
    }
    let mut cut = MAX_STATUS_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let clipped = Status::new(
        status.code(),
        format!("{}... ({} bytes in all)", &message[..cut], message.len()),
    );
    let _ = clipped.add_header(response.headers_mut());
    response
}

/// UNAUTHENTICATED with its reason.
fn unauthenticated(message: impl Into<String>) -> Status {
    refused(Code::Unauthenticated, Reason::Unauthenticated, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str) -> Identity {
        Identity {
            trust_domain: "ferry".into(),
            kind: IdentityKind::Operator,
            name: name.into(),
        }
    }

    fn state() -> ClusterState {
        let mut s = ClusterState {
            trust_domain: "ferry".into(),
            ..Default::default()
        };
        s.roles.insert(("root".into(), Role::Admin));
        s.roles.insert(("vic".into(), Role::Viewer));
        s.roles.insert(("ann".into(), Role::Approver));
        s
    }

    #[test]
    fn before_the_bootstrap_a_caller_is_told_so_not_that_a_role_is_missing() {
        let fresh = ClusterState::default();
        for perm in [Permission::View, Permission::Operate, Permission::Admin] {
            let e = authorize(&fresh, Some(&op("root")), perm).err();
            assert!(
                matches!(&e, Some(s) if s.code() == tonic::Code::Unavailable
                    && s.message().contains("not bootstrapped yet")),
                "{perm:?}: {e:?}"
            );
        }
        assert!(authorize(&fresh, Some(&op("root")), Permission::Decide).is_ok());
    }

    #[test]
    fn roles_map_to_permissions() {
        let s = state();
        assert!(authorize(&s, Some(&op("root")), Permission::Admin).is_ok());
        assert!(authorize(&s, Some(&op("vic")), Permission::View).is_ok());
        assert!(authorize(&s, Some(&op("vic")), Permission::Operate).is_err());
        assert!(authorize(&s, Some(&op("nobody")), Permission::View).is_err());
        assert!(authorize(&s, None, Permission::View).is_err());
        assert!(authorize(&s, None, Permission::Public).is_ok());
        let agent = Identity {
            trust_domain: "ferry".into(),
            kind: IdentityKind::Agent,
            name: "a1".into(),
        };
        assert!(authorize(&s, Some(&agent), Permission::View).is_err());
        let foreign = Identity {
            trust_domain: "other".into(),
            ..op("root")
        };
        assert!(authorize(&s, Some(&foreign), Permission::View).is_err());
    }

    #[test]
    fn long_status_messages_are_clipped_at_a_character() {
        let long = Status::invalid_argument(format!("bad name {}", "é".repeat(5000)));
        let mut response = http::Response::new(());
        long.add_header(response.headers_mut()).expect("header");
        let clipped = clip_status_message(response);
        let status = Status::from_header_map(clipped.headers()).expect("status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < MAX_STATUS_MESSAGE + 40);
        assert!(
            status.message().ends_with("(10009 bytes in all)"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn every_rpc_needs_what_it_needed_before_the_service_split() {
        use Permission::{Admin, Decide, Operate, Renew, View};
        // Each method of the former single `Operator` service, with its new service.
        let table = [
            ("Pipelines", "ApplyPipeline", Operate),
            ("Pipelines", "ListPipelines", View),
            ("Pipelines", "GetPipeline", View),
            ("Pipelines", "SetTransition", Operate),
            ("Executions", "StartExecution", Operate),
            ("Executions", "StopExecution", Operate),
            ("Executions", "RetryStage", Operate),
            ("Executions", "GetExecution", View),
            ("Executions", "WatchExecution", View),
            ("Executions", "ListExecutions", View),
            ("Executions", "StreamLogs", View),
            ("Approvals", "Decide", Decide),
            ("Agents", "ListAgents", View),
            ("Agents", "DrainAgent", Admin),
            ("Agents", "RemoveAgent", Admin),
            ("Agents", "SetAgentLabels", Admin),
            ("Secrets", "SetSecret", Admin),
            ("Secrets", "ListSecrets", View),
            ("Secrets", "RemoveSecret", Admin),
            ("Notifications", "SetTarget", Admin),
            ("Notifications", "RemoveTarget", Admin),
            ("Notifications", "NotifyStatus", View),
            ("Notifications", "WatchEvents", View),
            ("Environments", "ApplyEnvironment", Operate),
            ("Environments", "ListEnvironments", View),
            ("Environments", "GetEnvironment", View),
            ("Artifacts", "ListArtifacts", View),
            ("Artifacts", "GetArtifact", View),
            ("Artifacts", "ListCaches", View),
            ("Artifacts", "RemoveCaches", Operate),
            ("Deployments", "ListDeployments", View),
            ("Deployments", "GetDeployment", View),
            ("Deployments", "Rollback", Operate),
            ("Access", "RevokeCertificate", Admin),
            ("Access", "RenewCertificate", Renew),
            ("Access", "CreateToken", Admin),
            ("Access", "GrantRole", Admin),
            ("Access", "RevokeRole", Admin),
            ("Access", "ListRoleBindings", Admin),
            ("Access", "WhoAmI", Decide),
            ("Access", "CreateLoginLink", View),
            ("Cluster", "ClusterStatus", View),
            ("Cluster", "AddMember", Admin),
            ("Cluster", "RemoveMember", Admin),
            ("Cluster", "TransferLeader", Admin),
            ("Cluster", "Backup", Admin),
        ];
        for (service, method, perm) in table {
            assert_eq!(
                permission_for(&format!("/ferry.v1.{service}/{method}")),
                Some(perm),
                "{service}/{method}"
            );
            // Only under its own service.
            for other in PUBLIC_SERVICES {
                if other != format!("ferry.v1.{service}") && other != "ferry.v1.Enrollment" {
                    assert_eq!(permission_for(&format!("/{other}/{method}")), None);
                }
            }
        }
        assert_eq!(permission_for("/ferry.v1.Operator/ListPipelines"), None);
        assert_eq!(
            permission_for("/ferry.v1.Enrollment/Enroll"),
            Some(Permission::Public)
        );
        // `ferry-agent install` fetches the CA before it has anything to
        // verify a coordinator with; it pins the CA's hash instead.
        assert_eq!(
            permission_for("/ferry.v1.Enrollment/GetClusterCa"),
            Some(Permission::Public)
        );
        assert_eq!(
            permission_for("/ferry.internal.v1.AgentSession/Session"),
            Some(Permission::Agent)
        );
        assert_eq!(
            permission_for("/ferry.internal.v1.RaftPeer/Propose"),
            Some(Permission::Coordinator)
        );
        assert_eq!(permission_for("/ferry.v1.AgentSession/Session"), None);
        assert_eq!(permission_for("/ferry.v1.RaftPeer/Propose"), None);
    }

    #[test]
    fn decide_needs_an_operator_identity_only_here() {
        assert_eq!(permission_for("/ferry.v1.Approvals/Nope"), None);
        assert_eq!(
            permission_for("/ferry.v1.Approvals/Decide"),
            Some(Permission::Decide)
        );
        let s = state();
        assert!(authorize(&s, Some(&op("nobody")), Permission::Decide).is_ok());
    }

    #[test]
    fn renewal_is_for_bound_agents_and_operators_with_a_role() {
        let mut s = state();
        let agent = Identity {
            trust_domain: "ferry".into(),
            kind: IdentityKind::Agent,
            name: "a1".into(),
        };
        assert!(authorize(&s, Some(&agent), Permission::Renew).is_err());
        let bound = |f: &str| ferry_state::CertBinding {
            fingerprint: f.into(),
            not_after: i64::MAX,
        };
        s.agents.insert(
            "a1".into(),
            ferry_state::AgentRecord {
                name: "a1".into(),
                cert: Some(bound("new")),
                previous_cert: Some(bound("old")),
                ..Default::default()
            },
        );
        assert!(authorize(&s, Some(&agent), Permission::Renew).is_ok());
        assert!(authorize(&s, Some(&op("vic")), Permission::Renew).is_ok());
        assert!(authorize(&s, Some(&op("nobody")), Permission::Renew).is_err());
        let member = Identity {
            trust_domain: "ferry".into(),
            kind: IdentityKind::Coordinator,
            name: "1".into(),
        };
        assert!(authorize(&s, Some(&member), Permission::Renew).is_err());
        // The renewed and the renewing certificate are both accepted; no other.
        assert!(check_certificate(&s, &agent, "new").is_ok());
        assert!(check_certificate(&s, &agent, "old").is_ok());
        assert!(check_certificate(&s, &agent, "older").is_err());
    }

    /// `apply` asks every person's command for the role this layer asked
    /// its RPC for (`ferry_state`'s own tests check the refusals).
    #[test]
    fn apply_needs_the_roles_the_grpc_layer_needs() {
        use ferry_state::testing::person_commands;
        use ferry_state::{Authority, By, Need};
        let nobody = By::operator("nobody");
        for (rpc, cmd) in person_commands(&nobody, &nobody) {
            let Authority::Person { need, .. } = cmd.authority() else {
                panic!("{rpc} is a person's command");
            };
            // The one public service that has the method.
            let early = PUBLIC_SERVICES
                .iter()
                .filter(|service| **service != "ferry.v1.Enrollment")
                .find_map(|service| permission_for(&format!("/{service}/{rpc}")));
            let expected = match need {
                Need::Operate => Permission::Operate,
                Need::Admin => Permission::Admin,
                Need::View => Permission::View,
            };
            assert_eq!(early, Some(expected), "{rpc}");
        }
    }
}
