//! Queueing the shares of a fanned-out job: when it fans out, when its coordinator is
//! redelivered, and when an operator's redrive resumes it. All three pick the shares that need
//! a message the same way and send them the same way.

use std::num::NonZeroU32;

use futures::StreamExt;

use super::{lease, Envelope};
use crate::model::fan_out::Plan;
use crate::model::job::BackupJob;
use crate::model::manifest::Layout;
use crate::store::{ObjectStore, StoreError};
use crate::triggers::queue::JobQueue;

/// Shard messages sent, or shares looked up, at once.
const IN_FLIGHT: usize = 16;

/// Which shares [`pending`] leaves out besides those with a result or a live lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    /// A share with a checkpoint has its own message (or continuation) somewhere: left out.
    Skip,
    /// A share with a checkpoint was stopped by a failure and needs a message again.
    Requeue,
}

/// The shares among `workers` that need a message: no result, no live lease, and (with
/// [`Started::Skip`]) no checkpoint either.
pub(super) async fn pending(
    store: &dyn ObjectStore,
    layout: &Layout,
    workers: impl Iterator<Item = u32>,
    started: Started,
) -> Result<Vec<u32>, StoreError> {
    let recorded = store.list(&layout.results_prefix()).await?;
    let checked: Vec<Result<Option<u32>, StoreError>> =
        futures::stream::iter(workers.filter(|w| !recorded.contains(&layout.result_key(*w))))
            .map(|worker| async move {
                if started == Started::Skip
                    && store
                        .exists(&layout.checkpoint_key(Some(worker), 1))
                        .await?
                {
                    return Ok(None);
                }
                let busy = lease::live(store, layout, Some(worker)).await?;
                Ok((!busy).then_some(worker))
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
    checked.into_iter().filter_map(Result::transpose).collect()
}

/// Sends one shard message per worker of `workers`, for `job` as `plan` shares it.
pub(super) async fn send(
    queue: &dyn JobQueue,
    job: &BackupJob,
    plan: &Plan,
    workers: &[u32],
) -> Result<(), String> {
    let mut shard_job = job.clone();
    shard_job.workers = NonZeroU32::new(plan.workers);
    shard_job.segments = NonZeroU32::new(plan.segments);
    let request = shard_job.to_request();
    let sent: Vec<Result<String, String>> = futures::stream::iter(workers.iter().copied())
        .map(|worker| {
            let body = serde_json::to_string(&Envelope {
                worker: Some(worker),
                continuation: None,
                job: request.clone(),
            });
            async move {
                let body = body.map_err(|e| e.to_string())?;
                queue.send(&body, None).await.map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    sent.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}
