//! A restore job: a backup written into a new table by queued workers, each taking a share of
//! its files, instead of by one process. Like a backup job it is one JSON document, whatever
//! sent it (`enqueue --restore`, `POST /restore`, the console), parsed and validated once into a
//! [`RestoreJob`]; the documents its workers share live beside the backup, under
//! [`RestoreLayout`].

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::model::job::{
    BucketName, EmailAddress, InvalidValue, JobDefaults, JobError, JobId, TableName, Trigger,
    MAX_RECIPIENTS,
};
use crate::model::manifest::FileEntry;

/// Largest `workers` a restore may ask for.
pub const MAX_RESTORE_WORKERS: u32 = 100;
/// Largest write budget a restore may ask for, in WCU/s (a typo guard).
pub const MAX_WRITE_BUDGET: f64 = 1_000_000.0;
/// The tables a queued restore may create when the deployment names no pattern.
pub const DEFAULT_RESTORE_PATTERN: &str = "restored-*";

/// Names the tables that restore jobs may create: a glob whose `*` matches any run of
/// characters. A restore job never writes into a table outside it, so an API key cannot
/// overwrite a production table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern(String);

impl Default for TablePattern {
    fn default() -> Self {
        TablePattern(DEFAULT_RESTORE_PATTERN.to_string())
    }
}

impl TablePattern {
    /// Validates a pattern: table-name characters and `*`, starting with at least 3 fixed
    /// characters (a leading `*` would let a restore write `studentData` through `*Data`).
    pub fn new(pattern: &str) -> Result<TablePattern, InvalidValue> {
        let ok_chars = pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'));
        let prefix = pattern.chars().take_while(|c| *c != '*').count();
        if !ok_chars || !(3..=255).contains(&pattern.len()) || prefix < 3 {
            return Err(InvalidValue(format!(
                "`{pattern}` is not a table-name pattern: use table-name characters with `*` wildcards, starting with at least 3 fixed characters, e.g. \"restored-*\""
            )));
        }
        Ok(TablePattern(pattern.to_string()))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `*`-only glob matching, iterative with one backtrack point.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// What a message is for: only `"restore"` today; a message without `kind` is a backup job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Write a backup into a new table.
    Restore,
}

/// A restore job as it arrives on the wire; every field but `kind` optional here, so that
/// defaults and the message can fill them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Always `"restore"`.
    pub kind: JobKind,
    /// The backup: `s3://bucket/…/manifest.json` or its folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The new table, which must match the deployment's restore pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Workers sharing the files (default: one per 8 files, at most 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<i64>,
    /// Write capacity units per second for the whole restore, shared by its workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_budget: Option<f64>,
    /// Who gets the email at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// Idempotency key: the same id is the same restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// The worker (from 0) whose share this message is; absent on the job itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
}

/// A validated restore job.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreJob {
    /// Its id (the status document's name).
    pub job_id: JobId,
    /// The backup's bucket.
    pub bucket: BucketName,
    /// The backup's manifest key.
    pub manifest_key: String,
    /// The new table.
    pub table: TableName,
    /// Workers asked for (`None`: chosen from the backup's files).
    pub workers: Option<NonZeroU32>,
    /// WCU/s for the whole restore.
    pub write_budget: Option<f64>,
    /// Email recipients.
    pub notify: Vec<EmailAddress>,
    /// What started it.
    pub trigger: Trigger,
}

impl RestoreRequest {
    /// Whether a message body is a restore job (`"kind": "restore"`), before it is validated.
    pub fn is_restore(body: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .is_some_and(|k| k == "restore")
    }

