//! Every job ends once: retries that come back in seconds, dead letters recorded as failed jobs
//! with one email, shares checked against their plan, redrives that resume, and the sweep that
//! fails a job nobody finished.

use super::fan_out_tests::{fanned_out, shard_messages};
use super::tests::{far_deadline, harness, manifests, message, status_of, student_data, Harness};
use super::*;
use crate::model::manifest::Layout;
use crate::source::MemorySource;
use crate::triggers::metrics::Outcome;

/// `message` as SQS delivers it from the dead-letter queue.
fn dead_letter(message: &QueueMessage) -> QueueMessage {
    QueueMessage {
        queue: Some("dead-letters".to_string()),
        ..message.clone()
    }
}

/// A second worker (its own queues) on the store, status and email of `h`'s: the same
/// deployment after a change of its settings.
fn sharing_ports(h: &Harness) -> Harness {
    let mut other = harness(MemorySource::new("studentData", "id", vec![], 20));
    other.worker.source = h.worker.source.clone();
    other.worker.stores = h.worker.stores.clone();
    other.worker.status = h.worker.status.clone();
    other.worker.notifier = h.worker.notifier.clone();
    other
}

/// A message the failed-jobs queue kept, redriven to the job queue by an operator.
fn redriven(kept: &crate::triggers::queue::SentMessage) -> QueueMessage {
    QueueMessage {
        reason: kept.reason.clone(),
        ..message(&format!("redriven-{}", kept.id), &kept.body)
    }
}

#[tokio::test]
async fn a_duplicate_comes_back_when_the_lease_it_waits_for_ends() {
    let h = harness(student_data(200).with_page_delay(Duration::from_millis(20)));
    let msg = message("m", r#"{"table":"studentData","job_id":"twice"}"#);
    let deadline = Instant::now() + Duration::from_secs(120);
    let batch = [msg.clone()];
    let (first, second) = tokio::join!(h.worker.handle_batch(&batch, deadline), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.worker.handle_batch(&batch, deadline).await
    });
    assert_eq!(first[0].disposition, Disposition::Done);
    assert_eq!(second[0].disposition, Disposition::Deferred);
    let delays = h.queue.delays();
    assert_eq!(delays.len(), 1, "{delays:?}");
    // The lease ran to the 120 s deadline; the duplicate waits that out, not 90 minutes.
    assert!(
        (100..=125).contains(&delays[0].1.as_secs()),
        "{:?}",
        delays[0]
    );
}

