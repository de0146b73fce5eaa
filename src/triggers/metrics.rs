//! Per-job metrics in CloudWatch Embedded Metric Format (EMF): one JSON line in the worker's log
//! that CloudWatch Logs turns into metrics, with no API call and no IAM permission. Namespace
//! [`NAMESPACE`], dimension `Table`. The stack alarms on [`BACKUP_SUCCEEDED`] going quiet: a
//! nightly backup that silently stopped is the failure a backup system exists to prevent.

use std::io::Write;
use std::sync::Mutex;

use serde_json::json;

/// The CloudWatch namespace of every metric the worker emits.
pub const NAMESPACE: &str = "ddb-backup";
/// 1 for every complete backup (the "no successful backup lately" alarm's metric).
pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
/// 1 for every failed attempt, whether it will be retried or was rejected.
pub const BACKUP_FAILED: &str = "BackupFailed";
/// 1 when a complete backup holds fewer items than the previous one by the alert threshold or
/// more (`DDB_BACKUP_SHRINK_ALERT_PERCENT`), 0 otherwise: the stack alarms on it.
pub const TABLE_SHRANK: &str = "TableShrank";
/// Items against the previous backup, in percent (negative: fewer).
pub const ITEMS_CHANGE_PERCENT: &str = "ItemsChangePercent";
/// 1 for every job the stuck-job sweep failed (one that did not end long after it should
/// have): the stack alarms on it beside the missed-backup alarm.
pub const JOB_STUCK: &str = "JobStuck";

/// How a job's attempt ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backup completed (manifest written).
    Succeeded,
    /// The attempt failed; SQS retries it or it went to the dead-letter queue.
    Failed,
}

/// What one finished attempt reports.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMetrics {
    /// The table backed up: the metrics' one dimension.
    pub table: String,
    /// The job, as a property (searchable in Logs Insights, not a dimension).
    pub job_id: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Items in the backup (success only).
    pub items: u64,
    /// Bytes stored in S3 (success only).
    pub stored_bytes: u64,
    /// Working time of the whole job, every leg (success), or of the failed attempt.
    pub duration_ms: u64,
    /// Read capacity the scan consumed (success only).
    pub consumed_rcu: f64,
    /// Items against the table's previous backup, in percent (success with a previous backup).
    pub items_change_percent: Option<f64>,
    /// Whether the table shrank past the alert threshold (success only).
    pub shrank: bool,
    /// Whether the stuck-job sweep failed the job (failure only).
    pub stuck: bool,
}

impl JobMetrics {
    /// The EMF document: the metric values at the top level, their declaration under `_aws`.
    pub fn to_emf(&self, timestamp_ms: u64) -> serde_json::Value {
        let succeeded = self.outcome == Outcome::Succeeded;
        let mut metrics = vec![
            json!({"Name": BACKUP_SUCCEEDED, "Unit": "Count"}),
            json!({"Name": BACKUP_FAILED, "Unit": "Count"}),
            json!({"Name": "BackupDuration", "Unit": "Milliseconds"}),
        ];
        let mut doc = json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [],
            },
            "Table": self.table,
            "job_id": self.job_id,
            BACKUP_SUCCEEDED: u8::from(succeeded),
            BACKUP_FAILED: u8::from(!succeeded),
            "BackupDuration": self.duration_ms,
        });
        if succeeded {
            metrics.push(json!({"Name": "ItemsBackedUp", "Unit": "Count"}));
            metrics.push(json!({"Name": "BytesStored", "Unit": "Bytes"}));
            metrics.push(json!({"Name": "ConsumedReadCapacity", "Unit": "Count"}));
            doc["ItemsBackedUp"] = self.items.into();
            doc["BytesStored"] = self.stored_bytes.into();
            doc["ConsumedReadCapacity"] = json!(self.consumed_rcu);
            metrics.push(json!({"Name": TABLE_SHRANK, "Unit": "Count"}));
            doc[TABLE_SHRANK] = u8::from(self.shrank).into();
            if let Some(change) = self.items_change_percent {
                metrics.push(json!({"Name": ITEMS_CHANGE_PERCENT, "Unit": "Percent"}));
                doc[ITEMS_CHANGE_PERCENT] = json!((change * 10.0).round() / 10.0);
            }
        }
        if self.stuck {
            metrics.push(json!({"Name": JOB_STUCK, "Unit": "Count"}));
            doc[JOB_STUCK] = 1.into();
        }
        doc["_aws"]["CloudWatchMetrics"] = json!([{
            "Namespace": NAMESPACE,
            "Dimensions": [["Table"]],
            "Metrics": metrics,
        }]);
        doc
    }
}

