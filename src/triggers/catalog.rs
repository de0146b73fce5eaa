//! A table's backups, newest first, for `ddb-backup list`, `GET /backups` and the web console.
//! A backup is a directory `<prefix><table>/dt=<date>/<job_id>/` of the bucket: complete when its
//! manifest exists (the manifest then says everything), otherwise running or failed as its status
//! document says. Only the directories of the newest dates are read, so a long history costs one
//! listing and `limit` small reads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::fan_out::FailureRecord;
use crate::model::job::{JobId, Prefix, TableName};
use crate::model::manifest::{Manifest, FAILURE_FILE, MANIFEST_FILE};
use crate::store::{ObjectStore, StoreError};
use crate::triggers::status::{JobState, StatusBoard};

/// Most backups one listing returns.
pub const MAX_LIMIT: usize = 1000;

/// Where one backup stands, as a list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupState {
    /// The manifest is written: the backup can be verified and restored.
    Complete,
    /// A worker is on it, or it waits between two legs or for a retry.
    Running,
    /// It failed for good; nothing of it is complete.
    Failed,
    /// Started without a status document (a CLI run) and never finished: killed, or still
    /// running elsewhere.
    Incomplete,
}

/// One backup of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupEntry {
    /// The job.
    pub job_id: String,
    /// Its date partition (`YYYY-MM-DD`, from when it was requested).
    pub date: String,
    /// Where it stands.
    pub state: BackupState,
    /// What started it (`schedule`, `api`, `manual`, `cli`), when known.
    pub trigger: Option<String>,
    /// When it was requested (RFC 3339), when known.
    pub requested_at: Option<String>,
    /// When it finished (complete backups).
    pub finished_at: Option<String>,
    /// Items backed up (complete backups).
    pub items: Option<u64>,
    /// Stored bytes (complete backups).
    pub bytes: Option<u64>,
    /// Working time of every leg (complete backups).
    pub duration_ms: Option<u64>,
    /// Record format and compression, e.g. `dynamodb-json+gzip` (complete backups).
    pub format: Option<String>,
    /// The manifest's URI (complete backups).
    pub manifest: Option<String>,
    /// Items against the table's previous backup, in percent (complete backups).
    pub items_change_percent: Option<f64>,
    /// Complete backups: the moment a restore brings the table to, when the table's changes
    /// are captured; `None` for a fuzzy backup (items read over the scan's duration).
    pub consistent_as_of: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where a deployment's backups are: the bucket, the key prefix, and the status documents.
#[derive(Clone)]
pub struct Catalog {
    store: std::sync::Arc<dyn ObjectStore>,
    prefix: Prefix,
    status: Option<StatusBoard>,
}

impl Catalog {
    /// The backups under `prefix` of `store`, with job states from `status`.
    pub fn new(
        store: std::sync::Arc<dyn ObjectStore>,
        prefix: Prefix,
        status: Option<StatusBoard>,
    ) -> Self {
        Catalog {
            store,
            prefix,
            status,
        }
    }

    /// `table`'s backups, newest first, at most `limit` (see [`list_backups`]).
    pub async fn list(
        &self,
        table: &TableName,
        limit: usize,
    ) -> Result<Vec<BackupEntry>, StoreError> {
        list_backups(
            self.store.as_ref(),
            &self.prefix,
            table,
            self.status.as_ref(),
            limit,
        )
        .await
    }

    /// The store the backups are in.
    pub fn store(&self) -> &std::sync::Arc<dyn ObjectStore> {
        &self.store
    }
}

