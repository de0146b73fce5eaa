//! `ddb-backup`: the command line. It parses flags into the same validated job the Lambdas get,
//! runs the library's pipeline and reports; all logic lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ddb_backup::aws::{AwsContext, AwsOptions};
use ddb_backup::config::{tutorial, ConfigError, Settings};
use ddb_backup::format::ParquetCompression;
use ddb_backup::human::human_bytes;
use ddb_backup::job::{Destination, JobRequest, Prefix, Trigger};
use ddb_backup::pipeline::Progress;
use ddb_backup::queue::{JobQueue, SqsQueue};
use ddb_backup::{Compression, Format, Manifest};
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc, tuned by [`ddb_backup::allocator::tune`] (why: see that module).
#[global_allocator]
static ALLOCATOR: ddb_backup::allocator::Allocator = ddb_backup::allocator::Allocator;

#[derive(Parser)]
#[command(
    name = "ddb-backup",
    version,
    about = "Back up DynamoDB tables to S3 or a local directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    aws: AwsFlags,
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Args)]
struct AwsFlags {
    /// AWS region (default: the standard chain: AWS_REGION, profile, instance metadata).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Endpoint for every AWS service, e.g. a local emulator (default: AWS_ENDPOINT_URL).
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// Named AWS profile (default: AWS_PROFILE).
    #[arg(long, global = true)]
    profile: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Back up a table (the same pipeline the Lambda worker runs).
    Backup(BackupArgs),
    /// Check a backup against its manifest: every file's size, SHA-256 and item count, and that
    /// every record decodes.
    Verify(VerifyArgs),
    /// Write a backup's items into a table (idempotent: running it twice gives the same table).
    Restore(RestoreArgs),
    /// Put a backup job on the SQS queue, as an operator would by hand; the worker Lambda runs it.
    Enqueue(EnqueueArgs),
    /// Load generated `studentData`-style items into a table, creating it if needed.
    Seed(SeedArgs),
}

