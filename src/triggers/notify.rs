//! The last stage: a summary email after every job, success or failure. Rendering is pure (text
//! and HTML from a [`JobSummary`]); sending goes through the [`Notifier`] port, with SES v2 in
//! production and an in-memory notifier for tests. A failed email is reported, never turned into
//! a failed backup.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::aws::error_facts;
use crate::human::{group_digits, human_bytes, human_duration};
use crate::model::job::{BackupJob, EmailAddress};
use crate::model::manifest::Manifest;

/// How a job ended, as much as the email tells.
#[derive(Debug, Clone)]
pub enum JobSummary {
    /// The backup is complete.
    Complete {
        /// Its manifest.
        manifest: Box<Manifest>,
        /// Where the manifest is.
        manifest_uri: String,
        /// The drop in items, in percent, that marks the email as a shrunken table.
        shrink_alert_percent: f64,
        /// The web console, linked from the email when there is one.
        console_url: Option<String>,
    },
    /// The backup failed.
    Failed {
        /// The job.
        job: Box<BackupJob>,
        /// The pipeline stage that failed.
        stage: String,
        /// The error.
        error: String,
        /// What to check first.
        advice: String,
        /// Whether SQS will deliver the job again.
        will_retry: bool,
    },
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Sender (a verified SES identity).
    pub from: EmailAddress,
    /// Recipients.
    pub to: Vec<EmailAddress>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

impl Email {
    /// The summary email for `summary`, from `from` to `to`: a text part, and an HTML part a
    /// person reads at a glance (a status colour, the numbers, links to the manifest).
    pub fn summary(summary: &JobSummary, from: EmailAddress, to: Vec<EmailAddress>) -> Email {
        let (subject, heading, colour, rows, links) = match summary {
            JobSummary::Complete {
                manifest,
                manifest_uri,
                shrink_alert_percent,
                console_url,
            } => {
                let shrank = manifest.shrank(*shrink_alert_percent);
                let since = manifest
                    .previous
                    .as_ref()
                    .map(|p| p.finished_at.get(..10).unwrap_or(&p.finished_at).to_string());
                let changed = |change: Option<f64>| match (change, &since) {
                    (Some(change), Some(since)) => format!(", {} since {since}", signed(change)),
                    _ => String::new(),
                };
                let subject = match (shrank, manifest.items_change_percent(), &since) {
                    (true, Some(change), Some(since)) => format!(
                        "[ddb-backup] {} SHRANK {} since {since}: {} items",
                        manifest.table,
                        signed(change),
                        group_digits(manifest.item_count)
                    ),
                    _ => format!(
                        "[ddb-backup] {} backup complete: {} items",
                        manifest.table,
                        group_digits(manifest.item_count)
                    ),
                };
                let mut links = Vec::new();
                if let Some(console) = s3_console_link(manifest_uri) {
                    links.push(("Manifest in the S3 console", console));
                }
                if let Some(console) = console_url {
                    links.push((
                        "Backups in the web console",
                        format!("{console}?table={}", manifest.table),
                    ));
                }
                (
                    subject,
                    if shrank {
                        format!(
                            "Backup of {} complete: the table shrank by {:.0} % or more",
                            manifest.table, shrink_alert_percent
                        )
                    } else {
                        format!("Backup of {} complete", manifest.table)
                    },
                    if shrank { AMBER } else { GREEN },
                    vec![
                        ("Table", manifest.table.clone()),
                        ("Job", manifest.job_id.clone()),
                        ("Trigger", manifest.trigger.clone()),
                        (
                            "Items",
                            format!(
                                "{}{}",
                                group_digits(manifest.item_count),
                                changed(manifest.items_change_percent())
                            ),
                        ),
                        (
                            "Stored",
                            format!(
                                "{} ({} before compression){}",
                                human_bytes(manifest.bytes),
                                human_bytes(manifest.uncompressed_bytes),
                                changed(manifest.bytes_change_percent())
                            ),
                        ),
                        ("Files", manifest.files.len().to_string()),
                        (
                            "Consistency",
                            manifest.consistency.as_ref().map_or_else(
                                || "fuzzy (read over the scan's duration)".to_string(),
                                |c| c.describe(),
                            ),
                        ),
                        (
                            "Format",
                            format!("{} / {}", manifest.format, manifest.compression),
                        ),
                        (
                            "Duration",
                            match manifest.workers {
                                1 => human_duration(manifest.duration_ms),
                                n => format!(
                                    "{} with {n} workers",
                                    human_duration(manifest.duration_ms)
                                ),
                            },
                        ),
                        (
                            "Read capacity",
                            format!("{:.1} RCU", manifest.consumed_read_capacity),
                        ),
                        ("Manifest", manifest_uri.clone()),
                    ],
                    links,
                )
            }
            JobSummary::Failed {
                job,
                stage,
                error,
                advice,
                will_retry,
            } => (
                format!("[ddb-backup] {} backup FAILED at {stage}", job.table),
                format!("Backup of {} failed", job.table),
                RED,
                vec![
                    ("Table", job.table.to_string()),
                    ("Job", job.job_id.to_string()),
                    ("Trigger", job.trigger.name().to_string()),
                    ("Stage", stage.clone()),
                    ("Error", error.clone()),
                    ("What to check", advice.clone()),
                    (
                        "Retry",
                        if *will_retry {
                            "yes: the queue delivers the job again".to_string()
                        } else {
                            "no: fix the cause, then send the job again".to_string()
                        },
                    ),
                    (
                        "Note",
                        "no manifest was written, so this backup is not complete and no restore will use it"
                            .to_string(),
                    ),
                ],
                Vec::new(),
            ),
        };
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut text = format!("{heading}\n\n");
        for (key, value) in &rows {
            text.push_str(&format!("{key:<width$}  {value}\n"));
        }
        for (label, url) in &links {
            text.push_str(&format!("\n{label}: {url}"));
        }
        let mut html = format!(
            "<!DOCTYPE html><html><body style=\"font-family:sans-serif;margin:0\">\
             <div style=\"background:{colour};color:#fff;padding:16px 20px\">\
             <h2 style=\"margin:0\">{}</h2></div>\
             <table style=\"border-collapse:collapse;margin:16px 20px\">",
            escape_html(&heading)
        );
        for (key, value) in &rows {
            html.push_str(&format!(
                "<tr><th align=\"left\" style=\"padding:4px 16px 4px 0;color:#555\">{}</th>\
                 <td style=\"padding:4px 0\">{}</td></tr>",
                escape_html(key),
                escape_html(value)
            ));
        }
        html.push_str("</table>");
        for (label, url) in &links {
            html.push_str(&format!(
                "<p style=\"margin:4px 20px\"><a href=\"{}\">{}</a></p>",
                escape_html(url),
                escape_html(label)
            ));
        }
        html.push_str("</body></html>");
        Email {
            from,
            to,
            subject,
            text,
            html,
        }
    }
}

const GREEN: &str = "#1e7e34";
const AMBER: &str = "#b35900";
const RED: &str = "#b00020";

/// A change in percent with its sign, as people write it: `+12 %`, `−31 %`.
fn signed(change: f64) -> String {
    let rounded = change.round();
    if rounded < 0.0 {
        format!("\u{2212}{} %", -rounded)
    } else {
        format!("+{rounded} %")
    }
}

/// The S3 console's page of an `s3://bucket/key` object.
fn s3_console_link(uri: &str) -> Option<String> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    Some(format!(
        "https://console.aws.amazon.com/s3/object/{bucket}?prefix={}",
        key.replace('=', "%3D")
    ))
}