    /// Parses the wire JSON, naming the field on any error.
    pub fn from_json(json: &str) -> Result<RestoreRequest, JobError> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            JobError::field_error(
                &path,
                format!("{}; see the restore job in docs/job.md", err.into_inner()),
            )
        })
    }

    /// Validates the request; `id` names a job that gives no `job_id` (the message id, the
    /// same on every delivery).
    pub fn into_job(self, defaults: &JobDefaults, id: &str) -> Result<RestoreJob, JobError> {
        let field = |name: &str, message: String| JobError::field_error(name, message);
        let (bucket, manifest_key) = match self.backup.as_deref() {
            Some(backup) => parse_backup(backup).map_err(|m| field("backup", m))?,
            None => {
                return Err(field(
                    "backup",
                    "required: the backup to restore, e.g. \"s3://bucket/backups/studentData/dt=2026-12-07/JOB/\"".into(),
                ))
            }
        };
        let table = match self.table.as_deref() {
            Some(t) => TableName::new(t).map_err(|m| field("table", m.to_string()))?,
            None => {
                return Err(field(
                    "table",
                    "required: the new table to restore into, e.g. \"restored-studentData\"".into(),
                ))
            }
        };
        let workers = match self.workers {
            None => None,
            Some(n) if (1..=i64::from(MAX_RESTORE_WORKERS)).contains(&n) => {
                NonZeroU32::new(n as u32)
            }
            Some(n) => {
                return Err(field(
                    "workers",
                    format!("must be 1 to {MAX_RESTORE_WORKERS}, got {n}"),
                ))
            }
        };
        let write_budget = match self.write_budget {
            None => None,
            Some(b) if (1.0..=MAX_WRITE_BUDGET).contains(&b) => Some(b),
            Some(b) => {
                return Err(field(
                    "write_budget",
                    format!(
                        "must be 1 to {MAX_WRITE_BUDGET} WCU/s, got {b}; leave it out for no limit"
                    ),
                ))
            }
        };
        let notify = match self.notify {
            Some(list) => {
                if list.len() > MAX_RECIPIENTS {
                    return Err(field(
                        "notify",
                        format!("at most {MAX_RECIPIENTS} recipients"),
                    ));
                }
                list.iter()
                    .map(|a| EmailAddress::new(a).map_err(|m| field("notify", m.to_string())))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => defaults.notify.clone(),
        };
        let job_id = match self.job_id.as_deref() {
            Some(id) => JobId::new(id).map_err(|m| field("job_id", m.to_string()))?,
            None => JobId::new(id).unwrap_or_else(|_| JobId::generate()),
        };
        Ok(RestoreJob {
            job_id,
            bucket,
            manifest_key,
            table,
            workers,
            write_budget,
            notify,
            trigger: self.trigger.unwrap_or(defaults.trigger),
        })
    }
}

/// `s3://bucket/…/manifest.json`, or the backup's folder, into its bucket and manifest key.
pub fn parse_backup(backup: &str) -> Result<(BucketName, String), String> {
    let rest = backup.strip_prefix("s3://").ok_or_else(|| {
        format!("`{backup}` is not an s3:// location of a backup's manifest or folder")
    })?;
    let (bucket, key) = rest
        .split_once('/')
        .filter(|(_, key)| !key.is_empty())
        .ok_or_else(|| format!("`{backup}` names a bucket but no backup in it"))?;
    let bucket = BucketName::new(bucket).map_err(|e| e.to_string())?;
    let key = if key.ends_with("manifest.json") {
        key.to_string()
    } else {
        format!("{}/manifest.json", key.trim_end_matches('/'))
    };
    Ok((bucket, key))
}

impl RestoreJob {
    /// The wire form, every field explicit, for the worker's own messages; `worker` makes it
    /// that worker's share.
    pub fn to_request(&self, worker: Option<u32>) -> RestoreRequest {
        RestoreRequest {
            kind: JobKind::Restore,
            backup: Some(self.backup_uri()),
            table: Some(self.table.to_string()),
            workers: self.workers.map(|w| i64::from(w.get())),
            write_budget: self.write_budget,
            notify: Some(self.notify.iter().map(|a| a.as_str().to_string()).collect()),
            job_id: Some(self.job_id.to_string()),
            trigger: Some(self.trigger),
            worker,
        }
    }

