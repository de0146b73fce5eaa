//! Capture and replay against the in-memory store and the stream twin, which splits shards as
//! DynamoDB does and the emulator never does.

use std::sync::Arc;

use super::*;
use crate::changes::capture::{Capture, CaptureOutcome};
use crate::changes::coverage::{lineage, reach, CoverageGap};
use crate::changes::record::StreamBatch;
use crate::changes::stream::MemoryStream;
use crate::model::changes::{ChangeLayout, FailedBatch};
use crate::model::format::Compression;
use crate::store::{MemoryStore, ObjectStore};

const ARN: &str = "arn:aws:dynamodb:us-east-1:1:table/tbl/stream/2026-12-07T00:00:00.000";
/// 2026-12-07T10:00:00Z.
const T0: i64 = 1_796_637_600;

/// A stream batch: (sequence, seconds after T0, key, value or `None` for a delete).
fn batch(records: &[(&str, i64, &str, Option<&str>)]) -> StreamBatch {
    let records: Vec<String> = records
        .iter()
        .map(|(seq, at, key, value)| {
            let (name, new) = match value {
                Some(v) => (
                    "MODIFY",
                    format!(r#","NewImage":{{"id":{{"S":"{key}"}},"v":{{"S":"{v}"}}}}"#),
                ),
                None => ("REMOVE", String::new()),
            };
            format!(
                r#"{{"eventName":"{name}","eventSource":"aws:dynamodb","eventSourceARN":"{ARN}",
                "dynamodb":{{"ApproximateCreationDateTime":{},"Keys":{{"id":{{"S":"{key}"}}}}{new},
                "SequenceNumber":"{seq}","StreamViewType":"NEW_AND_OLD_IMAGES"}}}}"#,
                T0 + at
            )
        })
        .collect();
    serde_json::from_str(&format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap()
}

fn capture(store: &MemoryStore, stream: &Arc<MemoryStream>) -> Capture {
    Capture::new(
        Arc::new(store.clone()),
        stream.clone(),
        "backups/",
        Compression::Zstd,
    )
}

fn layout() -> ChangeLayout {
    ChangeLayout::new("backups/", "tbl")
}

async fn replay(store: &MemoryStore, from: i64, to: i64) -> ChangeSet {
    let lineage = lineage(store, &layout()).await.unwrap();
    ChangeSet::read(
        Arc::new(store.clone()),
        &layout(),
        &["id".to_string()],
        &Window {
            from: (T0 + from) * 1_000_000,
            to: (T0 + to) * 1_000_000,
        },
        &lineage,
    )
    .await
    .unwrap()
}

fn value_of(set: &ChangeSet, key: &str) -> Option<Option<String>> {
    let item = HashMap::from([("id".to_string(), AttributeValue::S(key.to_string()))]);
    let id = KeyId::of(&item, &["id".to_string()]).unwrap();
    set.keys.get(&id).map(|h| {
        h.last
            .item()
            .unwrap()
            .map(|i| i["v"].as_s().unwrap().clone())
    })
}

#[tokio::test]
async fn a_keys_changes_follow_the_split_lineage_not_the_sequence_numbers() {
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    // The child's sequence numbers are lower than its parent's: only the lineage orders them.
    stream.open_shard("shard-parent", None, "500");
    for (seq, at) in [("500", 1), ("501", 2)] {
        stream.push("shard-parent", seq, (T0 + at) * 1_000_000);
    }
    stream.close("shard-parent");
    stream.open_shard("shard-child", Some("shard-parent"), "100");
    for (seq, at) in [("100", 3), ("101", 4)] {
        stream.push("shard-child", seq, (T0 + at) * 1_000_000);
    }
    let capture = capture(&store, &stream);
    // The child's batch is stored first: Lambda ran the shards' batches in this order.
    capture
        .store_batch(batch(&[
            ("100", 3, "k", Some("v3")),
            ("101", 4, "j", Some("j1")),
        ]))
        .await
        .unwrap();
    capture
        .store_batch(batch(&[
            ("500", 1, "k", Some("v1")),
            ("501", 1, "k", Some("v2")),
        ]))
        .await
        .unwrap();

    let set = replay(&store, 0, 10).await;
    assert_eq!(value_of(&set, "k"), Some(Some("v3".into())));
    assert_eq!(set.changes, 4);
    // Each batch landed under the shard that holds it, found by asking the stream.
    let keys = store.list(&layout().batches_prefix()).await.unwrap();
    assert!(
        keys.iter().any(|k| k.contains("/shard-parent-500-501.")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains("/shard-child-100-101.")),
        "{keys:?}"
    );
    // Up to a moment before the child's change, the parent's last change stands.
    assert_eq!(
        value_of(&replay(&store, 0, 2).await, "k"),
        Some(Some("v2".into()))
    );
}

