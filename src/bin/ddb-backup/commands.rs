//! One function per subcommand: each builds its adapters, calls the library and prints the result.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ddb_backup::aws::{AwsContext, AwsOptions};
use ddb_backup::backup::pipeline::Progress;
use ddb_backup::human::human_bytes;
use ddb_backup::model::job::{Destination, JobId, Prefix, Trigger};
use ddb_backup::runtime::config::{ConfigError, Settings};
use ddb_backup::triggers::queue::{JobQueue, SqsQueue};
use ddb_backup::Manifest;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::*;

pub(crate) async fn enqueue(
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
    if let Some(backup) = &args.restore {
        let request = ddb_backup::model::restore_job::RestoreRequest {
            kind: ddb_backup::model::restore_job::JobKind::Restore,
            backup: Some(backup.clone()),
            table: args.job.table.clone(),
            workers: args.workers,
            write_budget: args.write_budget,
            notify: args.notify.clone(),
            job_id: None,
            trigger: Some(Trigger::Manual),
            worker: None,
        };
        let job = request.into_job(&settings.defaults, JobId::generate().as_ref())?;
        if !settings.policy.restore_tables.matches(job.table.as_str()) {
            anyhow::bail!(ddb_backup::JobError::Field {
                field: "table".into(),
                message: format!(
                    "restore jobs create only tables matching `{}` (DDB_BACKUP_RESTORE_TABLE_PATTERN); `{}` does not",
                    settings.policy.restore_tables.as_str(),
                    job.table
                ),
            });
        }
        let aws = AwsContext::load(options).await;
        let body = serde_json::to_string(&job.to_request(None))?;
        let message_id = SqsQueue::new(aws.sqs(), &queue_url)
            .send(&body, None)
            .await
            .with_context(|| format!("queueing the restore into `{}` failed", job.table))?;
        println!(
            "{}",
            serde_json::json!({"job_id": job.job_id.as_str(), "message_id": message_id, "queue_url": queue_url, "restore_into": job.table.as_str()})
        );
        return Ok(());
    }
    let mut request = args.job.into_request(Trigger::Manual)?;
    request.notify = args.notify;
    request.workers = args.workers;
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

pub(crate) async fn serve(
    args: ServeArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    use ddb_backup::runtime::serve::{poll_queue, LocalGateway};
    let queue_url = settings.queue_url.clone().ok_or_else(|| {
        anyhow::Error::new(ConfigError {
            var: "DDB_BACKUP_QUEUE_URL",
            message: "serve needs the job queue: set DDB_BACKUP_QUEUE_URL".to_string(),
        })
    })?;
    if settings.defaults.bucket.is_none() {
        return Err(ConfigError {
            var: "DDB_BACKUP_BUCKET",
            message: "serve needs the backup bucket: set DDB_BACKUP_BUCKET".to_string(),
        }
        .into());
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}: pass another --port",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let api_key = args
        .api_key
        .or_else(|| std::env::var("DDB_BACKUP_API_KEY").ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // The console this server serves may call its API from either name of the loopback.
    let mut settings = settings.clone();
    for own in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        if !settings.cors_origins.contains(&own) {
            settings.cors_origins.push(own);
        }
    }
    let aws = AwsContext::load(options).await;
    let api = ddb_backup::runtime::service::api(&aws, &settings)?;
    let worker = Arc::new(ddb_backup::runtime::service::worker(&aws, &settings));
    let gateway = Arc::new(LocalGateway::new(
        api,
        api_key.clone(),
        settings.cors_origins.clone(),
    ));
    let api_url = format!("http://127.0.0.1:{port}");
    eprintln!("serving the API on {api_url} (x-api-key: {api_key})");
    eprintln!("web console: {api_url}/?api={api_url}");
    eprintln!("worker: polling {queue_url}");
    let poller = tokio::spawn(poll_queue(aws.sqs(), queue_url, worker.clone()));
    let dead_letters = async {
        match settings.dead_letter_queue_url.clone() {
            Some(url) => {
                eprintln!("worker: recording dead letters from {url}");
                poll_queue(aws.sqs(), url, worker).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = gateway.serve(listener) => served.context("the HTTP server stopped")?,
        _ = poller => anyhow::bail!("the queue poller stopped"),
        () = dead_letters => anyhow::bail!("the dead-letter poller stopped"),
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
    }
    Ok(())
}

pub(crate) async fn list(
    args: ListArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    use ddb_backup::model::job::{BucketName, JobError, TableName};
    let field = |field: &str, message: String| JobError::Field {
        field: field.to_string(),
        message,
    };
    let table = args
        .table
        .or_else(|| settings.defaults.table.as_ref().map(|t| t.to_string()))
        .ok_or_else(|| {
            field(
                "table",
                "no table: pass --table or set DDB_BACKUP_TABLE".into(),
            )
        })?;
    let table = TableName::new(&table).map_err(|e| field("table", e.to_string()))?;
    let bucket = args
        .bucket
        .map(|b| BucketName::new(&b).map_err(|e| field("bucket", e.to_string())))
        .transpose()?;
    let aws = AwsContext::load(options).await;
    let catalog =
        ddb_backup::runtime::service::catalog(&aws, settings, bucket).ok_or_else(|| {
            field(
                "bucket",
                "no bucket: pass --bucket or set DDB_BACKUP_BUCKET".into(),
            )
        })?;
    let backups = catalog
        .list(&table, args.limit)
        .await
        .with_context(|| format!("listing the backups of table `{table}` failed"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&backups)?);
        return Ok(());
    }
    if backups.is_empty() {
        println!(
            "no backups of table `{table}` in {}",
            catalog.store().uri("")
        );
        return Ok(());
    }
    println!(
        "{:<10}  {:<28}  {:<8}  {:<10}  {:>9}  {:>9}  {:>8}  {:<20}  manifest",
        "date", "job", "trigger", "state", "items", "stored", "duration", "format"
    );
    for b in &backups {
        let dash = || "-".to_string();
        println!(
            "{:<10}  {:<28}  {:<8}  {:<10}  {:>9}  {:>9}  {:>8}  {:<20}  {}",
            b.date,
            b.job_id,
            b.trigger.clone().unwrap_or_else(dash),
            serde_json::to_value(b.state)?.as_str().unwrap_or("-"),
            b.items.map_or_else(dash, |n| n.to_string()),
            b.bytes.map_or_else(dash, human_bytes),
            b.duration_ms
                .map_or_else(dash, ddb_backup::human::human_duration),
            b.format.clone().unwrap_or_else(dash),
            b.manifest
                .clone()
                .or_else(|| b.error.clone())
                .unwrap_or_else(dash),
        );
    }
    Ok(())
}

pub(crate) async fn backup(
    args: BackupArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let request = args.job.into_request(Trigger::Cli)?;
    let destination = args.out_dir.map(|root| Destination::Directory {
        root,
        prefix: Prefix::default(),
    });
    let job = request.into_job(&settings.defaults, destination)?;
    let aws = AwsContext::load(options).await;
    let backup = ddb_backup::runtime::service::backup_for(&job, &aws, settings);
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
    let started = std::time::Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            let items = progress.items.load(Ordering::Relaxed);
            // DynamoDB refreshes the item count about every six hours: said to be an estimate.
            let of = match progress.estimate(started.elapsed()) {
                Some(e) => format!(
                    " of ~{} ({:.0} %{}, estimated)",
                    e.estimated_items,
                    e.fraction * 100.0,
                    e.seconds_left
                        .map(|s| format!(", {} left", ddb_backup::human::human_duration(s * 1000)))
                        .unwrap_or_default()
                ),
                None => String::new(),
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

pub(crate) async fn verify(
    args: VerifyArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let aws = AwsContext::load(options).await;
    if let Some(day) = compacted_day(&args.manifest) {
        return verify_compacted_day(&args, day, &aws, settings).await;
    }
    let backup = ddb_backup::runtime::service::open_backup(&args.manifest, &aws, settings).await?;
    let manifest = &backup.manifest;
    let report = ddb_backup::readback::verify::verify_backup(backup.store.clone(), manifest, |k| {
        backup.locate(k)
    })
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

/// A compacted day of changes: `s3://bucket/{prefix}{table}/changes/daily/dt={date}/` (or its
/// manifest), as `(bucket, changes base, date)`.
fn compacted_day(location: &str) -> Option<(&str, &str, &str)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    let at = key.find("daily/dt=")?;
    let base = &key[..at];
    let date = key[at + "daily/dt=".len()..].split('/').next()?;
    base.ends_with("changes/").then_some((bucket, base, date))
}

async fn verify_compacted_day(
    args: &VerifyArgs,
    (bucket, base, date): (&str, &str, &str),
    aws: &AwsContext,
    settings: &Settings,
) -> anyhow::Result<()> {
    let bucket = ddb_backup::model::job::BucketName::new(bucket).map_err(|message| {
        ddb_backup::JobError::Field {
            field: "manifest".into(),
            message: message.into(),
        }
    })?;
    let store = ddb_backup::runtime::service::store_for(
        &Destination::S3 {
            bucket,
            prefix: settings.defaults.prefix.clone(),
        },
        aws,
        settings,
    );
    let table_base = base.trim_end_matches("changes/");
    let (prefix, table) = table_base
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(p, t)| (format!("{p}/"), t))
        .unwrap_or((String::new(), table_base.trim_end_matches('/')));
    let layout = ddb_backup::model::changes::ChangeLayout::new(&prefix, table);
    let check = ddb_backup::changes::compact::verify_day(store.as_ref(), &layout, date)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} has no compacted-day manifest", args.manifest))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&check)?);
    }
    if !check.problems.is_empty() {
        for problem in &check.problems {
            eprintln!("{problem}");
        }
        anyhow::bail!(
            "the compacted changes of {date} do not match their manifest: {} problem(s)",
            check.problems.len()
        );
    }
    if !args.json {
        println!(
            "OK: compacted changes of {table} on {date}: {} keys, {} verified against the manifest",
            check.changes,
            human_bytes(check.bytes)
        );
    }
    Ok(())
}

/// Restores a backup as its scan read it.
pub(crate) async fn restore_as_read(
    args: RestoreArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let aws = AwsContext::load(options).await;
    let location = args.manifest.clone().unwrap_or_default();
    let backup = ddb_backup::runtime::service::open_backup(&location, &aws, settings).await?;
    write_restore(
        &args,
        &aws,
        backup.store.clone(),
        &backup.manifest,
        |k| backup.locate(k),
        None,
    )
    .await
}

/// Writes a backup (with captured changes over it, when `overlay` is given) into the target
/// table, with a progress bar, and prints the report.
pub(crate) async fn write_restore(
    args: &RestoreArgs,
    aws: &AwsContext,
    store: Arc<dyn ddb_backup::store::ObjectStore>,
    manifest: &Manifest,
    locate: impl Fn(&str) -> String,
    overlay: Option<Arc<ddb_backup::readback::point_in_time::Overlay>>,
) -> anyhow::Result<()> {
    let table = ddb_backup::model::job::TableName::new(&args.table).map_err(|message| {
        ddb_backup::JobError::Field {
            field: "table".into(),
            message: message.into(),
        }
    })?;
    if args.write_budget.is_some_and(|b| b < 1.0) || args.concurrency == 0 {
        return Err(ddb_backup::JobError::Field {
            field: "write-budget/concurrency".into(),
            message: "--write-budget must be at least 1 WCU/s and --concurrency at least 1".into(),
        }
        .into());
    }
    let restore_options = ddb_backup::readback::restore::RestoreOptions {
        table,
        create_table: args.create_table,
        write_budget: args.write_budget,
        concurrency: args.concurrency,
        allow_lossy: args.allow_lossy,
        overlay,
        resume: None,
        stop_at: None,
    };
    let progress = Arc::new(ddb_backup::readback::restore::RestoreProgress::default());
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(manifest.item_count);
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
    let writer = Arc::new(ddb_backup::readback::table_writer::DynamoDbWriter::new(
        aws.dynamodb(),
    ));
    let result = ddb_backup::readback::restore::restore(
        store,
        manifest,
        locate,
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
        Err(e @ ddb_backup::readback::restore::RestoreError::Lossy { .. }) => {
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
            manifest.job_id,
            report.table,
            report.items as f64 / secs,
            report.retries
        );
        if let Some(changes) = &report.changes {
            println!(
                "The table is as it was at {}: {} keys taken from the captured changes, {} deleted",
                changes.as_of, changes.changed_keys, changes.deleted
            );
        }
    }
    Ok(())
}

pub(crate) async fn seed(args: SeedArgs, options: &AwsOptions) -> anyhow::Result<()> {
    ddb_backup::model::job::TableName::new(&args.table).map_err(|message| {
        ddb_backup::JobError::Field {
            field: "table".into(),
            message: message.into(),
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
    ddb_backup::source::seed::seed_students(&client, &args.table, args.items, move |n| {
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