/// Where the worker records job metrics: a port, so the Lambda writes EMF lines and tests read
/// what was recorded.
pub trait MetricsSink: Send + Sync {
    /// Records one finished attempt.
    fn record(&self, metrics: &JobMetrics);
}

/// EMF lines on standard output, where Lambda sends them to CloudWatch Logs.
#[derive(Debug, Default)]
pub struct EmfStdout;

impl MetricsSink for EmfStdout {
    fn record(&self, metrics: &JobMetrics) {
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut line = metrics.to_emf(now_ms).to_string();
        line.push('\n');
        // One write of the whole line, so it never interleaves with a log line.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// The in-memory twin: keeps what was recorded.
#[derive(Debug, Default)]
pub struct RecordedMetrics(Mutex<Vec<JobMetrics>>);

impl RecordedMetrics {
    /// Everything recorded so far.
    pub fn all(&self) -> Vec<JobMetrics> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl MetricsSink for RecordedMetrics {
    fn record(&self, metrics: &JobMetrics) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(metrics.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeeded() -> JobMetrics {
        JobMetrics {
            table: "studentData".into(),
            job_id: "job-1".into(),
            outcome: Outcome::Succeeded,
            items: 500,
            stored_bytes: 12_345,
            duration_ms: 4_000,
            consumed_rcu: 12.5,
            items_change_percent: Some(-31.04),
            shrank: true,
            stuck: false,
        }
    }

    fn declared(doc: &serde_json::Value) -> Vec<String> {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_complete_backup_declares_every_value_it_carries_under_its_namespace() {
        let doc = succeeded().to_emf(1_700_000_000_000);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Table"]]));
        assert_eq!(doc["Table"], "studentData");
        // EMF drops a metric whose value is not a top-level member; every one declared is there.
        for name in declared(&doc) {
            assert!(
                doc[&name].is_number(),
                "{name} declared but not a number: {doc}"
            );
        }
        assert_eq!(doc[BACKUP_SUCCEEDED], 1);
        assert_eq!(doc[BACKUP_FAILED], 0);
        assert_eq!(doc["ItemsBackedUp"], 500);
        assert_eq!(doc["BytesStored"], 12_345);
        assert_eq!(doc["ConsumedReadCapacity"], 12.5);
        assert_eq!(doc["BackupDuration"], 4_000);
        assert_eq!(doc[TABLE_SHRANK], 1);
        assert_eq!(doc[ITEMS_CHANGE_PERCENT], -31.0);
        let first = JobMetrics {
            items_change_percent: None,
            shrank: false,
            ..succeeded()
        }
        .to_emf(0);
        assert_eq!(first[TABLE_SHRANK], 0, "no previous backup: nothing shrank");
        assert!(first.get(ITEMS_CHANGE_PERCENT).is_none());
    }

    #[test]
    fn a_failure_counts_once_and_carries_no_sizes() {
        let failed = JobMetrics {
            outcome: Outcome::Failed,
            ..succeeded()
        };
        let doc = failed.to_emf(0);
        assert_eq!(doc[BACKUP_SUCCEEDED], 0);
        assert_eq!(doc[BACKUP_FAILED], 1);
        assert!(doc.get("ItemsBackedUp").is_none());
        assert!(doc.get(TABLE_SHRANK).is_none());
        assert!(!declared(&doc).contains(&"ItemsBackedUp".to_string()));
        assert!(doc.get(JOB_STUCK).is_none());
        let stuck = JobMetrics {
            stuck: true,
            ..failed
        }
        .to_emf(0);
        assert_eq!(stuck[JOB_STUCK], 1);
        assert!(declared(&stuck).contains(&JOB_STUCK.to_string()));
    }

    #[test]
    fn the_memory_twin_keeps_what_was_recorded() {
        let sink = RecordedMetrics::default();
        sink.record(&succeeded());
        assert_eq!(sink.all(), vec![succeeded()]);
    }
}
