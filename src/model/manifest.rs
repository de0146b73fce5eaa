//! The manifest, written last: its presence is what makes a backup complete. It lists every file
//! with its size, item count and SHA-256, and records what a restore needs to rebuild the table.
//!
//! Key layout (documented in docs/formats.md):
//! `{prefix}{table}/dt={YYYY-MM-DD}/{job_id}/data/seg-{segment:04}-{file:05}.{ext}` and
//! `{prefix}{table}/dt={YYYY-MM-DD}/{job_id}/manifest.json`, and for a backup that spans several
//! Lambda invocations, `{prefix}{table}/dt={YYYY-MM-DD}/{job_id}/checkpoints/{sequence:05}.json`.
//! A job fanned out over several workers adds `plan.json`, `results/worker-{w:04}.json`,
//! `checkpoints/worker-{w:04}/{sequence:05}.json` and, if it failed, `failed.json`.
//! The date is the job's `requested_at` (UTC) and the job id is unique, so backups never overwrite
//! each other, and `dt=` lets Athena or Glue treat dates as partitions.

use serde::{Deserialize, Serialize};

use crate::model::column::Column;
use crate::model::format::{file_extension, Compression, Format, ParquetCompression};
use crate::model::job::BackupJob;
use crate::model::table::{AttributeDefinition, IndexInfo, KeyElement};

/// Manifest schema version; bumped on incompatible changes.
pub const MANIFEST_VERSION: u32 = 1;
/// File name of the manifest inside a backup's directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of a table's latest-backup record, beside its date partitions.
pub const LATEST_FILE: &str = "latest.json";
/// File name of a fanned-out job's plan inside a backup's directory.
pub const PLAN_FILE: &str = "plan.json";
/// File name of a fanned-out job's failure record inside a backup's directory.
pub const FAILURE_FILE: &str = "failed.json";

/// Object keys of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    table_base: String,
    base: String,
    extension: String,
}

impl Layout {
    /// The layout for `job`.
    pub fn new(job: &BackupJob) -> Self {
        let table_base = format!("{}{}/", job.destination.prefix(), job.table);
        Layout {
            base: format!(
                "{table_base}dt={}/{}/",
                job.requested_at.format("%Y-%m-%d"),
                job.job_id
            ),
            table_base,
            extension: file_extension(job.format, job.compression),
        }
    }

    /// Directory-like prefix holding everything of this backup.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Key of data file `file` (0-based) of `segment`.
    pub fn data_key(&self, segment: u32, file: u32) -> String {
        format!(
            "{}data/seg-{segment:04}-{file:05}.{}",
            self.base, self.extension
        )
    }

    /// Key of the manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_FILE}", self.base)
    }

    /// Key of checkpoint `sequence` (from 1) of a backup that spans several legs; each worker
    /// of a fanned-out job keeps its own sequence.
    pub fn checkpoint_key(&self, worker: Option<u32>, sequence: u32) -> String {
        match worker {
            None => format!("{}checkpoints/{sequence:05}.json", self.base),
            Some(w) => format!("{}checkpoints/worker-{w:04}/{sequence:05}.json", self.base),
        }
    }

    /// Key of the table's latest complete backup ([`LatestBackup`]), beside its date partitions:
    /// what the next backup compares itself with.
    pub fn latest_key(&self) -> String {
        format!("{}{LATEST_FILE}", self.table_base)
    }

    /// Key of the plan of a fanned-out job: its worker and segment counts, fixed once.
    pub fn plan_key(&self) -> String {
        format!("{}{PLAN_FILE}", self.base)
    }

    /// Prefix of the workers' results of a fanned-out job.
    pub fn results_prefix(&self) -> String {
        format!("{}results/", self.base)
    }

    /// Key of the result of `worker` of a fanned-out job, written once it has read its share.
    pub fn result_key(&self, worker: u32) -> String {
        format!("{}worker-{worker:04}.json", self.results_prefix())
    }

    /// Key of the failure record of a fanned-out job: its presence stops every worker.
    pub fn failure_key(&self) -> String {
        format!("{}{FAILURE_FILE}", self.base)
    }

    /// Key of the lease an invocation holds while it works on the job (or on `worker`'s share):
    /// a concurrent duplicate delivery finds it held and leaves its message for later.
    pub fn lease_key(&self, worker: Option<u32>) -> String {
        match worker {
            None => format!("{}job.json", self.leases_prefix()),
            Some(w) => format!("{}worker-{w:04}.json", self.leases_prefix()),
        }
    }

    /// Where the job's leases are: the whole job's and each worker's.
    pub fn leases_prefix(&self) -> String {
        format!("{}leases/", self.base)
    }

    /// Key of the marker written, once, by whoever sends the job's summary email for `outcome`
    /// (`complete` or `failed`): a second sender finds it and stays silent.
    pub fn notified_key(&self, outcome: &str) -> String {
        format!("{}notified/{outcome}.json", self.base)
    }

    /// Whether `key` is a data file of one of `segments`: the files one worker owns.
    pub fn is_data_of(&self, key: &str, segments: &std::ops::Range<u32>) -> bool {
        key.strip_prefix(&self.base)
            .and_then(|rest| rest.strip_prefix("data/seg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|segment| segments.contains(&segment))
    }
}

/// One data file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Object key (relative to the bucket or directory).
    pub key: String,
    /// Scan segment that produced it.
    pub segment: u32,
    /// The worker (0-based) that wrote it: 0 unless the job fanned out over several.
    #[serde(default)]
    pub worker: u32,
    /// Items in the file.
    pub item_count: u64,
    /// Stored size in bytes.
    pub bytes: u64,
    /// Size before compression.
    pub uncompressed_bytes: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
    /// CSV and Parquet: the file's columns with their DynamoDB types (then `_extra`), which is
    /// what makes a CSV file restorable exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
}

