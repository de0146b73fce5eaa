use super::*;

fn defaults() -> JobDefaults {
    JobDefaults {
        bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
        ..JobDefaults::default()
    }
}

fn field_of(json: &str) -> String {
    match BackupJob::parse(json, &defaults()) {
        Err(e) => e.field().unwrap_or("<syntax>").to_string(),
        Ok(job) => panic!("expected an error for {json}, got {job:?}"),
    }
}

#[test]
fn parquet_compresses_its_columns_and_refuses_a_stream_compression_too() {
    let job =
        BackupJob::parse(r#"{"table":"studentData","format":"parquet"}"#, &defaults()).unwrap();
    assert_eq!(
        job.compression,
        Compression::None,
        "the configured gzip does not apply"
    );
    assert_eq!(job.parquet_compression, ParquetCompression::Zstd);
    let job = BackupJob::parse(
        r#"{"table":"studentData","format":"parquet","compression":"none","parquet_compression":"snappy"}"#,
        &defaults(),
    )
    .unwrap();
    assert_eq!(job.parquet_compression, ParquetCompression::Snappy);
    let again = job.to_request().into_job(&defaults(), None).unwrap();
    assert_eq!(again.parquet_compression, ParquetCompression::Snappy);

    let err = BackupJob::parse(
        r#"{"table":"studentData","format":"parquet","compression":"zstd"}"#,
        &defaults(),
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("compression"));
    let message = err.to_string();
    assert!(
        message.contains("parquet_compression") && message.contains("Athena"),
        "{message}"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","format":"csv","parquet_compression":"zstd"}"#),
        "parquet_compression"
    );
}

#[test]
fn full_job_parses_with_every_field() {
    let job = BackupJob::parse(
        r#"{"table": "studentData", "format": "json", "compression": "zstd", "segments": 8,
            "bucket": "other-bucket", "prefix": "nightly", "consistent_read": true,
            "notify": ["ops@example.com"], "job_id": "job-1", "trigger": "schedule",
            "requested_at": "2025-07-06T02:00:00+07:00"}"#,
        &defaults(),
    )
    .unwrap();
    assert_eq!(job.table.as_str(), "studentData");
    assert_eq!(job.format, Format::Json);
    assert_eq!(job.compression, Compression::Zstd);
    assert_eq!(job.segments.map(|n| n.get()), Some(8));
    assert_eq!(
        job.destination,
        Destination::S3 {
            bucket: BucketName::new("other-bucket").unwrap(),
            prefix: Prefix::new("nightly/").unwrap()
        }
    );
    assert!(job.consistent_read);
    assert_eq!(job.notify[0].as_str(), "ops@example.com");
    assert_eq!(job.job_id.as_str(), "job-1");
    assert_eq!(job.trigger, Trigger::Schedule);
    assert_eq!(job.requested_at.to_rfc3339(), "2025-07-05T19:00:00+00:00");
}

