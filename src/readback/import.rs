//! Restore through DynamoDB's ImportTable: the service reads a `dynamodb-json` backup's files
//! straight from S3 into a new table. It uses no write capacity, costs a fraction of writing
//! the items (about $0.15 per GB of uncompressed source), and takes minutes where writes take
//! hours, but only into a new table, only from DynamoDB JSON lines, and from one S3 prefix of
//! at most 50,000 objects. [`ImportPlan::new`] checks every one of those before anything starts;
//! [`run_import`] starts the import and follows it to its end. The [`TableImporter`] port has the
//! DynamoDB adapter and [`MemoryImporter`], a twin that loads a [`MemoryWriter`] table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    BillingMode, ImportStatus, InputCompressionType, InputFormat, ProvisionedThroughput,
    S3BucketSource, TableCreationParameters,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::FailureKind;
use crate::model::format::{Compression, Format};
use crate::model::job::TableName;
use crate::model::manifest::Manifest;
use crate::readback::records::read_items;
use crate::readback::table_writer::{
    sdk_definitions, sdk_global_indexes, sdk_keys, MemoryWriter, TableSpec, TableWriter, WriteError,
};
use crate::store::{ObjectStore, StoreError};

/// ImportTable's limit on the objects of one import.
pub const MAX_IMPORT_OBJECTS: usize = 50_000;

/// The new table's capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum ImportBilling {
    /// Pay per request.
    OnDemand,
    /// Provisioned read and write capacity units, for the table and each global index.
    Provisioned {
        /// Read capacity units.
        read: i64,
        /// Write capacity units.
        write: i64,
    },
}

/// What to change from the backup's own table description.
#[derive(Debug, Clone, Default)]
pub struct ImportOverrides {
    /// Capacity mode instead of the backed-up table's.
    pub billing: Option<ImportBilling>,
    /// Create the table without its global secondary indexes (they can be added later, and
    /// each one slows the import).
    pub without_indexes: bool,
}

/// A checked ImportTable request: everything it needs, from a manifest that can be imported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportPlan {
    /// The new table.
    pub table: String,
    /// The backup's bucket.
    pub bucket: String,
    /// Its `data/` prefix: every object under it is one of the backup's files.
    pub key_prefix: String,
    /// The files' compression.
    pub compression: Compression,
    /// Keys and indexes.
    #[serde(skip)]
    pub spec: TableSpec,
    /// Capacity mode.
    pub billing: ImportBilling,
    /// The same backup imported into the same table is the same import: a retried start
    /// returns the import already running instead of a second one.
    pub client_token: String,
    /// Items the manifest says the files hold.
    pub expected_items: u64,
    /// Files the manifest lists.
    pub files: usize,
}

