//! Restore to a moment: a complete backup taken before it, with the captured changes written
//! since the backup's scan began applied over it, up to that moment.
//!
//! Every item is either untouched since the scan began, so the backup read it as it was at the
//! moment, or it changed since, and then its last change at or before the moment says what it
//! was. So the result is the table exactly as it was then, whichever way the scan saw each item.
//! Before anything is written the changes are proven complete up to the moment
//! ([`crate::changes::coverage`]); otherwise the restore refuses and says how recent a moment
//! can be restored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::changes::coverage::{reach, shard_records, Coverage, CoverageGap};
use crate::changes::replay::{ReplayError, Window};
use crate::changes::{ChangeSet, ChangeStream, KeyId};
use crate::model::changes::ChangeLayout;
use crate::model::manifest::{Manifest, MANIFEST_FILE};
use crate::model::Item;
use crate::readback::records::read_items;
use crate::readback::table_writer::{same_item, TableWriter, WriteError};
use crate::store::{ObjectStore, StoreError};

/// How long before the scan's first read changes are taken from: DynamoDB stamps changes to
/// the second, rounded down, and taking a change that is older than needed is harmless.
const SCAN_START_SLACK: TimeDelta = TimeDelta::seconds(2);
/// How recent a change a restore into the table itself may miss: the stream shows a change a
/// moment after it is written.
const RECENT: TimeDelta = TimeDelta::seconds(2);
/// How many days back the newest backup before a moment is looked for.
const SEARCH_DAYS: i64 = 60;

