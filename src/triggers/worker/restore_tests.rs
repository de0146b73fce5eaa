//! Restore jobs on the queue, with in-memory ports: the plan, the shares, a worker killed
//! mid-file and one stopped by its deadline, one email, and the refusals.

use super::tests::{far_deadline, harness, manifests, message, status_of, student_data, Harness};
use super::*;
use crate::model::restore_job::RestoreLayout;
use crate::readback::table_writer::MemoryWriter;
use crate::test_support::{numbered_items, sorted_by_id};

const BUCKET: &str = "student-backup-20250706";

/// A harness with a table writer and a complete backup of `items` items in 8 segments;
/// returns it with the backup's `s3://` manifest location.
async fn backed_up(items: usize) -> (Harness, MemoryWriter, String) {
    let mut h = harness(student_data(items));
    let writer = MemoryWriter::new();
    h.worker.writer = Some(Arc::new(writer.clone()));
    let report = h
        .worker
        .handle_message(
            &message(
                "b",
                r#"{"table":"studentData","job_id":"nightly","workers":1,"segments":8}"#,
            ),
            far_deadline(),
        )
        .await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    let manifest = manifests(&h.store).remove(0);
    (h, writer, format!("s3://{BUCKET}/{manifest}"))
}

fn restore_body(backup: &str, table: &str, extra: &str) -> String {
    format!(r#"{{"kind":"restore","backup":"{backup}","table":"{table}","job_id":"r1"{extra}}}"#)
}

fn emails(h: &Harness) -> Vec<String> {
    h.outbox.sent().into_iter().map(|e| e.subject).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_on_four_workers_with_one_killed_mid_file_writes_every_item_once_reported() {
    let (mut h, writer, backup) = backed_up(600).await;
    h.worker.progress_every = Duration::from_millis(5);
    let before = emails(&h).len();
    let plan = h
        .worker
        .handle_message(
            &message(
                "r",
                &restore_body(
                    &backup,
                    "restored-students",
                    r#","workers":4,"write_budget":4000"#,
                ),
            ),
            far_deadline(),
        )
        .await;
    assert_eq!(plan.disposition, Disposition::FannedOut, "{}", plan.detail);
    assert!(
        writer
            .describe("restored-students")
            .await
            .unwrap()
            .is_some(),
        "the table is created"
    );
    let shares: Vec<QueueMessage> = h
        .queue
        .drain()
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(&format!("share-{i}"), &m.body))
        .collect();
    assert_eq!(shares.len(), 4);
    let status = status_of(&h.store, "r1").await;
    assert_eq!((status.state, status.workers), (JobState::Running, Some(4)));
    assert_eq!(status.restore_into.as_deref(), Some("restored-students"));

    // Worker 1 is killed once its position has been saved mid-share.
    let h = Arc::new(h);
    let killed = {
        let (h, share) = (h.clone(), shares[1].clone());
        tokio::spawn(async move { h.worker.handle_message(&share, far_deadline()).await })
    };
    let job = crate::model::restore_job::RestoreRequest::from_json(&shares[1].body)
        .unwrap()
        .into_job(&JobDefaults::default(), "x")
        .unwrap();
    let position_key = RestoreLayout::new(&job).position_key(1);
    loop {
        if let Ok(bytes) = h.store.get(&position_key).await {
            let saved: crate::model::restore_job::SharePosition =
                serde_json::from_slice(&bytes).unwrap();
            if saved.position.records > 0 || saved.position.file > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());

    // Worker 2 meets its deadline and queues its continuation.
    let report = h
        .worker
        .handle_message(&shares[2], Instant::now() + Duration::from_millis(60))
        .await;
    assert_eq!(
        report.disposition,
        Disposition::Continued,
        "{}",
        report.detail
    );
    let continuation = h.queue.drain().remove(0);

    for share in [&shares[0], &shares[3], &message("c", &continuation.body)] {
        let report = h.worker.handle_message(share, far_deadline()).await;
        assert!(
            matches!(
                report.disposition,
                Disposition::ShardDone | Disposition::Done
            ),
            "{:?}: {}",
            report.disposition,
            report.detail
        );
    }
    assert_eq!(status_of(&h.store, "r1").await.state, JobState::Running);
    // The killed worker's message comes back: it resumes and completes the job.
    let report = h.worker.handle_message(&shares[1], far_deadline()).await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);

    let restored = writer.items("restored-students");
    assert_eq!(restored.len(), 600, "every item of every file");
    assert!(sorted_by_id(restored) == sorted_by_id(numbered_items(600)));
    let status = status_of(&h.store, "r1").await;
    assert_eq!(
        (status.state, status.workers_done, status.items),
        (JobState::Complete, Some(4), Some(600))
    );
    let sent = emails(&h);
    assert_eq!(sent.len() - before, 1, "{sent:?}");
    assert!(
        sent.last().unwrap().starts_with("Restore COMPLETE"),
        "{sent:?}"
    );

    // A late duplicate of a share is acknowledged, and sends nothing.
    let report = h.worker.handle_message(&shares[0], far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Skipped,
        "{}",
        report.detail
    );
    assert_eq!(emails(&h).len() - before, 1);
}

#[tokio::test]
async fn a_restore_outside_the_pattern_or_over_an_existing_table_fails_once_and_writes_nothing() {
    let (h, writer, backup) = backed_up(50).await;
    let before = emails(&h).len();
    let report = h
        .worker
        .handle_message(
            &message("r", &restore_body(&backup, "studentData", "")),
            far_deadline(),
        )
        .await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert!(report.detail.contains("restored-*"), "{}", report.detail);
    assert!(writer.describe("studentData").await.unwrap().is_none());
    assert!(h.queue.drain().is_empty(), "nothing queued");
    let status = status_of(&h.store, "r1").await;
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(emails(&h).len() - before, 1);

    writer
        .create_table(
            "restored-live",
            &crate::readback::table_writer::TableSpec {
                key_schema: vec![crate::source::KeyElement {
                    attribute_name: "id".into(),
                    key_type: "HASH".into(),
                }],
                attribute_definitions: vec![],
                global_secondary_indexes: vec![],
                local_secondary_indexes: vec![],
            },
        )
        .await
        .unwrap();
    writer.put("restored-live", numbered_items(1).remove(0));
    let body = restore_body(&backup, "restored-live", "").replace("\"r1\"", "\"r2\"");
    let report = h
        .worker
        .handle_message(&message("r2", &body), far_deadline())
        .await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert!(
        report.detail.contains("already exists"),
        "{}",
        report.detail
    );
    assert_eq!(
        writer.items("restored-live").len(),
        1,
        "the existing table is untouched"
    );
    assert!(h.queue.drain().is_empty());
}

#[tokio::test]
async fn a_redelivered_restore_job_reads_its_own_plan_and_queues_only_unfinished_shares() {
    let (h, writer, backup) = backed_up(100).await;
    let body = restore_body(&backup, "restored-again", r#","workers":2"#);
    let first = h
        .worker
        .handle_message(&message("r", &body), far_deadline())
        .await;
    assert_eq!(
        first.disposition,
        Disposition::FannedOut,
        "{}",
        first.detail
    );
    let shares = h.queue.drain();
    assert_eq!(shares.len(), 2);
    let done = h
        .worker
        .handle_message(&message("s0", &shares[0].body), far_deadline())
        .await;
    assert_eq!(done.disposition, Disposition::ShardDone, "{}", done.detail);
    // The job's message again: its own table is no obstacle, and only worker 1 is queued.
    let again = h
        .worker
        .handle_message(&message("r", &body), far_deadline())
        .await;
    assert_eq!(
        again.disposition,
        Disposition::FannedOut,
        "{}",
        again.detail
    );
    let queued = h.queue.drain();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].body, shares[1].body);
    let last = h
        .worker
        .handle_message(&message("s1", &queued[0].body), far_deadline())
        .await;
    assert_eq!(last.disposition, Disposition::Done, "{}", last.detail);
    assert_eq!(writer.items("restored-again").len(), 100);
}