/// Why an email could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("sending the summary email failed: {message}{hint}")]
pub struct NotifyError {
    /// Service message.
    pub message: String,
    /// What to check.
    pub hint: &'static str,
}

/// The notifier port.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `email`; returns the provider's message id.
    async fn send(&self, email: &Email) -> Result<String, NotifyError>;
}

/// SES v2 adapter.
#[derive(Debug, Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
}

impl SesNotifier {
    /// A notifier sending through `client`.
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesNotifier { client }
    }
}

#[async_trait]
impl Notifier for SesNotifier {
    async fn send(&self, email: &Email) -> Result<String, NotifyError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
        let content = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .map_err(|e| NotifyError {
                    message: e.to_string(),
                    hint: "",
                })
        };
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let out = self
            .client
            .send_email()
            .from_email_address(email.from.as_str())
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(email.to.iter().map(|a| a.to_string()).collect()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|err| {
                let facts = error_facts(&err);
                let hint = match facts.code.as_deref() {
                    Some("MessageRejected") => {
                        "; verify the sender identity in SES (and, in the SES sandbox, every recipient)"
                    }
                    Some("AccessDeniedException") => {
                        "; grant ses:SendEmail on the sender identity to the worker's role"
                    }
                    _ => "",
                };
                NotifyError {
                    message: facts.message,
                    hint,
                }
            })?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Keeps emails in memory, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryNotifier {
    sent: Arc<Mutex<Vec<Email>>>,
}

impl MemoryNotifier {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Emails sent so far.
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn send(&self, email: &Email) -> Result<String, NotifyError> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.push(email.clone());
        Ok(format!("memory-{}", sent.len()))
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::JobDefaults;

    fn address(a: &str) -> EmailAddress {
        EmailAddress::new(a).unwrap()
    }

