//! `ferry rbac` (grant, revoke, list role bindings) and `ferry whoami`.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, RbacCommand, RoleArgs};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct BindingJson<'a> {
    subject: &'a str,
    role: String,
}

pub fn bindings_table(bindings: &[pb::RoleBinding]) -> Table {
    let mut table = Table::new(&["SUBJECT", "ROLE"]);
    for b in bindings {
        table.row([b.subject.clone(), wire::role(b.role)]);
    }
    table
}

fn print_bindings(bindings: &[pb::RoleBinding]) -> Result<()> {
    output::print_json(
        &bindings
            .iter()
            .map(|b| BindingJson {
                subject: &b.subject,
                role: wire::role(b.role),
            })
            .collect::<Vec<_>>(),
    )
}

/// The request for `ferry rbac grant|revoke NAME ROLE`; an unknown role
/// word is refused here, before connecting.
fn role_request(args: &RoleArgs) -> Result<pb::RoleRequest> {
    Ok(pb::RoleRequest {
        subject: args.name.clone(),
        role: wire::parse_role(&args.role)?.into(),
    })
}

pub async fn run(global: &GlobalArgs, command: &RbacCommand) -> Result<()> {
    let (bindings, done) = match command {
        RbacCommand::Grant(args) => {
            let request = role_request(args)?;
            let mut api = client::connect(global).await?;
            (
                api.access.grant_role(request).await?.into_inner().bindings,
                Some(format!("granted role {} to {}", args.role, args.name)),
            )
        }
        RbacCommand::Revoke(args) => {
            let request = role_request(args)?;
            let mut api = client::connect(global).await?;
            (
                api.access.revoke_role(request).await?.into_inner().bindings,
                Some(format!("revoked role {} from {}", args.role, args.name)),
            )
        }
        RbacCommand::List => {
            let mut api = client::connect(global).await?;
            (
                api.access
                    .list_role_bindings(pb::ListRoleBindingsRequest::default())
                    .await?
                    .into_inner()
                    .bindings,
                None,
            )
        }
    };
    match (global.output, done) {
        (Format::Json, _) => print_bindings(&bindings),
        (Format::Table, Some(done)) => output::print(&done),
        (Format::Table, None) => output::print(&bindings_table(&bindings).render()),
    }
}

#[derive(Serialize)]
struct WhoAmIJson<'a> {
    identity: &'a str,
    roles: Vec<String>,
    bootstrapped: bool,
}

pub async fn whoami(global: &GlobalArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let reply = api
        .access
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    let roles: Vec<String> = reply.roles.iter().map(|r| wire::role(*r)).collect();
    match global.output {
        Format::Table => output::print(&format!(
            "identity: {}\nroles:    {}",
            reply.identity,
            if !reply.bootstrapped {
                "(none: the cluster is not bootstrapped yet; retry shortly)".to_string()
            } else if roles.is_empty() {
                "(none)".to_string()
            } else {
                roles.join(", ")
            }
        )),
        Format::Json => output::print_json(&WhoAmIJson {
            identity: &reply.identity,
            roles,
            bootstrapped: reply.bootstrapped,
        }),
    }
}

/// `ferry ui`: a one-time console login link for the caller.
pub async fn ui(global: &GlobalArgs, args: &crate::args::UiArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let reply = api
        .access
        .create_login_link(pb::CreateLoginLinkRequest {
            ttl: Some(prost_types::Duration {
                seconds: i64::try_from(args.ttl.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        })
        .await?
        .into_inner();
    let expires = wire::time(reply.expires_at.as_ref());
    match global.output {
        Format::Table => output::print(&format!(
            "{}
open it in your browser before {expires}; it works once
",
            reply.url
        )),
        Format::Json => output::print_json(&serde_json::json!({
            "url": reply.url,
            "expires_at": expires,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_render_as_two_columns() {
        let table = bindings_table(&[
            pb::RoleBinding {
                subject: "alice".into(),
                role: pb::Role::Admin.into(),
            },
            pb::RoleBinding {
                subject: "bob".into(),
                role: pb::Role::Viewer.into(),
            },
        ]);
        assert_eq!(
            table.render(),
            "SUBJECT  ROLE\nalice    admin\nbob      viewer\n"
        );
    }
}