#[tokio::test]
async fn a_restore_whose_table_another_job_claimed_stops_and_a_reused_job_id_is_refused() {
    let (h, writer, backup) = backed_up(40).await;
    let body = restore_body(&backup, "restored-claimed", r#","workers":1"#);
    let first = h
        .worker
        .handle_message(&message("r", &body), far_deadline())
        .await;
    assert_eq!(
        first.disposition,
        Disposition::FannedOut,
        "{}",
        first.detail
    );
    h.queue.drain();
    // Another restore job took the table's name meanwhile.
    let claim = "backups/restores/tables/restored-claimed.json";
    assert!(h.store.exists(claim).await.unwrap(), "{:?}", h.store.keys());
    h.store
        .put_object(
            claim,
            bytes::Bytes::from_static(br#"{"job_id":"someone-else"}"#),
            &crate::store::ObjectMeta {
                content_type: "application/json",
                content_encoding: None,
                records: None,
                retained: false,
            },
        )
        .await
        .unwrap();
    let again = h
        .worker
        .handle_message(&message("r", &body), far_deadline())
        .await;
    assert_eq!(again.disposition, Disposition::Rejected, "{}", again.detail);
    assert!(again.detail.contains("someone-else"), "{}", again.detail);
    assert!(h.queue.drain().is_empty(), "no share queued");

    // The same job id for another table: refused, and the first job is not failed by it.
    let other = restore_body(&backup, "restored-other", "").replace("\"r1\"", "\"r9\"");
    let planned = h
        .worker
        .handle_message(&message("r9", &other), far_deadline())
        .await;
    assert_eq!(
        planned.disposition,
        Disposition::FannedOut,
        "{}",
        planned.detail
    );
    h.queue.drain();
    let reused = restore_body(&backup, "restored-third", "").replace("\"r1\"", "\"r9\"");
    let refused = h
        .worker
        .handle_message(&message("r9b", &reused), far_deadline())
        .await;
    assert_eq!(
        refused.disposition,
        Disposition::Rejected,
        "{}",
        refused.detail
    );
    assert!(
        refused.detail.contains("another job id"),
        "{}",
        refused.detail
    );
    assert_ne!(status_of(&h.store, "r9").await.state, JobState::Failed);
    assert!(writer.describe("restored-third").await.unwrap().is_none());
}