    /// The manifest's `s3://` location.
    pub fn backup_uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.manifest_key)
    }

    /// Workers for a backup of `files` files: as asked, else one per 8 files up to 16, and
    /// never more than there are files.
    pub fn workers_for(&self, files: usize) -> u32 {
        let chosen = self
            .workers
            .map_or_else(|| (files.div_ceil(8) as u32).clamp(1, 16), NonZeroU32::get);
        chosen.min(files.max(1) as u32)
    }
}

/// Where a restore job's shared documents are: beside the backup, under
/// `restores/{job_id}/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreLayout {
    base: String,
}

impl RestoreLayout {
    /// The layout of `job`.
    pub fn new(job: &RestoreJob) -> Self {
        let dir = job
            .manifest_key
            .rfind('/')
            .map_or("", |i| &job.manifest_key[..=i]);
        RestoreLayout {
            base: format!("{dir}restores/{}/", job.job_id),
        }
    }

    /// The plan: which files each worker writes.
    pub fn plan_key(&self) -> String {
        format!("{}plan.json", self.base)
    }

    /// Where worker `worker` has written to.
    pub fn position_key(&self, worker: u32) -> String {
        format!("{}worker-{worker:04}/position.json", self.base)
    }

    /// Worker `worker`'s result, written once when its share is written.
    pub fn result_key(&self, worker: u32) -> String {
        format!("{}results/worker-{worker:04}.json", self.base)
    }

    /// The results' prefix.
    pub fn results_prefix(&self) -> String {
        format!("{}results/", self.base)
    }

    /// The failure, written once by the first worker that cannot go on.
    pub fn failure_key(&self) -> String {
        format!("{}failed.json", self.base)
    }

    /// How the job ended, written once by whichever worker ends it: `complete` or `failed`.
    pub fn ended_key(&self) -> String {
        format!("{}ended.json", self.base)
    }

    /// The marker that the job's one email went out.
    pub fn notified_key(&self) -> String {
        format!("{}notified.json", self.base)
    }
}

/// The plan every worker of a restore reads: written once, before the table is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The job.
    pub job_id: String,
    /// The backup's job.
    pub backup_job_id: String,
    /// The backup's manifest key.
    pub backup: String,
    /// The backed-up table.
    pub source_table: String,
    /// The new table.
    pub table: String,
    /// The file keys of each worker's share, in the order it writes them.
    pub shares: Vec<Vec<String>>,
    /// Items in the backup.
    pub items: u64,
    /// WCU/s per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_budget_per_worker: Option<f64>,
    /// When the plan was made (RFC 3339).
    pub planned_at: String,
}

/// What one worker wrote, recorded once when its share is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareResult {
    /// The worker.
    pub worker: u32,
    /// Items written (with the rewrites of resumed legs).
    pub items: u64,
    /// Write capacity consumed.
    pub consumed_write_capacity: f64,
    /// Resubmissions of throttled items.
    pub retries: u64,
    /// Invocations it took.
    pub legs: u32,
}

/// Where a worker is: saved every few seconds and at its deadline; the next delivery of its
/// message resumes there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePosition {
    /// Every record before this one is written.
    pub position: Position,
    /// Invocations so far.
    pub legs: u32,
    /// Items written so far (with rewrites).
    pub items: u64,
}

/// How far a restore has written: every record before `records` of file `file` (an index into
/// the files being restored), and every file before it. Records are counted as they are read,
/// so the same backup gives the same positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Files done before this one.
    pub file: usize,
    /// Records of this file written.
    pub records: u64,
}

