//! The validated values a job is made of: each type can only hold what its rules allow, and
//! says what is expected when it refuses a value.

use std::fmt;

/// A value its type refused; the message names the value and what is expected instead. The
/// caller adds which field or variable it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);

impl From<InvalidValue> for String {
    fn from(err: InvalidValue) -> String {
        err.0
    }
}

/// A positive, finite read budget figure (RCU/s or a percentage).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadBudgetLimit(f64);

impl Eq for ReadBudgetLimit {}

impl ReadBudgetLimit {
    /// Accepts `value` in (0, `max`].
    pub fn new(value: f64, max: f64) -> Result<ReadBudgetLimit, InvalidValue> {
        if value.is_finite() && value > 0.0 && value <= max {
            Ok(ReadBudgetLimit(value))
        } else {
            Err(InvalidValue(format!(
                "must be a number above 0 and at most {max}, got {value}; leave it out for no limit"
            )))
        }
    }

    /// The figure.
    pub fn get(self) -> f64 {
        self.0
    }
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// A DynamoDB table name: 3 to 255 of `A-Z a-z 0-9 _ - .`.
    TableName
);
validated_string!(
    /// An S3 bucket name following the general purpose bucket naming rules.
    BucketName
);
validated_string!(
    /// A key prefix: empty, or relative path segments ending in `/`.
    Prefix
);
validated_string!(
    /// A job id safe to use in object keys: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    JobId
);
validated_string!(
    /// An email address, checked for shape only (SES has the last word).
    EmailAddress
);

impl TableName {
    /// Validates a table name.
    pub fn new(name: &str) -> Result<TableName, InvalidValue> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !(3..=255).contains(&name.len()) || !ok_chars {
            return Err(InvalidValue(format!(
                "`{name}` is not a DynamoDB table name: use 3 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.'"
            )));
        }
        Ok(TableName(name.to_string()))
    }
}

impl BucketName {
    /// Validates a bucket name.
    pub fn new(name: &str) -> Result<BucketName, InvalidValue> {
        let bad = |why: &str| {
            Err(InvalidValue(format!(
                "`{name}` is not a valid S3 bucket name: {why} (e.g. student-backup-20250706)"
            )))
        };
        if !(3..=63).contains(&name.len()) {
            return bad("use 3 to 63 characters");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return bad("use only lowercase letters, digits, '-' and '.'");
        }
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
            return bad("begin and end with a letter or digit");
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return bad("no '..', '.-' or '-.'");
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return bad("it must not look like an IP address");
        }
        if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") {
            return bad("the prefixes xn-- and sthree- and the suffix -s3alias are reserved");
        }
        Ok(BucketName(name.to_string()))
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("backups/".to_string())
    }
}

impl Prefix {
    /// Validates a prefix and makes it end in `/` (an empty prefix stays empty).
    pub fn new(prefix: &str) -> Result<Prefix, InvalidValue> {
        if prefix.len() > 256 {
            return Err(InvalidValue(format!(
                "at most 256 characters, got {}; use a shorter prefix",
                prefix.len()
            )));
        }
        if prefix.starts_with('/') {
            return Err(InvalidValue(format!(
                "`{prefix}` must not start with '/': S3 keys are relative, e.g. \"backups/\""
            )));
        }
        if prefix.chars().any(|c| c.is_control() || c == '\\') {
            return Err(InvalidValue(
                "control characters and '\\' are not allowed in a prefix".to_string(),
            ));
        }
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.is_empty()
            && trimmed
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(InvalidValue(format!(
                "`{prefix}` has an empty, '.' or '..' path segment; use plain names such as \"backups/nightly/\""
            )));
        }
        Ok(if trimmed.is_empty() {
            Prefix(String::new())
        } else {
            Prefix(format!("{trimmed}/"))
        })
    }
}

impl JobId {
    /// Validates a caller-chosen job id.
    pub fn new(id: &str) -> Result<JobId, InvalidValue> {
        let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok = id.len() <= 128
            && first_ok
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(JobId(id.to_string()))
        } else {
            Err(InvalidValue(format!("`{id}` is not a valid job id: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit, or leave it out to have one generated")))
        }
    }

    /// A new id that sorts by time: `20261128T021500Z-1a2b3c4d`.
    pub fn generate() -> JobId {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let rand = uuid::Uuid::new_v4().simple().to_string();
        JobId(format!("{now}-{}", &rand[..8]))
    }
}

impl EmailAddress {
    /// Checks an address for shape: `local@domain.tld`, no spaces.
    pub fn new(address: &str) -> Result<EmailAddress, InvalidValue> {
        let valid = match address.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && address.len() <= 254
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !address.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(EmailAddress(address.to_string()))
        } else {
            Err(InvalidValue(format!(
                "`{address}` is not an email address; expected e.g. \"ops@example.com\""
            )))
        }
    }
}
