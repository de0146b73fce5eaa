//! Test harness for the emulator tests: real AWS SDK clients talking HTTP to moto.
//! Start the emulator with `scripts/test.sh` (which runs everything) or
//! `eval "$(scripts/emulator.sh start)"` before `cargo test`.
#![allow(dead_code)]

use ddb_backup::aws::AwsContext;

mod dynamodb;
mod faults;
mod items;
mod lambda;
mod messaging;
mod s3;
mod streams;

pub use dynamodb::*;
pub use faults::*;
pub use items::*;
pub use lambda::*;
pub use messaging::*;
pub use s3::*;
pub use streams::*;

/// The emulator's endpoint, or a panic that says how to start it: a test never skips silently.
pub fn endpoint() -> String {
    let endpoint = std::env::var("DDB_BACKUP_TEST_ENDPOINT")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            panic!(
                "no AWS emulator configured: run `scripts/test.sh`, or start moto with \
                 `eval \"$(scripts/emulator.sh start)\"` and run cargo test again"
            )
        });
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if std::net::TcpStream::connect(&addr).is_err() {
        panic!(
            "the AWS emulator at {endpoint} is not answering: start it with \
             `eval \"$(scripts/emulator.sh start)\"` (or run `scripts/test.sh`)"
        );
    }
    endpoint
}

/// SDK configuration for the emulator, with test credentials and us-east-1.
pub async fn aws() -> AwsContext {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    AwsContext {
        sdk,
        custom_endpoint: true,
    }
}

/// A name no other test uses (tests run in parallel against one emulator).
pub fn unique(base: &str) -> String {
    format!(
        "{base}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// The `ddb-backup` binary against the emulator, as a user runs it, with no default table or
/// bucket from the environment.
pub fn ddb_backup(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ddb-backup"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("DDB_BACKUP_BUCKET")
        .env_remove("DDB_BACKUP_TABLE")
        .output()
        .expect("run ddb-backup")
}

/// Playwright's Python and Debian's chromium, or a panic saying how to get them.
pub fn browser_python() -> std::path::PathBuf {
    match std::env::var_os("DDB_BACKUP_BROWSER_PYTHON").map(std::path::PathBuf::from) {
        Some(p) if p.exists() && std::env::var_os("DDB_BACKUP_CHROMIUM").is_some() => p,
        _ => panic!(
            "DDB_BACKUP_BROWSER_PYTHON and DDB_BACKUP_CHROMIUM are not set to Playwright and \
             chromium: run the suite with scripts/test.sh, or `eval \"$(scripts/browser.sh)\"` first"
        ),
    }
}