/// Shares `files` among `workers` by size: the largest file first to the least loaded worker,
/// then each share in key order. Every file is in exactly one share.
pub fn share_files(files: &[FileEntry], workers: u32) -> Vec<Vec<String>> {
    let workers = workers.max(1) as usize;
    let mut order: Vec<&FileEntry> = files.iter().collect();
    order.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.key.cmp(&b.key)));
    let mut shares: Vec<(u64, Vec<String>)> = vec![(0, Vec::new()); workers];
    for file in order {
        let lightest = shares
            .iter_mut()
            .min_by_key(|(load, keys)| (*load, keys.len()))
            .expect("at least one worker");
        lightest.0 += file.bytes.max(1);
        lightest.1.push(file.key.clone());
    }
    shares
        .into_iter()
        .map(|(_, mut keys)| {
            keys.sort();
            keys
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_admits_only_matching_names() {
        let p = TablePattern::default();
        assert!(p.matches("restored-studentData"));
        assert!(p.matches("restored-"));
        assert!(!p.matches("studentData"));
        assert!(!p.matches("my-restored-x"));
        let p = TablePattern::new("dr-*-copy-*").unwrap();
        assert!(p.matches("dr-a-copy-b") && !p.matches("dr-a-copyb"));
        assert!(TablePattern::new("*").is_err());
        assert!(TablePattern::new("*Data").is_err(), "no leading wildcard");
        assert!(TablePattern::new("ab*").is_err());
        assert!(TablePattern::new("bad/name*").is_err());
    }

    #[test]
    fn a_restore_request_is_validated_field_by_field() {
        let defaults = JobDefaults::default();
        let job = RestoreRequest::from_json(
            r#"{"kind":"restore","backup":"s3://bkt/backups/t/dt=2026-12-07/j1/","table":"restored-t","workers":4,"write_budget":800}"#,
        )
        .unwrap()
        .into_job(&defaults, "m-1")
        .unwrap();
        assert_eq!(job.manifest_key, "backups/t/dt=2026-12-07/j1/manifest.json");
        assert_eq!(job.bucket.as_str(), "bkt");
        assert_eq!(job.job_id.as_str(), "m-1");
        assert_eq!(job.workers_for(100), 4);
        assert_eq!(job.workers_for(2), 2);
        let again =
            RestoreRequest::from_json(&serde_json::to_string(&job.to_request(None)).unwrap())
                .unwrap()
                .into_job(&defaults, "other")
                .unwrap();
        assert_eq!(again, job, "the worker's own messages carry the same job");
        for (json, field) in [
            (r#"{"kind":"restore","table":"restored-t"}"#, "backup"),
            (r#"{"kind":"restore","backup":"s3://bkt/x/"}"#, "table"),
            (
                r#"{"kind":"restore","backup":"/tmp/x","table":"restored-t"}"#,
                "backup",
            ),
            (
                r#"{"kind":"restore","backup":"s3://bkt/x/","table":"restored-t","workers":0}"#,
                "workers",
            ),
            (
                r#"{"kind":"restore","backup":"s3://bkt/x/","table":"restored-t","write_budget":0}"#,
                "write_budget",
            ),
        ] {
            let err = RestoreRequest::from_json(json)
                .unwrap()
                .into_job(&defaults, "m")
                .unwrap_err();
            assert_eq!(err.field(), Some(field), "{json}: {err}");
        }
        let err = RestoreRequest::from_json(r#"{"kind":"restore","tabel":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("tabel"), "{err}");
        assert!(RestoreRequest::is_restore(r#"{"kind":"restore"}"#));
        assert!(!RestoreRequest::is_restore(r#"{"table":"t"}"#));
    }

    #[test]
    fn every_file_is_in_exactly_one_share_and_shares_are_balanced() {
        let files: Vec<FileEntry> = (0..10)
            .map(|i| FileEntry {
                key: format!("data/seg-{i:04}"),
                segment: i,
                worker: 0,
                item_count: 1,
                bytes: 100 + u64::from(i) * 10,
                uncompressed_bytes: 0,
                sha256: String::new(),
                columns: None,
            })
            .collect();
        let shares = share_files(&files, 3);
        assert_eq!(shares.len(), 3);
        let mut all: Vec<&String> = shares.iter().flatten().collect();
        all.sort();
        assert_eq!(all, files.iter().map(|f| &f.key).collect::<Vec<_>>());
        let loads: Vec<u64> = shares
            .iter()
            .map(|s| {
                s.iter()
                    .map(|k| files.iter().find(|f| &f.key == k).unwrap().bytes)
                    .sum()
            })
            .collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 190, "{loads:?}");
    }
}