#[tokio::test]
async fn a_share_that_died_at_every_delivery_fails_the_job_once_from_the_dead_letter_queue() {
    let h = harness(student_data(200));
    let shards = fanned_out(
        &h,
        r#"{"table":"studentData","job_id":"dies","workers":3,"segments":6}"#,
    )
    .await;
    // Worker 0 finishes its share; worker 1's share never reaches an outcome and SQS moves it
    // to the dead-letter queue, where the worker is subscribed.
    let done = h.worker.handle_message(&shards[0].1, far_deadline()).await;
    assert_eq!(done.disposition, Disposition::ShardDone);
    let report = h
        .worker
        .handle_batch(&[dead_letter(&shards[1].1)], far_deadline())
        .await
        .remove(0);
    assert_eq!(
        report.disposition,
        Disposition::Recorded,
        "{}",
        report.detail
    );
    assert!(!report.keep_on_queue);
    assert_eq!(report.metrics().unwrap().outcome, Outcome::Failed);
    let status = status_of(&h.store, "dies").await;
    assert_eq!(
        (status.state, status.will_retry),
        (JobState::Failed, Some(false))
    );
    assert_eq!(status.stage.as_deref(), Some("delivery"));
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].subject.contains("FAILED"), "{}", sent[0].subject);
    let kept = h.failed_jobs.messages();
    assert_eq!(kept.len(), 1, "kept for a redrive");
    assert!(kept[0].reason.as_deref().unwrap().contains("no delivery"));
    // The last share stops instead of reading; a second dead letter of the job is no second
    // email, and a dead letter of a finished share is dropped.
    let last = h.worker.handle_message(&shards[2].1, far_deadline()).await;
    assert_eq!(last.disposition, Disposition::Skipped, "{}", last.detail);
    let again = h
        .worker
        .handle_batch(&[dead_letter(&shards[2].1)], far_deadline())
        .await
        .remove(0);
    assert_eq!(again.disposition, Disposition::Skipped, "{}", again.detail);
    assert!(again.metrics().is_none(), "one failure in the metrics");
    let moot = h
        .worker
        .handle_batch(&[dead_letter(&shards[0].1)], far_deadline())
        .await
        .remove(0);
    assert_eq!(moot.disposition, Disposition::Skipped, "{}", moot.detail);
    assert_eq!(h.outbox.sent().len(), 1, "one email for the job");
    assert_eq!(
        h.failed_jobs.messages().len(),
        2,
        "the finished share's is dropped"
    );
    assert!(manifests(&h.store).is_empty());
    let kept_later: Vec<_> = h.failed_jobs.messages()[1..].to_vec();

    // An operator redrives the kept message: the job resumes and completes, with its email.
    let resumed = h
        .worker
        .handle_message(&redriven(&kept[0]), far_deadline())
        .await;
    assert_eq!(
        resumed.disposition,
        Disposition::ShardDone,
        "{}",
        resumed.detail
    );
    let requeued = shard_messages(&h);
    assert_eq!(
        requeued.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        [2],
        "the share the failure stopped is queued again"
    );
    assert!(status_of(&h.store, "dies").await.resumed_at.is_some());
    // The operator redrives the other kept message too (share 2's): the job is resumed
    // already, so nothing is queued again; the message itself reads its share and completes
    // the job, and the copy queued by the first redrive finds it complete.
    let twice = h
        .worker
        .handle_message(&redriven(&kept_later[0]), far_deadline())
        .await;
    assert!(h.queue.drain().is_empty(), "nothing queued again");
    assert_eq!(twice.disposition, Disposition::Done, "{}", twice.detail);
    let finish = h
        .worker
        .handle_message(&requeued[0].1, far_deadline())
        .await;
    assert_eq!(
        finish.disposition,
        Disposition::Skipped,
        "{}",
        finish.detail
    );
    assert_eq!(manifests(&h.store).len(), 1);
    assert_eq!(status_of(&h.store, "dies").await.state, JobState::Complete);
    let subjects: Vec<String> = h.outbox.sent().iter().map(|e| e.subject.clone()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(!subjects[1].contains("FAILED"), "{subjects:?}");
}

