//! Restore to a moment and item-level restore, from a backup and the captured changes, and the
//! listing of what changed (`ddb-backup changes`).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use ddb_backup::aws::{AwsContext, AwsOptions};
use ddb_backup::changes::coverage::lineage;
use ddb_backup::changes::replay::Window;
use ddb_backup::changes::{ChangeSet, KeyId};
use ddb_backup::model::changes::ChangeLayout;
use ddb_backup::model::job::{BucketName, Destination, JobError, TableName};
use ddb_backup::model::manifest::{ConsistencyKind, Manifest};
use ddb_backup::readback::import::{
    run_import, DynamoDbImporter, ImportBilling, ImportOverrides, ImportPlan,
};
use ddb_backup::readback::point_in_time::{
    changes_since_backup, changes_until_now, key_json, key_names, newest_backup_before,
    parse_moment, restore_items, ItemOutcome, KeySelection, Overlay,
};
use ddb_backup::readback::table_writer::DynamoDbWriter;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::store::ObjectStore;

use crate::args::{ChangesArgs, RestoreArgs};
use crate::commands::{restore_as_read, write_restore};

fn field(name: &str, message: impl Into<String>) -> anyhow::Error {
    JobError::Field {
        field: name.to_string(),
        message: message.into(),
    }
    .into()
}

/// The bucket's store, from a flag or `DDB_BACKUP_BUCKET`.
fn bucket_store(
    bucket: Option<&str>,
    aws: &AwsContext,
    settings: &Settings,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let bucket = match bucket {
        Some(b) => BucketName::new(b).map_err(|e| field("bucket", e.to_string()))?,
        None => settings.defaults.bucket.clone().ok_or_else(|| {
            field(
                "bucket",
                "no bucket: pass --bucket or set DDB_BACKUP_BUCKET",
            )
        })?,
    };
    let destination = Destination::S3 {
        bucket,
        prefix: settings.defaults.prefix.clone(),
    };
    Ok(service::store_for(&destination, aws, settings))
}

/// `restore`: as the backup was read, or as the table was at a moment.
pub(crate) async fn restore(
    args: RestoreArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    // Bad flags fail before anything is read.
    TableName::new(&args.table).map_err(|e| field("table", e))?;
    if args.write_budget.is_some_and(|b| b < 1.0) || args.concurrency == 0 {
        return Err(field(
            "write-budget/concurrency",
            "--write-budget must be at least 1 WCU/s and --concurrency at least 1",
        ));
    }
    let aws = AwsContext::load(options).await;
    let now = Utc::now();
    let to = args
        .to_time
        .as_deref()
        .map(|t| parse_moment(t, now).map_err(|e| field("to-time", e)))
        .transpose()?;

    // The backup to start from: the one named, or the newest before the moment.
    let (store, key, manifest, local) = match (&args.manifest, to) {
        (Some(location), _) => {
            let opened = service::open_backup(location, &aws, settings).await?;
            let local = opened.is_local();
            (opened.store, opened.key, opened.manifest, local)
        }
        (None, Some(to)) => {
            let source = args
                .source_table
                .clone()
                .or_else(|| settings.defaults.table.as_ref().map(|t| t.to_string()))
                .unwrap_or_else(|| args.table.clone());
            let source = TableName::new(&source).map_err(|e| field("source-table", e))?;
            let store = bucket_store(args.bucket.as_deref(), &aws, settings)?;
            let (key, manifest) = newest_backup_before(
                store.as_ref(),
                settings.defaults.prefix.as_str(),
                source.as_str(),
                to,
            )
            .await?;
            (store, key, manifest, false)
        }
        (None, None) => return Err(field("manifest", "name a backup, or pass --to-time")),
    };
    let consistent = manifest
        .consistency
        .as_ref()
        .filter(|c| c.kind == ConsistencyKind::PointInTime)
        .and_then(|c| c.consistent_as_of.as_deref())
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc));
    let to = match (to, consistent) {
        (Some(to), _) => to,
        (None, Some(as_of)) if !args.fuzzy => as_of,
        _ if args.import => {
            return import_restore(&args, &aws, store, &key, &manifest, None).await;
        }
        _ => return restore_as_read(args, settings, options).await,
    };
    if local {
        return Err(field(
            "manifest",
            "a backup in a local directory has no captured changes beside it: restore it as read with --fuzzy, or name its copy in S3",
        ));
    }
    let stream = service::change_stream(&aws);
    let at_time = changes_since_backup(store.clone(), stream.as_ref(), &key, &manifest, to).await?;
    let names = key_names(&manifest);
    let later = || async {
        let layout = ChangeLayout::beside_backup(&key)
            .ok_or_else(|| field("manifest", format!("{key} is not a backup's manifest key")))?;
        let lineage = lineage(store.as_ref(), &layout).await?;
        let window = Window {
            from: to.timestamp_micros() + 1,
            to: now.timestamp_micros() + TimeDelta::minutes(5).num_microseconds().unwrap_or(0),
        };
        anyhow::Ok(ChangeSet::read(store.clone(), &layout, &names, &window, &lineage).await?)
    };

    if args.keys.is_some() || !args.key_values.is_empty() {
        let selection = selection(&args, &manifest, &names)?;
        let since = later().await?;
        let writer = DynamoDbWriter::new(aws.dynamodb());
        let results = restore_items(
            store.clone(),
            &manifest,
            |k| k.to_string(),
            &at_time,
            &since,
            &selection,
            &writer,
            &args.table,
            args.overwrite,
        )
        .await?;
        let count = |o: ItemOutcome| results.iter().filter(|r| r.outcome == o).count();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
        } else {
            println!(
                "Items of table {} as they were at {}: {} restored, {} overwritten, {} already so, {} changed since and left alone",
                args.table,
                to.to_rfc3339_opts(SecondsFormat::Secs, true),
                count(ItemOutcome::Restored),
                count(ItemOutcome::Overwritten),
                count(ItemOutcome::Unchanged),
                count(ItemOutcome::ChangedSince)
            );
            for r in results
                .iter()
                .filter(|r| r.outcome == ItemOutcome::ChangedSince)
            {
                println!("  changed since: {}", r.key);
            }
        }
        let left = count(ItemOutcome::ChangedSince);
        if left > 0 {
            anyhow::bail!(
                "{left} items are not what the captured changes last recorded (written since, or not captured yet) and were left alone: check them, then rerun with --overwrite to replace them"
            );
        }
        return Ok(());
    }

    let mut overlay = Overlay::from_changes(&at_time, names.clone(), to)?;
    if args.import {
        return import_restore(&args, &aws, store, &key, &manifest, Some(overlay)).await;
    }
    if !args.create_table {
        let since = changes_until_now(store.clone(), stream.as_ref(), &key, &manifest, to).await?;
        overlay.clear_later_keys(&since)?;
    }
    write_restore(
        &args,
        &aws,
        store.clone(),
        &manifest,
        |k| k.to_string(),
        Some(Arc::new(overlay)),
    )
    .await
}

