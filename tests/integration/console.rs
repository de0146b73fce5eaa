//! The web console in a real browser (Debian's Chromium, driven by Playwright) against
//! `ddb-backup serve` on the emulator: the whole event-driven system on one machine. From an
//! allowed origin the page starts a backup and follows it to `complete` with the right item
//! count, lists its files and downloads one whose SHA-256 is the manifest's; a wrong key shows
//! the 403; its restore button writes the backup into a new table and follows the restore to
//! its end; from an origin the API does not allow, the browser blocks the call and the page says
//! so. Screenshots of each state go to `<target>/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use ddb_backup::Manifest;

/// Child processes that die with the test.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_starts_a_backup_follows_it_and_downloads_its_files_in_a_real_browser() {
    let python = browser_python();
    let aws = aws().await;
    let table = unique("console");
    create_table(&aws, &table).await;
    let items = every_type_items(40);
    put_items(&aws, &table, &items).await;
    let bucket = unique("console");
    create_bucket(&aws, &bucket).await;
    let (queue, dlq) = create_queues(&aws, &unique("console-jobs"), 5).await;
    verify_sender(&aws, "backup@example.com").await;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let key = "console-test-key";
    let serve = Command::new(env!("CARGO_BIN_EXE_ddb-backup"))
        .args(["serve", "--port", &port.to_string(), "--api-key", key])
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("DDB_BACKUP_TABLE", &table)
        .env("DDB_BACKUP_BUCKET", &bucket)
        .env("DDB_BACKUP_QUEUE_URL", &queue)
        .env("DDB_BACKUP_DLQ_URL", &dlq)
        .env("DDB_BACKUP_SENDER", "backup@example.com")
        .env("DDB_BACKUP_NOTIFY", "ops@example.com")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start ddb-backup serve");
    let mut processes = Processes(vec![serve]);
    wait_for_port(port, "ddb-backup serve", &log);
    // The same console from an origin the API does not allow.
    let other_port = free_port();
    let other = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &other_port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/web"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a static file server");
    processes.0.push(other);
    wait_for_port(other_port, "the static file server", &log);

    let api = format!("http://127.0.0.1:{port}");
    // localhost and 127.0.0.1 are two origins: the page calls the API across origins, as the
    // CloudFront-hosted console calls API Gateway.
    let allowed_page = format!("http://localhost:{port}/?api={api}&table={table}");
    let other_page = format!("http://127.0.0.1:{other_port}/index.html?api={api}&table={table}");
    let restore_table = unique("restored-console");
    let restore_arg = restore_table.clone();
    let shots = PathBuf::from(
        std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_string()),
    )
    .join("console-screenshots");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/browser/console.py"
            ))
            .args([
                shots.to_str().unwrap(),
                &allowed_page,
                &other_page,
                key,
                &restore_arg,
            ])
            .output()
            .expect("run the browser")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser failed:\n{}\nserve's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the page's words");
    drop(processes);

    assert!(
        seen["wrong_key"]
            .as_str()
            .unwrap()
            .contains("403 Forbidden"),
        "{seen}"
    );
    let status = seen["status"].as_str().unwrap();
    assert!(status.contains("complete: 40 items"), "{status}");
    let job_id = seen["job_id"].as_str().unwrap();
    let manifests: Vec<String> = list_keys(&aws, &bucket)
        .await
        .into_iter()
        .filter(|k| k.contains(job_id) && k.ends_with("/manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest = Manifest::from_json(&get_object(&aws, &bucket, &manifests[0]).await.0).unwrap();
    assert_eq!(manifest.item_count, 40);
    let download = &seen["download"];
    let file = manifest
        .files
        .iter()
        .find(|f| f.key.ends_with(download["name"].as_str().unwrap()))
        .expect("the downloaded file is one the manifest lists");
    assert_eq!(download["size"], file.bytes, "{seen}");
    assert_eq!(download["sha256"], file.sha256.as_str(), "{seen}");
    assert!(
        seen["other_origin"].as_str().unwrap().contains("blocked"),
        "{seen}"
    );
    // The restore button wrote the backup into the new table, item for item.
    let restored = seen["restore_status"].as_str().unwrap();
    assert!(restored.contains("complete: 40 items"), "{restored}");
    assert_eq!(sorted(scan_all(&aws, &restore_table).await), sorted(items));
}
