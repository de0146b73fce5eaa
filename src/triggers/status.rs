//! Job status for `GET /backup/{job_id}`: one small JSON object per job under a status prefix of
//! the backup bucket (`backup-status/{job_id}.json` by default). The API writes `queued`; the
//! worker writes `running`, then `complete` or `failed`. The manifest stays the authority on
//! completeness; the status only tells a caller, who knows nothing but the job id, where to look.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::aws::FailureKind;
use crate::model::job::{BackupJob, JobId, Prefix};
use crate::store::{ObjectMeta, ObjectStore, Precondition, StoreError};

const JSON: ObjectMeta = ObjectMeta {
    content_type: "application/json",
    content_encoding: None,
    records: None,
    retained: false,
};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// On the queue, not yet picked up.
    Queued,
    /// A worker is on it (or between two legs of a long job).
    Running,
    /// The manifest is written.
    Complete,
    /// It failed; `will_retry` says whether SQS delivers it again.
    Failed,
}

/// The status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// Where it stands.
    pub state: JobState,
    /// Table being backed up.
    pub table: String,
    /// What started it.
    pub trigger: String,
    /// When it was requested.
    pub requested_at: String,
    /// When this status was written.
    pub updated_at: String,
    /// A random id of the write that stored this version. Two writers may write equal statuses
    /// in the same millisecond (two workers counting themselves from the same count); a writer
    /// whose conditional write was refused recognises its own version by it, never another's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// Invocations that worked on it so far (more than one for long jobs and retries).
    #[serde(default)]
    pub legs: u32,
    /// Items backed up, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// Stored bytes, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Data files, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    /// The manifest's URI, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The stage that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a failed job will be delivered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will_retry: Option<bool>,
    /// Whether the summary email went out (so a redelivery after a crash sends it once).
    #[serde(default)]
    pub notified: bool,
    /// Workers sharing the job, when it fanned out over several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Workers that have read their share, when it fanned out over several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_done: Option<u32>,
    /// Once complete, the change from the table's previous backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// While running: items read and the estimated fraction and time left, from the table's
    /// item count (an estimate: DynamoDB refreshes it about every six hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::backup::pipeline::Estimate>,
    /// The bucket the job writes to (none for a directory): with `prefix`, where the stuck-job
    /// sweep finds the job's manifest, leases and failure record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The job's key prefix in its bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// When an operator's redrive last resumed the job (RFC 3339): the sweep counts the job's
    /// time from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<String>,
    /// A restore job's new table (`table` is then the backed-up table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_into: Option<String>,
}

/// How a complete backup compares with the table's previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// When the previous backup finished (RFC 3339).
    pub since: String,
    /// The previous backup's job.
    pub previous_job_id: String,
    /// Items, in percent (negative: fewer).
    pub items_percent: Option<f64>,
    /// Stored bytes, in percent.
    pub bytes_percent: Option<f64>,
    /// Whether items fell by the alert threshold or more.
    pub shrank: bool,
}

impl JobStatus {
    /// A fresh status for `job` in `state`.
    pub fn new(job: &BackupJob, state: JobState) -> Self {
        JobStatus {
            job_id: job.job_id.to_string(),
            state,
            table: job.table.to_string(),
            trigger: job.trigger.name().to_string(),
            requested_at: job
                .requested_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            updated_at: now(),
            revision: String::new(),
            legs: 0,
            items: None,
            bytes: None,
            files: None,
            manifest: None,
            stage: None,
            error: None,
            will_retry: None,
            notified: false,
            workers: None,
            workers_done: None,
            change: None,
            progress: None,
            bucket: match &job.destination {
                crate::model::job::Destination::S3 { bucket, .. } => Some(bucket.to_string()),
                crate::model::job::Destination::Directory { .. } => None,
            },
            prefix: Some(job.destination.prefix().to_string()),
            resumed_at: None,
            restore_into: None,
        }
    }

    /// A fresh status for a restore job of a backup of `source_table`.
    pub fn for_restore(
        job: &crate::model::restore_job::RestoreJob,
        source_table: &str,
        state: JobState,
    ) -> Self {
        JobStatus {
            job_id: job.job_id.to_string(),
            state,
            table: source_table.to_string(),
            trigger: job.trigger.name().to_string(),
            requested_at: now(),
            updated_at: now(),
            revision: String::new(),
            legs: 0,
            items: None,
            bytes: None,
            files: None,
            manifest: None,
            stage: None,
            error: None,
            will_retry: None,
            notified: false,
            workers: None,
            workers_done: None,
            change: None,
            progress: None,
            bucket: Some(job.bucket.to_string()),
            prefix: None,
            resumed_at: None,
            restore_into: Some(job.table.to_string()),
        }
    }

