//! The worker with in-memory ports: dispositions, idempotency, continuations, the dead-letter
//! queue, retries by cause and the emails each path sends.

use chrono::{TimeZone, Utc};

use super::*;
use crate::model::job::JobId;
use crate::model::job::{BucketName, Prefix};
use crate::source::MemorySource;
use crate::source::ScanError;
use crate::store::MemoryStore;
use crate::test_support::numbered_items;
use crate::triggers::metrics::Outcome;
use crate::triggers::metrics::RecordedMetrics;
use crate::triggers::notify::Email;
use crate::triggers::notify::MemoryNotifier;
use crate::triggers::queue::MemoryQueue;

pub(super) struct Harness {
    pub(super) store: MemoryStore,
    pub(super) queue: MemoryQueue,
    pub(super) dead_letters: MemoryQueue,
    pub(super) failed_jobs: MemoryQueue,
    pub(super) outbox: MemoryNotifier,
    pub(super) metrics: Arc<RecordedMetrics>,
    pub(super) worker: Worker,
}

pub(super) fn harness(source: MemorySource) -> Harness {
    let store = MemoryStore::new();
    let queue = MemoryQueue::new();
    let dead_letters = MemoryQueue::named("dead-letters");
    let failed_jobs = MemoryQueue::named("failed-jobs");
    let outbox = MemoryNotifier::new();
    let metrics = Arc::new(RecordedMetrics::default());
    let defaults = JobDefaults {
        bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
        notify: vec![EmailAddress::new("ops@example.com").unwrap()],
        ..JobDefaults::default()
    };
    let stores_store = store.clone();
    let worker = Worker::new(
        Arc::new(source),
        Arc::new(move |_: &Destination| Arc::new(stores_store.clone()) as Arc<dyn ObjectStore>),
        defaults,
        Tuning::default(),
    )
    .with_queue(Arc::new(queue.clone()))
    .with_dead_letters(Arc::new(dead_letters.clone()))
    .with_failed_jobs(Arc::new(failed_jobs.clone()))
    .with_notifier(
        Arc::new(outbox.clone()),
        EmailAddress::new("backup@example.com").unwrap(),
    )
    .with_status(StatusBoard::new(
        Arc::new(store.clone()),
        Prefix::new("backup-status/").unwrap(),
    ))
    .with_metrics(metrics.clone())
    .with_limits(Duration::from_millis(50), 5);
    Harness {
        store,
        queue,
        dead_letters,
        failed_jobs,
        outbox,
        metrics,
        worker,
    }
}

/// `studentData` with `items` numbered items, 20 to a page.
pub(super) fn student_data(items: usize) -> MemorySource {
    MemorySource::new("studentData", "id", numbered_items(items), 20)
}

/// A harness whose table fails every Scan past the SDK's retries ([`BrokenTable`]).
pub(super) fn broken_table_harness() -> Harness {
    let mut h = harness(MemorySource::new("studentData", "id", vec![], 20));
    h.worker.source = Arc::new(BrokenTable(student_data(5)));
    h
}

pub(super) fn message(id: &str, body: &str) -> QueueMessage {
    QueueMessage {
        id: id.to_string(),
        body: body.to_string(),
        sent_at: Some(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap()),
        receive_count: 1,
        receipt_handle: Some(format!("receipt-{id}")),
        queue: Some("memory-queue".to_string()),
        reason: None,
    }
}

pub(super) async fn status_of(store: &MemoryStore, job_id: &str) -> JobStatus {
    StatusBoard::new(
        Arc::new(store.clone()),
        Prefix::new("backup-status/").unwrap(),
    )
    .get(&JobId::new(job_id).unwrap())
    .await
    .unwrap()
    .expect("a status document")
}

pub(super) fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

pub(super) fn manifests(store: &MemoryStore) -> Vec<String> {
    store
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect()
}

