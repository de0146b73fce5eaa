//! The stuck-job sweep: a job that has not ended long after it should have is failed and
//! reported, so no job stays `running` forever, whatever was lost on the way (a message past
//! the queue's retention, a dead letter whose consumer could not record it, a status write
//! that never landed). The stack's schedule sends `{"kind": "sweep"}` to the job queue every
//! hour; the worker reads every unfinished status document and fails the jobs past their limit:
//! twice the time they were expected to take, at most `DDB_BACKUP_STUCK_AFTER_HOURS` (a day).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::report::{Disposition, MessageReport};
use super::{lease, QueueMessage, Worker};
use crate::model::job::JobRequest;
use crate::model::manifest::Layout;
use crate::triggers::status::JobStatus;

/// Default longest time a job may go without ending before the sweep fails it.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Shortest limit the sweep gives a job, whatever its estimate: a small job's estimate is
/// seconds, and a retry's backoff alone can take minutes.
const SHORTEST_LIMIT: Duration = Duration::from_secs(3600);

/// What the FAILED email of a stuck job advises.
const STUCK_ADVICE: &str = "Search the worker's log group for the job's id to see its last attempt, and the failed-jobs queue for its message; send the job again when the cause is fixed";

/// Whether a message body asks for the sweep.
pub(super) fn is_sweep(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(|k| k == "sweep"))
        .unwrap_or(false)
}

