use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::backup::compress::decompressing_reader;
use crate::backup::pipeline::{Leg, Tuning};
use crate::codec::decode::decode_dynamodb_json_line;
use crate::source::MemorySource;
use crate::store::MemoryStore;
use crate::test_support::{directory_job, numbered_items};
use std::io::BufRead;

#[test]
fn planned_segments_keep_every_worker_busy_within_the_limits() {
    assert_eq!(planned_segments(1, 4, 16), 64);
    assert_eq!(planned_segments(100, 4, 16), 100);
    assert_eq!(planned_segments(5000, 2, 16), 2000);
    assert_eq!(planned_segments(1, 1, 16), 16);
    assert_eq!(planned_segments(1, 1000, 16), 16_000);
}

fn backup_of(store: &MemoryStore, items: usize) -> Backup {
    Backup::new(
        Arc::new(MemorySource::new("tbl", "id", numbered_items(items), 50)),
        Arc::new(store.clone()),
        Tuning::default(),
    )
}

fn share(worker: u32) -> Leg {
    Leg {
        shard: Some(Shard::new(worker, 4).unwrap()),
        ..Leg::default()
    }
}

/// Every id in the backup's files, counted.
async fn ids_in(store: &MemoryStore, manifest: &crate::model::manifest::Manifest) -> Vec<String> {
    let mut ids = Vec::new();
    for file in &manifest.files {
        let bytes = store.get(&file.key).await.unwrap();
        let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
        for line in std::io::BufReader::new(reader).lines() {
            let item = decode_dynamodb_json_line(&line.unwrap()).unwrap();
            ids.push(item["id"].as_s().unwrap().clone());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_make_one_manifest_written_by_the_last_with_every_item_once() {
    let store = MemoryStore::new();
    let backup = backup_of(&store, 1000);
    let job = directory_job(r#","segments":8,"workers":4"#);
    let plan = backup.plan_fan_out(&job, 100).await.unwrap();
    assert_eq!((plan.workers, plan.segments), (4, 8));
    // Out of order, as the queue delivers them.
    for (n, worker) in [2, 0, 3].into_iter().enumerate() {
        match backup.run_leg(&job, share(worker)).await.unwrap() {
            LegOutcome::ShardDone {
                done,
                workers,
                result,
            } => {
                assert_eq!((done, workers), (n as u32 + 1, 4));
                assert_eq!(result.worker, worker);
                let segments: BTreeSet<u32> = result.files.iter().map(|f| f.segment).collect();
                assert_eq!(segments, [worker * 2, worker * 2 + 1].into());
                assert!(result.files.iter().all(|f| f.worker == worker));
            }
            other => panic!("worker {worker}: {other:?}"),
        }
        assert!(!store
            .exists(&Layout::new(&job).manifest_key())
            .await
            .unwrap());
    }
    let LegOutcome::Complete(manifest) = backup.run_leg(&job, share(1)).await.unwrap() else {
        panic!("the last worker writes the manifest");
    };
    assert_eq!((manifest.workers, manifest.segments), (4, 8));
    assert_eq!(manifest.item_count, 1000);
    let writers: BTreeSet<u32> = manifest.files.iter().map(|f| f.worker).collect();
    assert_eq!(writers, (0..4).collect());
    assert_eq!(manifest.started_at, plan.planned_at);
    let mut ids = ids_in(&store, &manifest).await;
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (1000, 1000), "every item exactly once");

    // Any later delivery of any share finds the job complete.
    let again = backup.run_leg(&job, share(3)).await.unwrap_err();
    assert!(
        matches!(again, BackupError::AlreadyComplete { .. }),
        "{again}"
    );
    // A redelivered first message gets the stored plan back, whatever it asks now.
    let replanned = backup.plan_fan_out(&job, 1).await.unwrap();
    assert_eq!(replanned, plan);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_delivered_twice_is_recorded_once_and_the_last_result_still_completes_the_job() {
    let store = MemoryStore::new();
    let backup = backup_of(&store, 400);
    let job = directory_job(r#","segments":4,"workers":4"#);
    backup.plan_fan_out(&job, 100).await.unwrap();
    for worker in 0..3 {
        backup.run_leg(&job, share(worker)).await.unwrap();
    }
    let layout = Layout::new(&job);
    let first = store.get(&layout.result_key(1)).await.unwrap();
    // Worker 1's message again: its result stands, nothing is read twice.
    match backup.run_leg(&job, share(1)).await.unwrap() {
        LegOutcome::ShardDone { done: 3, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&layout.result_key(1)).await.unwrap(), first);
    // A worker that recorded its result and died before merging: its redelivery only merges.
    let LegOutcome::Complete(manifest) = backup.run_leg(&job, share(3)).await.unwrap() else {
        panic!("the last worker writes the manifest");
    };
    let stored_result = store.get(&layout.result_key(3)).await.unwrap();
    assert_eq!(manifest.item_count, 400);
    assert_eq!(
        store
            .keys()
            .iter()
            .filter(|k| k.ends_with("manifest.json"))
            .count(),
        1
    );
    // Losing the race to write the manifest: the condition fails and the worker stands down.
    let lost = backup
        .finish_fan_out(
            &job,
            Some(backup.source.describe("tbl").await.unwrap()),
            Shard::new(3, 4).unwrap(),
            4,
            serde_json::from_slice(&stored_result).unwrap(),
        )
        .await
        .unwrap();
    assert!(
        matches!(lost, LegOutcome::ShardDone { done: 4, .. }),
        "{lost:?}"
    );
    assert_eq!(
        Manifest::from_json(&store.get(&layout.manifest_key()).await.unwrap()).unwrap(),
        *manifest,
        "the manifest is written once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_stops_its_other_workers_and_is_never_completed() {
    let store = MemoryStore::new();
    let source = MemorySource::new("tbl", "id", numbered_items(2000), 20)
        .with_page_delay(std::time::Duration::from_millis(20));
    let backup = Backup::new(Arc::new(source), Arc::new(store.clone()), Tuning::default());
    let job = directory_job(r#","segments":4,"workers":2"#);
    backup.plan_fan_out(&job, 100).await.unwrap();
    // Worker 1 fails for good while worker 0 reads.
    let watch = FailureWatch::start(
        Arc::new(store.clone()),
        &job,
        std::time::Duration::from_millis(20),
    );
    let leg = Leg {
        shard: Some(Shard::new(0, 2).unwrap()),
        halt: Some(watch.signal()),
        ..Leg::default()
    };
    let reading = tokio::spawn({
        let job = job.clone();
        async move { backup.run_leg(&job, leg).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !reading.is_finished(),
        "the share is read too fast to be stopped"
    );
    let first = record_failure(&store, &job, Some(1), "scan", "boom")
        .await
        .unwrap();
    assert!(first, "the first failure is the job's");
    let again = record_failure(&store, &job, Some(0), "scan", "later")
        .await
        .unwrap();
    assert!(!again, "a second failure is not reported again");
    let err = reading.await.unwrap().unwrap_err();
    assert!(matches!(err, BackupError::Halted { .. }), "{err}");
    assert_eq!(
        store.open_uploads(),
        0,
        "the stopped worker aborts its uploads"
    );
    let layout = Layout::new(&job);
    assert!(!store.exists(&layout.result_key(0)).await.unwrap());
    assert!(!store.exists(&layout.manifest_key()).await.unwrap());
    // A share delivered after the failure does not start.
    let late = backup_of(&store, 10)
        .run_leg(
            &job,
            Leg {
                shard: Some(Shard::new(0, 2).unwrap()),
                ..Leg::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(late, BackupError::Halted { .. }), "{late}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_past_its_deadline_resumes_its_own_share_from_its_own_checkpoint() {
    let store = MemoryStore::new();
    let backup = backup_of(&store, 600);
    let job = directory_job(r#","segments":4,"workers":2"#);
    backup.plan_fan_out(&job, 100).await.unwrap();
    let shard = Shard::new(1, 2).unwrap();
    let mut resume = None;
    let mut legs = 0;
    loop {
        legs += 1;
        let leg = Leg {
            resume: resume.take(),
            deadline: Some(tokio::time::Instant::now()),
            shard: Some(shard),
            halt: None,
        };
        match backup.run_leg(&job, leg).await.unwrap() {
            LegOutcome::Suspended(checkpoint) => {
                assert_eq!(checkpoint.shard, Some(shard));
                let key = Layout::new(&job).checkpoint_key(Some(1), checkpoint.sequence);
                assert!(store.exists(&key).await.unwrap(), "{key}");
                let segments: Vec<u32> = checkpoint.segments.iter().map(|s| s.segment).collect();
                assert_eq!(segments, vec![2, 3]);
                resume = Some(checkpoint);
            }
            LegOutcome::ShardDone {
                done: 1, result, ..
            } => {
                assert_eq!(result.legs, legs);
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(legs < 50);
    }
    assert!(legs > 2, "{legs} legs");
    let LegOutcome::Complete(manifest) = backup
        .run_leg(
            &job,
            Leg {
                shard: Some(Shard::new(0, 2).unwrap()),
                ..Leg::default()
            },
        )
        .await
        .unwrap()
    else {
        panic!("worker 0 completes the job");
    };
    let mut ids = ids_in(&store, &manifest).await;
    ids.sort();
    ids.dedup();
    assert_eq!((manifest.item_count, ids.len()), (600, 600));
}

#[tokio::test]
async fn a_small_table_is_planned_for_one_worker_and_nothing_is_stored() {
    let store = MemoryStore::new();
    let backup = backup_of(&store, 10);
    let job = directory_job("");
    let plan = backup.plan_fan_out(&job, 100).await.unwrap();
    assert_eq!(plan.workers, 1);
    assert!(store.keys().is_empty(), "{:?}", store.keys());
    // More workers than segments: each worker keeps a segment of its own.
    let job = directory_job(r#","segments":3,"workers":3"#);
    assert_eq!(backup.plan_fan_out(&job, 100).await.unwrap().workers, 3);
}
