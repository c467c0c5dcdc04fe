//! Waiting on an execution by polling `GetExecution` (which any member
//! answers, so it rides out a leader change), and reading every page of a
//! paged `List*` call.

use std::future::Future;
use std::time::Duration;

use ferry_proto as pb;
use tonic::client::GrpcService;

use crate::Api;

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why waiting stopped before the execution ended.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("execution {execution} of {pipeline} is still {status:?} after {waited:?}")]
    TimedOut {
        pipeline: String,
        execution: String,
        status: pb::ExecutionStatus,
        waited: Duration,
    },
    #[error(transparent)]
    Status(#[from] tonic::Status),
}

/// Whether `status` is final.
fn is_final(status: pb::ExecutionStatus) -> bool {
    matches!(
        status,
        pb::ExecutionStatus::Succeeded
            | pb::ExecutionStatus::Failed
            | pb::ExecutionStatus::Stopped
            | pb::ExecutionStatus::Superseded
    )
}

/// The execution once it reached a final status, polled every second for
/// up to `timeout`. UNAVAILABLE answers (a member restarting, an election)
/// are waited through.
pub async fn wait_for_execution<T>(
    api: &mut Api<T>,
    pipeline: &str,
    execution: &str,
    timeout: Duration,
) -> Result<pb::ExecutionView, WaitError>
where
    T: GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
{
    let started = tokio::time::Instant::now();
    let mut status = pb::ExecutionStatus::Unspecified;
    loop {
        let asked = api
            .executions
            .get_execution(pb::GetExecutionRequest {
                pipeline: pipeline.to_string(),
                execution_id: execution.to_string(),
            })
            .await;
        match asked {
            Ok(view) => {
                let view = view.into_inner();
                status = view.status();
                if is_final(status) {
                    return Ok(view);
                }
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {}
            Err(s) => return Err(s.into()),
        }
        if started.elapsed() >= timeout {
            return Err(WaitError::TimedOut {
                pipeline: pipeline.to_string(),
                execution: execution.to_string(),
                status,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every item of a paged call: `fetch(page_token)` asks for one page and
/// answers its items and `next_page_token`; pages are read until that is
/// empty.
///
/// ```no_run
/// # async fn f(api: &mut ferry_client::Api<tonic::transport::Channel>) -> Result<(), tonic::Status> {
/// use ferry_proto as pb;
/// let all = ferry_client::pages(|token| {
///     let mut executions = api.executions.clone();
///     async move {
///         let page = executions
///             .list_executions(pb::ListExecutionsRequest {
///                 pipeline: "hello".into(),
///                 page_size: 100,
///                 page_token: token,
///                 ..Default::default()
///             })
///             .await?
///             .into_inner();
///         Ok((page.executions, page.next_page_token))
///     }
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn pages<I, F, Fut>(mut fetch: F) -> Result<Vec<I>, tonic::Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<I>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}
