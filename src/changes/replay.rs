//! Replay: the stored changes of a window, reduced to each key's last one.
//!
//! One key's changes are ordered by where they sit in the stream: within a shard by sequence
//! number, and across a split by lineage (every change in a parent shard comes before the
//! changes of the same key in its children), which the coverage records give. A change stored
//! twice (a batch Lambda split and delivered again) is kept once.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::{DurationRound, TimeDelta};
use serde_json::value::RawValue;

use crate::backup::compress::decompressing_reader;
use crate::changes::capture::micros_to_time;
use crate::changes::compact::DailyManifest;
use crate::changes::record::{compare_sequence, ChangeLine, EventName};
use crate::codec::decode::decode_item_map;
use crate::model::changes::{compression_of, ChangeLayout};
use crate::model::Item;
use crate::store::{ObjectStore, StoreError};

/// An item's identity: its key attributes in the table's key order, written canonically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The identity of `item` (or of its key alone) under a key of `key_names`.
    pub fn of(item: &Item, key_names: &[String]) -> Result<KeyId, String> {
        let mut id = String::new();
        for name in key_names {
            let value = item
                .get(name)
                .ok_or_else(|| format!("the item has no key attribute `{name}`"))?;
            let text = match value {
                AttributeValue::S(s) => format!("S{}", serde_json::Value::String(s.clone())),
                AttributeValue::N(n) => format!("N{}", canonical_number(n)),
                AttributeValue::B(b) => format!(
                    "B{}",
                    base64::engine::general_purpose::STANDARD.encode(b.as_ref())
                ),
                other => {
                    return Err(format!(
                        "key attribute `{name}` is {other:?}, not S, N or B"
                    ))
                }
            };
            if !id.is_empty() {
                id.push('\u{1f}');
            }
            id.push_str(&text);
        }
        Ok(KeyId(id))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One spelling per number value (`1`, `1.0`, `+1`, `10E-1` are one key to DynamoDB):
/// significant digits and a power of ten, or the text itself if it is not a number.
fn canonical_number(text: &str) -> String {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()),
        None => (rest, Some(0)),
    };
    let Some(exponent) = exponent else {
        return text.to_string();
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !(int_part.bytes().chain(frac_part.bytes())).all(|b| b.is_ascii_digit()) {
        return text.to_string();
    }
    let digits = format!("{int_part}{frac_part}");
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_matches('0');
    if significant.is_empty() {
        return "0".to_string();
    }
    // The value is 0.<significant> x 10^power.
    let power = int_part.len() as i64 - leading as i64 + exponent;
    format!("{}0.{significant}e{power}", if negative { "-" } else { "" })
}

/// The last change of a key in a window.
#[derive(Debug)]
pub struct LastChange {
    /// When it was written (µs since the epoch).
    pub micros: i64,
    /// What it did.
    pub event: EventName,
    /// The item's key attributes, as stored.
    pub keys: Box<RawValue>,
    /// The item after it; `None` when it deleted the item.
    pub new_image: Option<Box<RawValue>>,
    pub(crate) shard: String,
    pub(crate) sequence: String,
}

impl LastChange {
    /// The item after the change, decoded; `None` when the change deleted it.
    pub fn item(&self) -> Result<Option<Item>, String> {
        self.new_image
            .as_ref()
            .map(|raw| decode_item_map(raw.get().as_bytes()).map_err(|e| e.to_string()))
            .transpose()
    }

    /// The key attributes, decoded.
    pub fn key_item(&self) -> Result<Item, String> {
        decode_item_map(self.keys.get().as_bytes()).map_err(|e| e.to_string())
    }

    /// Whether `other` comes after this change in the key's history: by sequence number in one
    /// shard; across a split, a descendant shard after its ancestors (a key's changes in a
    /// parent all precede its changes in the child, whatever the clocks say); between shards of
    /// no known relation, by time, then sequence number.
    fn precedes(&self, other: &LastChange, lineage: &Lineage) -> bool {
        let sequence = compare_sequence(&self.sequence, &other.sequence);
        if self.shard == other.shard {
            return sequence.is_lt();
        }
        if lineage.descends(&other.shard, &self.shard) {
            return true;
        }
        if lineage.descends(&self.shard, &other.shard) {
            return false;
        }
        self.micros.cmp(&other.micros).then(sequence).is_lt()
    }
}

/// One key's changes in a window.
#[derive(Debug)]
pub struct KeyHistory {
    /// How many.
    pub count: u64,
    /// When the first was written (µs).
    pub first_micros: i64,
    /// The last one.
    pub last: LastChange,
}

/// Why changes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An object could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored line is not a change.
    #[error("{key}: line {line}: {message}")]
    Decode {
        /// The object.
        key: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A reading task died (a bug, reported instead of hanging).
    #[error("internal error: the change reader failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A window of stored changes, by key.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Each changed key's history in the window.
    pub keys: HashMap<KeyId, KeyHistory>,
    /// Changes read (each once).
    pub changes: u64,
    /// Changes found stored twice and kept once.
    pub duplicates: u64,
    /// Objects read.
    pub objects: u64,
    pub(crate) seen: HashSet<(String, String)>,
}

/// Where to read and what to keep.
#[derive(Debug, Clone)]
pub struct Window {
    /// Changes written at or after this moment (µs)...
    pub from: i64,
    /// ...and at or before this one.
    pub to: i64,
}