/// A table's complete backup, as the next one compares itself with it: stored at
/// `{prefix}{table}/latest.json` after each manifest, and copied into the next manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestBackup {
    /// The job.
    pub job_id: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Items backed up.
    pub item_count: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Where its manifest is.
    pub manifest: String,
}

/// A change from the previous backup, in percent (negative: the table shrank).
pub fn change_percent(now: u64, before: u64) -> Option<f64> {
    (before > 0).then(|| (now as f64 - before as f64) * 100.0 / before as f64)
}

/// How S3 Object Lock protects a backup's objects: no one can delete or overwrite a version
/// before `retain_until` (in `COMPLIANCE` mode not even the account's root user; in `GOVERNANCE`
/// mode only a principal allowed to bypass governance retention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: LockMode,
    /// The bucket's default retention period.
    pub days: u32,
    /// Every object of the backup is locked at least until this time (RFC 3339): the backup's
    /// start plus `days` (each object version is locked `days` from its own creation).
    pub retain_until: String,
}

/// S3 Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    /// Protected from everyone without `s3:BypassGovernanceRetention`.
    Governance,
    /// Protected from everyone, the root user included, until it expires.
    Compliance,
}

/// The tool that wrote a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `ddb-backup`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl Default for ToolInfo {
    fn default() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Everything known about a complete backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Schema version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// Job id.
    pub job_id: String,
    /// What started the job.
    pub trigger: String,
    /// Table name.
    pub table: String,
    /// Table ARN, when known.
    pub table_arn: Option<String>,
    /// Output format.
    pub format: Format,
    /// Stream compression.
    pub compression: Compression,
    /// Column compression, for Parquet backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_compression: Option<ParquetCompression>,
    /// `Content-Type` of data files: `application/gzip` or `application/zstd` when compressed,
    /// else the records' own type.
    pub content_type: String,
    /// `Content-Encoding` of data files: none. Backups written before compressed files were
    /// stored as what they are say `gzip` or `zstd` here.
    pub content_encoding: Option<String>,
    /// When the job was requested (RFC 3339).
    pub requested_at: String,
    /// When the scan started.
    pub started_at: String,
    /// When the last file was stored.
    pub finished_at: String,
    /// Wall time of the job.
    pub duration_ms: u64,
    /// Items backed up.
    pub item_count: u64,
    /// Read capacity units the scan consumed.
    pub consumed_read_capacity: f64,
    /// Scan segments.
    pub segments: u32,
    /// Workers that shared the scan (1 unless the job fanned out).
    #[serde(default = "one")]
    pub workers: u32,
    /// Whether the scan was strongly consistent.
    pub consistent_read: bool,
    /// Where the backup lives (`s3://bucket/prefix/…/` or a directory).
    pub location: String,
    /// Stored bytes of all files.
    pub bytes: u64,
    /// Encoded bytes of all files before compression.
    pub uncompressed_bytes: u64,
    /// Primary key of the table.
    pub key_schema: Vec<KeyElement>,
    /// Types of the key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Billing mode of the table.
    pub billing_mode: Option<String>,
    /// The table's provisioned capacity, when it is provisioned: what a restore by import
    /// gives the new table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_throughput: Option<Throughput>,
    /// Global secondary indexes.
    pub global_secondary_indexes: Vec<IndexInfo>,
    /// Local secondary indexes.
    pub local_secondary_indexes: Vec<IndexInfo>,
    /// The table's previous complete backup in the same place, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<LatestBackup>,
    /// The Object Lock retention the bucket gives every object of the backup, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Whether the backup is the table as of one moment, and which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Data files, sorted by key.
    pub files: Vec<FileEntry>,
    /// Writer of the manifest.
    pub tool: ToolInfo,
}