#[derive(Args)]
struct RestoreArgs {
    /// The manifest: `s3://bucket/…/manifest.json` (or its folder), or a local manifest.json or
    /// backup folder.
    manifest: String,
    /// Table to write into.
    #[arg(long)]
    table: String,
    /// Create the table (on-demand) with the backup's key schema and indexes.
    #[arg(long)]
    create_table: bool,
    /// At most this many write capacity units per second (default: as fast as the table takes).
    #[arg(long)]
    write_budget: Option<f64>,
    /// BatchWriteItem calls in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Restore from a plain `json` backup (sets come back as lists, binary as base64 strings).
    #[arg(long)]
    allow_lossy: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The manifest: `s3://bucket/…/manifest.json` (or its folder), or a local manifest.json or
    /// backup folder.
    manifest: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The job fields shared by `backup` and `enqueue`; unset flags fall back to `DDB_BACKUP_*`.
#[derive(Args)]
struct JobFlags {
    /// Table to back up (default: DDB_BACKUP_TABLE).
    #[arg(long)]
    table: Option<String>,
    /// Destination bucket (default: DDB_BACKUP_BUCKET).
    #[arg(long)]
    bucket: Option<String>,
    /// Key prefix inside the bucket or directory (default: DDB_BACKUP_PREFIX or "backups/").
    #[arg(long)]
    prefix: Option<String>,
    /// Output format.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Format::ALL.map(|f| f.name())))]
    format: Option<String>,
    /// Stream compression (gzip by default; Parquet files compress their columns instead).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Compression::ALL.map(|c| c.name())))]
    compression: Option<String>,
    /// Column compression of Parquet files (default zstd).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(ParquetCompression::ALL.map(|c| c.name())))]
    parquet_compression: Option<String>,
    /// Parallel scan segments, 1 to 1000 (default: chosen from the table's size).
    #[arg(long)]
    segments: Option<i64>,
    /// Strongly consistent scan (uses twice the read capacity).
    #[arg(long)]
    consistent_read: bool,
    /// At most this many read capacity units per second, all segments together
    /// (default: DDB_BACKUP_READ_BUDGET, else no limit).
    #[arg(long)]
    read_budget: Option<f64>,
    /// At most this percentage of the table's provisioned read capacity
    /// (default: DDB_BACKUP_READ_BUDGET_PERCENT).
    #[arg(long)]
    read_budget_percent: Option<f64>,
    /// Job id; the same id never produces a second backup (default: generated).
    #[arg(long)]
    job_id: Option<String>,
}

impl JobFlags {
    fn into_request(self, trigger: Trigger) -> anyhow::Result<JobRequest> {
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
struct BackupArgs {
    #[command(flatten)]
    job: JobFlags,
    /// Write to a local directory instead of S3.
    #[arg(long, conflicts_with = "bucket")]
    out_dir: Option<PathBuf>,
    /// Print the manifest as JSON on stdout instead of a human summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EnqueueArgs {
    #[command(flatten)]
    job: JobFlags,
    /// The job queue (default: DDB_BACKUP_QUEUE_URL).
    #[arg(long)]
    queue_url: Option<String>,
    /// Summary email recipients, comma-separated (default: DDB_BACKUP_NOTIFY).
    #[arg(long, value_delimiter = ',')]
    notify: Option<Vec<String>>,
}

#[derive(Args)]
struct SeedArgs {
    /// Table to fill (created with key `id` if it does not exist).
    #[arg(long, default_value = tutorial::TABLE)]
    table: String,
    /// Number of student items.
    #[arg(long, default_value_t = 1000)]
    items: u64,
}

/// Exit code for input the user must fix (as clap uses for bad flags).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    ddb_backup::allocator::tune();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let bad_input = err.downcast_ref::<ddb_backup::JobError>().is_some()
                || err
                    .downcast_ref::<ddb_backup::config::ConfigError>()
                    .is_some()
                || matches!(
                    err.downcast_ref::<ddb_backup::service::OpenError>(),
                    Some(ddb_backup::service::OpenError::Location { .. })
                );
            ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { 1 })
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let options = AwsOptions {
        region: cli.aws.region,
        endpoint_url: cli.aws.endpoint_url,
        profile: cli.aws.profile,
        ..settings.aws.clone()
    };
    match cli.command {
        Command::Backup(args) => backup(args, &settings, &options).await,
        Command::Verify(args) => verify(args, &settings, &options).await,
        Command::Restore(args) => restore(args, &settings, &options).await,
        Command::Seed(args) => seed(args, &options).await,
        Command::Enqueue(args) => enqueue(args, &settings, &options).await,
    }
}

async fn enqueue(
    args: EnqueueArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let queue_url = args
        .queue_url
        .or_else(|| settings.queue_url.clone())
        .ok_or_else(|| {
            anyhow::Error::new(ConfigError {
                var: "DDB_BACKUP_QUEUE_URL",
                message: "no queue: pass --queue-url or set DDB_BACKUP_QUEUE_URL".to_string(),
            })
        })?;
    let mut request = args.job.into_request(Trigger::Manual)?;
    request.notify = args.notify;
    let job = request.into_job(&settings.defaults, None)?;
    let aws = AwsContext::load(options).await;
    let body = serde_json::to_string(&job.to_request())?;
    let message_id = SqsQueue::new(aws.sqs(), &queue_url)
        .send(&body, None)
        .await
        .with_context(|| format!("queueing the backup of table `{}` failed", job.table))?;
    println!(
        "{}",
        serde_json::json!({"job_id": job.job_id.as_str(), "message_id": message_id, "queue_url": queue_url})
    );
    Ok(())
}

async fn backup(args: BackupArgs, settings: &Settings, options: &AwsOptions) -> anyhow::Result<()> {
    let request = args.job.into_request(Trigger::Cli)?;
    let destination = args.out_dir.map(|root| Destination::Directory {
        root,
        prefix: Prefix::default(),
    });
    let job = request.into_job(&settings.defaults, destination)?;
    let aws = AwsContext::load(options).await;
    let backup = ddb_backup::service::backup_for(&job, &aws, settings);
    let bar = progress_bar(backup.progress(), args.json);
    let result = backup.run(&job).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let manifest = result.with_context(|| format!("backup of table `{}` failed", job.table))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        print_summary(&manifest);
    }
    Ok(())
}

/// A progress bar on stderr, only when a person is watching.
fn progress_bar(
    progress: Arc<Progress>,
    json: bool,
) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let shown = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let items = progress.items.load(Ordering::Relaxed);
            let estimate = progress.estimated_items.load(Ordering::Relaxed);
            let of = if estimate > 0 {
                format!(" of ~{estimate}")
            } else {
                String::new()
            };
            shown.set_message(format!(
                "{items}{of} items, {}, segments {}/{}",
                human_bytes(progress.bytes.load(Ordering::Relaxed)),
                progress.segments_done.load(Ordering::Relaxed),
                progress.segments_total.load(Ordering::Relaxed),
            ));
            shown.tick();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Some((bar, ticker))
}