    #[test]
    fn failure_email_names_job_stage_error_and_advice_and_escapes_html() {
        let defaults = JobDefaults {
            bucket: Some(crate::model::job::BucketName::new("b-1").unwrap()),
            ..JobDefaults::default()
        };
        let job = BackupJob::parse(r#"{"table":"studentData","job_id":"j-1"}"#, &defaults).unwrap();
        let email = Email::summary(
            &JobSummary::Failed {
                job: Box::new(job),
                stage: "scan".into(),
                error: "table `<x>` not found".into(),
                advice: "check the table name & region".into(),
                will_retry: false,
            },
            address("backup@example.com"),
            vec![address("ops@example.com")],
        );
        assert_eq!(
            email.subject,
            "[ddb-backup] studentData backup FAILED at scan"
        );
        for needle in [
            "j-1",
            "scan",
            "table `<x>` not found",
            "check the table name & region",
            "Retry",
        ] {
            assert!(
                email.text.contains(needle),
                "{needle} missing:\n{}",
                email.text
            );
        }
        assert!(
            email.html.contains("table `&lt;x&gt;` not found"),
            "{}",
            email.html
        );
        assert!(email.html.contains("name &amp; region"), "{}", email.html);
        assert!(!email.html.contains("<x>"));
    }

    fn complete(items: u64, previous: Option<u64>) -> Email {
        let mut manifest: Manifest = serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": "j-2", "trigger": "schedule", "table": "studentData",
            "table_arn": null, "format": "dynamodb-json", "compression": "gzip",
            "content_type": "application/gzip", "content_encoding": null,
            "requested_at": "2026-11-29T02:00:00.000Z", "started_at": "2026-11-29T02:00:01.000Z",
            "finished_at": "2026-11-29T02:00:09.000Z", "duration_ms": 8000, "item_count": items,
            "consumed_read_capacity": 12.5, "segments": 4, "consistent_read": false,
            "location": "s3://b-1/backups/studentData/dt=2026-11-29/j-2/", "bytes": 1000,
            "uncompressed_bytes": 5000, "key_schema": [], "attribute_definitions": [],
            "billing_mode": null, "global_secondary_indexes": [], "local_secondary_indexes": [],
            "files": [], "tool": {"name": "ddb-backup", "version": "0"}
        }))
        .unwrap();
        manifest.previous = previous.map(|item_count| crate::model::manifest::LatestBackup {
            job_id: "j-1".into(),
            finished_at: "2026-11-28T02:00:09.000Z".into(),
            item_count,
            bytes: 1000,
            manifest: "s3://b-1/backups/studentData/dt=2026-11-28/j-1/manifest.json".into(),
        });
        Email::summary(
            &JobSummary::Complete {
                manifest: Box::new(manifest),
                manifest_uri: "s3://b-1/backups/studentData/dt=2026-11-29/j-2/manifest.json".into(),
                shrink_alert_percent: 20.0,
                console_url: Some("https://d111111abcdef8.cloudfront.net/".into()),
            },
            address("backup@example.com"),
            vec![address("ops@example.com")],
        )
    }

    #[test]
    fn a_complete_email_says_how_the_table_changed_and_marks_a_shrink_past_the_threshold() {
        let first = complete(500, None);
        assert_eq!(
            first.subject,
            "[ddb-backup] studentData backup complete: 500 items"
        );
        assert!(!first.text.contains("since"), "{}", first.text);
        assert!(first.text.contains("Consistency"), "{}", first.text);
        assert!(first.text.contains("fuzzy"), "{}", first.text);

        let grown = complete(560, Some(500));
        assert_eq!(
            grown.subject,
            "[ddb-backup] studentData backup complete: 560 items"
        );
        assert!(
            grown.text.contains("560, +12 % since 2026-11-28"),
            "{}",
            grown.text
        );

        let just_under = complete(401, Some(500));
        assert!(
            !just_under.subject.contains("SHRANK"),
            "{}",
            just_under.subject
        );
        assert!(just_under.html.contains(GREEN));

        let shrunk = complete(345, Some(500));
        assert_eq!(
            shrunk.subject,
            "[ddb-backup] studentData SHRANK \u{2212}31 % since 2026-11-28: 345 items"
        );
        assert!(
            shrunk.text.contains("345, \u{2212}31 % since 2026-11-28"),
            "{}",
            shrunk.text
        );
        assert!(shrunk.html.contains(AMBER), "the status colour says it");
        // Links: the manifest in the S3 console, and the web console.
        assert!(
            shrunk.html.contains(
                "https://console.aws.amazon.com/s3/object/b-1?prefix=backups/studentData/dt%3D2026-11-29/j-2/manifest.json"
            ),
            "{}",
            shrunk.html
        );
        assert!(shrunk
            .text
            .contains("https://d111111abcdef8.cloudfront.net/?table=studentData"));
    }
}