/// Lists `table`'s backups under `prefix` of `store`, newest first, at most `limit`; states of
/// backups without a manifest come from `status` when there is one.
pub async fn list_backups(
    store: &dyn ObjectStore,
    prefix: &Prefix,
    table: &TableName,
    status: Option<&StatusBoard>,
    limit: usize,
) -> Result<Vec<BackupEntry>, StoreError> {
    let table_base = format!("{prefix}{table}/dt=");
    // date → job → the file names directly in its directory that matter here.
    let mut backups: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for key in store.list(&table_base).await? {
        let Some(rest) = key.strip_prefix(&table_base) else {
            continue;
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(date), Some(job), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        backups
            .entry(date.to_string())
            .or_default()
            .entry(job.to_string())
            .or_default()
            .push(name.to_string());
    }
    let limit = limit.clamp(1, MAX_LIMIT);
    let mut entries = Vec::new();
    for (date, jobs) in backups.into_iter().rev() {
        if entries.len() >= limit {
            break;
        }
        for (job_id, names) in jobs {
            let base = format!("{table_base}{date}/{job_id}/");
            let entry = if names.iter().any(|n| n == MANIFEST_FILE) {
                complete_entry(store, &base, &date, &job_id).await?
            } else {
                unfinished_entry(store, &base, &date, &job_id, &names, status).await?
            };
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| {
        (
            b.date.as_str(),
            b.requested_at.as_deref(),
            b.job_id.as_str(),
        )
            .cmp(&(
                a.date.as_str(),
                a.requested_at.as_deref(),
                a.job_id.as_str(),
            ))
    });
    entries.truncate(limit);
    Ok(entries)
}

async fn complete_entry(
    store: &dyn ObjectStore,
    base: &str,
    date: &str,
    job_id: &str,
) -> Result<BackupEntry, StoreError> {
    let key = format!("{base}{MANIFEST_FILE}");
    let manifest = Manifest::from_json(&store.get(&key).await?).map_err(|e| {
        StoreError::request(
            "GetObject",
            store.uri(&key),
            crate::aws::FailureKind::Rejected,
            format!("the manifest does not parse: {e}"),
        )
    })?;
    Ok(BackupEntry {
        job_id: job_id.to_string(),
        date: date.to_string(),
        state: BackupState::Complete,
        trigger: Some(manifest.trigger.clone()),
        requested_at: Some(manifest.requested_at.clone()),
        finished_at: Some(manifest.finished_at.clone()),
        items: Some(manifest.item_count),
        bytes: Some(manifest.bytes),
        duration_ms: Some(manifest.duration_ms),
        format: Some(format!(
            "{}+{}",
            manifest.format.name(),
            manifest.compression.name()
        )),
        manifest: Some(store.uri(&key)),
        items_change_percent: manifest.items_change_percent(),
        consistent_as_of: manifest
            .consistency
            .as_ref()
            .and_then(|c| c.consistent_as_of.clone()),
        error: None,
    })
}

async fn unfinished_entry(
    store: &dyn ObjectStore,
    base: &str,
    date: &str,
    job_id: &str,
    names: &[String],
    status: Option<&StatusBoard>,
) -> Result<BackupEntry, StoreError> {
    let mut entry = BackupEntry {
        job_id: job_id.to_string(),
        date: date.to_string(),
        state: BackupState::Incomplete,
        trigger: None,
        requested_at: None,
        finished_at: None,
        items: None,
        bytes: None,
        duration_ms: None,
        format: None,
        manifest: None,
        items_change_percent: None,
        consistent_as_of: None,
        error: None,
    };
    let known = match (status, JobId::new(job_id)) {
        (Some(board), Ok(id)) => board.get(&id).await?,
        _ => None,
    };
    if let Some(known) = known {
        entry.state = match known.state {
            JobState::Failed if known.will_retry != Some(true) => BackupState::Failed,
            // A manifest-less "complete" cannot be: the manifest is the authority.
            JobState::Complete => BackupState::Incomplete,
            _ => BackupState::Running,
        };
        entry.trigger = Some(known.trigger);
        entry.requested_at = Some(known.requested_at);
        entry.error = known.error;
    }
    if names.iter().any(|n| n == FAILURE_FILE) {
        entry.state = BackupState::Failed;
        if entry.error.is_none() {
            let record = store.get(&format!("{base}{FAILURE_FILE}")).await?;
            entry.error = serde_json::from_slice::<FailureRecord>(&record)
                .ok()
                .map(|r| r.error);
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;
    use crate::test_support::{memory_backup, numbered_items};
    use crate::triggers::status::JobStatus;

    fn table() -> TableName {
        TableName::new("tbl").unwrap()
    }

    #[tokio::test]
    async fn complete_running_failed_and_killed_backups_are_told_apart_newest_first() {
        let store = MemoryStore::new();
        let prefix = Prefix::new("backups/").unwrap();
        let board = StatusBoard::new(
            Arc::new(store.clone()),
            Prefix::new("backup-status/").unwrap(),
        );
        let old = memory_backup(
            &store,
            numbered_items(30),
            r#","job_id":"old","requested_at":"2026-11-01T02:00:00Z""#,
        )
        .await;
        let new = memory_backup(
            &store,
            numbered_items(20),
            r#","job_id":"new","requested_at":"2026-11-03T02:00:00Z","compression":"zstd""#,
        )
        .await;
        // A running job and a failed one (their leases are all there is of them), and a CLI
        // run that was killed (its checkpoint, no status).
        let meta = crate::backup::pipeline::JSON_META;
        for (job, state, when) in [
            ("running", JobState::Running, "2026-11-04"),
            ("failed", JobState::Failed, "2026-11-02"),
        ] {
            store
                .put_object(
                    &format!("backups/tbl/dt={when}/{job}/leases/job.json"),
                    bytes::Bytes::from_static(b"{}"),
                    &meta,
                )
                .await
                .unwrap();
            let request = format!(
                r#"{{"table":"tbl","bucket":"bkt-test","job_id":"{job}","requested_at":"{when}T02:00:00Z"}}"#
            );
            let job = crate::model::job::BackupJob::parse(&request, &Default::default()).unwrap();
            let mut status = JobStatus::new(&job, state);
            if state == JobState::Failed {
                (status.will_retry, status.error) = (Some(false), Some("access denied".into()));
            }
            board.put(&status).await.unwrap();
        }
        store
            .put_object(
                "backups/tbl/dt=2026-11-02/killed/checkpoints/00001.json",
                bytes::Bytes::from_static(b"{}"),
                &meta,
            )
            .await
            .unwrap();

        let listed = list_backups(&store, &prefix, &table(), Some(&board), 10)
            .await
            .unwrap();
        let summary: Vec<_> = listed
            .iter()
            .map(|e| (e.job_id.as_str(), e.state))
            .collect();
        assert_eq!(
            summary,
            [
                ("running", BackupState::Running),
                ("new", BackupState::Complete),
                ("failed", BackupState::Failed),
                ("killed", BackupState::Incomplete),
                ("old", BackupState::Complete),
            ]
        );
        let newest = &listed[1];
        assert_eq!((newest.items, newest.bytes), (Some(20), Some(new.bytes)));
        assert_eq!(newest.format.as_deref(), Some("dynamodb-json+zstd"));
        assert_eq!(newest.duration_ms, Some(new.duration_ms));
        assert!(newest
            .manifest
            .as_deref()
            .unwrap()
            .ends_with("/new/manifest.json"));
        assert_eq!(listed[2].error.as_deref(), Some("access denied"));
        assert_eq!(listed[4].items, Some(old.item_count));

        let two = list_backups(&store, &prefix, &table(), Some(&board), 2)
            .await
            .unwrap();
        assert_eq!(
            two.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(),
            ["running", "new"]
        );
        let other = list_backups(&store, &prefix, &TableName::new("other").unwrap(), None, 10)
            .await
            .unwrap();
        assert!(other.is_empty());
    }
}