impl ChangeSet {
    /// Reads the changes of `window` from `layout`, ordering each key's changes by `lineage`
    /// (shard → its parent) and keying items by `key_names`.
    pub async fn read(
        store: Arc<dyn ObjectStore>,
        layout: &ChangeLayout,
        key_names: &[String],
        window: &Window,
        lineage: &HashMap<String, Option<String>>,
    ) -> Result<ChangeSet, ReplayError> {
        let lineage = Arc::new(Lineage::new(lineage));
        let key_names = Arc::new(key_names.to_vec());
        let mut set = ChangeSet::default();
        let hour = TimeDelta::hours(1);
        // Capture writes each hour's changes of a batch as their own object, dated by that
        // hour: the window's hours hold every change in it.
        let start = micros_to_time(window.from)
            .duration_trunc(hour)
            .unwrap_or_default();
        let end = micros_to_time(window.to);
        let mut days: HashMap<String, Option<HashSet<String>>> = HashMap::new();
        let mut at = start;
        while at <= end {
            let date = at.format("%Y-%m-%d").to_string();
            if !days.contains_key(&date) {
                let day_start = at.duration_trunc(TimeDelta::days(1)).unwrap_or(at);
                let whole_day = day_start.timestamp_micros() >= window.from
                    && (day_start + TimeDelta::days(1)).timestamp_micros() <= window.to;
                let daily = if whole_day {
                    DailyManifest::read(store.as_ref(), layout, &date).await?
                } else {
                    None
                };
                let sources = match daily {
                    Some(daily) => {
                        for file in &daily.files {
                            set = fold(&store, &file.key, set, &key_names, &lineage, window)
                                .await?
                                .0;
                        }
                        Some(daily.sources.into_iter().collect())
                    }
                    None => None,
                };
                days.insert(date.clone(), sources);
            }
            let compacted = days.get(&date).and_then(Option::as_ref);
            for key in store.list(&layout.batches_hour_prefix(at)).await? {
                // A compacted day's batches are read from its set, except those that arrived
                // after the compaction.
                if compacted.is_none_or(|sources| !sources.contains(&key)) {
                    set = fold(&store, &key, set, &key_names, &lineage, window)
                        .await?
                        .0;
                }
            }
            at += hour;
        }
        set.seen = HashSet::new();
        Ok(set)
    }

    /// The item `key` had at the window's end, as far as the window's changes say: `None` when
    /// it did not change, `Some(None)` when its last change deleted it.
    pub fn state(&self, key: &KeyId) -> Option<Option<&RawValue>> {
        self.keys.get(key).map(|h| h.last.new_image.as_deref())
    }
}

/// Which shard split from which, as the coverage records keep it.
#[derive(Debug, Default, Clone)]
pub struct Lineage(HashMap<String, Option<String>>);

impl Lineage {
    /// The lineage of shards given as shard → its parent.
    pub fn new(parents: &HashMap<String, Option<String>>) -> Self {
        Lineage(parents.clone())
    }

    /// Whether `shard` descends from `ancestor` (through known parents).
    pub fn descends(&self, shard: &str, ancestor: &str) -> bool {
        let mut at = shard;
        for _ in 0..=self.0.len() {
            match self.0.get(at) {
                Some(Some(parent)) if parent == ancestor => return true,
                Some(Some(parent)) => at = parent,
                _ => return false,
            }
        }
        false
    }
}

/// Reads one object's lines into `set`.
pub(crate) async fn fold(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    mut set: ChangeSet,
    key_names: &Arc<Vec<String>>,
    lineage: &Arc<Lineage>,
    window: &Window,
) -> Result<(ChangeSet, i64), ReplayError> {
    let reader = store.open(key).await?;
    let (key, key_names, lineage, window) = (
        key.to_string(),
        key_names.clone(),
        lineage.clone(),
        window.clone(),
    );
    set.objects += 1;
    tokio::task::spawn_blocking(move || -> Result<(ChangeSet, i64), ReplayError> {
        let mut newest = i64::MIN;
        let bridge = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(reader));
        let fail = |line: u64, message: String| ReplayError::Decode {
            key: key.clone(),
            line,
            message,
        };
        let decompressed = decompressing_reader(compression_of(&key), bridge)
            .map_err(|e| fail(0, e.to_string()))?;
        for (n, text) in std::io::BufReader::new(decompressed).lines().enumerate() {
            let n = n as u64 + 1;
            let text = text.map_err(|e| fail(n, e.to_string()))?;
            if text.is_empty() {
                continue;
            }
            let line: ChangeLine =
                serde_json::from_str(&text).map_err(|e| fail(n, e.to_string()))?;
            let micros = line.write_micros().map_err(|e| fail(n, e))?;
            newest = newest.max(micros);
            if micros < window.from || micros > window.to {
                continue;
            }
            if !set.seen.insert((line.shard.clone(), line.sequence.clone())) {
                set.duplicates += 1;
                continue;
            }
            set.changes += 1;
            let item = decode_item_map(line.keys.get().as_bytes())
                .map_err(|e| fail(n, format!("Keys: {e}")))?;
            let id = KeyId::of(&item, &key_names).map_err(|e| fail(n, e))?;
            let last = LastChange {
                micros,
                event: line.event_name,
                keys: line.keys,
                new_image: if line.event_name == EventName::Remove {
                    None
                } else {
                    line.new_image
                },
                shard: line.shard,
                sequence: line.sequence,
            };
            match set.keys.get_mut(&id) {
                Some(history) => {
                    history.count += 1;
                    history.first_micros = history.first_micros.min(micros);
                    if history.last.precedes(&last, &lineage) {
                        history.last = last;
                    }
                }
                None => {
                    set.keys.insert(
                        id,
                        KeyHistory {
                            count: 1,
                            first_micros: micros,
                            last,
                        },
                    );
                }
            }
        }
        Ok((set, newest))
    })
    .await?
}

#[cfg(test)]
mod tests;