#[tokio::test]
async fn a_batch_delivered_twice_or_split_keeps_each_change_once() {
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shard-1", None, "1");
    let capture = capture(&store, &stream);
    let whole = [
        ("1", 0, "a", Some("a1")),
        ("2", 1, "a", None),
        ("3", 2, "b", Some("b1")),
    ];
    let first = capture.store_batch(batch(&whole)).await.unwrap();
    assert!(
        matches!(first, CaptureOutcome::Stored { changes: 3, .. }),
        "{first:?}"
    );
    let again = capture.store_batch(batch(&whole)).await.unwrap();
    assert!(
        matches!(again, CaptureOutcome::AlreadyStored { .. }),
        "{again:?}"
    );
    // Lambda's bisection delivers the same changes again, split.
    capture.store_batch(batch(&whole[..2])).await.unwrap();
    capture.store_batch(batch(&whole[2..])).await.unwrap();

    let set = replay(&store, 0, 10).await;
    assert_eq!((set.changes, set.duplicates), (3, 3));
    assert_eq!(
        value_of(&set, "a"),
        Some(None),
        "a's last change deleted it"
    );
    assert_eq!(value_of(&set, "b"), Some(Some("b1".into())));
    let record: crate::model::changes::ShardCoverage =
        serde_json::from_slice(&store.get(&layout().shard_key("shard-1")).await.unwrap()).unwrap();
    assert_eq!(
        (
            record.first_sequence.as_str(),
            record.last_sequence.as_str()
        ),
        ("1", "3")
    );
}

#[tokio::test]
async fn coverage_knows_a_lost_batch_a_lagging_capture_and_a_quiet_table() {
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shard-1", None, "1");
    for (seq, at) in [("1", 0), ("2", 10), ("3", 20)] {
        stream.push("shard-1", seq, (T0 + at) * 1_000_000);
    }
    let capture = capture(&store, &stream);
    capture
        .store_batch(batch(&[
            ("1", 0, "a", Some("a1")),
            ("2", 10, "a", Some("a2")),
        ]))
        .await
        .unwrap();
    let at = |s: i64| (T0 + s) * 1_000_000;

    // The change at +20 s is in the stream but not stored yet: complete only up to it.
    let coverage = reach(&store, stream.as_ref(), &layout(), ARN, at(0))
        .await
        .unwrap();
    assert!(coverage.covers(at(19)));
    assert!(!coverage.covers(at(20)));
    assert_eq!(coverage.complete_until, Some(at(20) - 1));

    // Stored: the table is quiet since, so everything up to now is covered.
    capture
        .store_batch(batch(&[("3", 20, "a", Some("a3"))]))
        .await
        .unwrap();
    let coverage = reach(&store, stream.as_ref(), &layout(), ARN, at(0))
        .await
        .unwrap();
    assert!(coverage.covers(chrono::Utc::now().timestamp_micros() - 2_000_000));

    // A batch Lambda gave up on: a window across it is refused, one before it is limited.
    let failed = FailedBatch {
        stream_arn: ARN.to_string(),
        shard_id: "shard-1".into(),
        first_sequence: "4".into(),
        last_sequence: "5".into(),
        first_arrival: "2026-12-07T10:01:00Z".into(),
        last_arrival: "2026-12-07T10:01:05Z".into(),
        batch_size: Some(2),
        condition: Some("RetryAttemptsExhausted".into()),
    };
    capture.record_failure(&failed).await.unwrap();
    let coverage = reach(&store, stream.as_ref(), &layout(), ARN, at(0))
        .await
        .unwrap();
    // Its changes may be stamped up to a second before they reached the stream.
    assert!(coverage.covers(at(58)));
    assert!(!coverage.covers(at(59)));
    let across = reach(&store, stream.as_ref(), &layout(), ARN, at(62)).await;
    assert!(
        matches!(across, Err(CoverageGap::Failed { .. })),
        "{across:?}"
    );
}