/// Why a backup cannot be imported, or an import did not give the backup back.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Only DynamoDB JSON lines are read by ImportTable as exactly what was backed up.
    #[error("backup {job_id} is in the `{format}` format: ImportTable restores exactly only from dynamodb-json backups (CSV and plain JSON lose types, and it cannot read Parquet); restore it without --import, which writes the items")]
    NotImportable {
        /// The job.
        job_id: String,
        /// Its format.
        format: Format,
    },
    /// One import reads at most 50,000 objects.
    #[error("backup {job_id} has {files} files, and one ImportTable reads at most {MAX_IMPORT_OBJECTS}: restore it without --import, or back up with a larger file size (DDB_BACKUP_FILE_SIZE_MIB) and fewer segments")]
    TooManyObjects {
        /// The job.
        job_id: String,
        /// Its files.
        files: usize,
    },
    /// ImportTable reads from S3 only.
    #[error("backup {job_id} is at {location}, not in S3: ImportTable reads from S3 only; restore it without --import, or copy it to a bucket first")]
    NotInS3 {
        /// The job.
        job_id: String,
        /// Where it is.
        location: String,
    },
    /// ImportTable cannot create local secondary indexes.
    #[error("the backed-up table has local secondary indexes ({indexes}), which ImportTable cannot create: restore without --import, which creates them")]
    LocalIndexes {
        /// Their names.
        indexes: String,
    },
    /// The provisioned capacity is not known.
    #[error("the backed-up table was provisioned, and this backup does not record its capacity: pass --read-capacity and --write-capacity, or --on-demand")]
    CapacityUnknown,
    /// The prefix holds objects the manifest does not list; the import would load them too.
    #[error("{prefix} holds {count} objects the manifest does not list (for example {example}): ImportTable would load them as well; restore without --import, or remove them")]
    StrayObjects {
        /// The prefix.
        prefix: String,
        /// How many.
        count: usize,
        /// One of them.
        example: String,
    },
    /// A file the manifest lists is missing.
    #[error("{key} is listed in the manifest but is not in the bucket: run `ddb-backup verify` on the backup")]
    MissingFile {
        /// Its key.
        key: String,
    },
    /// ImportTable creates its table.
    #[error("table `{0}` already exists: ImportTable restores only into a new table; choose a new name, or restore without --import")]
    TableExists(String),
    /// The import ended without loading every item.
    #[error("the import into `{table}` ended {status}: {imported} of {expected} items imported, {errors} errors{detail}; delete the table before trying again")]
    Incomplete {
        /// The new table.
        table: String,
        /// How it ended.
        status: String,
        /// Items loaded.
        imported: u64,
        /// Items the backup holds.
        expected: u64,
        /// Records the import could not load.
        errors: u64,
        /// The failure and where its errors are logged.
        detail: String,
    },
    /// Listing the prefix failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A DynamoDB call failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl crate::error::Retryable for ImportError {
    fn is_retryable(&self) -> bool {
        match self {
            ImportError::Store(e) => e.is_retryable(),
            ImportError::Write(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl ImportPlan {
    /// Checks that `manifest`'s backup, whose manifest is at `manifest_key` in `store` (the S3
    /// bucket `bucket`, `None` when it is not in S3), can be imported into `table`, and builds
    /// the request. The `data/` prefix is listed so that no object outside the backup is loaded
    /// with it.
    pub async fn new(
        manifest: &Manifest,
        bucket: Option<&str>,
        manifest_key: &str,
        store: &dyn ObjectStore,
        table: &TableName,
        overrides: &ImportOverrides,
    ) -> Result<ImportPlan, ImportError> {
        let job_id = manifest.job_id.clone();
        if manifest.format != Format::DynamodbJson {
            return Err(ImportError::NotImportable {
                job_id,
                format: manifest.format,
            });
        }
        if manifest.files.len() > MAX_IMPORT_OBJECTS {
            return Err(ImportError::TooManyObjects {
                job_id,
                files: manifest.files.len(),
            });
        }
        // The bucket the backup is read from (a copy may be elsewhere than it was written).
        let bucket = bucket
            .filter(|b| !b.is_empty())
            .ok_or_else(|| ImportError::NotInS3 {
                job_id: job_id.clone(),
                location: store.uri(manifest_key),
            })?
            .to_string();
        if !manifest.local_secondary_indexes.is_empty() {
            let names: Vec<&str> = manifest
                .local_secondary_indexes
                .iter()
                .map(|i| i.index_name.as_str())
                .collect();
            return Err(ImportError::LocalIndexes {
                indexes: names.join(", "),
            });
        }
        let billing = match overrides.billing {
            Some(billing) => billing,
            None if manifest.billing_mode.as_deref() == Some("PROVISIONED") => {
                match manifest.provisioned_throughput {
                    Some(t) => ImportBilling::Provisioned {
                        read: t.read.max(1),
                        write: t.write.max(1),
                    },
                    None => return Err(ImportError::CapacityUnknown),
                }
            }
            None => ImportBilling::OnDemand,
        };
        let base = manifest_key.rfind('/').map_or("", |i| &manifest_key[..=i]);
        let key_prefix = format!("{base}data/");
        let listed = store.list(&key_prefix).await?;
        let expected: std::collections::HashSet<&str> =
            manifest.files.iter().map(|f| f.key.as_str()).collect();
        let present: std::collections::HashSet<&str> = listed.iter().map(String::as_str).collect();
        if let Some(missing) = manifest
            .files
            .iter()
            .find(|f| !present.contains(f.key.as_str()))
        {
            return Err(ImportError::MissingFile {
                key: missing.key.clone(),
            });
        }
        let stray: Vec<&String> = listed
            .iter()
            .filter(|k| !expected.contains(k.as_str()))
            .collect();
        if let Some(example) = stray.first() {
            return Err(ImportError::StrayObjects {
                prefix: store.uri(&key_prefix),
                count: stray.len(),
                example: example.to_string(),
            });
        }
        let mut digest = Sha256::new();
        digest.update(manifest_key.as_bytes());
        digest.update([0]);
        digest.update(table.as_str().as_bytes());
        digest.update(format!("{billing:?} {}", overrides.without_indexes).as_bytes());
        let client_token = hex::encode(&digest.finalize()[..16]);
        Ok(ImportPlan {
            table: table.to_string(),
            bucket,
            key_prefix,
            compression: manifest.compression,
            spec: TableSpec {
                key_schema: manifest.key_schema.clone(),
                attribute_definitions: manifest.attribute_definitions.clone(),
                global_secondary_indexes: if overrides.without_indexes {
                    Vec::new()
                } else {
                    manifest.global_secondary_indexes.clone()
                },
                local_secondary_indexes: Vec::new(),
            },
            billing,
            client_token,
            expected_items: manifest.item_count,
            files: manifest.files.len(),
        })
    }
}

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// Still loading.
    InProgress,
    /// Done (with or without errors).
    Completed,
    /// Cancelled.
    Cancelled,
    /// Failed.
    Failed,
}

/// What DescribeImport says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportProgress {
    /// The import's ARN.
    pub import_arn: String,
    /// Where it is.
    pub state: ImportState,
    /// Records read.
    pub processed_items: u64,
    /// Items written to the table.
    pub imported_items: u64,
    /// Records that could not be loaded.
    pub errors: u64,
    /// Bytes read.
    pub processed_bytes: u64,
    /// Where the import logs its errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What a finished import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The request.
    pub plan: ImportPlan,
    /// Its end.
    pub progress: ImportProgress,
    /// Wall time.
    pub duration_ms: u64,
}

/// The ImportTable port.
#[async_trait]
pub trait TableImporter: Send + Sync {
    /// Starts an import; returns its ARN.
    async fn start(&self, plan: &ImportPlan) -> Result<String, WriteError>;
    /// Where the import is.
    async fn progress(&self, import_arn: &str) -> Result<ImportProgress, WriteError>;
}

/// Starts the import (after checking that the table does not exist) and follows it to its end,
/// calling `on_progress` after each poll (polls slow down to one per `poll`). An import that ends with fewer items than the backup
/// holds, or with any error, is an error that names its log group.
pub async fn run_import(
    importer: &dyn TableImporter,
    writer: &dyn TableWriter,
    plan: &ImportPlan,
    poll: Duration,
    mut on_progress: impl FnMut(&ImportProgress),
) -> Result<ImportReport, ImportError> {
    let clock = std::time::Instant::now();
    if writer.describe(&plan.table).await?.is_some() {
        return Err(ImportError::TableExists(plan.table.clone()));
    }
    let arn = importer.start(plan).await?;
    // Polls start quick, for the small tables an import finishes in a minute, and slow down to
    // `poll` for the large ones.
    let mut wait = poll.min(Duration::from_millis(500));
    let progress = loop {
        let progress = importer.progress(&arn).await?;
        on_progress(&progress);
        if progress.state != ImportState::InProgress {
            break progress;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(poll);
    };
    let complete = progress.state == ImportState::Completed
        && progress.errors == 0
        && progress.imported_items == plan.expected_items;
    if !complete {
        let mut detail = String::new();
        if let Some(failure) = &progress.failure {
            detail.push_str(&format!(" ({failure})"));
        }
        if let Some(group) = &progress.log_group {
            detail.push_str(&format!("; the errors are in CloudWatch log group {group}"));
        }
        return Err(ImportError::Incomplete {
            table: plan.table.clone(),
            status: match progress.state {
                ImportState::Completed => "completed".into(),
                ImportState::Cancelled => "cancelled".into(),
                ImportState::Failed => "failed".into(),
                ImportState::InProgress => "in progress".into(),
            },
            imported: progress.imported_items,
            expected: plan.expected_items,
            errors: progress.errors,
            detail,
        });
    }
    Ok(ImportReport {
        plan: plan.clone(),
        progress,
        duration_ms: clock.elapsed().as_millis() as u64,
    })
}

/// ImportTable and DescribeImport through the SDK.
#[derive(Clone)]
pub struct DynamoDbImporter {
    client: aws_sdk_dynamodb::Client,
}

impl DynamoDbImporter {
    /// An importer on `client`.
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        DynamoDbImporter { client }
    }

    /// The ImportTable request for `plan`, exactly as it is sent.
    pub fn request(
        &self,
        plan: &ImportPlan,
    ) -> Result<
        aws_sdk_dynamodb::operation::import_table::builders::ImportTableFluentBuilder,
        WriteError,
    > {
        let table = plan.table.as_str();
        let refused =
            |e: aws_sdk_dynamodb::error::BuildError| WriteError::refused("ImportTable", table, e);
        let throughput = match plan.billing {
            ImportBilling::OnDemand => None,
            ImportBilling::Provisioned { read, write } => Some(
                ProvisionedThroughput::builder()
                    .read_capacity_units(read)
                    .write_capacity_units(write)
                    .build()
                    .map_err(refused)?,
            ),
        };
        let definitions = sdk_definitions("ImportTable", table, &plan.spec)?;
        let gsis = sdk_global_indexes("ImportTable", table, &plan.spec, throughput.clone())?;
        let creation = TableCreationParameters::builder()
            .table_name(table)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(sdk_keys(table, &plan.spec.key_schema)?))
            .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
            .billing_mode(match plan.billing {
                ImportBilling::OnDemand => BillingMode::PayPerRequest,
                ImportBilling::Provisioned { .. } => BillingMode::Provisioned,
            })
            .set_provisioned_throughput(throughput)
            .build()
            .map_err(refused)?;
        let source = S3BucketSource::builder()
            .s3_bucket(&plan.bucket)
            .s3_key_prefix(&plan.key_prefix)
            .build()
            .map_err(refused)?;
        Ok(self
            .client
            .import_table()
            .client_token(&plan.client_token)
            .s3_bucket_source(source)
            .input_format(InputFormat::DynamodbJson)
            .input_compression_type(match plan.compression {
                Compression::Gzip => InputCompressionType::Gzip,
                Compression::Zstd => InputCompressionType::Zstd,
                Compression::None => InputCompressionType::None,
            })
            .table_creation_parameters(creation))
    }
}

