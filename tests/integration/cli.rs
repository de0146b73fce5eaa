//! The `ddb-backup` binary as a user runs it: against the emulator, to a local directory, with
//! `--json`, and with one-line errors and exit codes for bad input.

use std::process::Command;

use crate::common::*;
use ddb_backup::backup::compress::decompressing_reader;
use ddb_backup::codec::decode::decode_dynamodb_json_line;
use ddb_backup::{Item, Manifest};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};

fn cli(args: &[&str]) -> std::process::Output {
    ddb_backup(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_a_directory_prints_the_manifest_and_the_files_match_it() {
    let aws = aws().await;
    let table = unique("cli");
    create_table(&aws, &table).await;
    let items = every_type_items(12);
    put_items(&aws, &table, &items).await;
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&[
        "backup",
        "--table",
        &table,
        "--out-dir",
        dir.path().to_str().unwrap(),
        "--compression",
        "zstd",
        "--segments",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Manifest::from_json(&out.stdout).expect("manifest JSON on stdout");
    assert_eq!(manifest.item_count, 12);
    assert_eq!(manifest.trigger, "cli");
    let mut decoded: Vec<Item> = Vec::new();
    for file in &manifest.files {
        let bytes = std::fs::read(dir.path().join(&file.key)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), file.sha256);
        let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
        for line in BufReader::new(reader).lines() {
            decoded.push(decode_dynamodb_json_line(&line.unwrap()).unwrap());
        }
    }
    assert_eq!(sorted(decoded), sorted(items));
    let manifest_path = dir
        .path()
        .join(manifest.files[0].key.split("/data/").next().unwrap())
        .join("manifest.json");
    assert!(manifest_path.exists(), "{manifest_path:?}");
    assert!(
        !dir.path().join(".uploads").exists(),
        "temporary upload state left behind"
    );

    // verify accepts the backup folder, then names the file once a byte in it changes.
    let folder = manifest_path
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out = cli(&["verify", &folder]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: backup"));
    let victim = dir.path().join(&manifest.files[0].key);
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    let out = cli(&["verify", manifest_path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(name) && stderr.contains("sha256"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_one_line_cause_and_a_non_zero_exit() {
    let aws = aws().await;
    let table = unique("cli-bad");
    create_table(&aws, &table).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, code, needle) in [
        (
            vec![
                "backup",
                "--table",
                "studentData",
                "--out-dir",
                d,
                "--segments",
                "0",
            ],
            2,
            "segments",
        ),
        (vec!["backup", "--table", "x", "--out-dir", d], 2, "table"),
        (vec!["seed", "--table", "x", "--items", "1"], 2, "table"),
        (
            vec!["restore", d, "--table", "new-table", "--concurrency", "0"],
            2,
            "concurrency",
        ),
        (vec!["verify", "s3://Not_A_Bucket/x/"], 2, "bucket"),
        (vec!["verify", d], 1, "cannot read the manifest"),
        (
            vec!["backup", "--table", "studentData"],
            2,
            "DDB_BACKUP_BUCKET",
        ),
        (
            vec!["backup", "--table", "studentData", "--bucket", "Bad_Name"],
            2,
            "bucket",
        ),
        (
            vec![
                "backup",
                "--table",
                "studentData",
                "--out-dir",
                d,
                "--format",
                "xml",
            ],
            2,
            "xml",
        ),
        (
            vec![
                "backup",
                "--table",
                "studentData",
                "--out-dir",
                d,
                "--format",
                "parquet",
                "--compression",
                "gzip",
            ],
            2,
            "parquet_compression",
        ),
        (
            vec!["backup", "--table", "no-such-table-here", "--out-dir", d],
            1,
            "not found",
        ),
        (
            vec![
                "backup",
                "--table",
                &table,
                "--bucket",
                "no-such-bucket-here",
            ],
            1,
            "does not exist",
        ),
    ] {
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_a_directory_recreates_the_table_and_refuses_lossy_backups() {
    let aws = aws().await;
    let table = unique("cli-restore");
    create_table(&aws, &table).await;
    let items = every_type_items(20);
    put_items(&aws, &table, &items).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let backup = |format: &str| {
        let out = cli(&[
            "backup",
            "--table",
            &table,
            "--out-dir",
            d,
            "--format",
            format,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest = Manifest::from_json(&out.stdout).unwrap();
        dir.path()
            .join(
                manifest
                    .location
                    .trim_start_matches(d)
                    .trim_start_matches('/'),
            )
            .to_str()
            .unwrap()
            .to_string()
    };
    let folder = backup("dynamodb-json");
    let target = unique("cli-restored");
    let out = cli(&[
        "restore",
        &folder,
        "--table",
        &target,
        "--create-table",
        "--write-budget",
        "500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Restored 20 items"));
    assert_eq!(sorted(scan_all(&aws, &target).await), sorted(items));

    let lossy = backup("json");
    let out = cli(&[
        "restore",
        &lossy,
        "--table",
        &unique("cli-lossy"),
        "--create-table",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-lossy"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_puts_a_validated_job_on_the_queue_that_the_worker_accepts() {
    let aws = aws().await;
    let (queue, _dlq) = create_queues(&aws, &unique("cli-jobs"), 5).await;
    let out = cli(&[
        "enqueue",
        "--queue-url",
        &queue,
        "--table",
        "studentData",
        "--bucket",
        "student-backup-20250706",
        "--compression",
        "zstd",
        "--notify",
        "ops@example.com,dba@example.com",
        "--read-budget",
        "50",
        "--workers",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let messages = receive(&aws, &queue).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].message_id(),
        printed["message_id"].as_str(),
        "{printed}"
    );
    let job = ddb_backup::BackupJob::parse(
        messages[0].body().unwrap(),
        &ddb_backup::JobDefaults::default(),
    )
    .expect("the worker's parser accepts the message");
    assert_eq!(job.job_id.as_str(), printed["job_id"].as_str().unwrap());
    assert_eq!(job.table.as_str(), "studentData");
    assert_eq!(job.trigger, ddb_backup::model::job::Trigger::Manual);
    assert_eq!(job.compression, ddb_backup::Compression::Zstd);
    assert_eq!(job.notify.len(), 2);
    assert_eq!(job.read_budget.map(|b| b.get()), Some(50.0));
    assert_eq!(job.workers.map(|w| w.get()), Some(4));

    // A bad job is refused before anything is sent.
    let out = cli(&["enqueue", "--queue-url", &queue, "--table", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("table"));
    assert!(receive(&aws, &queue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_and_csv_backups_from_the_cli_verify_and_name_their_columns() {
    let aws = aws().await;
    let table = unique("cli-tabular");
    create_table(&aws, &table).await;
    put_items(&aws, &table, &every_type_items(12)).await;
    let dir = tempfile::tempdir().unwrap();
    for format in [
        ["--format", "parquet", "--parquet-compression", "snappy"],
        ["--format", "csv", "--compression", "gzip"],
    ] {
        let mut args = vec!["backup", "--table", &table, "--out-dir"];
        args.push(dir.path().to_str().unwrap());
        args.extend(format);
        args.push("--json");
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format:?}: {stderr}");
        let manifest = Manifest::from_json(&out.stdout).expect("manifest JSON on stdout");
        assert_eq!(manifest.item_count, 12);
        let columns = manifest.files[0].columns.as_ref().expect("columns");
        assert_eq!(columns[0].name, "id", "{format:?}");
        if format[1] == "parquet" {
            assert_eq!(
                manifest.parquet_compression,
                Some(ddb_backup::model::format::ParquetCompression::Snappy)
            );
            assert!(manifest.files[0].key.ends_with(".parquet"));
        }
        let verified = cli(&["verify", &manifest.location]);
        assert!(
            verified.status.success(),
            "{format:?}: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}

/// The binary run with nothing of the caller's AWS setup: no profile, no credentials, no region,
/// no instance metadata (which would otherwise be probed for seconds).
fn cli_without_aws(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ddb-backup"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run ddb-backup")
}

/// One line on stderr, naming the cause and the fix, and none of the SDK's Debug output.
fn assert_one_line(out: &std::process::Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "one line, got:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
    for dump in ["DispatchFailure", "ConnectorError", "WARN", "{ "] {
        assert!(!stderr.contains(dump), "`{dump}` in:\n{stderr}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn missing_aws_setup_is_one_line_that_says_what_to_do() {
    let backup = [
        "backup",
        "--table",
        "studentData",
        "--bucket",
        "my-backups-bucket",
    ];
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    assert_one_line(
        &cli_without_aws(&backup, &keys),
        "no AWS region: pass --region or set AWS_REGION",
    );
    assert_one_line(
        &cli_without_aws(&backup, &[("AWS_REGION", "us-east-1")]),
        "no AWS credentials: set AWS_PROFILE",
    );
    let unreachable = [
        keys[0],
        keys[1],
        ("AWS_REGION", "us-east-1"),
        // Port 9 (discard) is closed on a test machine: the connection is refused at once.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("DDB_BACKUP_MAX_ATTEMPTS", "1"),
    ];
    assert_one_line(
        &cli_without_aws(&backup, &unreachable),
        "the AWS endpoint did not answer",
    );
    // Restore reaches DynamoDB through its own adapter: the same one line.
    let dir = tempfile::tempdir().unwrap();
    let manifest = runtime().block_on(directory_backup(dir.path(), &every_type_items(3), ""));
    let restore = ["restore", &manifest.location, "--table", "restored"];
    assert_one_line(
        &cli_without_aws(&restore, &keys),
        "no AWS region: pass --region or set AWS_REGION",
    );
    // The whole chain is one flag away.
    let verbose = cli_without_aws(&[&backup[..], &["-v"]].concat(), &unreachable);
    let stderr = String::from_utf8_lossy(&verbose.stderr);
    assert!(stderr.contains("Caused by:"), "{stderr}");
}

/// Replaces an S3 object's body.
async fn put_body(aws: &ddb_backup::aws::AwsContext, bucket: &str, key: &str, body: Vec<u8>) {
    aws.s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .expect("put object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_corruption_in_s3_in_every_format_even_behind_a_matching_hash() {
    let aws = aws().await;
    let table = unique("cli-corrupt");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &every_type_items(40)).await;
    for format in [
        ["--format", "dynamodb-json", "--compression", "zstd"],
        ["--format", "csv", "--compression", "gzip"],
        ["--format", "parquet", "--compression", "none"],
    ] {
        let mut args = vec![
            "backup",
            "--table",
            &table,
            "--bucket",
            &bucket,
            "--segments",
            "1",
        ];
        args.extend(format);
        args.push("--json");
        let out = cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut manifest = Manifest::from_json(&out.stdout).expect("manifest JSON on stdout");
        let manifest_key = format!(
            "{}manifest.json",
            manifest.files[0].key.split("data/").next().unwrap()
        );
        let file = manifest.files[0].clone();
        let (good, _, _) = get_object(&aws, &bucket, &file.key).await;
        let verify = || {
            let out = cli(&["verify", &manifest.location]);
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        assert_eq!(verify().0, Some(0), "{format:?}");

        // A byte flipped in S3: the hash names the file.
        let mut flipped = good.to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        put_body(&aws, &bucket, &file.key, flipped).await;
        let (code, stderr) = verify();
        assert_eq!(code, Some(1), "{format:?}: {stderr}");
        assert!(
            stderr.contains(&file.key) && stderr.contains("sha256"),
            "{format:?}: {stderr}"
        );

        // The file cut short and the manifest's size and hash rewritten to match (a writer bug
        // or a careful attacker): the records themselves give it away.
        let short = good[..good.len() * 3 / 4].to_vec();
        manifest.files[0].bytes = short.len() as u64;
        manifest.files[0].sha256 = hex::encode(Sha256::digest(&short));
        manifest.bytes = manifest.files.iter().map(|f| f.bytes).sum();
        put_body(&aws, &bucket, &file.key, short).await;
        put_body(
            &aws,
            &bucket,
            &manifest_key,
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .await;
        let (code, stderr) = verify();
        assert_eq!(code, Some(1), "{format:?}: {stderr}");
        assert!(stderr.contains(&file.key), "{format:?}: {stderr}");
        assert!(!stderr.contains("sha256"), "the hash matches now: {stderr}");
        assert!(
            stderr.contains("items, manifest says 40"),
            "{format:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_upload_and_run_again_with_its_job_id_completes_once() {
    let aws = aws().await;
    let table = unique("cli-killed");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    // About 5.4 MiB per segment: each file needs a multipart upload of 5 MiB parts.
    let items = large_items(36, 300_000);
    put_items(&aws, &table, &items).await;
    let job_id = unique("killed-job");
    let args = [
        "backup",
        "--table",
        &table,
        "--bucket",
        &bucket,
        "--segments",
        "2",
        "--compression",
        "none",
        "--job-id",
        &job_id,
        "--json",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_ddb-backup"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("DDB_BACKUP_PART_SIZE_MIB", "5")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ddb-backup");
    let started = std::time::Instant::now();
    while open_multipart_uploads(&aws, &bucket).await == 0 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        assert!(
            started.elapsed().as_secs() < 60,
            "no multipart upload opened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SIGKILL: no destructor, no abort, nothing cleaned up.
    first.kill().expect("kill");
    first.wait().unwrap();
    let keys = list_keys(&aws, &bucket).await;
    assert!(
        keys.iter().all(|k| !k.ends_with("manifest.json")),
        "a killed backup looks complete: {keys:?}"
    );
    assert!(open_multipart_uploads(&aws, &bucket).await > 0);

    let out = cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = Manifest::from_json(&out.stdout).expect("manifest JSON on stdout");
    assert_eq!(
        open_multipart_uploads(&aws, &bucket).await,
        0,
        "the second run aborts what the killed one left open"
    );
    let keys = list_keys(&aws, &bucket).await;
    let manifests: Vec<_> = keys
        .iter()
        .filter(|k| k.ends_with("manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{keys:?}");
    let mut ids = Vec::new();
    for file in &manifest.files {
        let (body, _, _) = get_object(&aws, &bucket, &file.key).await;
        assert_eq!(body.len() as u64, file.bytes, "{}", file.key);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let item = decode_dynamodb_json_line(std::str::from_utf8(line).unwrap()).unwrap();
            ids.push(item["id"].as_s().unwrap().clone());
        }
    }
    ids.sort();
    assert_eq!(ids, crate::common::ids(&items), "every item exactly once");
    // And a third run with the same id is refused as already complete.
    let again = cli(&args);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_a_tables_backups_newest_first_and_tells_a_killed_one_apart() {
    let aws = aws().await;
    let table = unique("cli-list");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &every_type_items(10)).await;
    let mut jobs = Vec::new();
    for (n, compression) in ["gzip", "zstd"].iter().enumerate() {
        let job = format!("{}-{n}", unique("listed"));
        let out = cli(&[
            "backup",
            "--table",
            &table,
            "--bucket",
            &bucket,
            "--compression",
            compression,
            "--job-id",
            &job,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        jobs.push(job);
    }
    // A run killed before its manifest leaves only its checkpoint behind.
    let killed = unique("killed");
    let date = chrono::Utc::now().format("%Y-%m-%d");
    aws.s3()
        .put_object()
        .bucket(&bucket)
        .key(format!(
            "backups/{table}/dt={date}/{killed}/checkpoints/00001.json"
        ))
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    let out = cli(&["list", "--table", &table, "--bucket", &bucket, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["job_id"].as_str().unwrap(), b["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states.len(), 3, "{listed}");
    assert_eq!(
        states[0],
        (jobs[1].as_str(), "complete"),
        "newest first: {listed}"
    );
    assert_eq!(states[1], (jobs[0].as_str(), "complete"), "{listed}");
    assert_eq!(states[2], (killed.as_str(), "incomplete"), "{listed}");
    assert_eq!(listed[0]["items"], 10);
    assert_eq!(listed[0]["format"], "dynamodb-json+zstd");
    assert_eq!(listed[0]["trigger"], "cli");
    // The table form names every column, and one line per backup.
    let out = cli(&[
        "list", "--table", &table, "--bucket", &bucket, "--limit", "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("date"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains(&jobs[1]) && !text.contains(&killed), "{text}");
}