#[tokio::test]
async fn a_dead_letter_of_a_complete_job_is_dropped_without_an_email() {
    let h = harness(student_data(20));
    let msg = message("m", r#"{"table":"studentData","job_id":"fine"}"#);
    assert_eq!(
        h.worker
            .handle_message(&msg, far_deadline())
            .await
            .disposition,
        Disposition::Done
    );
    let report = h
        .worker
        .handle_batch(&[dead_letter(&msg)], far_deadline())
        .await
        .remove(0);
    assert_eq!(
        report.disposition,
        Disposition::Skipped,
        "{}",
        report.detail
    );
    assert_eq!(h.outbox.sent().len(), 1);
    assert!(h.failed_jobs.messages().is_empty());
    assert_eq!(status_of(&h.store, "fine").await.state, JobState::Complete);
}

#[tokio::test]
async fn lowering_the_worker_ceiling_mid_job_does_not_strand_its_shares() {
    let h = harness(student_data(300));
    let shards = fanned_out(
        &h,
        r#"{"table":"studentData","job_id":"ceiling","workers":4,"segments":8}"#,
    )
    .await;
    // The operator lowers DDB_BACKUP_MAX_WORKERS to 2 while the shares are queued.
    let mut lowered = sharing_ports(&h);
    lowered.worker.defaults.max_workers = 2;
    let reports: Vec<_> = futures::future::join_all(
        shards
            .iter()
            .map(|(_, m)| lowered.worker.handle_message(m, far_deadline())),
    )
    .await;
    let dispositions: Vec<_> = reports.iter().map(|r| r.disposition).collect();
    assert_eq!(
        dispositions
            .iter()
            .filter(|d| **d == Disposition::Done)
            .count(),
        1,
        "{dispositions:?} {:?}",
        reports.iter().map(|r| &r.detail).collect::<Vec<_>>()
    );
    assert_eq!(manifests(&h.store).len(), 1);
    assert_eq!(h.outbox.sent().len(), 1);
    // A shard that does not fit the stored plan is refused, not read.
    let mut forged: Envelope = serde_json::from_str(&shards[0].1.body).unwrap();
    forged.job.job_id = Some("forged".to_string());
    let forged = message("f", &serde_json::to_string(&forged).unwrap());
    let report = h.worker.handle_message(&forged, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert!(report.detail.contains("no plan"), "{}", report.detail);
}

#[tokio::test]
async fn a_changed_allow_list_fails_the_job_once() {
    let h = harness(student_data(200));
    let shards = fanned_out(
        &h,
        r#"{"table":"studentData","job_id":"disallowed","workers":3,"segments":6}"#,
    )
    .await;
    let mut narrowed = sharing_ports(&h);
    narrowed.worker.policy = JobPolicy {
        allowed_tables: Some(vec![
            crate::model::job::TableName::new("otherTable").unwrap()
        ]),
        ..JobPolicy::default()
    };
    for (_, shard) in &shards {
        let report = narrowed.worker.handle_message(shard, far_deadline()).await;
        assert_eq!(
            report.disposition,
            Disposition::Rejected,
            "{}",
            report.detail
        );
    }
    // Each refused share reaches the dead-letter queue; its consumer fails the job once.
    let dead: Vec<QueueMessage> = narrowed
        .dead_letters
        .drain()
        .into_iter()
        .map(|sent| QueueMessage {
            reason: sent.reason.clone(),
            ..dead_letter(&message(&sent.id, &sent.body))
        })
        .collect();
    assert_eq!(dead.len(), 3);
    let reports = narrowed.worker.handle_batch(&dead, far_deadline()).await;
    let recorded = reports
        .iter()
        .filter(|r| r.disposition == Disposition::Recorded)
        .count();
    assert_eq!(recorded, 1, "{reports:?}");
    let status = status_of(&h.store, "disallowed").await;
    assert_eq!(status.state, JobState::Failed);
    assert!(status.error.unwrap().contains("not allowed"));
    assert_eq!(h.outbox.sent().len(), 1, "one email for the job");
    assert!(manifests(&h.store).is_empty());
}

#[tokio::test]
async fn the_coordinators_last_delivery_fails_the_job_instead_of_leaving_it_running() {
    let h = harness(student_data(200));
    // Listing the job's results keeps failing.
    h.store.fail_lists_under("/results/");
    let mut job = message(
        "m",
        r#"{"table":"studentData","job_id":"unshared","workers":2,"segments":4}"#,
    );
    for delivery in 1..=5 {
        job.receive_count = delivery;
        let report = h.worker.handle_message(&job, far_deadline()).await;
        assert_eq!(report.disposition, Disposition::Retry, "{}", report.detail);
        assert_eq!(h.outbox.sent().len(), usize::from(delivery == 5));
    }
    let status = status_of(&h.store, "unshared").await;
    assert_eq!(
        (status.state, status.will_retry),
        (JobState::Failed, Some(false))
    );
    assert_eq!(status.stage.as_deref(), Some("dispatch"));
    assert!(
        h.store.keys().iter().any(|k| k.ends_with("/failed.json")),
        "shares already queued stop"
    );
}

#[tokio::test]
async fn the_sweep_fails_a_job_nobody_finished_once_and_leaves_live_and_complete_ones() {
    let mut h = harness(student_data(20));
    h.worker.stuck_after = Duration::from_secs(3600);
    let board = h.worker.status.clone().unwrap();
    let job_of = |id: &str, hours_ago: i64| {
        let request = crate::model::job::JobRequest {
            table: Some("studentData".to_string()),
            job_id: Some(id.to_string()),
            requested_at: Some(
                (chrono::Utc::now() - chrono::Duration::hours(hours_ago))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            ..Default::default()
        };
        request.into_job(&h.worker.defaults, None).unwrap()
    };
    // Lost two hours ago; running for ten minutes; complete, with its status never written.
    let lost = job_of("lost", 2);
    let young = job_of("young", 0);
    board
        .put(&JobStatus::new(&lost, JobState::Running))
        .await
        .unwrap();
    board
        .put(&JobStatus::new(&young, JobState::Queued))
        .await
        .unwrap();
    // Complete in a prefix of its own, which only its status knows.
    let mut finished = job_of("finished", 3);
    finished.destination = Destination::S3 {
        bucket: crate::model::job::BucketName::new("student-backup-20250706").unwrap(),
        prefix: crate::model::job::Prefix::new("elsewhere/").unwrap(),
    };
    // Shared over workers three hours ago, one of them reading now.
    let busy = job_of("busy", 3);
    board
        .put(&JobStatus::new(&busy, JobState::Running))
        .await
        .unwrap();
    let busy_lease = Layout::new(&busy).lease_key(Some(1));
    h.store
        .put_object(
            &busy_lease,
            bytes::Bytes::from(
                serde_json::json!({
                    "holder": "h", "message_id": "m", "taken_at": "t",
                    "expires_at": chrono::Utc::now() + chrono::Duration::minutes(10),
                })
                .to_string(),
            ),
            &crate::backup::pipeline::JSON_META,
        )
        .await
        .unwrap();
    let body = serde_json::to_string(&finished.to_request()).unwrap();
    assert_eq!(
        h.worker
            .handle_message(&message("f", &body), far_deadline())
            .await
            .disposition,
        Disposition::Done
    );
    board
        .put(&JobStatus::new(&finished, JobState::Running))
        .await
        .unwrap();
    let sweep = message("s", r#"{"kind": "sweep"}"#);
    let report = h
        .worker
        .handle_batch(std::slice::from_ref(&sweep), far_deadline())
        .await
        .remove(0);
    assert_eq!(report.disposition, Disposition::Swept, "{}", report.detail);
    assert_eq!(report.stuck_jobs, 1, "{}", report.detail);
    let status = status_of(&h.store, "lost").await;
    assert_eq!(status.state, JobState::Failed);
    assert!(status.error.unwrap().contains("has not ended"));
    assert_eq!(status_of(&h.store, "young").await.state, JobState::Queued);
    assert_eq!(status_of(&h.store, "busy").await.state, JobState::Running);
    assert_eq!(
        status_of(&h.store, "finished").await.state,
        JobState::Complete
    );
    let failed: Vec<_> = h
        .outbox
        .sent()
        .into_iter()
        .filter(|e| e.subject.contains("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1);
    let stuck: Vec<_> = h.metrics.all().into_iter().filter(|m| m.stuck).collect();
    assert_eq!(stuck.len(), 1);
    assert_eq!(stuck[0].job_id, "lost");
    // The next sweep finds nothing more to do.
    let again = h
        .worker
        .handle_batch(&[sweep], far_deadline())
        .await
        .remove(0);
    assert_eq!(again.stuck_jobs, 0, "{}", again.detail);
    assert_eq!(
        h.outbox
            .sent()
            .iter()
            .filter(|e| e.subject.contains("FAILED"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_duplicate_at_its_last_delivery_is_acknowledged_not_dead_lettered() {
    let h = harness(student_data(200).with_page_delay(Duration::from_millis(20)));
    let original = message("m", r#"{"table":"studentData","job_id":"dup"}"#);
    let mut duplicate = message("other", r#"{"table":"studentData","job_id":"dup"}"#);
    duplicate.receive_count = 5;
    let (first, second) = tokio::join!(h.worker.handle_message(&original, far_deadline()), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.worker.handle_message(&duplicate, far_deadline()).await
    });
    assert_eq!(first.disposition, Disposition::Done, "{}", first.detail);
    assert_eq!(
        second.disposition,
        Disposition::Skipped,
        "{}",
        second.detail
    );
    assert!(!second.keep_on_queue);
    assert_eq!(h.outbox.sent().len(), 1);
}

#[tokio::test]
async fn a_dead_letter_of_a_running_job_is_dropped() {
    let h = harness(student_data(200).with_page_delay(Duration::from_millis(20)));
    let msg = message("m", r#"{"table":"studentData","job_id":"alive"}"#);
    let (done, dead) = tokio::join!(h.worker.handle_message(&msg, far_deadline()), async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.worker
            .handle_batch(&[dead_letter(&message("twin", &msg.body))], far_deadline())
            .await
            .remove(0)
    });
    assert_eq!(dead.disposition, Disposition::Skipped, "{}", dead.detail);
    assert_eq!(done.disposition, Disposition::Done, "{}", done.detail);
    assert!(h.failed_jobs.messages().is_empty());
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].subject.contains("FAILED"), "{}", sent[0].subject);
}

#[tokio::test]
async fn a_single_worker_job_failed_by_its_dead_letter_is_not_completed_by_a_queued_leg() {
    let h = harness(student_data(600).with_page_delay(Duration::from_millis(15)));
    let first = message(
        "m",
        r#"{"table":"studentData","segments":2,"job_id":"legs"}"#,
    );
    let report = h
        .worker
        .handle_message(&first, Instant::now() + Duration::from_millis(150))
        .await;
    assert_eq!(
        report.disposition,
        Disposition::Continued,
        "{}",
        report.detail
    );
    let continuation = h.queue.drain().remove(0);
    // A duplicate of the first message dies at every delivery and is dead-lettered.
    let dead = h
        .worker
        .handle_batch(&[dead_letter(&first)], far_deadline())
        .await
        .remove(0);
    assert_eq!(dead.disposition, Disposition::Recorded, "{}", dead.detail);
    let later = h
        .worker
        .handle_message(&message("c", &continuation.body), far_deadline())
        .await;
    assert_eq!(later.disposition, Disposition::Skipped, "{}", later.detail);
    assert!(manifests(&h.store).is_empty());
    let subjects: Vec<String> = h.outbox.sent().iter().map(|e| e.subject.clone()).collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert!(subjects[0].contains("FAILED"), "{subjects:?}");
}

#[tokio::test]
async fn a_dead_letter_naming_recipients_no_longer_allowed_reports_to_the_deployments() {
    let mut h = harness(student_data(20));
    h.worker.policy = JobPolicy {
        notify_allowed: Some(vec![crate::model::job::Recipients::Address(
            EmailAddress::new("ops@example.com").unwrap(),
        )]),
        ..JobPolicy::default()
    };
    let msg = message(
        "m",
        r#"{"table":"studentData","job_id":"stranger","notify":["someone@elsewhere.example"]}"#,
    );
    let report = h
        .worker
        .handle_batch(&[dead_letter(&msg)], far_deadline())
        .await
        .remove(0);
    assert_eq!(
        report.disposition,
        Disposition::Recorded,
        "{}",
        report.detail
    );
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].to.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        ["ops@example.com"]
    );
}
