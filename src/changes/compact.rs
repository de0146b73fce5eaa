//! Compaction: a day's changes folded into one file set, the last image of each key changed
//! that day, so that a restore reads one set per day instead of every batch object.
//!
//! The set is written as `daily/dt={date}/changes-{hash}.jsonl[.gz|.zst]` in the line format of
//! DynamoDB's native incremental export (view type `NEW_IMAGE`: `Metadata`, `Keys`, and
//! `NewImage` unless the key was deleted), then its manifest, last, which lists the set's files
//! with their counts and SHA-256, and the batch objects it absorbed. A batch that arrives after
//! the compaction, or that holds changes of the next day too, is not absorbed and is read on
//! its own; a change read both ways is kept once.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backup::compress::Compressor;
use crate::changes::capture::change_meta;
use crate::changes::record::{ChangeLine, LineMetadata, TypedNumber};
use crate::changes::replay::{fold, ChangeSet, Lineage, ReplayError, Window};
use crate::model::changes::ChangeLayout;
use crate::model::format::Compression;
use crate::store::{put_if, ObjectStore, Precondition, StoreError};

/// File name of a day's compacted manifest.
pub const DAILY_MANIFEST: &str = "manifest.json";

/// One file of a compacted day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyFile {
    /// Object key.
    pub key: String,
    /// Lines (keys) in it.
    pub changes: u64,
    /// Stored bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// The manifest of a compacted day: written last, so its presence means the set is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyManifest {
    /// The day (UTC), `YYYY-MM-DD`.
    pub date: String,
    /// Changes of the day read (each once).
    pub changes_read: u64,
    /// Keys changed that day: the set's lines.
    pub keys: u64,
    /// The set's files.
    pub files: Vec<DailyFile>,
    /// The batch objects whose every change is in the set.
    pub sources: Vec<String>,
    /// When it was written (RFC 3339).
    pub created_at: String,
}