    /// Whether nothing more will happen to the job: complete, or failed with no retry to come.
    pub fn is_final(&self) -> bool {
        match self.state {
            JobState::Complete => true,
            JobState::Failed => self.will_retry != Some(true),
            JobState::Queued | JobState::Running => false,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads and writes status documents in a store.
#[derive(Clone)]
pub struct StatusBoard {
    store: Arc<dyn ObjectStore>,
    prefix: Prefix,
}

/// Default status prefix: outside the backup prefix, so it never mixes with backup data.
pub const DEFAULT_STATUS_PREFIX: &str = "backup-status/";

impl StatusBoard {
    /// A board keeping documents under `prefix` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Prefix) -> Self {
        StatusBoard { store, prefix }
    }

    fn key(&self, job_id: &str) -> String {
        format!("{}{job_id}.json", self.prefix)
    }

    /// Writes `status`, stamping the time.
    pub async fn put(&self, status: &JobStatus) -> Result<(), StoreError> {
        let mut status = status.clone();
        status.updated_at = now();
        status.revision = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&status).map_err(|e| {
            StoreError::request(
                "PutObject",
                self.key(&status.job_id),
                FailureKind::Rejected,
                e.to_string(),
            )
        })?;
        self.store
            .put_object(&self.key(&status.job_id), Bytes::from(body), &JSON)
            .await
    }

    /// Changes the status of `job_id` by `change`, which sees the current document (`None`:
    /// none yet) and returns the new one, or `None` to leave it. Compare-and-swap: when another
    /// worker of the same job wrote in between, `change` runs again on what that worker wrote,
    /// so concurrent workers never undo each other (a late "running" never hides "complete").
    pub async fn update(
        &self,
        job_id: &str,
        change: impl Fn(Option<JobStatus>) -> Option<JobStatus>,
    ) -> Result<(), StoreError> {
        const ATTEMPTS: usize = 8;
        let key = self.key(job_id);
        for _ in 0..ATTEMPTS {
            let (current, tag) = match self.store.get_tagged(&key).await? {
                Some((body, tag)) => (Some(self.parse(&key, &body)?), Some(tag)),
                None => (None, None),
            };
            let Some(mut status) = change(current) else {
                return Ok(());
            };
            status.updated_at = now();
            status.revision = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_vec(&status).map_err(|e| {
                StoreError::request(
                    "PutObject",
                    key.clone(),
                    FailureKind::Rejected,
                    e.to_string(),
                )
            })?;
            let condition = match &tag {
                Some(tag) => Precondition::Unchanged(tag),
                None => Precondition::Absent,
            };
            if crate::store::put_if(
                self.store.as_ref(),
                &key,
                Bytes::from(body),
                &JSON,
                condition,
            )
            .await?
            {
                return Ok(());
            }
        }
        Err(StoreError::request(
            "PutObject",
            self.store.uri(&key),
            FailureKind::Throttled,
            format!("the status changed under {ATTEMPTS} attempts in a row"),
        ))
    }

    fn parse(&self, key: &str, body: &[u8]) -> Result<JobStatus, StoreError> {
        serde_json::from_slice(body).map_err(|e| {
            StoreError::request(
                "GetObject",
                self.store.uri(key),
                FailureKind::Rejected,
                format!("not a job status document: {e}"),
            )
        })
    }

    /// Every job that has not ended: queued, running, or failed with a retry to come. Read
    /// by the stuck-job sweep; a document that does not parse is skipped.
    pub async fn unfinished(&self) -> Result<Vec<JobStatus>, StoreError> {
        use futures::StreamExt;
        let keys = self.store.list(self.prefix.as_str()).await?;
        let read = futures::stream::iter(keys.into_iter().filter(|k| k.ends_with(".json")))
            .map(|key| async move { self.store.get(&key).await.map(|body| (key, body)) })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        let mut unfinished = Vec::new();
        for found in read {
            match found {
                Ok((key, body)) => match self.parse(&key, &body) {
                    Ok(status) if !status.is_final() => unfinished.push(status),
                    Ok(_) | Err(_) => {}
                },
                // Gone between the list and the read.
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(unfinished)
    }

    /// The status of `job_id`, or `None` when no such job was ever seen.
    pub async fn get(&self, job_id: &JobId) -> Result<Option<JobStatus>, StoreError> {
        let key = self.key(job_id.as_str());
        match self.store.get(&key).await {
            Ok(bytes) => self.parse(&key, &bytes).map(Some),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