/// `restore --import`: DynamoDB loads the backup's files into a new table (ImportTable); the
/// captured changes, when restoring to a moment, are then written over it.
async fn import_restore(
    args: &RestoreArgs,
    aws: &AwsContext,
    store: Arc<dyn ObjectStore>,
    key: &str,
    manifest: &Manifest,
    overlay: Option<Overlay>,
) -> anyhow::Result<()> {
    let table = TableName::new(&args.table).map_err(|e| field("table", e))?;
    let billing = match (args.on_demand, args.read_capacity, args.write_capacity) {
        (true, _, _) => Some(ImportBilling::OnDemand),
        (false, Some(read), Some(write)) if read >= 1 && write >= 1 => {
            Some(ImportBilling::Provisioned { read, write })
        }
        (false, Some(_), Some(_)) => {
            return Err(field(
                "read-capacity/write-capacity",
                "capacities must be at least 1",
            ))
        }
        _ => None,
    };
    let overrides = ImportOverrides {
        billing,
        without_indexes: args.without_indexes,
    };
    // The bucket it is read from, which a copy may not share with where it was written.
    let uri = store.uri(key);
    let bucket = uri
        .strip_prefix("s3://")
        .and_then(|rest| rest.split('/').next());
    let plan = ImportPlan::new(manifest, bucket, key, store.as_ref(), &table, &overrides).await?;
    let writer = DynamoDbWriter::new(aws.dynamodb());
    let importer = DynamoDbImporter::new(aws.dynamodb());
    let quiet = args.json;
    let mut last = None;
    let report = run_import(
        &importer,
        &writer,
        &plan,
        std::time::Duration::from_secs(15),
        |p| {
            let line = format!(
                "import into {}: {:?}, {} of {} items read, {} imported, {} errors",
                plan.table,
                p.state,
                p.processed_items,
                plan.expected_items,
                p.imported_items,
                p.errors
            );
            if !quiet && last.as_ref() != Some(&line) {
                eprintln!("{line}");
                last = Some(line);
            }
        },
    )
    .await?;
    if !args.json || overlay.is_none() {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "Imported {} items of backup {} into new table {} in {:.1} s (ImportTable: no write capacity used)",
                report.progress.imported_items,
                manifest.job_id,
                plan.table,
                report.duration_ms as f64 / 1000.0
            );
        }
    }
    let Some(overlay) = overlay else {
        return Ok(());
    };
    // The imported table holds the backup as read: the changes' deletes and last images
    // turn it into the table as it was at the moment.
    let mut changes_only = manifest.clone();
    changes_only.files.clear();
    changes_only.item_count = 0;
    let over = RestoreArgs {
        create_table: false,
        ..args.clone()
    };
    write_restore(
        &over,
        aws,
        store,
        &changes_only,
        |k| k.to_string(),
        Some(Arc::new(overlay)),
    )
    .await
}

