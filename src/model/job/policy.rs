//! What a deployment lets a job ask for, beyond what makes a job valid: which tables it may back
//! up, whom its emails may reach, and, for jobs arriving through the API, how hard it may read.
//! A shared API key identifies a caller; these limits are what it is authorized to do with it.

use super::{BackupJob, EmailAddress, TableName};

/// The deployment's limits. The default allows everything (the CLI's case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPolicy {
    /// Tables jobs may name (`DDB_BACKUP_ALLOWED_TABLES`); `None`: any.
    pub allowed_tables: Option<Vec<TableName>>,
    /// Recipients summary emails may go to (`DDB_BACKUP_NOTIFY_ALLOWED`); `None`: anyone.
    pub notify_allowed: Option<Vec<Recipients>>,
    /// Largest `segments` an API job may ask for (`DDB_BACKUP_MAX_SEGMENTS`); `None`: no limit.
    pub api_max_segments: Option<u32>,
    /// Whether an API job may ask for a strongly consistent scan, which reads twice the capacity
    /// (`DDB_BACKUP_API_ALLOW_CONSISTENT_READ`).
    pub api_allow_consistent_read: bool,
    /// The largest `read_budget` an API job may ask for: the deployment's default
    /// (`DDB_BACKUP_READ_BUDGET`), which a caller may lower but not raise.
    pub api_max_read_budget: Option<f64>,
    /// The largest `read_budget_percent` an API job may ask for
    /// (`DDB_BACKUP_READ_BUDGET_PERCENT`).
    pub api_max_read_budget_percent: Option<f64>,
    /// The tables restore jobs may create (`DDB_BACKUP_RESTORE_TABLE_PATTERN`, default
    /// `restored-*`): never a table outside it, never one that exists.
    pub restore_tables: crate::model::restore_job::TablePattern,
}

/// An entry of the allowed recipients: one address, or every address at a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Exactly this address (compared without regard to case).
    Address(EmailAddress),
    /// Any address `…@domain` (written `@example.com`).
    Domain(String),
}

impl Recipients {
    /// Parses `ops@example.com` or `@example.com`.
    pub fn parse(entry: &str) -> Result<Recipients, String> {
        let entry = entry.trim();
        match entry.strip_prefix('@') {
            Some(domain)
                if domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')) =>
            {
                Ok(Recipients::Domain(domain.to_ascii_lowercase()))
            }
            Some(_) => Err(format!(
                "`{entry}` is not a domain entry; expected e.g. @example.com"
            )),
            None => EmailAddress::new(entry)
                .map(Recipients::Address)
                .map_err(|e| e.to_string()),
        }
    }

    fn admits(&self, address: &EmailAddress) -> bool {
        let address = address.as_str().to_ascii_lowercase();
        match self {
            Recipients::Address(allowed) => allowed.as_str().eq_ignore_ascii_case(&address),
            Recipients::Domain(domain) => {
                address.rsplit_once('@').is_some_and(|(_, d)| d == domain)
            }
        }
    }
}

/// A job asking for something this deployment does not allow: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct NotAllowed {
    /// The job field.
    pub field: &'static str,
    /// What is not allowed and how to get it allowed.
    pub message: String,
}

impl JobPolicy {
    /// Checks what every job must respect, however it arrived: its table and its recipients.
    pub fn check(&self, job: &BackupJob) -> Result<(), NotAllowed> {
        self.check_table(&job.table)?;
        self.check_recipients(&job.notify)
    }

    /// Checks that emails may go to every one of `notify` (`DDB_BACKUP_NOTIFY_ALLOWED`).
    pub fn check_recipients(&self, notify: &[EmailAddress]) -> Result<(), NotAllowed> {
        if let Some(allowed) = &self.notify_allowed {
            if let Some(stranger) = notify.iter().find(|a| !allowed.iter().any(|r| r.admits(a))) {
                return Err(NotAllowed {
                    field: "notify",
                    message: format!(
                        "summary emails may go only to {}; `{stranger}` is not allowed (DDB_BACKUP_NOTIFY_ALLOWED)",
                        list(allowed.iter().map(|r| match r {
                            Recipients::Address(a) => a.as_str().to_string(),
                            Recipients::Domain(d) => format!("@{d}"),
                        }))
                    ),
                });
            }
        }
        Ok(())
    }