#[async_trait]
impl TableImporter for DynamoDbImporter {
    async fn start(&self, plan: &ImportPlan) -> Result<String, WriteError> {
        let out = self
            .request(plan)?
            .send()
            .await
            .map_err(|e| WriteError::sdk("ImportTable", &plan.table, e))?;
        out.import_table_description()
            .and_then(|d| d.import_arn())
            .map(str::to_string)
            .ok_or_else(|| WriteError::Request {
                operation: "ImportTable",
                table: plan.table.clone(),
                kind: FailureKind::ServerError,
                message: "the response names no import".into(),
                source: None,
            })
    }

    async fn progress(&self, import_arn: &str) -> Result<ImportProgress, WriteError> {
        let out = self
            .client
            .describe_import()
            .import_arn(import_arn)
            .send()
            .await
            .map_err(|e| WriteError::sdk("DescribeImport", import_arn, e))?;
        let d = out
            .import_table_description()
            .ok_or_else(|| WriteError::Request {
                operation: "DescribeImport",
                table: import_arn.to_string(),
                kind: FailureKind::ServerError,
                message: "the response describes no import".into(),
                source: None,
            })?;
        let count = |n: i64| n.max(0) as u64;
        Ok(ImportProgress {
            import_arn: import_arn.to_string(),
            state: match d.import_status() {
                Some(ImportStatus::Completed) => ImportState::Completed,
                Some(ImportStatus::Cancelled) => ImportState::Cancelled,
                Some(ImportStatus::Failed) => ImportState::Failed,
                _ => ImportState::InProgress,
            },
            processed_items: count(d.processed_item_count()),
            imported_items: count(d.imported_item_count()),
            errors: count(d.error_count()),
            processed_bytes: d.processed_size_bytes().map_or(0, count),
            log_group: d.cloud_watch_log_group_arn().map(str::to_string),
            failure: match (d.failure_code(), d.failure_message()) {
                (None, None) => None,
                (code, message) => Some(format!(
                    "{}: {}",
                    code.unwrap_or("failed"),
                    message.unwrap_or("no message")
                )),
            },
        })
    }
}

