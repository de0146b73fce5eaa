//! The command line's flags, parsed by clap into the same job request every trigger builds.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ddb_backup::model::format::ParquetCompression;
use ddb_backup::model::job::{JobRequest, Trigger};
use ddb_backup::runtime::config::tutorial;
use ddb_backup::{Compression, Format};

#[derive(Parser)]
#[command(
    name = "ddb-backup",
    version,
    about = "Back up DynamoDB tables to S3 or a local directory"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) aws: AwsFlags,
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Args)]
pub(crate) struct AwsFlags {
    /// AWS region (default: the standard chain: AWS_REGION, profile, instance metadata).
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// Endpoint for every AWS service, e.g. a local emulator (default: AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    pub(crate) endpoint_url: Option<String>,
    /// Named AWS profile (default: AWS_PROFILE).
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Back up a table (the same pipeline the Lambda worker runs).
    Backup(BackupArgs),
    /// Check a backup against its manifest: every file's size, SHA-256 and item count, and that
    /// every record decodes.
    Verify(VerifyArgs),
    /// Write a backup's items into a table (idempotent: running it twice gives the same table),
    /// as the backup read them or, with captured changes, as the table was at a moment.
    Restore(RestoreArgs),
    /// What changed in a table, key by key, from its captured changes: to decide what to
    /// restore, and to which moment.
    Changes(ChangesArgs),
    /// Put a backup job on the SQS queue, as an operator would by hand; the worker Lambda runs it.
    Enqueue(EnqueueArgs),
    /// A table's backups in the bucket, newest first: complete, running, failed.
    List(ListArgs),
    /// The whole system on one machine: the API (and the web console) on a local port, and a
    /// worker polling the job queue, configured by the same DDB_BACKUP_* variables.
    Serve(ServeArgs),
    /// Load generated `studentData`-style items into a table, creating it if needed.
    Seed(SeedArgs),
}

#[derive(Args, Clone)]
pub(crate) struct RestoreArgs {
    /// The manifest: `s3://bucket/…/manifest.json` (or its folder), or a local manifest.json or
    /// backup folder. With --to-time it may be left out: the newest backup before that time is
    /// used.
    #[arg(required_unless_present = "to_time")]
    pub(crate) manifest: Option<String>,
    /// Table to write into.
    #[arg(long)]
    pub(crate) table: String,
    /// Create the table (on-demand) with the backup's key schema and indexes.
    #[arg(long)]
    pub(crate) create_table: bool,
    /// At most this many write capacity units per second (default: as fast as the table takes).
    #[arg(long)]
    pub(crate) write_budget: Option<f64>,
    /// BatchWriteItem calls in flight.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Restore from a plain `json` backup (sets come back as lists, binary as base64 strings).
    #[arg(long)]
    pub(crate) allow_lossy: bool,
    /// Restore the table as it was at this moment: RFC 3339 (2026-12-07T10:42:00Z) or a time
    /// ago (-15m, -2h, -1d). Needs the table's changes captured (docs/changes.md).
    #[arg(long)]
    pub(crate) to_time: Option<String>,
    /// With --to-time and no manifest: the table whose backups and changes to use (default:
    /// DDB_BACKUP_TABLE, else --table).
    #[arg(long)]
    pub(crate) source_table: Option<String>,
    /// With --to-time and no manifest: the bucket of the backups (default: DDB_BACKUP_BUCKET).
    #[arg(long)]
    pub(crate) bucket: Option<String>,
    /// Restore only these items, into the live table: a file with one key per line, as
    /// DynamoDB JSON (`{"id":{"S":"a"}}`) or a bare partition-key value.
    #[arg(long, requires = "to_time")]
    pub(crate) keys: Option<PathBuf>,
    /// Restore only the items with this partition-key value, into the live table (repeatable).
    #[arg(long = "key", requires = "to_time")]
    pub(crate) key_values: Vec<String>,
    /// With --keys or --key: also overwrite items that changed after the capture's newest
    /// record of them (otherwise they are reported and left alone).
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Restore a point-in-time backup as the scan read it, without its captured changes.
    #[arg(long, conflicts_with = "to_time")]
    pub(crate) fuzzy: bool,
    /// Have DynamoDB load the backup into a new table itself (ImportTable): no write capacity,
    /// much faster for large tables; dynamodb-json backups in S3 only. With captured changes,
    /// they are written over the import.
    #[arg(long, conflicts_with_all = ["keys", "key_values", "allow_lossy"])]
    pub(crate) import: bool,
    /// With --import: an on-demand table, whatever the backed-up table's capacity mode.
    #[arg(long, requires = "import", conflicts_with_all = ["read_capacity", "write_capacity"])]
    pub(crate) on_demand: bool,
    /// With --import: a provisioned table with this read capacity (and --write-capacity).
    #[arg(long, requires_all = ["import", "write_capacity"])]
    pub(crate) read_capacity: Option<i64>,
    /// With --import: a provisioned table with this write capacity (and --read-capacity).
    #[arg(long, requires_all = ["import", "read_capacity"])]
    pub(crate) write_capacity: Option<i64>,
    /// With --import: create the table without its global secondary indexes.
    #[arg(long, requires = "import")]
    pub(crate) without_indexes: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ChangesArgs {
    /// Table whose captured changes to list (default: DDB_BACKUP_TABLE).
    #[arg(long)]
    pub(crate) table: Option<String>,
    /// Bucket (default: DDB_BACKUP_BUCKET).
    #[arg(long)]
    pub(crate) bucket: Option<String>,
    /// From this moment: RFC 3339, or a time ago (-15m, -2h, -1d).
    #[arg(long)]
    pub(crate) since: String,
    /// Until this moment (default: now).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// At most this many keys, most recently changed first.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// Print the changes as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// The API key callers must send as `x-api-key` (default: DDB_BACKUP_API_KEY, else a random
    /// key, printed).
    #[arg(long)]
    pub(crate) api_key: Option<String>,
}

#[derive(Args)]
pub(crate) struct ListArgs {
    /// Table whose backups to list (default: DDB_BACKUP_TABLE).
    #[arg(long)]
    pub(crate) table: Option<String>,
    /// Bucket (default: DDB_BACKUP_BUCKET).
    #[arg(long)]
    pub(crate) bucket: Option<String>,
    /// At most this many backups.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Print the list as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The manifest: `s3://bucket/…/manifest.json` (or its folder), or a local manifest.json or
    /// backup folder.
    pub(crate) manifest: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The job fields shared by `backup` and `enqueue`; unset flags fall back to `DDB_BACKUP_*`.
#[derive(Args)]
pub(crate) struct JobFlags {
    /// Table to back up (default: DDB_BACKUP_TABLE).
    #[arg(long)]
    pub(crate) table: Option<String>,
    /// Destination bucket (default: DDB_BACKUP_BUCKET).
    #[arg(long)]
    pub(crate) bucket: Option<String>,
    /// Key prefix inside the bucket or directory (default: DDB_BACKUP_PREFIX or "backups/").
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Output format.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Format::ALL.map(|f| f.name())))]
    pub(crate) format: Option<String>,
    /// Stream compression (gzip by default; Parquet files compress their columns instead).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Compression::ALL.map(|c| c.name())))]
    pub(crate) compression: Option<String>,
    /// Column compression of Parquet files (default zstd).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ParquetCompression::ALL.map(|c| c.name())))]
    pub(crate) parquet_compression: Option<String>,
    /// Parallel scan segments, 1 to 1000 per worker (default: chosen from the table's size).
    #[arg(long)]
    pub(crate) segments: Option<i64>,
    /// Strongly consistent scan (uses twice the read capacity).
    #[arg(long)]
    pub(crate) consistent_read: bool,
    /// At most this many read capacity units per second, all segments together
    /// (default: DDB_BACKUP_READ_BUDGET, else no limit).
    #[arg(long)]
    pub(crate) read_budget: Option<f64>,
    /// At most this percentage of the table's provisioned read capacity
    /// (default: DDB_BACKUP_READ_BUDGET_PERCENT).
    #[arg(long)]
    pub(crate) read_budget_percent: Option<f64>,
    /// Job id; the same id never produces a second backup (default: generated).
    #[arg(long)]
    pub(crate) job_id: Option<String>,
}