/// Why a restore to a moment cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum PointInTimeError {
    /// No complete backup finished before the moment.
    #[error("no complete backup of `{table}` finished at or before {to} in the {SEARCH_DAYS} days before it: choose a later time, or name a backup")]
    NoBackup {
        /// The table.
        table: String,
        /// The moment.
        to: String,
    },
    /// The named backup's scan ended after the moment.
    #[error("backup {job_id} read the table until {scan_to}, after {to}: restore to {scan_to} or later, or pick an older backup")]
    BackupTooNew {
        /// The backup.
        job_id: String,
        /// Its scan's end.
        scan_to: String,
        /// The moment asked for.
        to: String,
    },
    /// The changes up to the moment are not all stored yet.
    #[error("the captured changes are complete only up to {latest}, not {to}: {reason}; restore to {latest} or earlier, or wait for the capture and try again")]
    NotYet {
        /// The moment asked for.
        to: String,
        /// The newest moment the changes are complete for.
        latest: String,
        /// What holds them back.
        reason: String,
    },
    /// Restoring into the table itself needs every change up to now, and some are not stored.
    #[error("restoring into the table itself deletes the keys written since the moment, so it needs every change up to now, and the captured changes are complete only up to {latest}: {reason}. Stop writes to the table and run again once the capture has caught up (its batching window), or restore into a new table with --create-table")]
    NotCaughtUp {
        /// The newest moment the changes are complete for.
        latest: String,
        /// What holds them back.
        reason: String,
    },
    /// No change capture to make the backup consistent.
    #[error("`{table}` has no captured changes in this bucket (no stream capture records under {base}): enable the table's stream and the stack's change capture (docs/changes.md), or restore the backup as it is with --fuzzy")]
    NoCapture {
        /// The table.
        table: String,
        /// Where the records were looked for.
        base: String,
    },
    /// The changes have a gap.
    #[error(transparent)]
    Gap(#[from] CoverageGap),
    /// The changes could not be read.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored item or change does not decode.
    #[error("{0}")]
    Decode(String),
    /// The live table could not be read or written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The captured changes a restore applies over a backup: the backup's items for every key the
/// changes did not touch, each touched key's last change for the rest.
#[derive(Debug, Default)]
pub struct Overlay {
    /// The table's key attributes.
    pub key_names: Vec<String>,
    /// Keys whose item comes from the changes.
    pub changed: HashSet<KeyId>,
    /// Their items, where the last change left one.
    pub puts: Vec<Item>,
    /// Keys that did not exist at the moment: deleted by then, or (when restoring into the
    /// table itself) created after it.
    pub deletes: Vec<Item>,
    /// The moment (RFC 3339).
    pub as_of: String,
}

impl Overlay {
    /// Whether the changes decide `item`'s key, so the backup's copy is not written.
    pub fn replaces(&self, item: &Item) -> bool {
        KeyId::of(item, &self.key_names).is_ok_and(|id| self.changed.contains(&id))
    }

    /// The overlay of a window's changes.
    pub fn from_changes(
        changes: &ChangeSet,
        key_names: Vec<String>,
        as_of: DateTime<Utc>,
    ) -> Result<Overlay, PointInTimeError> {
        let mut overlay = Overlay {
            key_names,
            as_of: as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
            ..Overlay::default()
        };
        for (id, history) in &changes.keys {
            overlay.changed.insert(id.clone());
            match history.last.item().map_err(PointInTimeError::Decode)? {
                Some(item) => overlay.puts.push(item),
                None => overlay
                    .deletes
                    .push(history.last.key_item().map_err(PointInTimeError::Decode)?),
            }
        }
        Ok(overlay)
    }

    /// Adds the keys first written after the moment (`later`: the changes since), which did
    /// not exist then unless the backup or the window's changes hold them: restoring into the
    /// table itself deletes them first, and the backup puts back those that did exist.
    pub fn clear_later_keys(&mut self, later: &ChangeSet) -> Result<(), PointInTimeError> {
        for (id, history) in &later.keys {
            if !self.changed.contains(id) {
                self.deletes
                    .push(history.last.key_item().map_err(PointInTimeError::Decode)?);
            }
        }
        Ok(())
    }
}

/// The key attributes of a backup's table, partition key first.
pub fn key_names(manifest: &Manifest) -> Vec<String> {
    let mut keys = manifest.key_schema.clone();
    keys.sort_by_key(|k| k.key_type != "HASH");
    keys.into_iter().map(|k| k.attribute_name).collect()
}

/// When a backup's scan began and ended.
pub fn scan_window(manifest: &Manifest) -> (DateTime<Utc>, DateTime<Utc>) {
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    match &manifest.consistency {
        Some(c) => (parse(&c.scan_from), parse(&c.scan_to)),
        None => (parse(&manifest.started_at), parse(&manifest.finished_at)),
    }
}

/// The newest complete backup of `table` under `prefix` whose scan ended at or before `to`:
/// its manifest's key and the manifest.
pub async fn newest_backup_before(
    store: &dyn ObjectStore,
    prefix: &str,
    table: &str,
    to: DateTime<Utc>,
) -> Result<(String, Manifest), PointInTimeError> {
    for days_back in 0..=SEARCH_DAYS {
        let date = (to - TimeDelta::days(days_back)).format("%Y-%m-%d");
        let mut found: Vec<(DateTime<Utc>, String, Manifest)> = Vec::new();
        for key in store.list(&format!("{prefix}{table}/dt={date}/")).await? {
            if !key.ends_with(&format!("/{MANIFEST_FILE}")) {
                continue;
            }
            let Ok(manifest) = Manifest::from_json(&store.get(&key).await?) else {
                continue;
            };
            let (_, scan_to) = scan_window(&manifest);
            if scan_to <= to {
                found.push((scan_to, key, manifest));
            }
        }
        if let Some((_, key, manifest)) = found.into_iter().max_by_key(|(at, _, _)| *at) {
            return Ok((key, manifest));
        }
    }
    Err(PointInTimeError::NoBackup {
        table: table.to_string(),
        to: to.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

/// The stream whose changes apply to a backup: the one it records, else the newest one the
/// capture has records of.
pub async fn stream_of(
    store: &dyn ObjectStore,
    layout: &ChangeLayout,
    manifest: &Manifest,
) -> Result<String, PointInTimeError> {
    if let Some(arn) = manifest
        .consistency
        .as_ref()
        .and_then(|c| c.stream_arn.clone())
    {
        return Ok(arn);
    }
    let newest = shard_records(store, layout)
        .await?
        .into_iter()
        .max_by(|a, b| a.updated_at.cmp(&b.updated_at))
        .map(|record| (record.updated_at, record.stream_arn));
    newest
        .map(|(_, arn)| arn)
        .ok_or_else(|| PointInTimeError::NoCapture {
            table: manifest.table.clone(),
            base: layout.base().to_string(),
        })
}

/// The captured changes from `manifest`'s scan start to `to`, proven complete first.
pub async fn changes_since_backup(
    store: Arc<dyn ObjectStore>,
    stream: &dyn ChangeStream,
    manifest_key: &str,
    manifest: &Manifest,
    to: DateTime<Utc>,
) -> Result<ChangeSet, PointInTimeError> {
    let layout = ChangeLayout::beside_backup(manifest_key).ok_or_else(|| {
        PointInTimeError::Decode(format!(
            "{manifest_key} is not where a backup's manifest is kept, so its changes cannot be found"
        ))
    })?;
    let (scan_from, scan_to) = scan_window(manifest);
    if scan_to > to {
        return Err(PointInTimeError::BackupTooNew {
            job_id: manifest.job_id.clone(),
            scan_to: scan_to.to_rfc3339_opts(SecondsFormat::Secs, true),
            to: to.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
    }
    let stream_arn = stream_of(store.as_ref(), &layout, manifest).await?;
    stream_began_before(&stream_arn, scan_from)?;
    let from = (scan_from - SCAN_START_SLACK).timestamp_micros();
    let coverage = reach(store.as_ref(), stream, &layout, &stream_arn, from).await?;
    let to_micros = to.timestamp_micros();
    if !coverage.covers(to_micros) {
        let latest = coverage.complete_until.unwrap_or(to_micros);
        return Err(PointInTimeError::NotYet {
            to: to.to_rfc3339_opts(SecondsFormat::Secs, true),
            latest: DateTime::from_timestamp_micros(latest)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            reason: coverage.limited_by.unwrap_or_default(),
        });
    }
    read_window(store, &layout, manifest, &coverage, from, to_micros).await
}

/// The stored changes of a window, keys and lineage as `manifest` and `coverage` give them.
async fn read_window(
    store: Arc<dyn ObjectStore>,
    layout: &ChangeLayout,
    manifest: &Manifest,
    coverage: &Coverage,
    from: i64,
    to: i64,
) -> Result<ChangeSet, PointInTimeError> {
    let lineage: HashMap<String, Option<String>> = coverage
        .shards
        .values()
        .map(|s| (s.shard_id.clone(), s.parent_shard_id.clone()))
        .collect();
    let window = Window { from, to };
    Ok(ChangeSet::read(store, layout, &key_names(manifest), &window, &lineage).await?)
}

/// The captured changes after `after` up to now, proven complete: what a restore into the
/// table itself needs to delete every key created after the moment. Refuses while the capture
/// has not stored the table's newest changes.
pub async fn changes_until_now(
    store: Arc<dyn ObjectStore>,
    stream: &dyn ChangeStream,
    manifest_key: &str,
    manifest: &Manifest,
    after: DateTime<Utc>,
) -> Result<ChangeSet, PointInTimeError> {
    let layout = ChangeLayout::beside_backup(manifest_key).ok_or_else(|| {
        PointInTimeError::Decode(format!("{manifest_key} is not a backup's manifest key"))
    })?;
    let stream_arn = stream_of(store.as_ref(), &layout, manifest).await?;
    stream_began_before(&stream_arn, after)?;
    let from = after.timestamp_micros() + 1;
    let now = Utc::now();
    let coverage = reach(store.as_ref(), stream, &layout, &stream_arn, from).await?;
    // Complete to a moment ago: what reaches the stream in its last second is not yet known.
    if !coverage.covers((now - RECENT).timestamp_micros()) {
        return Err(PointInTimeError::NotCaughtUp {
            latest: DateTime::from_timestamp_micros(coverage.complete_until.unwrap_or_default())
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            reason: coverage.limited_by.clone().unwrap_or_default(),
        });
    }
    // Past now by a margin: a key created moments ago on a clock ahead of this one's.
    let to = (now + TimeDelta::minutes(5)).timestamp_micros();
    read_window(store, &layout, manifest, &coverage, from, to).await
}

/// A stream enabled after `moment` holds none of the changes before it.
fn stream_began_before(stream_arn: &str, moment: DateTime<Utc>) -> Result<(), PointInTimeError> {
    match crate::changes::coverage::stream_created_micros(stream_arn) {
        Some(created) if created > moment.timestamp_micros() => Err(CoverageGap::StartedLate {
            shard: format!("(the stream {stream_arn} itself)"),
            first: DateTime::from_timestamp_micros(created)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            start: moment.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Which items an item-level restore brings back.
#[derive(Debug, Clone, Default)]
pub struct KeySelection {
    /// Whole keys, each with its key attributes.
    pub keys: HashMap<KeyId, Item>,
    /// Every item with one of these partition keys (canonical, as [`KeyId`] writes them).
    pub partitions: HashSet<KeyId>,
}

impl KeySelection {
    /// Whether `item` is selected.
    pub fn selects(&self, item: &Item, key_names: &[String]) -> bool {
        KeyId::of(item, key_names).is_ok_and(|id| self.keys.contains_key(&id))
            || KeyId::of(item, &key_names[..1]).is_ok_and(|id| self.partitions.contains(&id))
    }
}

/// What became of one selected item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Written back as it was at the moment (or deleted, if it did not exist then).
    Restored,
    /// The live item already is as it was.
    Unchanged,
    /// The live item is not what the captured changes last recorded (written after the
    /// capture's newest change, or by something it missed): left alone, reported.
    ChangedSince,
    /// The same, overwritten because `--overwrite` was given.
    Overwritten,
}

/// One selected item's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    /// Its key, as DynamoDB JSON.
    pub key: serde_json::Value,
    /// What happened.
    pub outcome: ItemOutcome,
    /// Whether it existed at the moment.
    pub existed: bool,
    /// Captured changes to it after the moment.
    pub changes_since: u64,
}

/// Brings the selected items of the live `table` back to their state at a moment: the backup's
/// item overlaid with `at_time` (changes up to the moment), compared with `since` (changes after
/// it), each written only if the live item is still what the capture last recorded.
#[allow(clippy::too_many_arguments)]
pub async fn restore_items(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    locate: impl Fn(&str) -> String,
    at_time: &ChangeSet,
    since: &ChangeSet,
    selection: &KeySelection,
    writer: &dyn TableWriter,
    table: &str,
    overwrite: bool,
) -> Result<Vec<ItemResult>, PointInTimeError> {
    let names = key_names(manifest);
    // The state at the moment: the backup's copy of each selected key...
    let mut then: HashMap<KeyId, Option<Item>> = HashMap::new();
    for file in &manifest.files {
        let reader = store.open(&locate(&file.key)).await?;
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let (format, compression) = (manifest.format, manifest.compression);
        let (columns, key, key_names, selection) = (
            file.columns.clone(),
            file.key.clone(),
            names.clone(),
            selection.clone(),
        );
        let found = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            read_items(bridge, format, compression, columns.as_deref(), |item| {
                if selection.selects(&item, &key_names) {
                    found.push(item);
                }
                true
            })
            .map(|_| found)
            .map_err(|e| PointInTimeError::Decode(format!("{key}: {}", e.message)))
        })
        .await
        .map_err(|e| PointInTimeError::Decode(format!("the backup reader failed: {e}")))??;
        for item in found {
            if let Ok(id) = KeyId::of(&item, &names) {
                then.insert(id, Some(item));
            }
        }
    }
    // ...replaced by its last change up to the moment.
    let key_of = |history: &crate::changes::replay::KeyHistory| {
        history.last.key_item().map_err(PointInTimeError::Decode)
    };
    for (id, history) in &at_time.keys {
        let key = key_of(history)?;
        if selection.selects(&key, &names) {
            then.insert(
                id.clone(),
                history.last.item().map_err(PointInTimeError::Decode)?,
            );
        }
    }
    // Keys created after the moment and selected by partition: absent then.
    for (id, history) in &since.keys {
        let key = key_of(history)?;
        if selection.selects(&key, &names) {
            then.entry(id.clone()).or_insert(None);
        }
    }
    // Keys named but found nowhere: absent then, and the live one is compared with that.
    for id in selection.keys.keys() {
        then.entry(id.clone()).or_insert(None);
    }
    let mut ids: Vec<KeyId> = then.keys().cloned().collect();
    ids.sort();
    let mut results = Vec::new();
    for id in ids {
        let state = then.remove(&id).flatten();
        let key: Item = match (&state, since.keys.get(&id), at_time.keys.get(&id)) {
            (Some(item), _, _) => names
                .iter()
                .filter_map(|n| item.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
            (None, Some(h), _) | (None, None, Some(h)) => key_of(h)?,
            (None, None, None) => match selection.keys.get(&id) {
                Some(key) => key.clone(),
                None => continue,
            },
        };
        // What the capture last recorded of the key: its last change after the moment, or
        // its state at the moment when nothing changed since.
        let recorded: Option<Item> = match since.keys.get(&id) {
            Some(history) => history.last.item().map_err(PointInTimeError::Decode)?,
            None => state.clone(),
        };
        let live = writer.get_item(table, &key).await?;
        let equal = |a: &Option<Item>, b: &Option<Item>| match (a, b) {
            (Some(a), Some(b)) => same_item(a, b),
            (None, None) => true,
            _ => false,
        };
        let outcome = if equal(&live, &state) {
            ItemOutcome::Unchanged
        } else if equal(&live, &recorded) || overwrite {
            let expected = live.as_ref();
            let written = writer
                .write_if(table, &key, state.as_ref(), expected)
                .await?
                // Refused: changed in between, or this write applied with its reply lost and
                // the SDK's retry refused; the item now tells which.
                || equal(&writer.get_item(table, &key).await?, &state);
            if written {
                if equal(&live, &recorded) {
                    ItemOutcome::Restored
                } else {
                    ItemOutcome::Overwritten
                }
            } else {
                ItemOutcome::ChangedSince
            }
        } else {
            ItemOutcome::ChangedSince
        };
        results.push(ItemResult {
            key: key_json(&key),
            outcome,
            existed: state.is_some(),
            changes_since: since.keys.get(&id).map_or(0, |h| h.count),
        });
    }
    Ok(results)
}

/// A key as DynamoDB JSON, for reports.
pub fn key_json(key: &Item) -> serde_json::Value {
    let mut buf = Vec::new();
    if crate::codec::encode::write_item_map(key, &mut buf).is_ok() {
        if let Ok(value) = serde_json::from_slice(&buf) {
            return value;
        }
    }
    serde_json::Value::Null
}

/// A moment as a person writes it: RFC 3339 (`2026-12-07T10:42:00Z`), or a time ago relative
/// to `now` (`-15m`, `-2h`, `-1d`, `-90s`). Whole seconds: changes are stamped to the second.
pub fn parse_moment(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let moment = if let Some(ago) = text.strip_prefix('-') {
        let (digits, unit) = ago.split_at(ago.len().saturating_sub(1));
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("`{text}`: expected a time ago like -15m, -2h or -1d"))?;
        let span = match unit {
            "s" => TimeDelta::seconds(n),
            "m" => TimeDelta::minutes(n),
            "h" => TimeDelta::hours(n),
            "d" => TimeDelta::days(n),
            _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
        };
        now - span
    } else {
        DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                format!("`{text}`: {e}; expected RFC 3339 like 2026-12-07T10:42:00Z, or -15m")
            })?
            .with_timezone(&Utc)
    };
    if moment > now {
        return Err(format!("`{text}` is in the future"));
    }
    Ok(moment
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap_or(moment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_parse_as_people_write_them() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:42:30.700Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s| parse_moment(s, now).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        assert_eq!(at("-15m").unwrap(), "2026-12-07T10:27:30Z");
        assert_eq!(at("-1d").unwrap(), "2026-12-06T10:42:30Z");
        assert_eq!(
            at("2026-12-07T11:42:00+01:00").unwrap(),
            "2026-12-07T10:42:00Z"
        );
        assert!(at("-15x").unwrap_err().contains("unit"));
        assert!(at("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(at("2027-01-01T00:00:00Z").unwrap_err().contains("future"));
    }
}
