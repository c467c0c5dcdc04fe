//! gRPC adapter: secrets (set, list, remove); values go in, never out.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::Ops;
use crate::ops::secrets::SecretInfo;
use crate::views;

fn secret_view(s: SecretInfo) -> pb::SecretView {
    pb::SecretView {
        name: s.name,
        updated_by: s.updated_by,
        updated_at: views::timestamp(Some(s.updated_at)),
    }
}

fn secret_list(secrets: Vec<SecretInfo>, next_page_token: String) -> pb::ListSecretsResponse {
    pb::ListSecretsResponse {
        secrets: secrets.into_iter().map(secret_view).collect(),
        next_page_token,
    }
}

pub async fn set_secret(
    ops: &Ops,
    req: Request<pb::SetSecretRequest>,
) -> Result<Response<pb::SecretView>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let info = ops.set_secret(&who, &req.name, &req.value).await?;
    Ok(Response::new(secret_view(info)))
}

pub async fn list_secrets(
    ops: &Ops,
    req: Request<pb::ListSecretsRequest>,
) -> Result<Response<pb::ListSecretsResponse>, Status> {
    let req = req.into_inner();
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (secrets, next) = ops.list_secrets(&page).await?;
    Ok(Response::new(secret_list(secrets, next)))
}

pub async fn remove_secret(
    ops: &Ops,
    req: Request<pb::SecretRequest>,
) -> Result<Response<pb::ListSecretsResponse>, Status> {
    let who = caller(&req)?;
    let name = req.into_inner().name;
    Ok(Response::new(secret_list(
        ops.remove_secret(&who, &name).await?,
        String::new(),
    )))
}