#[tokio::test]
async fn a_batch_records_one_success_with_its_numbers_and_one_failure_and_nothing_else() {
    let h = harness(student_data(30));
    let good = message(
        "5f8e6c2a-0000-4000-8000-0000000000a1",
        r#"{"table":"studentData","job_id":"metrics-good"}"#,
    );
    let missing_table = message(
        "5f8e6c2a-0000-4000-8000-0000000000a2",
        r#"{"table":"noSuchTable","job_id":"metrics-bad"}"#,
    );
    let unparsable = message("5f8e6c2a-0000-4000-8000-0000000000a3", "not json");
    let batch = [good.clone(), missing_table, unparsable, good];
    let reports = h.worker.handle_batch(&batch, far_deadline()).await;
    let dispositions: Vec<_> = reports.iter().map(|r| r.disposition).collect();
    assert_eq!(
        dispositions,
        [
            Disposition::Done,
            Disposition::Rejected,
            Disposition::Rejected,
            Disposition::Skipped
        ]
    );
    let recorded = h.metrics.all();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let success = &recorded[0];
    assert_eq!(
        (
            success.outcome,
            success.table.as_str(),
            success.job_id.as_str()
        ),
        (Outcome::Succeeded, "studentData", "metrics-good")
    );
    assert_eq!(success.items, 30);
    assert_eq!(Some(success.stored_bytes), reports[0].bytes);
    assert!(success.stored_bytes > 0);
    assert!(success.consumed_rcu > 0.0, "{success:?}");
    let failure = &recorded[1];
    assert_eq!(
        (failure.outcome, failure.table.as_str(), failure.items),
        (Outcome::Failed, "noSuchTable", 0)
    );
}

#[tokio::test]
async fn the_same_message_delivered_three_times_gives_one_backup_and_one_email() {
    let h = harness(student_data(50));
    let msg = message(
        "5f8e6c2a-0000-4000-8000-000000000001",
        r#"{"table":"studentData"}"#,
    );
    let mut dispositions = Vec::new();
    for delivery in 1..=3 {
        let mut msg = msg.clone();
        msg.receive_count = delivery;
        dispositions.push(
            h.worker
                .handle_message(&msg, far_deadline())
                .await
                .disposition,
        );
    }
    assert_eq!(
        dispositions,
        [
            Disposition::Done,
            Disposition::Skipped,
            Disposition::Skipped
        ]
    );
    let manifests = manifests(&h.store);
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert!(
        manifests[0]
            .starts_with("backups/studentData/dt=2026-11-28/5f8e6c2a-0000-4000-8000-000000000001/"),
        "job id and date come from the message: {}",
        manifests[0]
    );
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].subject.contains("complete: 50 items"),
        "{}",
        sent[0].subject
    );
    let status = status_of(&h.store, "5f8e6c2a-0000-4000-8000-000000000001").await;
    assert_eq!(status.state, JobState::Complete);
    assert_eq!(status.items, Some(50));
    assert!(status.notified);
}

