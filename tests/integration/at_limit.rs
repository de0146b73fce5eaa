//! The `ddb-backup` binary reading a table at its limit: the read twin (`source::twin`) served
//! over HTTP as DynamoDB would be, throttling what its partitions and its table cannot serve.

use std::sync::atomic::Ordering;

use ddb_backup::source::twin::{ReadTwin, TwinSpec};
use ddb_backup::Manifest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_backs_up_a_throttling_table_whole_reading_each_page_once() {
    // 2,000 items of 4 KiB, eventually consistent: 1,000 read units, from a table that
    // serves 250 a second: four seconds, and throttles from the first.
    let twin = ReadTwin::new(TwinSpec::provisioned("twin", 2000, 4096, 2, 250.0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(twin.clone().serve(listener));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ddb-backup"))
            .args([
                "backup",
                "--table",
                "twin",
                "--out-dir",
                &out_dir,
                "--segments",
                "8",
                "--json",
                "--endpoint-url",
                &endpoint,
            ])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run ddb-backup")
    })
    .await
    .unwrap();
    server.abort();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Manifest::from_json(&out.stdout).expect("manifest JSON on stdout");
    assert_eq!(manifest.item_count, 2000);
    assert_eq!(
        twin.stats.items.load(Ordering::Relaxed),
        2000,
        "no page read twice"
    );
    assert!(twin.stats.throttled() > 0, "the table throttled the backup");
    assert_eq!(twin.stats.units(), 1000.0);
    assert_eq!(manifest.consumed_read_capacity, 1000.0);
}