/// A twin of ImportTable: it reads the plan's prefix from a store (the backup's bucket) into a
/// [`MemoryWriter`] table, as DynamoDB does, and reports it in progress once before it is
/// complete. Records it cannot decode count as errors, as DynamoDB's do.
#[derive(Clone)]
pub struct MemoryImporter {
    store: Arc<dyn ObjectStore>,
    writer: MemoryWriter,
    imports: Arc<Mutex<HashMap<String, (ImportProgress, bool)>>>,
    started: Arc<Mutex<Vec<ImportPlan>>>,
}

impl MemoryImporter {
    /// Imports from `store` into `writer`.
    pub fn new(store: Arc<dyn ObjectStore>, writer: MemoryWriter) -> Self {
        MemoryImporter {
            store,
            writer,
            imports: Arc::default(),
            started: Arc::default(),
        }
    }

    /// Every plan started, in order.
    pub fn started(&self) -> Vec<ImportPlan> {
        self.started.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl TableImporter for MemoryImporter {
    async fn start(&self, plan: &ImportPlan) -> Result<String, WriteError> {
        let arn = format!(
            "arn:twin:dynamodb:table/{}/import/{}",
            plan.table, plan.client_token
        );
        if self
            .imports
            .lock()
            .map(|i| i.contains_key(&arn))
            .unwrap_or(false)
        {
            return Ok(arn);
        }
        if let Ok(mut started) = self.started.lock() {
            started.push(plan.clone());
        }
        self.writer.create_table(&plan.table, &plan.spec).await?;
        let mut progress = ImportProgress {
            import_arn: arn.clone(),
            state: ImportState::Completed,
            processed_items: 0,
            imported_items: 0,
            errors: 0,
            processed_bytes: 0,
            log_group: None,
            failure: None,
        };
        let keys = self
            .store
            .list(&plan.key_prefix)
            .await
            .map_err(|e| WriteError::refused("ImportTable", &plan.table, e))?;
        for key in keys {
            let bytes = self
                .store
                .get(&key)
                .await
                .map_err(|e| WriteError::refused("ImportTable", &plan.table, e))?;
            progress.processed_bytes += bytes.len() as u64;
            let mut items = Vec::new();
            let read = read_items(
                bytes.as_ref(),
                Format::DynamodbJson,
                plan.compression,
                None,
                |item| {
                    items.push(item);
                    true
                },
            );
            if read.is_err() {
                progress.errors += 1;
                progress.log_group = Some(format!("/aws-dynamodb/imports/{}", plan.table));
            }
            progress.processed_items += items.len() as u64;
            for batch in items.chunks(25) {
                let (left, _) = self.writer.batch_write(&plan.table, batch.to_vec()).await?;
                progress.imported_items += (batch.len() - left.len()) as u64;
            }
        }
        if let Ok(mut imports) = self.imports.lock() {
            imports.insert(arn.clone(), (progress, false));
        }
        Ok(arn)
    }

    async fn progress(&self, import_arn: &str) -> Result<ImportProgress, WriteError> {
        let mut imports = self
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (progress, seen) = imports
            .get_mut(import_arn)
            .ok_or_else(|| WriteError::refused("DescribeImport", import_arn, "no such import"))?;
        if !*seen {
            *seen = true;
            return Ok(ImportProgress {
                state: ImportState::InProgress,
                imported_items: progress.imported_items / 2,
                processed_items: progress.processed_items / 2,
                ..progress.clone()
            });
        }
        Ok(progress.clone())
    }
}

#[cfg(test)]
mod tests;