fn print_summary(m: &Manifest) {
    let secs = (m.duration_ms as f64 / 1000.0).max(0.001);
    println!("Backup complete: {} -> {}", m.table, m.location);
    println!("  job       {}", m.job_id);
    println!("  items     {}", m.item_count);
    println!(
        "  files     {} ({}, {})",
        m.files.len(),
        m.format,
        m.compression
    );
    println!(
        "  stored    {} ({} before compression)",
        human_bytes(m.bytes),
        human_bytes(m.uncompressed_bytes)
    );
    println!(
        "  read      {:.1} RCU over {} segments",
        m.consumed_read_capacity, m.segments
    );
    println!(
        "  time      {secs:.1} s ({:.0} items/s)",
        m.item_count as f64 / secs
    );
    println!("  manifest  {}manifest.json", m.location);
}

async fn verify(args: VerifyArgs, settings: &Settings, options: &AwsOptions) -> anyhow::Result<()> {
    let aws = AwsContext::load(options).await;
    let backup = ddb_backup::service::open_backup(&args.manifest, &aws, settings).await?;
    let manifest = &backup.manifest;
    let report =
        ddb_backup::verify::verify_backup(backup.store.clone(), manifest, |k| backup.locate(k))
            .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if !report.is_ok() {
        for problem in report.problems() {
            eprintln!("{problem}");
        }
        anyhow::bail!(
            "backup {} does not match its manifest: {} problem(s)",
            manifest.job_id,
            report.problems().len()
        );
    }
    if !args.json {
        println!(
            "OK: backup {} of table {}: {} files, {} items, {} verified against the manifest",
            manifest.job_id,
            manifest.table,
            report.files.len(),
            report.items(),
            human_bytes(report.bytes())
        );
    }
    Ok(())
}

async fn restore(
    args: RestoreArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let table = ddb_backup::job::TableName::new(&args.table).map_err(|message| {
        ddb_backup::JobError::Field {
            field: "table".into(),
            message,
        }
    })?;
    if args.write_budget.is_some_and(|b| b < 1.0) || args.concurrency == 0 {
        return Err(ddb_backup::JobError::Field {
            field: "write-budget/concurrency".into(),
            message: "--write-budget must be at least 1 WCU/s and --concurrency at least 1".into(),
        }
        .into());
    }
    let aws = AwsContext::load(options).await;
    let backup = ddb_backup::service::open_backup(&args.manifest, &aws, settings).await?;
    let restore_options = ddb_backup::restore::RestoreOptions {
        table,
        create_table: args.create_table,
        write_budget: args.write_budget,
        concurrency: args.concurrency,
        allow_lossy: args.allow_lossy,
    };
    let progress = Arc::new(ddb_backup::restore::RestoreProgress::default());
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(backup.manifest.item_count);
        let shown = bar.clone();
        let counters = progress.clone();
        let ticker = tokio::spawn(async move {
            loop {
                shown.set_position(counters.items.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        (bar, ticker)
    });
    let writer = Arc::new(ddb_backup::table_writer::DynamoDbWriter::new(
        aws.dynamodb(),
    ));
    let result = ddb_backup::restore::restore(
        backup.store.clone(),
        &backup.manifest,
        |k| backup.locate(k),
        writer,
        &restore_options,
        progress,
    )
    .await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let report = match result {
        Err(e @ ddb_backup::restore::RestoreError::Lossy { .. }) => {
            return Err(ddb_backup::JobError::Field {
                field: "allow-lossy".into(),
                message: e.to_string(),
            }
            .into())
        }
        other => other?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let secs = (report.duration_ms as f64 / 1000.0).max(0.001);
        println!(
            "Restored {} items of backup {} into table {} in {secs:.1} s ({:.0} items/s, {} resubmissions)",
            report.items,
            backup.manifest.job_id,
            report.table,
            report.items as f64 / secs,
            report.retries
        );
    }
    Ok(())
}

async fn seed(args: SeedArgs, options: &AwsOptions) -> anyhow::Result<()> {
    ddb_backup::job::TableName::new(&args.table).map_err(|message| {
        ddb_backup::JobError::Field {
            field: "table".into(),
            message,
        }
    })?;
    let aws = AwsContext::load(options).await;
    let client = aws.dynamodb();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(args.items)
    } else {
        ProgressBar::hidden()
    };
    let shown = bar.clone();
    ddb_backup::seed::seed_students(&client, &args.table, args.items, move |n| {
        shown.set_position(n)
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "Seeded {} student items into table {}",
        args.items, args.table
    );
    Ok(())
}
