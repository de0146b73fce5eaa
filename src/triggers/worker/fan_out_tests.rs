//! A job fanned out over several workers, with in-memory ports: the shard messages, one manifest,
//! one email, the status count, duplicates, and a worker failing the job for all.

use super::tests::{far_deadline, harness, manifests, message, status_of, student_data};
use super::*;
use crate::model::fan_out::Shard;
use crate::source::{MemorySource, Page, PageRequest, ScanError, TableInfo};
use crate::test_support::numbered_items;
use crate::triggers::metrics::Outcome;

/// Hands `body` to the worker as a new job and returns the shard messages it queued.
pub(super) async fn fanned_out(h: &super::tests::Harness, body: &str) -> Vec<(u32, QueueMessage)> {
    let report = h
        .worker
        .handle_message(&message("m", body), far_deadline())
        .await;
    assert_eq!(
        report.disposition,
        Disposition::FannedOut,
        "{}",
        report.detail
    );
    shard_messages(h)
}

pub(super) fn shard_messages(h: &super::tests::Harness) -> Vec<(u32, QueueMessage)> {
    let mut shards: Vec<_> = h
        .queue
        .drain()
        .into_iter()
        .enumerate()
        .map(|(i, sent)| {
            let envelope: Envelope = serde_json::from_str(&sent.body).unwrap();
            assert_eq!(envelope.continuation, None);
            let worker = envelope.worker.expect("a shard names its worker");
            (worker, message(&format!("shard-{i}"), &sent.body))
        })
        .collect();
    shards.sort_by_key(|(w, _)| *w);
    shards
}

#[tokio::test]
async fn a_job_for_four_workers_fans_out_and_the_last_share_completes_it_with_one_email() {
    let h = harness(student_data(400));
    let job = message(
        "m",
        r#"{"table":"studentData","job_id":"fan","workers":4,"segments":8}"#,
    );
    let report = h.worker.handle_message(&job, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::FannedOut,
        "{}",
        report.detail
    );
    assert!(!report.keep_on_queue);
    let shards = shard_messages(&h);
    assert_eq!(
        shards.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let status = status_of(&h.store, "fan").await;
    assert_eq!(
        (status.state, status.workers, status.workers_done),
        (JobState::Running, Some(4), Some(0))
    );
    let parsed = WorkOrder::parse(&shards[2].1, &JobDefaults::default()).unwrap();
    assert_eq!(parsed.shard, Some(Shard::new(2, 4).unwrap()));
    assert_eq!(parsed.job.segments.map(|n| n.get()), Some(8));

    // Worker 0's message arrives twice; the others once, out of order.
    for (n, index) in [0, 0, 3, 1].into_iter().enumerate() {
        let report = h
            .worker
            .handle_batch(&[shards[index].1.clone()], far_deadline())
            .await
            .remove(0);
        assert_eq!(
            report.disposition,
            Disposition::ShardDone,
            "{}",
            report.detail
        );
        assert!(
            h.outbox.sent().is_empty(),
            "no email before the job is complete"
        );
        let done = status_of(&h.store, "fan").await.workers_done;
        assert_eq!(done, Some([1, 1, 2, 3][n]), "after message {n}");
    }
    let report = h
        .worker
        .handle_batch(&[shards[2].1.clone()], far_deadline())
        .await
        .remove(0);
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert_eq!(report.items, Some(400));
    let keys = manifests(&h.store);
    assert_eq!(keys.len(), 1);
    let manifest = Manifest::from_json(&h.store.get(&keys[0]).await.unwrap()).unwrap();
    assert_eq!((manifest.workers, manifest.item_count), (4, 400));
    assert_eq!(h.outbox.sent().len(), 1, "one email for the job");
    assert!(
        h.outbox.sent()[0].text.contains("with 4 workers"),
        "{}",
        h.outbox.sent()[0].text
    );
    let status = status_of(&h.store, "fan").await;
    assert_eq!(
        (status.state, status.workers, status.workers_done),
        (JobState::Complete, Some(4), Some(4))
    );
    assert!(status.notified);
    // One success measured for the job, none for its shares.
    let recorded = h.metrics.all();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].outcome, Outcome::Succeeded);
    assert_eq!(recorded[0].items, 400);

    // Late deliveries of the job or a share change nothing and send nothing.
    for late in [&job, &shards[1].1] {
        let report = h.worker.handle_message(late, far_deadline()).await;
        assert_eq!(
            report.disposition,
            Disposition::Skipped,
            "{}",
            report.detail
        );
    }
    assert_eq!(h.outbox.sent().len(), 1);
    assert!(h.queue.drain().is_empty());
}