    /// Checks that the deployment backs up `table` (`DDB_BACKUP_ALLOWED_TABLES`): for jobs, and
    /// for listing a table's backups.
    pub fn check_table(&self, table: &TableName) -> Result<(), NotAllowed> {
        match &self.allowed_tables {
            Some(tables) if !tables.iter().any(|t| t == table) => Err(NotAllowed {
                field: "table",
                message: format!(
                    "this deployment backs up only {}; `{table}` is not one of them (DDB_BACKUP_ALLOWED_TABLES)",
                    list(tables.iter().map(|t| t.as_str())),
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Checks a job arriving through the API: the checks of [`JobPolicy::check`], and how hard
    /// it may read the table.
    pub fn check_api(&self, job: &BackupJob) -> Result<(), NotAllowed> {
        self.check(job)?;
        if let (Some(max), Some(segments)) = (self.api_max_segments, job.segments) {
            if segments.get() > max {
                return Err(NotAllowed {
                    field: "segments",
                    message: format!(
                        "at most {max} segments through the API (DDB_BACKUP_MAX_SEGMENTS); leave it out to size it from the table"
                    ),
                });
            }
        }
        let over = |asked: Option<f64>, max: Option<f64>| match (asked, max) {
            (Some(asked), Some(max)) => asked > max,
            _ => false,
        };
        if over(job.read_budget.map(|b| b.get()), self.api_max_read_budget) {
            return Err(NotAllowed {
                field: "read_budget",
                message: format!(
                    "at most {} read units per second through the API (DDB_BACKUP_READ_BUDGET); leave it out for that",
                    self.api_max_read_budget.unwrap_or_default()
                ),
            });
        }
        if over(
            job.read_budget_percent.map(|b| b.get()),
            self.api_max_read_budget_percent,
        ) {
            return Err(NotAllowed {
                field: "read_budget_percent",
                message: format!(
                    "at most {} % of the table's read capacity through the API (DDB_BACKUP_READ_BUDGET_PERCENT); leave it out for that",
                    self.api_max_read_budget_percent.unwrap_or_default()
                ),
            });
        }
        if job.consistent_read && !self.api_allow_consistent_read {
            return Err(NotAllowed {
                field: "consistent_read",
                message: "a strongly consistent scan reads twice the capacity and is not allowed through the API (DDB_BACKUP_API_ALLOW_CONSISTENT_READ)".to_string(),
            });
        }
        Ok(())
    }
}

fn list<S: std::fmt::Display>(items: impl Iterator<Item = S>) -> String {
    items
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::JobDefaults;

    fn job(json: &str) -> BackupJob {
        BackupJob::parse(
            json,
            &JobDefaults {
                bucket: Some(crate::model::job::BucketName::new("b-1").unwrap()),
                ..JobDefaults::default()
            },
        )
        .unwrap()
    }

    fn policy() -> JobPolicy {
        JobPolicy {
            allowed_tables: Some(vec![TableName::new("studentData").unwrap()]),
            notify_allowed: Some(vec![
                Recipients::parse("ops@example.com").unwrap(),
                Recipients::parse("@school.example.org").unwrap(),
            ]),
            api_max_segments: Some(32),
            api_allow_consistent_read: false,
            api_max_read_budget: Some(20_000.0),
            api_max_read_budget_percent: Some(50.0),
            restore_tables: Default::default(),
        }
    }

    #[test]
    fn a_job_outside_the_deployments_limits_is_refused_naming_the_field() {
        let p = policy();
        assert_eq!(p.check_api(&job(r#"{"table":"studentData"}"#)), Ok(()));
        let ok = job(
            r#"{"table":"studentData","notify":["OPS@example.com","dean@School.Example.org"],"segments":32}"#,
        );
        assert_eq!(p.check_api(&ok), Ok(()));
        let lower = job(r#"{"table":"studentData","read_budget":100,"read_budget_percent":10}"#);
        assert_eq!(p.check_api(&lower), Ok(()), "a caller may read more gently");
        for (json, field, says) in [
            (
                r#"{"table":"payroll"}"#,
                "table",
                "`payroll` is not one of them",
            ),
            (
                r#"{"table":"studentData","notify":["x@evil.example"]}"#,
                "notify",
                "`x@evil.example`",
            ),
            (
                r#"{"table":"studentData","notify":["ops@example.com.evil"]}"#,
                "notify",
                "not allowed",
            ),
            (
                r#"{"table":"studentData","notify":["a@sub.school.example.org"]}"#,
                "notify",
                "not allowed",
            ),
            (
                r#"{"table":"studentData","segments":33}"#,
                "segments",
                "at most 32",
            ),
            (
                r#"{"table":"studentData","consistent_read":true}"#,
                "consistent_read",
                "twice",
            ),
        ] {
            let err = p.check_api(&job(json)).unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.message.contains(says), "{json}: {err}");
        }
        // Queued by hand, only the table and the recipients are the deployment's business.
        assert_eq!(
            p.check(&job(
                r#"{"table":"studentData","segments":500,"consistent_read":true}"#
            )),
            Ok(())
        );
        assert_eq!(JobPolicy::default().check_api(&job(r#"{"table":"any_table","consistent_read":true}"#)), Err(NotAllowed {
            field: "consistent_read",
            message: "a strongly consistent scan reads twice the capacity and is not allowed through the API (DDB_BACKUP_API_ALLOW_CONSISTENT_READ)".to_string(),
        }));
    }

    #[test]
    fn recipient_entries_are_addresses_or_domains() {
        assert!(
            matches!(Recipients::parse("@example.com"), Ok(Recipients::Domain(d)) if d == "example.com")
        );
        assert!(matches!(
            Recipients::parse(" ops@example.com "),
            Ok(Recipients::Address(_))
        ));
        for bad in [
            "@",
            "@com",
            "@.example.com",
            "@exa mple.com",
            "ops",
            "@*.example.com",
        ] {
            assert!(Recipients::parse(bad).is_err(), "{bad}");
        }
    }
}