#[tokio::test]
async fn a_job_longer_than_one_invocation_continues_through_the_queue_until_complete() {
    let source = MemorySource::new("studentData", "id", numbered_items(1200), 25)
        .with_page_delay(Duration::from_millis(15));
    let h = harness(source);
    let mut msg = message(
        "m-1",
        r#"{"table":"studentData","segments":2,"job_id":"long-job"}"#,
    );
    let mut continuations = 0;
    loop {
        // Each invocation gets 50 ms of margin plus 100 ms of work: a few pages per segment.
        let deadline = Instant::now() + Duration::from_millis(150);
        let report = h.worker.handle_message(&msg, deadline).await;
        match report.disposition {
            Disposition::Continued => {
                continuations += 1;
                assert!(!report.keep_on_queue);
                let mut sent = h.queue.drain();
                assert_eq!(sent.len(), 1);
                let body = sent.remove(0).body;
                let parsed: Envelope = serde_json::from_str(&body).unwrap();
                assert_eq!(parsed.continuation, Some(continuations));
                assert_eq!(parsed.worker, None);
                msg = message(&format!("m-{}", continuations + 1), &body);
            }
            Disposition::Done => break,
            other => panic!("unexpected {other:?}: {}", report.detail),
        }
        assert!(continuations < 100, "no progress");
    }
    assert!(continuations >= 2, "only {continuations} continuations");
    let keys = manifests(&h.store);
    assert_eq!(keys.len(), 1);
    let manifest = Manifest::from_json(&h.store.get(&keys[0]).await.unwrap()).unwrap();
    assert_eq!(manifest.item_count, 1200);
    let mut file_keys: Vec<_> = manifest.files.iter().map(|f| &f.key).collect();
    file_keys.dedup();
    assert_eq!(file_keys.len(), manifest.files.len());
    assert_eq!(h.outbox.sent().len(), 1, "one email for the whole job");
    // A stale redelivery of an earlier continuation changes nothing.
    let stale = message(
        "m-old",
        &serde_json::to_string(&Envelope {
            worker: None,
            continuation: Some(1),
            job: WorkOrder::parse(&msg, &JobDefaults::default())
                .unwrap()
                .job
                .to_request(),
        })
        .unwrap(),
    );
    let report = h.worker.handle_message(&stale, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Skipped,
        "{}",
        report.detail
    );
    assert_eq!(h.outbox.sent().len(), 1);
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_queue_and_the_rest_of_the_batch_succeeds() {
    let h = harness(student_data(10));
    let batch = [
        message("bad-json", r#"{"table": "studentData""#),
        message(
            "unknown-field",
            r#"{"table": "studentData", "formt": "json"}"#,
        ),
        message("good", r#"{"table": "studentData"}"#),
        message("no-table", r#"{"table": "missingTable"}"#),
        message(
            "unknown-continuation",
            r#"{"continuation": 4, "job": {"table": "studentData", "job_id": "ghost", "requested_at": "2026-11-28T02:00:00Z"}}"#,
        ),
    ];
    let reports = h.worker.handle_batch(&batch, far_deadline()).await;
    let by_id = |id: &str| reports.iter().find(|r| r.message_id == id).unwrap();
    assert_eq!(by_id("good").disposition, Disposition::Done);
    for id in [
        "bad-json",
        "unknown-field",
        "no-table",
        "unknown-continuation",
    ] {
        let r = by_id(id);
        assert_eq!(r.disposition, Disposition::Rejected, "{id}: {}", r.detail);
        assert!(
            !r.keep_on_queue,
            "{id} was moved to the DLQ, so SQS may delete it"
        );
    }
    assert!(
        by_id("unknown-field").detail.contains("formt"),
        "{}",
        by_id("unknown-field").detail
    );
    assert!(by_id("no-table").detail.contains("missingTable"));
    assert!(by_id("unknown-continuation").detail.contains("unknown job"));
    let dead = h.dead_letters.messages();
    assert_eq!(dead.len(), 4);
    assert!(dead
        .iter()
        .all(|m| m.reason.as_deref().is_some_and(|r| !r.is_empty())));
    // The valid job's success email, and a failure email for the missing table.
    let subjects: Vec<_> = h.outbox.sent().into_iter().map(|e| e.subject).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("missingTable backup FAILED at scan")),
        "{subjects:?}"
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_a_poison_message_stays_for_the_redrive_policy() {
    let mut h = harness(MemorySource::new(
        "studentData",
        "id",
        numbered_items(1),
        20,
    ));
    h.worker.dead_letters = None;
    let report = h
        .worker
        .handle_message(&message("m", "not json"), far_deadline())
        .await;
    assert_eq!(report.disposition, Disposition::Rejected);
    assert!(report.keep_on_queue);
}

#[tokio::test]
async fn the_schedulers_payload_is_accepted_as_is() {
    let h = harness(student_data(5));
    // What EventBridge Scheduler delivers after substituting <aws.scheduler.execution-id>
    // and <aws.scheduler.scheduled-time> in the input of infra/template.yaml.
    let body = r#"{"table":"studentData","trigger":"schedule","job_id":"d6f1c3a0-5b8e-4c1f-9a2b-7e4d3c2b1a09","requested_at":"2026-11-28T02:00:00Z"}"#;
    let report = h
        .worker
        .handle_message(&message("m", body), far_deadline())
        .await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert_eq!(
        report.job_id.as_deref(),
        Some("d6f1c3a0-5b8e-4c1f-9a2b-7e4d3c2b1a09")
    );
    let keys = manifests(&h.store);
    let manifest = Manifest::from_json(&h.store.get(&keys[0]).await.unwrap()).unwrap();
    assert_eq!(manifest.trigger, "schedule");
}

#[tokio::test]
async fn an_invocation_too_close_to_its_deadline_leaves_the_message_for_later() {
    let h = harness(student_data(5));
    let report = h
        .worker
        .handle_message(&message("m", r#"{"table":"studentData"}"#), Instant::now())
        .await;
    assert_eq!(report.disposition, Disposition::Retry);
    assert!(report.keep_on_queue);
    assert!(h.store.keys().is_empty());
}

#[test]
fn deadlines_are_wall_clock_epoch_milliseconds_or_a_local_emulators_timeout() {
    let now_ms = Utc::now().timestamp_millis() as u64;
    let left = deadline_from_epoch_ms(now_ms + 90_000) - Instant::now();
    assert!(
        left > Duration::from_secs(85) && left <= Duration::from_secs(90),
        "{left:?}"
    );
    assert!(deadline_from_epoch_ms(now_ms - 1000) <= Instant::now());
    let left = deadline_from_epoch_ms(600_000) - Instant::now();
    assert!(
        left > Duration::from_secs(595) && left <= Duration::from_secs(600),
        "{left:?}"
    );
    assert!(deadline_from_epoch_ms(999_999_999) - Instant::now() <= MAX_INVOCATION);
}

#[test]
fn sqs_records_give_id_body_sent_time_and_receive_count() {
    let event: SqsEvent =
        serde_json::from_str(include_str!("../../../tests/fixtures/sqs-event.json")).unwrap();
    let msg = QueueMessage::from_sqs(&event.records[0]);
    assert_eq!(msg.id, "059f36b4-87a3-44ab-83d2-661975830a7d");
    assert_eq!(msg.receive_count, 2);
    assert_eq!(msg.sent_at.unwrap().timestamp_millis(), 1_764_295_200_000);
    assert!(msg.body.contains("studentData"));
}

/// A table whose every Scan fails as if DynamoDB kept returning 500 past the SDK's retries.
pub(super) struct BrokenTable(pub(super) MemorySource);

#[async_trait::async_trait]
impl TableSource for BrokenTable {
    async fn describe(&self, table: &str) -> Result<crate::source::TableInfo, ScanError> {
        self.0.describe(table).await
    }
    async fn scan_page(
        &self,
        request: &crate::source::PageRequest,
    ) -> Result<crate::source::Page, ScanError> {
        Err(ScanError::request(
            "Scan",
            &request.table,
            crate::aws::FailureKind::ServerError,
            "InternalServerError: service unavailable",
        ))
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_in_seconds_and_only_the_last_delivery_emails() {
    let h = broken_table_harness();
    let mut msg = message("m", r#"{"table":"studentData","job_id":"flaky"}"#);
    for delivery in 1..=5 {
        msg.receive_count = delivery;
        let report = h
            .worker
            .handle_batch(std::slice::from_ref(&msg), far_deadline())
            .await
            .remove(0);
        assert_eq!(report.disposition, Disposition::Retry, "{}", report.detail);
        assert!(report.keep_on_queue);
        assert_eq!(
            h.outbox.sent().len(),
            usize::from(delivery == 5),
            "delivery {delivery}"
        );
    }
    let email = &h.outbox.sent()[0];
    assert!(
        email.subject.contains("FAILED at scan"),
        "{}",
        email.subject
    );
    assert!(email.text.contains("service unavailable"), "{}", email.text);
    assert!(manifests(&h.store).is_empty());
    assert_eq!(h.store.open_uploads(), 0);
    let status = status_of(&h.store, "flaky").await;
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.stage.as_deref(), Some("scan"));
    assert_eq!(status.will_retry, Some(false));
    // Each retry comes back in seconds, growing per delivery, not after the visibility timeout.
    let delays: Vec<u64> = h.queue.delays().iter().map(|(_, d)| d.as_secs()).collect();
    assert_eq!(delays.len(), 5, "every retry sets when it comes back");
    assert!((24..=36).contains(&delays[0]), "{delays:?}");
    assert!((96..=144).contains(&delays[1]), "{delays:?}");
    assert!((384..=576).contains(&delays[2]), "{delays:?}");
    assert!(h.queue.delays().iter().all(|(r, _)| r == "receipt-m"));
}

struct BrokenMail;

#[async_trait::async_trait]
impl Notifier for BrokenMail {
    async fn send(&self, _email: &Email) -> Result<String, crate::triggers::notify::NotifyError> {
        Err(crate::triggers::notify::NotifyError {
            message: "MessageRejected: Email address is not verified.".to_string(),
            hint: "",
        })
    }
}

#[tokio::test]
async fn a_failed_email_never_turns_a_good_backup_into_a_failed_one() {
    let mut h = harness(MemorySource::new(
        "studentData",
        "id",
        numbered_items(5),
        20,
    ));
    h.worker.notifier = Some((
        Arc::new(BrokenMail),
        EmailAddress::new("backup@example.com").unwrap(),
    ));
    let report = h
        .worker
        .handle_message(
            &message("m", r#"{"table":"studentData","job_id":"mail"}"#),
            far_deadline(),
        )
        .await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert!(!report.keep_on_queue);
    assert_eq!(manifests(&h.store).len(), 1);
    let status = status_of(&h.store, "mail").await;
    assert_eq!(status.state, JobState::Complete);
    assert!(!status.notified, "the status says the email did not go out");
}

#[tokio::test]
async fn a_message_for_a_table_the_deployment_does_not_back_up_goes_to_the_dlq_with_the_reason() {
    let mut h = harness(MemorySource::new("payroll", "id", numbered_items(5), 20));
    h.worker.policy = crate::model::job::JobPolicy {
        allowed_tables: Some(vec![
            crate::model::job::TableName::new("studentData").unwrap()
        ]),
        ..Default::default()
    };
    let msg = message("m", r#"{"table":"payroll","job_id":"sneaky"}"#);
    let report = h.worker.handle_message(&msg, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    let dead = h.dead_letters.drain();
    assert_eq!(dead.len(), 1);
    let reason = dead[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("DDB_BACKUP_ALLOWED_TABLES"), "{reason}");
    assert!(
        h.store.keys().iter().all(|k| !k.contains("payroll")),
        "{:?}",
        h.store.keys()
    );
}

#[tokio::test]
async fn two_deliveries_of_one_job_at_once_read_the_table_once_and_email_once() {
    let h = harness(
        MemorySource::new("studentData", "id", numbered_items(200), 20)
            .with_page_delay(Duration::from_millis(20)),
    );
    let msg = message("m", r#"{"table":"studentData","job_id":"twice"}"#);
    let (first, second) = tokio::join!(h.worker.handle_message(&msg, far_deadline()), async {
        // The duplicate arrives while the first delivery is reading.
        tokio::time::sleep(Duration::from_millis(30)).await;
        h.worker.handle_message(&msg, far_deadline()).await
    });
    assert_eq!(first.disposition, Disposition::Done, "{}", first.detail);
    assert_eq!(
        second.disposition,
        Disposition::Deferred,
        "{}",
        second.detail
    );
    assert!(second.keep_on_queue, "the duplicate stays for later");
    assert_eq!(second.items, None, "the duplicate read nothing");
    assert!(second.metrics().is_none(), "a deferral is not a failure");
    // Its next delivery finds the job complete.
    let later = h.worker.handle_message(&msg, far_deadline()).await;
    assert_eq!(later.disposition, Disposition::Skipped, "{}", later.detail);
    assert_eq!(manifests(&h.store).len(), 1);
    assert_eq!(h.outbox.sent().len(), 1, "{:?}", h.outbox.sent());
    let status = status_of(&h.store, "twice").await;
    assert_eq!((status.state, status.legs), (JobState::Complete, 1));
}

#[tokio::test]
async fn a_lease_held_until_a_later_deadline_defers_the_job_and_an_expired_one_is_taken_over() {
    let h = harness(student_data(30));
    let msg = message("m", r#"{"table":"studentData","job_id":"leased"}"#);
    let job = WorkOrder::parse(&msg, &h.worker.defaults).unwrap().job;
    let layout = Layout::new(&job);
    let lease = |expires_at: chrono::DateTime<Utc>| {
        bytes::Bytes::from(
            serde_json::json!({"holder": "another", "message_id": "other-message",
                               "taken_at": "2026-11-28T02:00:00Z", "expires_at": expires_at})
            .to_string(),
        )
    };
    let meta = crate::backup::pipeline::JSON_META;
    h.store
        .put_object(
            &layout.lease_key(None),
            lease(Utc::now() + chrono::Duration::minutes(10)),
            &meta,
        )
        .await
        .unwrap();
    let report = h.worker.handle_message(&msg, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Deferred,
        "{}",
        report.detail
    );
    assert!(report.detail.contains("other-message"), "{}", report.detail);
    assert!(
        h.store.keys().iter().all(|k| !k.contains("/data/")),
        "nothing was read: {:?}",
        h.store.keys()
    );
    // The holder died and its deadline passed: the next delivery takes over.
    h.store
        .put_object(
            &layout.lease_key(None),
            lease(Utc::now() - chrono::Duration::minutes(1)),
            &meta,
        )
        .await
        .unwrap();
    let report = h.worker.handle_message(&msg, far_deadline()).await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    // And gives the lease back when done.
    let released: serde_json::Value =
        serde_json::from_slice(&h.store.get(&layout.lease_key(None)).await.unwrap()).unwrap();
    let until: chrono::DateTime<Utc> =
        serde_json::from_value(released["expires_at"].clone()).unwrap();
    assert!(until < Utc::now(), "{released}");
}

#[tokio::test]
async fn a_worker_that_died_after_the_manifest_is_followed_by_exactly_one_email() {
    let mut h = harness(MemorySource::new(
        "studentData",
        "id",
        numbered_items(30),
        20,
    ));
    let msg = message(
        "m",
        r#"{"table":"studentData","job_id":"died-before-mail"}"#,
    );
    // The first invocation writes the manifest and dies before its email: as if it had no
    // notifier at all.
    let notifier = h.worker.notifier.take();
    let first = h.worker.handle_message(&msg, far_deadline()).await;
    assert_eq!(first.disposition, Disposition::Done, "{}", first.detail);
    assert!(h.outbox.sent().is_empty());
    h.worker.notifier = notifier;
    for _ in 0..2 {
        let again = h.worker.handle_message(&msg, far_deadline()).await;
        assert_eq!(again.disposition, Disposition::Skipped, "{}", again.detail);
    }
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].subject.contains("complete: 30 items"),
        "{}",
        sent[0].subject
    );
    assert!(status_of(&h.store, "died-before-mail").await.notified);
}

#[tokio::test]
async fn the_failure_email_goes_out_once_however_many_deliveries_fail_for_good() {
    let mut h = harness(MemorySource::new("studentData", "id", vec![], 20));
    h.worker.source = Arc::new(BrokenTable(MemorySource::new(
        "studentData",
        "id",
        numbered_items(5),
        20,
    )));
    // Two copies of the job (an operator re-sent it) both reach their last delivery.
    let mut first = message(
        "m1",
        r#"{"table":"studentData","job_id":"doomed","requested_at":"2026-11-28T02:00:00Z"}"#,
    );
    let mut second = message("m2", &first.body.clone());
    (first.receive_count, second.receive_count) = (5, 5);
    for msg in [&first, &second] {
        let report = h.worker.handle_message(msg, far_deadline()).await;
        assert_eq!(report.disposition, Disposition::Retry, "{}", report.detail);
    }
    let sent = h.outbox.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].subject.contains("FAILED"), "{}", sent[0].subject);
}

#[tokio::test]
async fn a_running_jobs_status_shows_its_progress_as_an_estimate_and_drops_it_when_complete() {
    let mut h = harness(
        MemorySource::new("studentData", "id", numbered_items(300), 20)
            .with_page_delay(Duration::from_millis(20)),
    );
    h.worker = h.worker.with_progress_every(Duration::from_millis(40));
    let msg = message(
        "m",
        r#"{"table":"studentData","job_id":"watched","segments":1}"#,
    );
    let worker = &h.worker;
    let watcher = async {
        let mut seen = Vec::new();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let board = StatusBoard::new(
                Arc::new(h.store.clone()),
                Prefix::new("backup-status/").unwrap(),
            );
            if let Ok(Some(status)) = board.get(&JobId::new("watched").unwrap()).await {
                if status.state == JobState::Complete {
                    break;
                }
                if let Some(progress) = status.progress {
                    seen.push(progress);
                }
            }
        }
        seen
    };
    let (report, seen) = tokio::join!(worker.handle_message(&msg, far_deadline()), watcher);
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert!(!seen.is_empty(), "no progress was ever written");
    for progress in &seen {
        assert_eq!(progress.estimated_items, 300);
        assert!(progress.items > 0 && progress.items <= 300, "{progress:?}");
        assert!(
            progress.fraction > 0.0 && progress.fraction < 1.0,
            "{progress:?}"
        );
    }
    assert!(
        seen.windows(2).all(|w| w[0].items <= w[1].items),
        "{seen:?}"
    );
    let done = status_of(&h.store, "watched").await;
    assert_eq!(done.state, JobState::Complete);
    assert_eq!(
        done.progress, None,
        "a complete job shows its numbers, not an estimate"
    );
}

/// A conditional write the store applied but whose reply was lost: the SDK's retry is refused
/// because of the object the write itself made. The worker must know the write for its own.
#[tokio::test]
async fn a_lost_reply_to_the_email_marker_still_sends_the_one_email() {
    let h = harness(student_data(50));
    h.store
        .lose_conditional_replies(|key| key.contains("/notified/"));
    let job = message("m", r#"{"table":"studentData","job_id":"lost-marker"}"#);
    let report = h.worker.handle_message(&job, far_deadline()).await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert_eq!(h.outbox.sent().len(), 1, "the summary email went out");
    let again = h.worker.handle_message(&job, far_deadline()).await;
    assert_eq!(again.disposition, Disposition::Skipped, "{}", again.detail);
    assert_eq!(h.outbox.sent().len(), 1, "and only once");
}

#[tokio::test]
async fn a_lost_reply_to_the_lease_is_still_this_invocations_lease() {
    let h = harness(student_data(50));
    h.store
        .lose_conditional_replies(|key| key.contains("/leases/"));
    let job = message("m", r#"{"table":"studentData","job_id":"lost-lease"}"#);
    let report = h.worker.handle_message(&job, far_deadline()).await;
    assert_eq!(
        report.disposition,
        Disposition::Done,
        "not deferred to itself: {}",
        report.detail
    );
    assert_eq!(manifests(&h.store).len(), 1);
    assert_eq!(h.outbox.sent().len(), 1);
}
