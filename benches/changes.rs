//! Change capture and replay: what storing a table's changes costs, and how fast a restore reads
//! them back, which is what restore time adds per change since the last backup.
//!
//! - `capture`: batches of 1,000 stream records (student items of about 370 bytes of DynamoDB
//!   JSON, both images, as Lambda delivers them) parsed from the event's JSON, written as change
//!   lines, zstd-compressed and stored in memory, one object per batch: records/s on one core,
//!   and line and stored bytes per change.
//! - `replay`: N changes to N/10 keys, stored as above, read back: listed, decompressed, parsed,
//!   keyed and reduced to each key's last change, as `restore --to-time` does: changes/s.
//!
//!   cargo bench --bench changes                # full run (about a minute)
//!   cargo bench --bench changes -- --smoke     # quick run used by CI to keep this working

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ddb_backup::changes::coverage::lineage;
use ddb_backup::changes::replay::Window;
use ddb_backup::changes::{Capture, ChangeSet, MemoryStream, StreamBatch};
use ddb_backup::model::changes::ChangeLayout;
use ddb_backup::store::MemoryStore;
use ddb_backup::Compression;

#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

const ARN: &str = "arn:aws:dynamodb:us-east-1:1:table/studentData/stream/2026-12-07T00:00:00.000";
/// 2026-12-07T10:00:00Z.
const T0: f64 = 1_796_637_600.0;
const BATCH: usize = 1000;

/// 32 hex digits that differ from record to record, as real attribute values do (a session
/// token, a hash): without them the repetitive synthetic images compress far better than a real
/// table's.
fn token(n: usize) -> String {
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 29;
        out.push_str(&format!("{x:016x}"));
    }
    out
}

/// One stream record of a student item, as Lambda delivers it.
fn record(n: usize, keys: usize, span_secs: f64, total: usize) -> String {
    let id = format!("S{:07}", n % keys);
    let at = T0 + span_secs * n as f64 / total as f64;
    let image = format!(
        r#"{{"id":{{"S":"{id}"}},"name":{{"S":"Student {n}"}},"email":{{"S":"student{n}@example.edu"}},"gpa":{{"N":"3.{:02}"}},"courses":{{"SS":["CS101","MA201","PH150"]}},"address":{{"M":{{"city":{{"S":"Springfield"}},"zip":{{"S":"{:05}"}}}}}},"enrolled":{{"BOOL":true}},"updated":{{"N":"{n}"}},"token":{{"S":"{}"}}}}"#,
        n % 100,
        n % 100_000,
        token(n)
    );
    format!(
        r#"{{"eventID":"{n}","eventName":"MODIFY","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1","eventSourceARN":"{ARN}","dynamodb":{{"ApproximateCreationDateTime":{at:.3},"Keys":{{"id":{{"S":"{id}"}}}},"NewImage":{image},"OldImage":{image},"SequenceNumber":"{:021}","SizeBytes":700,"StreamViewType":"NEW_AND_OLD_IMAGES"}}}}"#,
        n + 1
    )
}

fn events(total: usize) -> Vec<String> {
    (0..total)
        .step_by(BATCH)
        .map(|start| {
            let records: Vec<String> = (start..(start + BATCH).min(total))
                .map(|n| record(n, total / 10, 3600.0, total))
                .collect();
            format!(r#"{{"Records":[{}]}}"#, records.join(","))
        })
        .collect()
}

async fn capture(store: &MemoryStore, total: usize) -> (f64, u64, u64) {
    let stream = Arc::new(MemoryStream::new());
    stream.open_shard("shardId-00000001796637600000-00000001", None, "1");
    let capture = Capture::new(
        Arc::new(store.clone()),
        stream,
        "backups/",
        Compression::Zstd,
    );
    let events = events(total);
    let started = Instant::now();
    for event in &events {
        let batch: StreamBatch = serde_json::from_str(event).expect("event");
        capture.store_batch(batch).await.expect("stored");
    }
    let secs = started.elapsed().as_secs_f64();
    let mut bytes = 0;
    let mut lines = 0;
    for key in store
        .keys()
        .iter()
        .filter(|k| k.contains("/changes/batches/"))
    {
        let object = ddb_backup::store::ObjectStore::get(store, key)
            .await
            .expect("object");
        bytes += object.len() as u64;
        lines += zstd::decode_all(&object[..]).expect("zstd").len() as u64;
    }
    (total as f64 / secs, bytes, lines)
}

async fn replay(store: &MemoryStore, total: usize) -> f64 {
    let layout = ChangeLayout::new("backups/", "studentData");
    let lineage: HashMap<String, Option<String>> = lineage(store, &layout).await.expect("lineage");
    let window = Window {
        from: ((T0 - 60.0) * 1e6) as i64,
        to: ((T0 + 7200.0) * 1e6) as i64,
    };
    let started = Instant::now();
    let set = ChangeSet::read(
        Arc::new(store.clone()),
        &layout,
        &["id".to_string()],
        &window,
        &lineage,
    )
    .await
    .expect("replay");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(set.changes as usize, total);
    assert_eq!(set.keys.len(), total / 10);
    total as f64 / secs
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    ddb_backup::runtime::allocator::tune();
    let smoke = std::env::args().any(|a| a == "--smoke");
    let sizes: &[usize] = if smoke {
        &[10_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    println!("  changes   capture rec/s   line B/change   stored B/change   replay changes/s");
    for &total in sizes {
        let store = MemoryStore::new();
        let (rate, bytes, lines) = capture(&store, total).await;
        let replayed = replay(&store, total).await;
        println!(
            "{total:>9}   {rate:>13.0}   {:>13.0}   {:>15.1}   {replayed:>16.0}",
            lines as f64 / total as f64,
            bytes as f64 / total as f64
        );
    }
}
