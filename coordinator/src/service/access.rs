//! gRPC adapter: join tokens, role bindings, certificate revocation and
//! `whoami` (renewal is `renew.rs`).

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::Ops;
use crate::views;
use ferry_state::Role;

fn bindings(all: Vec<(String, Role)>, next_page_token: String) -> pb::RoleBindingsResponse {
    pb::RoleBindingsResponse {
        bindings: all
            .into_iter()
            .map(|(subject, role)| pb::RoleBinding {
                subject,
                role: pb::Role::from(role).into(),
            })
            .collect(),
        next_page_token,
    }
}

/// The role a request names; UNSPECIFIED or a number this version does not
/// know is refused.
fn requested_role(role: i32) -> Result<Role, Status> {
    pb::Role::try_from(role)
        .ok()
        .and_then(|r| Role::try_from(r).ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "the role must be one of {} (got {role})",
                Role::ALL.map(|r| r.as_str()).join(", ")
            ))
        })
}

/// A join token's lifetime in whole seconds (0: unset, the default);
/// negative is refused.
fn ttl_seconds(ttl: Option<prost_types::Duration>) -> Result<u64, Status> {
    let seconds = ttl.map_or(0, |d| d.seconds);
    u64::try_from(seconds)
        .map_err(|_| Status::invalid_argument("a join token's ttl cannot be negative"))
}

pub async fn create_token(
    ops: &Ops,
    req: Request<pb::CreateTokenRequest>,
) -> Result<Response<pb::CreateTokenResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let t = ops
        .create_token(&who, ttl_seconds(req.ttl)?, req.uses, req.labels)
        .await?;
    Ok(Response::new(pb::CreateTokenResponse {
        token: t.token,
        expires_at: views::timestamp(Some(t.expires_at)),
        labels: t.labels,
    }))
}

/// `ferry ui`: a one-time console login link on this member's HTTPS address
/// (or its `--console-url`).
pub async fn create_login_link(
    ops: &Ops,
    req: Request<pb::CreateLoginLinkRequest>,
) -> Result<Response<pb::CreateLoginLinkResponse>, Status> {
    let who = caller(&req)?;
    let cert = req
        .extensions()
        .get::<crate::authz::CallerCert>()
        .map(|c| c.0.clone());
    let base = ops.ctx().console_url.clone().ok_or_else(|| {
        Status::failed_precondition(
            "this coordinator serves no console: start it with --http-listen (and --console-url when browsers reach it by another name)",
        )
    })?;
    let ttl = match req.into_inner().ttl {
        None => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            return Err(Status::invalid_argument(
                "a login link's ttl cannot be negative",
            ));
        }
        Some(d) => Some(std::time::Duration::new(
            u64::try_from(d.seconds).unwrap_or(0),
            u32::try_from(d.nanos).unwrap_or(0),
        )),
    };
    let link = ops.create_login_link(&who, cert, ttl).await?;
    Ok(Response::new(pb::CreateLoginLinkResponse {
        url: format!("{}/login/{}", base.trim_end_matches('/'), link.secret),
        expires_at: views::timestamp(Some(link.expires_at)),
    }))
}

pub async fn grant_role(
    ops: &Ops,
    req: Request<pb::RoleRequest>,
) -> Result<Response<pb::RoleBindingsResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let role = requested_role(req.role)?;
    let all = ops.grant_role(&who, &req.subject, role).await?;
    Ok(Response::new(bindings(all, String::new())))
}

pub async fn revoke_role(
    ops: &Ops,
    req: Request<pb::RoleRequest>,
) -> Result<Response<pb::RoleBindingsResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let role = requested_role(req.role)?;
    let all = ops.revoke_role(&who, &req.subject, role).await?;
    Ok(Response::new(bindings(all, String::new())))
}

pub async fn list_role_bindings(
    ops: &Ops,
    req: Request<pb::ListRoleBindingsRequest>,
) -> Result<Response<pb::RoleBindingsResponse>, Status> {
    let req = req.into_inner();
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (all, next) = ops.list_role_bindings(&page).await?;
    Ok(Response::new(bindings(all, next)))
}

pub async fn revoke_certificate(
    ops: &Ops,
    req: Request<pb::RevokeCertificateRequest>,
) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
    let who = caller(&req)?;
    let pem = req.into_inner().certificate_pem;
    let facts = ops.revoke_certificate(&who, &pem).await?;
    Ok(Response::new(pb::RevokeCertificateResponse {
        identity: facts.identity.uri(),
        fingerprint: facts.fingerprint,
        expires_at: views::timestamp(Some(facts.not_after_ms)),
    }))
}

pub async fn who_am_i(
    ops: &Ops,
    req: Request<pb::WhoAmIRequest>,
) -> Result<Response<pb::WhoAmIResponse>, Status> {
    let who = caller(&req)?;
    let roles = ops
        .who_am_i(&who)
        .into_iter()
        .map(|r| pb::Role::from(r).into())
        .collect();
    Ok(Response::new(pb::WhoAmIResponse {
        identity: who.uri(),
        roles,
        bootstrapped: ops.bootstrapped(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_the_api_does_not_know_is_refused_naming_the_roles() {
        for n in [0, 99, -1] {
            let e = requested_role(n)
                .err()
                .map(|s| (s.code(), s.message().to_string()));
            assert!(
                matches!(&e, Some((tonic::Code::InvalidArgument, m))
                    if m.contains("admin, operator, approver, viewer")),
                "{n}: {e:?}"
            );
        }
        assert_eq!(
            requested_role(pb::Role::Approver as i32).ok(),
            Some(Role::Approver)
        );
    }
}