/// Provisioned capacity units per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Read capacity units.
    pub read: i64,
    /// Write capacity units.
    pub write: i64,
}

/// Whether a backup is a snapshot. A Scan reads items over minutes or hours, so each item is as
/// it was at some moment of the scan's window, and two items may be from different moments: a
/// *fuzzy* backup. With the table's changes captured, restore applies the changes written
/// during the window up to `consistent_as_of`, which makes it the table as of that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consistency {
    /// `point_in_time` or `fuzzy`.
    pub kind: ConsistencyKind,
    /// The scan's first read (RFC 3339).
    pub scan_from: String,
    /// The scan's last read (RFC 3339).
    pub scan_to: String,
    /// With capture: the moment a restore brings the table to, the scan's end rounded up to
    /// the whole second (DynamoDB stamps changes to the second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_as_of: Option<String>,
    /// With capture: the stream whose changes make it consistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
}

/// What a backup's consistency is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyKind {
    /// The table as of `consistent_as_of`, once the captured changes are applied.
    PointInTime,
    /// Each item as it was at some moment between `scan_from` and `scan_to`.
    Fuzzy,
}

impl Consistency {
    /// One line for emails and listings.
    pub fn describe(&self) -> String {
        match (self.kind, &self.consistent_as_of) {
            (ConsistencyKind::PointInTime, Some(at)) => {
                format!("point in time, as of {at} (with the captured changes)")
            }
            _ => format!(
                "fuzzy: items read between {} and {} (no change capture)",
                self.scan_from, self.scan_to
            ),
        }
    }
}

fn one() -> u32 {
    1
}

impl Manifest {
    /// Items now against the previous backup, in percent; `None` without one (or from zero).
    pub fn items_change_percent(&self) -> Option<f64> {
        self.previous
            .as_ref()
            .and_then(|p| change_percent(self.item_count, p.item_count))
    }

    /// Whether the table lost `alert_percent` % of its items or more since the previous backup:
    /// the signal of an accidental delete or an attack, which the backup is first to see.
    pub fn shrank(&self, alert_percent: f64) -> bool {
        self.items_change_percent()
            .is_some_and(|change| change <= -alert_percent)
    }

    /// Stored bytes now against the previous backup, in percent.
    pub fn bytes_change_percent(&self) -> Option<f64> {
        self.previous
            .as_ref()
            .and_then(|p| change_percent(self.bytes, p.bytes))
    }

    /// Parses a manifest, refusing versions this build does not understand.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a ddb-backup manifest: {e}"))?;
        if manifest.version > MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} is newer than this ddb-backup understands ({MANIFEST_VERSION}); upgrade ddb-backup",
                manifest.version
            ));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::JobDefaults;

    #[test]
    fn keys_are_partitioned_by_table_date_and_job() {
        let defaults = JobDefaults {
            bucket: Some(crate::model::job::BucketName::new("b-1").unwrap()),
            ..JobDefaults::default()
        };
        let job = BackupJob::parse(
            r#"{"table":"studentData","job_id":"j1","requested_at":"2025-07-06T23:30:00-02:00","compression":"zstd"}"#,
            &defaults,
        )
        .unwrap();
        let layout = Layout::new(&job);
        assert_eq!(layout.base(), "backups/studentData/dt=2025-07-07/j1/");
        assert_eq!(
            layout.data_key(3, 12),
            "backups/studentData/dt=2025-07-07/j1/data/seg-0003-00012.json.zst"
        );
        assert_eq!(
            layout.manifest_key(),
            "backups/studentData/dt=2025-07-07/j1/manifest.json"
        );
        assert_eq!(layout.latest_key(), "backups/studentData/latest.json");
        assert_eq!(change_percent(69, 100), Some(-31.0));
        assert_eq!(change_percent(5, 0), None);
    }
}