impl DailyManifest {
    /// The compacted day `date` of `layout`, if there is one.
    pub async fn read(
        store: &dyn ObjectStore,
        layout: &ChangeLayout,
        date: &str,
    ) -> Result<Option<DailyManifest>, StoreError> {
        let key = format!("{}{DAILY_MANIFEST}", layout.daily_prefix(date));
        match store.get(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StoreError::request(
                    "GetObject",
                    key,
                    crate::aws::FailureKind::Rejected,
                    format!("not a compacted-day manifest: {e}"),
                )
            }),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Compacts the day `date` (UTC) of `layout`, unless it is compacted already; `None` when the
/// day has no changes.
pub async fn compact_day(
    store: Arc<dyn ObjectStore>,
    layout: &ChangeLayout,
    key_names: &[String],
    date: NaiveDate,
    lineage: &HashMap<String, Option<String>>,
    compression: Compression,
) -> Result<Option<DailyManifest>, ReplayError> {
    let day = date.format("%Y-%m-%d").to_string();
    if let Some(done) = DailyManifest::read(store.as_ref(), layout, &day).await? {
        return Ok(Some(done));
    }
    let start = date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let window = Window {
        from: start.timestamp_micros(),
        to: (start + TimeDelta::days(1)).timestamp_micros() - 1,
    };
    let lineage = Arc::new(Lineage::new(lineage));
    let key_names = Arc::new(key_names.to_vec());
    let mut set = ChangeSet::default();
    let mut sources = Vec::new();
    for hour in 0..24 {
        let at = start + TimeDelta::hours(hour);
        for key in store.list(&layout.batches_hour_prefix(at)).await? {
            let (next, newest) = fold(&store, &key, set, &key_names, &lineage, &window).await?;
            set = next;
            if newest <= window.to {
                sources.push(key);
            }
        }
    }
    if set.keys.is_empty() {
        return Ok(None);
    }
    let mut ids: Vec<_> = set.keys.keys().cloned().collect();
    ids.sort();
    let mut body = Compressor::new(compression, Vec::new()).map_err(io)?;
    for id in &ids {
        let Some(history) = set.keys.remove(id) else {
            continue;
        };
        let last = history.last;
        let line = ChangeLine {
            metadata: LineMetadata {
                write_timestamp_micros: TypedNumber {
                    n: last.micros.to_string(),
                },
            },
            keys: last.keys,
            new_image: last.new_image,
            old_image: None,
            event_name: last.event,
            shard: last.shard,
            sequence: last.sequence,
        };
        serde_json::to_writer(&mut body, &line).map_err(|e| io(e.into()))?;
        body.write_all(b"\n").map_err(io)?;
    }
    let body = Bytes::from(body.finish().map_err(io)?);
    let prefix = layout.daily_prefix(&day);
    let sha256 = hex::encode(Sha256::digest(&body));
    // Named by its content: two compactions of one day at once never overwrite each other's
    // file, and the manifest that wins names its own.
    let file = DailyFile {
        key: format!(
            "{prefix}changes-{}.jsonl{}",
            &sha256[..16],
            compression.extension_suffix()
        ),
        changes: ids.len() as u64,
        bytes: body.len() as u64,
        sha256,
    };
    store
        .put_object(&file.key, body, &change_meta(compression, true))
        .await?;
    let manifest = DailyManifest {
        date: day,
        changes_read: set.changes,
        keys: ids.len() as u64,
        files: vec![file],
        sources,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    let bytes = Bytes::from(serde_json::to_vec_pretty(&manifest).map_err(|e| io(e.into()))?);
    let written = put_if(
        store.as_ref(),
        &format!("{prefix}{DAILY_MANIFEST}"),
        bytes,
        &change_meta(Compression::None, true),
        Precondition::Absent,
    )
    .await?;
    if !written {
        // Another compaction of the day finished first: its manifest stands.
        return Ok(DailyManifest::read(store.as_ref(), layout, &manifest.date).await?);
    }
    Ok(Some(manifest))
}

/// What verify found of a compacted day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyCheck {
    /// The day.
    pub date: String,
    /// Lines checked.
    pub changes: u64,
    /// Bytes checked.
    pub bytes: u64,
    /// What does not match its manifest; empty when the set is sound.
    pub problems: Vec<String>,
}

/// Checks a compacted day against its manifest: every file's size and SHA-256, and that every
/// line is a change and the lines are as many as the manifest says.
pub async fn verify_day(
    store: &dyn ObjectStore,
    layout: &ChangeLayout,
    date: &str,
) -> Result<Option<DailyCheck>, StoreError> {
    let Some(manifest) = DailyManifest::read(store, layout, date).await? else {
        return Ok(None);
    };
    let mut check = DailyCheck {
        date: date.to_string(),
        changes: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    for file in &manifest.files {
        let body = store.get(&file.key).await?;
        check.bytes += body.len() as u64;
        if body.len() as u64 != file.bytes {
            check.problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                file.key,
                body.len(),
                file.bytes
            ));
        }
        let digest = hex::encode(Sha256::digest(&body));
        if digest != file.sha256 {
            check.problems.push(format!(
                "{}: SHA-256 {digest}, the manifest says {}",
                file.key, file.sha256
            ));
            continue;
        }
        let compression = crate::model::changes::compression_of(&file.key);
        let mut text = String::new();
        let read = crate::backup::compress::decompressing_reader(compression, &body[..])
            .and_then(|mut r| std::io::Read::read_to_string(&mut r, &mut text));
        if let Err(e) = read {
            check.problems.push(format!("{}: {e}", file.key));
            continue;
        }
        let mut lines = 0u64;
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            if let Err(e) = serde_json::from_str::<ChangeLine>(line) {
                check
                    .problems
                    .push(format!("{}: line {}: {e}", file.key, n + 1));
                break;
            }
        }
        check.changes += lines;
        if lines != file.changes {
            check.problems.push(format!(
                "{}: {lines} lines, the manifest says {}",
                file.key, file.changes
            ));
        }
    }
    Ok(Some(check))
}

fn io(source: std::io::Error) -> ReplayError {
    ReplayError::Store(StoreError::Io {
        operation: "encode",
        path: "compacted changes".to_string(),
        source,
    })
}