/// How long `status`'s job may take before the sweep calls it stuck: twice its expected time
/// (from its progress estimate), at least an hour, at most `most`.
pub fn stuck_limit(status: &JobStatus, most: Duration) -> Duration {
    let expected = status.progress.as_ref().and_then(|p| {
        let left = p.seconds_left?;
        let elapsed = age(status, parse(&status.updated_at)?)?;
        Some(elapsed + Duration::from_secs(left))
    });
    match expected {
        Some(expected) => (expected * 2).clamp(SHORTEST_LIMIT, most.max(SHORTEST_LIMIT)),
        None => most,
    }
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// How long before `now` the job was requested, or last resumed by a redrive.
fn age(status: &JobStatus, now: DateTime<Utc>) -> Option<Duration> {
    let since = status.resumed_at.as_deref().unwrap_or(&status.requested_at);
    (now - parse(since)?).to_std().ok()
}

impl Worker {
    /// Fails and reports every job past its limit; returns how many there were.
    pub(super) async fn sweep(&self, message: &QueueMessage) -> MessageReport {
        let Some(board) = &self.status else {
            return MessageReport::new(
                message,
                None,
                Disposition::Skipped,
                "no status documents to sweep (DDB_BACKUP_STATUS_PREFIX)".to_string(),
            );
        };
        let unfinished = match board.unfinished().await {
            Ok(unfinished) => unfinished,
            Err(err) => {
                warn!(error = %err, "reading the job statuses for the sweep failed; will retry");
                return MessageReport::new(message, None, Disposition::Retry, err.to_string());
            }
        };
        let now = Utc::now();
        let mut stuck = Vec::new();
        for status in unfinished {
            // A restore job's workers end it themselves, and the dead-letter queue fails it.
            if status.restore_into.is_some() {
                continue;
            }
            let limit = stuck_limit(&status, self.stuck_after);
            let Some(age) = age(&status, now) else {
                continue;
            };
            if age < limit {
                continue;
            }
            match self.fail_stuck(&status, age).await {
                Ok(true) => stuck.push(status.job_id.clone()),
                Ok(false) => {}
                Err(err) => {
                    warn!(job_id = %status.job_id, error = %err, "failing a stuck job failed; the next sweep tries again")
                }
            }
        }
        info!(stuck = stuck.len(), jobs = ?stuck, "stuck-job sweep done");
        let mut report = MessageReport::new(
            message,
            None,
            Disposition::Swept,
            format!("{} stuck jobs failed: {}", stuck.len(), stuck.join(", ")),
        );
        report.stuck_jobs = stuck.len() as u64;
        report
    }

    /// Fails one stuck job, unless it turns out to be complete or alive. Returns whether it was
    /// failed.
    async fn fail_stuck(&self, status: &JobStatus, age: Duration) -> Result<bool, String> {
        // The job where its status places it: its table, id, time, bucket and prefix. Its
        // recipients are not in the status (the API shows it to callers): the failure goes to
        // the deployment's.
        let request = JobRequest {
            table: Some(status.table.clone()),
            job_id: Some(status.job_id.clone()),
            requested_at: Some(status.requested_at.clone()),
            bucket: status.bucket.clone(),
            prefix: status.prefix.clone(),
            ..JobRequest::default()
        };
        let job = request
            .into_job(&self.defaults, None)
            .map_err(|e| e.to_string())?;
        let store = (self.stores)(&job.destination);
        let layout = Layout::new(&job);
        if self.manifest_written(store.as_ref(), &job).await {
            // Complete, but its status never said so: say it now, with its one email.
            let uri = store.uri(&layout.manifest_key());
            self.notify_once_after_crash(&job, store.as_ref(), &layout, &uri)
                .await;
            return Ok(false);
        }
        if lease::any_live(store.as_ref(), &layout)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(false);
        }
        let reason = format!(
            "the job has not ended {} minutes after it was requested or resumed ({}), past its limit of {} minutes: its last message was lost or dead-lettered without a record",
            age.as_secs() / 60,
            status.resumed_at.as_deref().unwrap_or(&status.requested_at),
            stuck_limit(status, self.stuck_after).as_secs() / 60,
        );
        warn!(job_id = %job.job_id, table = %job.table, state = ?status.state, reason = %reason, "failing a stuck job");
        let first = self
            .fail_for_good(&job, None, &reason, STUCK_ADVICE)
            .await?;
        if let (Some(sink), true) = (&self.metrics, first) {
            sink.record(&crate::triggers::metrics::JobMetrics {
                table: job.table.to_string(),
                job_id: job.job_id.to_string(),
                outcome: crate::triggers::metrics::Outcome::Failed,
                items: 0,
                stored_bytes: 0,
                duration_ms: age.as_millis() as u64,
                consumed_rcu: 0.0,
                items_change_percent: None,
                shrank: false,
                stuck: true,
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::pipeline::Estimate;
    use crate::triggers::status::JobState;

    fn status(requested_at: &str, updated_at: &str, seconds_left: Option<u64>) -> JobStatus {
        let defaults = crate::model::job::JobDefaults {
            bucket: Some(crate::model::job::BucketName::new("student-backup-20250706").unwrap()),
            ..Default::default()
        };
        let job = JobRequest {
            table: Some("studentData".to_string()),
            requested_at: Some(requested_at.to_string()),
            ..JobRequest::default()
        }
        .into_job(&defaults, None)
        .unwrap();
        JobStatus {
            updated_at: updated_at.to_string(),
            progress: seconds_left.map(|left| Estimate {
                items: 10,
                estimated_items: 100,
                fraction: 0.1,
                seconds_left: Some(left),
            }),
            ..JobStatus::new(&job, JobState::Running)
        }
    }

    #[test]
    fn a_job_may_take_twice_its_estimate_at_least_an_hour_and_at_most_the_limit() {
        let day = DEFAULT_STUCK_AFTER;
        // 1 h in, 3 h left: expected 4 h, limit 8 h.
        let s = status(
            "2026-12-07T00:00:00Z",
            "2026-12-07T01:00:00Z",
            Some(3 * 3600),
        );
        assert_eq!(stuck_limit(&s, day), Duration::from_secs(8 * 3600));
        // A minute's job still gets an hour.
        let s = status("2026-12-07T00:00:00Z", "2026-12-07T00:00:30Z", Some(30));
        assert_eq!(stuck_limit(&s, day), SHORTEST_LIMIT);
        // A 20 h estimate is held to the day.
        let s = status(
            "2026-12-07T00:00:00Z",
            "2026-12-07T01:00:00Z",
            Some(19 * 3600),
        );
        assert_eq!(stuck_limit(&s, day), day);
        // No estimate: the day.
        let s = status("2026-12-07T00:00:00Z", "2026-12-07T01:00:00Z", None);
        assert_eq!(stuck_limit(&s, day), day);
    }

    #[test]
    fn only_the_sweep_message_is_a_sweep() {
        assert!(is_sweep(r#"{"kind": "sweep"}"#));
        assert!(!is_sweep(r#"{"table": "sweep"}"#));
        assert!(!is_sweep("sweep"));
    }
}