#[test]
fn minimal_job_takes_defaults_and_generates_an_id() {
    let job = BackupJob::parse(r#"{"table":"studentData"}"#, &defaults()).unwrap();
    assert_eq!(job.format, Format::DynamodbJson);
    assert_eq!(job.compression, Compression::Gzip);
    assert_eq!(job.segments, None);
    assert_eq!(job.destination.prefix().as_str(), "backups/");
    assert_eq!(job.trigger, Trigger::Manual);
    assert!(JobId::new(job.job_id.as_str()).is_ok());
    let other = BackupJob::parse(r#"{"table":"studentData"}"#, &defaults()).unwrap();
    assert_ne!(job.job_id, other.job_id);
}

#[test]
fn to_request_round_trips_through_json() {
    let job = BackupJob::parse(
        r#"{"table":"studentData","segments":3,"notify":["a@b.co"],"job_id":"x1"}"#,
        &defaults(),
    )
    .unwrap();
    let json = serde_json::to_string(&job.to_request()).unwrap();
    let again = BackupJob::parse(&json, &JobDefaults::default()).unwrap();
    assert_eq!(job, again);
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        field_of(r#"{"table":"studentData","colour":"red"}"#),
        "colour"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","format":"xml"}"#),
        "format"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","compression":7}"#),
        "compression"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","segments":0}"#),
        "segments"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","segments":-3}"#),
        "segments"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","segments":1001}"#),
        "segments"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","segments":2.5}"#),
        "segments"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","segments":"8"}"#),
        "segments"
    );
    assert_eq!(field_of(r#"{"table":"x"}"#), "table");
    assert_eq!(field_of(r#"{"table":"student data"}"#), "table");
    assert_eq!(field_of(r#"{}"#), "table");
    assert_eq!(
        field_of(r#"{"table":"studentData","bucket":"Bad_Bucket"}"#),
        "bucket"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","bucket":"192.168.1.1"}"#),
        "bucket"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","prefix":"/abs"}"#),
        "prefix"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","prefix":"a/../b"}"#),
        "prefix"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","notify":["nope"]}"#),
        "notify[0]"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","notify":"a@b.co"}"#),
        "notify"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","job_id":"../x"}"#),
        "job_id"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","trigger":"cron"}"#),
        "trigger"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","consistent_read":"yes"}"#),
        "consistent_read"
    );
    assert_eq!(
        field_of(r#"{"table":"studentData","requested_at":"yesterday"}"#),
        "requested_at"
    );
    assert_eq!(field_of(r#"[1,2]"#), ".");
    assert_eq!(field_of(r#"{"table":"studentData""#), "<syntax>");
    assert_eq!(field_of(r#"{"table":"studentData"} trailing"#), "<syntax>");
    assert_eq!(field_of(""), "<syntax>");
}

#[test]
fn messages_say_what_was_expected() {
    let err = BackupJob::parse(r#"{"table":"studentData","format":"xml"}"#, &defaults())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`format`") && err.contains("dynamodb-json"),
        "{err}"
    );
    let err = BackupJob::parse(r#"{"table":"studentData","colour":"red"}"#, &defaults())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("colour") && err.contains("expected one of"),
        "{err}"
    );
    let err = BackupJob::parse(r#"{"table":"studentData"}"#, &JobDefaults::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("DDB_BACKUP_BUCKET"), "{err}");
}

#[test]
fn out_dir_destination_needs_no_bucket() {
    let job = JobRequest::from_json(r#"{"table":"studentData"}"#)
        .unwrap()
        .into_job(
            &JobDefaults::default(),
            Some(Destination::Directory {
                root: "/tmp/x".into(),
                prefix: Prefix::default(),
            }),
        )
        .unwrap();
    assert!(matches!(job.destination, Destination::Directory { .. }));
}

#[test]
fn prefixes_are_normalised() {
    assert_eq!(Prefix::new("").unwrap().as_str(), "");
    assert!(Prefix::new("/").is_err());
    assert_eq!(Prefix::new("a").unwrap().as_str(), "a/");
    assert_eq!(Prefix::new("a/b/").unwrap().as_str(), "a/b/");
    assert!(Prefix::new("a//b").is_err());
}

/// The documented JSON Schema (docs/job.md) must describe the job the code accepts: the same
/// fields, the same enum values, the same limits.
#[test]
fn the_documented_schema_matches_the_job_the_code_accepts() {
    let readme = include_str!("../../../docs/job.md");
    let start = readme
        .find("\"title\": \"ddb-backup job\"")
        .expect("schema in docs/job.md");
    let open = readme[..start].rfind("```json").expect("schema block") + "```json".len();
    let close = open + readme[open..].find("```").expect("end of schema block");
    let schema: serde_json::Value = serde_json::from_str(&readme[open..close]).unwrap();
    let properties = schema["properties"].as_object().unwrap();

    let full = JobRequest {
        table: Some("t".repeat(3)),
        format: Some(Format::Json),
        compression: Some(Compression::Zstd),
        parquet_compression: Some(ParquetCompression::Snappy),
        segments: Some(1),
        workers: Some(1),
        bucket: Some("b".repeat(3)),
        prefix: Some("p/".into()),
        consistent_read: Some(true),
        read_budget: Some(10.0),
        read_budget_percent: Some(50.0),
        notify: Some(vec![]),
        job_id: Some("j".into()),
        trigger: Some(Trigger::Api),
        requested_at: Some("2025-07-06T02:00:00Z".into()),
    };
    let wire = serde_json::to_value(&full).unwrap();
    let mut code_fields: Vec<_> = wire.as_object().unwrap().keys().cloned().collect();
    let mut doc_fields: Vec<_> = properties.keys().cloned().collect();
    code_fields.sort();
    doc_fields.sort();
    assert_eq!(doc_fields, code_fields);

    let names = |v: &serde_json::Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&properties["format"]),
        Format::ALL.map(|f| f.name().to_string())
    );
    assert_eq!(
        names(&properties["compression"]),
        Compression::ALL.map(|c| c.name().to_string())
    );
    assert_eq!(
        names(&properties["parquet_compression"]),
        ParquetCompression::ALL.map(|c| c.name().to_string())
    );
    for trigger in names(&properties["trigger"]) {
        let json = format!(r#"{{"table":"tbl","bucket":"b-1","trigger":"{trigger}"}}"#);
        assert!(
            BackupJob::parse(&json, &JobDefaults::default()).is_ok(),
            "{trigger}"
        );
    }
    assert_eq!(
        properties["segments"]["maximum"],
        MAX_SEGMENTS * MAX_WORKERS
    );
    assert_eq!(properties["workers"]["maximum"], MAX_WORKERS);
    assert_eq!(properties["notify"]["maxItems"], MAX_RECIPIENTS);
}

#[test]
fn workers_are_bounded_by_the_configured_ceiling_and_share_at_least_one_segment_each() {
    let parse = |json: &str, max_workers: u32| {
        BackupJob::parse(
            json,
            &JobDefaults {
                max_workers,
                ..defaults()
            },
        )
    };
    let job = parse(r#"{"table":"tbl","workers":4,"segments":4000}"#, 100).unwrap();
    assert_eq!(job.workers.map(|w| w.get()), Some(4));
    assert_eq!(job.to_request().workers, Some(4));
    for (json, max, field, says) in [
        (
            r#"{"table":"tbl","workers":0}"#,
            100,
            "workers",
            "from 1 to 100",
        ),
        (
            r#"{"table":"tbl","workers":101}"#,
            100,
            "workers",
            "DDB_BACKUP_MAX_WORKERS",
        ),
        (
            r#"{"table":"tbl","workers":20}"#,
            10,
            "workers",
            "from 1 to 10",
        ),
        (
            r#"{"table":"tbl","workers":4,"segments":3}"#,
            100,
            "segments",
            "one segment per worker",
        ),
        (
            r#"{"table":"tbl","workers":2,"segments":2001}"#,
            100,
            "segments",
            "1000 for each of 2 workers",
        ),
        (
            r#"{"table":"tbl","segments":1001}"#,
            100,
            "segments",
            "from 1 to 1000,",
        ),
    ] {
        let err = parse(json, max).unwrap_err();
        assert_eq!(err.field(), Some(field), "{json}: {err}");
        assert!(err.to_string().contains(says), "{json}: {err}");
    }
}