/// The items `--keys` and `--key` name.
fn selection(
    args: &RestoreArgs,
    manifest: &Manifest,
    names: &[String],
) -> anyhow::Result<KeySelection> {
    let partition_type = manifest
        .attribute_definitions
        .iter()
        .find(|d| Some(&d.attribute_name) == names.first())
        .map(|d| d.attribute_type.clone())
        .unwrap_or_else(|| "S".to_string());
    let typed = |value: &str| -> anyhow::Result<AttributeValue> {
        Ok(match partition_type.as_str() {
            "N" => {
                value.parse::<f64>().map_err(|_| {
                    field(
                        "key",
                        format!(
                            "`{value}` is not a number, and the partition key `{}` is of type N",
                            names[0]
                        ),
                    )
                })?;
                AttributeValue::N(value.to_string())
            }
            "B" => AttributeValue::B(Blob::new(
                base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .map_err(|e| {
                        field(
                            "key",
                            format!(
                                "`{value}` is not base64 ({e}), and the partition key is binary"
                            ),
                        )
                    })?,
            )),
            _ => AttributeValue::S(value.to_string()),
        })
    };
    let mut selection = KeySelection::default();
    let mut partition = |value: &str| -> anyhow::Result<()> {
        let item = HashMap::from([(names[0].clone(), typed(value)?)]);
        selection
            .partitions
            .insert(KeyId::of(&item, &names[..1]).map_err(|e| field("key", e))?);
        Ok(())
    };
    for value in &args.key_values {
        partition(value)?;
    }
    let mut exact = HashMap::new();
    if let Some(path) = &args.keys {
        let text = std::fs::read_to_string(path)
            .map_err(|e| field("keys", format!("cannot read {}: {e}", path.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('{') {
                let key =
                    ddb_backup::codec::decode::decode_item_map(line.as_bytes()).map_err(|e| {
                        field("keys", format!("{}: line {}: {e}", path.display(), n + 1))
                    })?;
                let id = KeyId::of(&key, names).map_err(|e| {
                    field("keys", format!("{}: line {}: {e}", path.display(), n + 1))
                })?;
                exact.insert(id, key);
            } else {
                partition(line)?;
            }
        }
    }
    selection.keys = exact;
    Ok(selection)
}

/// `changes`: each changed key with its count, first and last change, and what the last did.
pub(crate) async fn changes(
    args: ChangesArgs,
    settings: &Settings,
    options: &AwsOptions,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let since = parse_moment(&args.since, now).map_err(|e| field("since", e))?;
    let until = match &args.until {
        Some(u) => parse_moment(u, now).map_err(|e| field("until", e))?,
        None => now,
    };
    if until < since {
        return Err(field("until", "--until is before --since"));
    }
    let table = args
        .table
        .clone()
        .or_else(|| settings.defaults.table.as_ref().map(|t| t.to_string()))
        .ok_or_else(|| field("table", "no table: pass --table or set DDB_BACKUP_TABLE"))?;
    let table = TableName::new(&table).map_err(|e| field("table", e))?;
    let aws = AwsContext::load(options).await;
    let store = bucket_store(args.bucket.as_deref(), &aws, settings)?;
    let layout = ChangeLayout::new(settings.defaults.prefix.as_str(), table.as_str());
    let lineage = lineage(store.as_ref(), &layout).await?;
    let names = match service::dynamodb_source(&aws)
        .describe(table.as_str())
        .await
    {
        Ok(info) => {
            let mut keys = info.key_schema;
            keys.sort_by_key(|k| k.key_type != "HASH");
            keys.into_iter()
                .map(|k| k.attribute_name)
                .collect::<Vec<_>>()
        }
        Err(e) => anyhow::bail!(
            "cannot read the key of table `{table}` ({e}); the changes are keyed by it"
        ),
    };
    let window = Window {
        from: since.timestamp_micros(),
        to: until.timestamp_micros() + 999_999,
    };
    let set = ChangeSet::read(store, &layout, &names, &window, &lineage).await?;
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut histories: Vec<_> = set.keys.values().collect();
    histories.sort_by_key(|h| std::cmp::Reverse(h.last.micros));
    let at = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    for h in histories.iter().take(args.limit) {
        let key = h.last.key_item().map(|k| key_json(&k)).unwrap_or_default();
        rows.push(serde_json::json!({
            "key": key,
            "changes": h.count,
            "first": at(h.first_micros),
            "last": at(h.last.micros),
            "last_event": h.last.event,
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "table": table.as_str(),
                "since": at(window.from),
                "until": at(until.timestamp_micros()),
                "keys_changed": set.keys.len(),
                "changes": set.changes,
                "keys": rows,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} changes to {} keys of table {} from {} to {}{}",
        set.changes,
        set.keys.len(),
        table,
        at(window.from),
        at(until.timestamp_micros()),
        if set.keys.len() > args.limit {
            format!(" (the {} most recent keys shown)", args.limit)
        } else {
            String::new()
        }
    );
    for row in rows {
        println!(
            "{:<20}  {:>3} changes  last {} ({})  {}",
            row["last"].as_str().unwrap_or_default(),
            row["changes"],
            row["last_event"].as_str().unwrap_or_default(),
            row["first"].as_str().unwrap_or_default(),
            row["key"]
        );
    }
    Ok(())
}
