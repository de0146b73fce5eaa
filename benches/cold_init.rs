//! Cold init of the Lambda binaries: the time from starting `bootstrap` to its first
//! `GET /2018-06-01/runtime/invocation/next`, which is what Lambda reports as Init Duration (less
//! the sandbox's own start). Each run starts a fresh process against a minimal runtime API on
//! loopback, with the environment Lambda gives a function (credentials and region in variables,
//! so no network call is made), and the stack's configuration.
//!
//!   cargo bench --bench cold_init                 # 30 runs per binary
//!   cargo bench --bench cold_init -- --smoke      # 3 runs, as CI does to keep this working
//!
//! BENCH_RUNS changes the number of runs; COLD_INIT_BINARIES=name=path,... measures other builds of
//! the same binaries (for example `backup-worker=target/lambda/backup-worker/bootstrap` of an
//! x86_64 `cargo lambda build --release`). Prints median and range in milliseconds.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 3 } else { 30 });
    let binaries: Vec<(String, String)> = match std::env::var("COLD_INIT_BINARIES") {
        Ok(list) => list
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, path)| (name.to_string(), path.to_string()))
            .collect(),
        Err(_) => vec![
            (
                "backup-worker".into(),
                env!("CARGO_BIN_EXE_backup-worker").into(),
            ),
            ("backup-api".into(), env!("CARGO_BIN_EXE_backup-api").into()),
            (
                "backup-changes".into(),
                env!("CARGO_BIN_EXE_backup-changes").into(),
            ),
        ],
    };
    println!("cold init: start of the process to its first runtime API request, {runs} runs each");
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10}",
        "binary", "size MiB", "median ms", "min ms", "max ms"
    );
    for (name, path) in binaries {
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .len();
        let mut times: Vec<f64> = (0..runs).map(|_| init_ms(&path)).collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            name,
            size as f64 / (1 << 20) as f64,
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}

/// One cold start: milliseconds until the process asks the runtime API for its first event.
fn init_ms(binary: &str) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "BackupDynamoDBAndSendEmail")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/BackupDynamoDBAndSendEmail",
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/29/[$LATEST]0")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE00")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "example/example/example/example/example0",
        )
        .env("AWS_SESSION_TOKEN", "example")
        .env("RUST_LOG", "info")
        .env("DDB_BACKUP_TABLE", "studentData")
        .env("DDB_BACKUP_BUCKET", "student-backup-20250706")
        .env(
            "DDB_BACKUP_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/ddb-backup-jobs",
        )
        .env(
            "DDB_BACKUP_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/ddb-backup-jobs-dlq",
        )
        .env("DDB_BACKUP_SENDER", "backup@ops.example.org")
        .env(
            "DDB_BACKUP_CORS_ORIGINS",
            "https://d111111abcdef8.cloudfront.net",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let (stream, _) = accept_within(&listener, Duration::from_secs(10), &mut child, binary);
    let mut request_line = String::new();
    BufReader::new(&stream)
        .read_line(&mut request_line)
        .expect("read the request");
    let elapsed = started.elapsed();
    assert!(
        request_line.starts_with("GET /2018-06-01/runtime/invocation/next"),
        "{binary} asked for {request_line:?}"
    );
    let _ = (&stream).write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
    let _ = child.kill();
    let _ = child.wait();
    elapsed.as_secs_f64() * 1e3
}

fn accept_within(
    listener: &TcpListener,
    limit: Duration,
    child: &mut std::process::Child,
    binary: &str,
) -> (std::net::TcpStream, std::net::SocketAddr) {
    listener.set_nonblocking(true).expect("non-blocking accept");
    let started = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return (stream, addr);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{binary} exited with {status} before asking for an event");
                }
                assert!(
                    started.elapsed() < limit,
                    "{binary} did not call the runtime API within {limit:?}"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}