#[tokio::test]
async fn a_small_table_runs_as_one_worker_and_a_job_redelivered_after_planning_requeues_its_shares()
{
    let h = harness(student_data(30));
    let small = message("s", r#"{"table":"studentData","job_id":"small"}"#);
    let report = h.worker.handle_message(&small, far_deadline()).await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert!(h.queue.drain().is_empty());

    let job = message(
        "m",
        r#"{"table":"studentData","job_id":"again","workers":2}"#,
    );
    h.worker.handle_message(&job, far_deadline()).await;
    let shards = shard_messages(&h);
    assert_eq!(shards.len(), 2);
    h.worker.handle_message(&shards[1].1, far_deadline()).await;
    // The coordinator's message comes back (its invocation died before the ack): only the share
    // that has no result yet is queued again.
    let report = h.worker.handle_message(&job, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::FannedOut,
        "{}",
        report.detail
    );
    let requeued = shard_messages(&h);
    assert_eq!(requeued.iter().map(|(w, _)| *w).collect::<Vec<_>>(), [0]);
}

/// Scans of the segments from `from` on are refused for good, as DynamoDB refuses a role that
/// lacks permission; the others are served.
struct RefusesSegmentsFrom(MemorySource, u32);

#[async_trait::async_trait]
impl TableSource for RefusesSegmentsFrom {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        self.0.describe(table).await
    }
    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        if request.segment >= self.1 {
            return Err(ScanError::request(
                "Scan",
                &request.table,
                crate::aws::FailureKind::Rejected,
                "ValidationException: refused",
            ));
        }
        self.0.scan_page(request).await
    }
}

#[tokio::test]
async fn a_share_failing_for_good_fails_the_job_once_and_the_other_shares_stand_down() {
    let mut h = harness(MemorySource::new("studentData", "id", vec![], 20));
    h.worker.source = Arc::new(RefusesSegmentsFrom(
        MemorySource::new("studentData", "id", numbered_items(200), 20),
        2,
    ));
    let job = message(
        "m",
        r#"{"table":"studentData","job_id":"doomed","workers":2,"segments":4}"#,
    );
    h.worker.handle_message(&job, far_deadline()).await;
    let shards = shard_messages(&h);
    let report = h.worker.handle_message(&shards[1].1, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert_eq!(
        h.dead_letters.drain().len(),
        1,
        "the failing share goes to the DLQ"
    );
    assert_eq!(h.outbox.sent().len(), 1);
    assert!(
        h.outbox.sent()[0].subject.contains("FAILED"),
        "{}",
        h.outbox.sent()[0].subject
    );
    let status = status_of(&h.store, "doomed").await;
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.will_retry, Some(false));
    // The other share, and a redelivery of the failed one, stop without a second email.
    for shard in [&shards[0].1, &shards[1].1] {
        let report = h.worker.handle_message(shard, far_deadline()).await;
        assert!(
            matches!(report.disposition, Disposition::Skipped),
            "{:?}: {}",
            report.disposition,
            report.detail
        );
        assert!(!report.keep_on_queue);
    }
    assert_eq!(h.outbox.sent().len(), 1, "one failure email for the job");
    assert!(manifests(&h.store).is_empty());
    assert_eq!(h.store.open_uploads(), 0);
    assert_eq!(status_of(&h.store, "doomed").await.state, JobState::Failed);
}

/// The merging worker's conditional write of the manifest applied, its reply lost: the job is
/// still complete, with one email.
#[tokio::test]
async fn a_lost_reply_to_the_manifest_still_completes_the_job_with_one_email() {
    let h = harness(student_data(200));
    h.store
        .lose_conditional_replies(|key| key.ends_with("/manifest.json"));
    let job = message(
        "m",
        r#"{"table":"studentData","job_id":"lost-manifest","workers":2,"segments":4}"#,
    );
    h.worker.handle_message(&job, far_deadline()).await;
    let shards = shard_messages(&h);
    let first = h.worker.handle_message(&shards[0].1, far_deadline()).await;
    assert_eq!(
        first.disposition,
        Disposition::ShardDone,
        "{}",
        first.detail
    );
    let last = h.worker.handle_message(&shards[1].1, far_deadline()).await;
    assert_eq!(last.disposition, Disposition::Done, "{}", last.detail);
    assert_eq!(manifests(&h.store).len(), 1);
    assert_eq!(h.outbox.sent().len(), 1, "one email for the job");
    assert_eq!(
        status_of(&h.store, "lost-manifest").await.state,
        JobState::Complete
    );
}

/// The failing worker's record of the failure applied, its reply lost: it still fails the job,
/// with its one email, instead of leaving it running for a sibling that never reported.
#[tokio::test]
async fn a_lost_reply_to_the_failure_record_still_fails_the_job_with_one_email() {
    let mut h = harness(MemorySource::new("studentData", "id", vec![], 20));
    h.worker.source = Arc::new(RefusesSegmentsFrom(
        MemorySource::new("studentData", "id", numbered_items(200), 20),
        2,
    ));
    h.store
        .lose_conditional_replies(|key| key.ends_with("/failed.json"));
    let job = message(
        "m",
        r#"{"table":"studentData","job_id":"lost-failure","workers":2,"segments":4}"#,
    );
    h.worker.handle_message(&job, far_deadline()).await;
    let shards = shard_messages(&h);
    let report = h.worker.handle_message(&shards[1].1, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert_eq!(h.outbox.sent().len(), 1, "the failure email went out");
    assert!(h.outbox.sent()[0].subject.contains("FAILED"));
    assert_eq!(
        status_of(&h.store, "lost-failure").await.state,
        JobState::Failed
    );
}