impl JobFlags {
    pub(crate) fn into_request(self, trigger: Trigger) -> anyhow::Result<JobRequest> {
        Ok(JobRequest {
            table: self.table,
            format: self.format.map(|f| f.parse()).transpose()?,
            compression: self.compression.map(|c| c.parse()).transpose()?,
            parquet_compression: self.parquet_compression.map(|c| c.parse()).transpose()?,
            segments: self.segments,
            bucket: self.bucket,
            prefix: self.prefix,
            consistent_read: self.consistent_read.then_some(true),
            read_budget: self.read_budget,
            read_budget_percent: self.read_budget_percent,
            job_id: self.job_id,
            trigger: Some(trigger),
            ..JobRequest::default()
        })
    }
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    pub(crate) job: JobFlags,
    /// Write to a local directory instead of S3.
    #[arg(long, conflicts_with = "bucket")]
    pub(crate) out_dir: Option<PathBuf>,
    /// Print the manifest as JSON on stdout instead of a human summary.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct EnqueueArgs {
    #[command(flatten)]
    pub(crate) job: JobFlags,
    /// The job queue (default: DDB_BACKUP_QUEUE_URL).
    #[arg(long)]
    pub(crate) queue_url: Option<String>,
    /// Summary email recipients, comma-separated (default: DDB_BACKUP_NOTIFY).
    #[arg(long, value_delimiter = ',')]
    pub(crate) notify: Option<Vec<String>>,
    /// Workers (Lambda invocations) sharing the scan, 1 to DDB_BACKUP_MAX_WORKERS
    /// (default: one per 10 GiB of table).
    #[arg(long)]
    pub(crate) workers: Option<i64>,
    /// Queue a restore job instead: this backup (`s3://bucket/…/` or its manifest) into the new
    /// table named by --table, which must match DDB_BACKUP_RESTORE_TABLE_PATTERN
    /// (`restored-*`); --workers share its files (default: one per 8 files, at most 16).
    #[arg(long, value_name = "BACKUP")]
    pub(crate) restore: Option<String>,
    /// With --restore: write capacity units per second for the whole restore.
    #[arg(long, requires = "restore")]
    pub(crate) write_budget: Option<f64>,
}

#[derive(Args)]
pub(crate) struct SeedArgs {
    /// Table to fill (created with key `id` if it does not exist).
    #[arg(long, default_value = tutorial::TABLE)]
    pub(crate) table: String,
    /// Number of student items.
    #[arg(long, default_value_t = 1000)]
    pub(crate) items: u64,
}
