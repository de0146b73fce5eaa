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
    /// The summary email for `summary`, from `from` to `to`.
    pub fn summary(summary: &JobSummary, from: EmailAddress, to: Vec<EmailAddress>) -> Email {
        let (subject, heading, rows) = match summary {
            JobSummary::Complete {
                manifest,
                manifest_uri,
            } => (
                format!(
                    "[ddb-backup] {} backup complete: {} items",
                    manifest.table,
                    group_digits(manifest.item_count)
                ),
                format!("Backup of {} complete", manifest.table),
                vec![
                    ("Table", manifest.table.clone()),
                    ("Job", manifest.job_id.clone()),
                    ("Trigger", manifest.trigger.clone()),
                    ("Items", group_digits(manifest.item_count)),
                    (
                        "Stored",
                        format!(
                            "{} ({} before compression)",
                            human_bytes(manifest.bytes),
                            human_bytes(manifest.uncompressed_bytes)
                        ),
                    ),
                    ("Files", manifest.files.len().to_string()),
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
            ),
            JobSummary::Failed {
                job,
                stage,
                error,
                advice,
                will_retry,
            } => (
                format!("[ddb-backup] {} backup FAILED at {stage}", job.table),
                format!("Backup of {} failed", job.table),
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
            ),
        };
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut text = format!("{heading}\n\n");
        for (key, value) in &rows {
            text.push_str(&format!("{key:<width$}  {value}\n"));
        }
        let mut html = format!(
            "<!DOCTYPE html><html><body><h2>{}</h2><table>",
            escape_html(&heading)
        );
        for (key, value) in &rows {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                escape_html(key),
                escape_html(value)
            ));
        }
        html.push_str("</table></body></html>");
        Email {
            from,
            to,
            subject,
            text,
            html,
        }
    }
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
}
