use super::*;
use crate::backup::compress::decompressing_reader;
use crate::codec::decode::decode_dynamodb_json_line;
use crate::codec::encode::test_items::every_type;
use crate::model::manifest::MANIFEST_FILE;
use crate::source::MemorySource;
use crate::store::{LocalStore, MemoryStore};
use crate::test_support::{directory_job, numbered_items, sorted_by_id};
use aws_sdk_dynamodb::types::AttributeValue;
use std::io::BufRead;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_backup_uses_multipart_and_leaves_only_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(MemorySource::new("tbl", "id", numbered_items(8000), 500));
    let store = Arc::new(LocalStore::new(dir.path()));
    let tuning = Tuning {
        part_size: 1024 * 1024,
        ..Tuning::default()
    };
    let backup = Backup::new(source, store, tuning);
    let manifest = backup
        .run(&directory_job(r#","compression":"none","segments":2"#))
        .await
        .unwrap();
    assert_eq!(manifest.item_count, 8000);
    assert_eq!(manifest.files.len(), 2);
    // Each segment's file is over the local store's 1 MiB part size: several parts each.
    assert!(
        manifest.files.iter().all(|f| f.bytes > 2 * 1024 * 1024),
        "{:?}",
        manifest.files
    );
    let mut seen = 0;
    for file in &manifest.files {
        let bytes = std::fs::read(dir.path().join(&file.key)).unwrap();
        assert_eq!(bytes.len() as u64, file.bytes);
        let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
        for line in std::io::BufReader::new(reader).lines() {
            let item = decode_dynamodb_json_line(&line.unwrap()).unwrap();
            assert_eq!(item["bin"], every_type()["bin"]);
            seen += 1;
        }
    }
    assert_eq!(seen, 8000);
    assert!(
        !dir.path().join(".uploads").exists(),
        "part files left behind"
    );
    let progress = backup.progress();
    assert_eq!(progress.items.load(Ordering::Relaxed), 8000);
    assert_eq!(progress.segments_done.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_cannot_be_encoded_fails_the_job_without_manifest_or_open_upload() {
    let mut all = numbered_items(3000);
    all[2500].insert("broken".into(), AttributeValue::N("not-a-number".into()));
    // CSV encodes from SDK items, so the encoder checks every number.
    let store = MemoryStore::new();
    let backup = Backup::new(
        Arc::new(MemorySource::new("tbl", "id", all, 500)),
        Arc::new(store.clone()),
        Tuning::default(),
    );
    let err = backup
        .run(&directory_job(
            r#","format":"csv","compression":"none","segments":1"#,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Encode { .. }), "{err}");
    assert_eq!(err.stage(), Stage::Encode);
    assert!(err.to_string().contains("broken"), "{err}");
    assert_eq!(store.open_uploads(), 0, "multipart upload left open");
    assert!(store.keys().is_empty(), "files stored: {:?}", store.keys());
}

#[tokio::test]
async fn objects_carry_the_content_metadata_of_format_and_compression() {
    let store = MemoryStore::new();
    let backup = Backup::new(
        Arc::new(MemorySource::new("tbl", "id", numbered_items(10), 500)),
        Arc::new(store.clone()),
        Tuning::default(),
    );
    let manifest = backup
        .run(&directory_job(
            r#","format":"json","compression":"zstd","segments":1"#,
        ))
        .await
        .unwrap();
    let meta = store.meta(&manifest.files[0].key).unwrap();
    assert_eq!(meta.content_type, "application/zstd");
    assert_eq!(
        meta.content_encoding, None,
        "stored as it is, never decoded on download"
    );
    assert_eq!(meta.records, Some("application/x-ndjson"));
    assert_eq!(manifest.content_type, "application/zstd");
    assert_eq!(manifest.content_encoding, None);
    assert!(manifest.files[0].key.ends_with(".jsonl.zst"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_split_into_legs_at_deadlines_covers_every_item_exactly_once() {
    let items = numbered_items(1000);
    let store = MemoryStore::new();
    let backup = Backup::new(
        Arc::new(MemorySource::new("tbl", "id", items.clone(), 100)),
        Arc::new(store.clone()),
        Tuning::default(),
    );
    let job = directory_job(r#","compression":"zstd","segments":3"#);
    let layout = Layout::new(&job);
    let mut resume = None;
    let mut legs = 0;
    let manifest = loop {
        legs += 1;
        // A deadline already past: each leg reads one page per segment, then stops.
        match backup
            .run_leg(
                &job,
                Leg {
                    resume: resume.take(),
                    deadline: Some(Instant::now()),
                    ..Leg::default()
                },
            )
            .await
            .unwrap()
        {
            LegOutcome::Complete(manifest) => break manifest,
            LegOutcome::Suspended(checkpoint) => {
                assert_eq!(checkpoint.sequence, legs);
                let stored = store.get(&layout.checkpoint_key(None, legs)).await.unwrap();
                let reread = Checkpoint::from_json(&stored, job.job_id.as_str(), None).unwrap();
                assert_eq!(reread, checkpoint);
                assert!(
                    !store.keys().iter().any(|k| k.ends_with(MANIFEST_FILE)),
                    "manifest before the last leg"
                );
                resume = Some(reread);
            }
            LegOutcome::ShardDone { .. } => panic!("a whole job ended as a share"),
        }
    };
    // 333 or 334 items per segment at 100 per page: 4 pages, so 4 legs of one file each.
    assert_eq!(legs, 4);
    assert_eq!(manifest.item_count, 1000);
    assert_eq!(manifest.segments, 3);
    let keys: std::collections::BTreeSet<_> =
        manifest.files.iter().map(|f| f.key.clone()).collect();
    assert_eq!(keys.len(), manifest.files.len(), "a file listed twice");
    assert_eq!(manifest.files.len(), 12, "{keys:?}");
    let mut seen = Vec::new();
    for file in &manifest.files {
        let bytes = store.get(&file.key).await.unwrap();
        let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
        for line in std::io::BufReader::new(reader).lines() {
            seen.push(decode_dynamodb_json_line(&line.unwrap()).unwrap());
        }
    }
    assert_eq!(sorted_by_id(seen), sorted_by_id(items));
    assert_eq!(store.open_uploads(), 0);
    let err = backup.run_leg(&job, Leg::default()).await.unwrap_err();
    assert!(matches!(err, BackupError::AlreadyComplete { .. }), "{err}");
}

#[tokio::test]
async fn a_percentage_budget_on_an_on_demand_table_is_refused_unless_an_absolute_one_is_given() {
    let store = MemoryStore::new();
    let backup = Backup::new(
        Arc::new(MemorySource::new("tbl", "id", numbered_items(10), 5)),
        Arc::new(store.clone()),
        Tuning::default(),
    );
    let err = backup
        .run(&directory_job(r#","read_budget_percent":25"#))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Budget(_)), "{err}");
    assert!(err.to_string().contains("on-demand"), "{err}");
    assert!(store.keys().is_empty());
    let manifest = backup
        .run(&directory_job(
            r#","read_budget_percent":25,"read_budget":1000"#,
        ))
        .await
        .unwrap();
    assert_eq!(manifest.item_count, 10);
}