#[tokio::test]
async fn a_compacted_day_restores_as_its_batches_do_and_verifies_against_its_manifest() {
    use crate::changes::compact::{compact_day, verify_day, DailyManifest};
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shard-1", None, "1");
    let capture = capture(&store, &stream);
    // T0 is 10:00 on 2026-12-07: three batches that day, one the next day.
    capture
        .store_batch(batch(&[
            ("1", 0, "a", Some("a1")),
            ("2", 5, "b", Some("b1")),
        ]))
        .await
        .unwrap();
    capture
        .store_batch(batch(&[("3", 60, "a", Some("a2")), ("4", 61, "b", None)]))
        .await
        .unwrap();
    capture
        .store_batch(batch(&[("5", 120, "c", Some("c1"))]))
        .await
        .unwrap();
    capture
        .store_batch(batch(&[("6", 86_400, "a", Some("a3"))]))
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let lineage = lineage(&store, &layout()).await.unwrap();
    let names = ["id".to_string()];
    let store_arc: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let whole_days = |to: i64| Window {
        from: (T0 - 10 * 3600) * 1_000_000,
        to: (T0 + to) * 1_000_000,
    };
    let before = ChangeSet::read(
        store_arc.clone(),
        &layout(),
        &names,
        &whole_days(90_000),
        &lineage,
    )
    .await
    .unwrap();

    let set = compact_day(
        store_arc.clone(),
        &layout(),
        &names,
        day,
        &lineage,
        Compression::Zstd,
    )
    .await
    .unwrap()
    .expect("the day had changes");
    assert_eq!((set.keys, set.changes_read, set.sources.len()), (3, 5, 3));
    // A batch of the day that arrives after the compaction is read on its own.
    capture
        .store_batch(batch(&[("7", 200, "d", Some("d1"))]))
        .await
        .unwrap();
    let after = ChangeSet::read(
        store_arc.clone(),
        &layout(),
        &names,
        &whole_days(90_000),
        &lineage,
    )
    .await
    .unwrap();
    assert_eq!(
        after.objects, 3,
        "the compacted set, the late batch, the next day's batch"
    );
    for key in ["a", "b", "c"] {
        assert_eq!(value_of(&after, key), value_of(&before, key), "{key}");
    }
    assert_eq!(value_of(&after, "d"), Some(Some("d1".into())));
    // A moment inside the day still reads the day's batches, not its last images.
    assert_eq!(
        value_of(&replay(&store, 0, 30).await, "a"),
        Some(Some("a1".into()))
    );

    let check = verify_day(&store, &layout(), "2026-12-07")
        .await
        .unwrap()
        .unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let daily = DailyManifest::read(&store, &layout(), "2026-12-07")
        .await
        .unwrap()
        .unwrap();
    let file = &daily.files[0].key;
    let mut bytes = store.get(file).await.unwrap().to_vec();
    bytes[10] ^= 1;
    store
        .put_object(
            file,
            bytes.into(),
            &crate::changes::capture::change_meta(Compression::Zstd, true),
        )
        .await
        .unwrap();
    let check = verify_day(&store, &layout(), "2026-12-07")
        .await
        .unwrap()
        .unwrap();
    assert!(
        check.problems[0].contains("SHA-256"),
        "{:?}",
        check.problems
    );
}

#[tokio::test]
async fn a_batch_spanning_hours_is_found_from_any_of_them() {
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shard-1", None, "1");
    // A backlog delivered at once: changes from 10:00 and from 13:00 in one batch.
    let outcome = capture(&store, &stream)
        .store_batch(batch(&[
            ("1", 0, "a", Some("a1")),
            ("2", 3 * 3600 + 5, "a", Some("a2")),
        ]))
        .await
        .unwrap();
    let CaptureOutcome::Stored { keys, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(keys.len(), 2, "one object per hour: {keys:?}");
    let set = replay(&store, 3 * 3600, 3 * 3600 + 60).await;
    assert_eq!(value_of(&set, "a"), Some(Some("a2".into())));
}

#[tokio::test]
async fn a_gap_before_a_batch_is_recorded_before_coverage_moves_past_it() {
    let store = MemoryStore::new();
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shard-1", None, "1");
    for (seq, at) in [("1", 0), ("2", 10), ("3", 20), ("4", 30)] {
        stream.push("shard-1", seq, (T0 + at) * 1_000_000);
    }
    let capture = capture(&store, &stream);
    capture
        .store_batch(batch(&[("1", 0, "a", Some("a1"))]))
        .await
        .unwrap();
    // Lambda gave up on 2 and 3 and went on; its on-failure message has not come yet.
    capture
        .store_batch(batch(&[("4", 30, "a", Some("a4"))]))
        .await
        .unwrap();
    let at = |s: i64| (T0 + s) * 1_000_000;
    let coverage = reach(&store, stream.as_ref(), &layout(), ARN, at(0))
        .await
        .unwrap();
    assert!(coverage.covers(at(8)), "{coverage:?}");
    assert!(!coverage.covers(at(10)), "{coverage:?}");
    assert!(coverage.limited_by.unwrap().contains("were not stored"));
}

#[test]
fn a_number_key_is_one_key_however_it_is_spelled() {
    let id = |n: &str| {
        let item = HashMap::from([("id".to_string(), AttributeValue::N(n.to_string()))]);
        KeyId::of(&item, &["id".to_string()]).unwrap()
    };
    assert_eq!(id("1"), id("1.0"));
    assert_eq!(id("1"), id("+1"));
    assert_eq!(id("1"), id("10E-1"));
    assert_eq!(id("0.5"), id(".50"));
    assert_eq!(id("0"), id("-0.00"));
    assert_ne!(id("1"), id("-1"));
    assert_ne!(id("1"), id("10"));
    assert_ne!(id("1.5"), id("15"));
}
