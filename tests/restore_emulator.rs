//! Backup → verify → restore into a new table → both tables hold the same items, through the real
//! SDK clients against the emulator, for the lossless format in every compression.

mod common;

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use ddb_backup::job::{BucketName, JobDefaults, TableName};
use ddb_backup::restore::{restore, RestoreOptions, RestoreProgress};
use ddb_backup::scan::DynamoDbSource;
use ddb_backup::store::{S3Store, ServerSideEncryption};
use ddb_backup::table_writer::DynamoDbWriter;
use ddb_backup::{Backup, BackupJob, Compression, Tuning};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_restore_gives_back_the_same_items_and_indexes() {
    let aws = aws().await;
    let source = unique("restore-src");
    let bucket = unique("bkt");
    create_table_with_gsi(&aws, &source).await;
    create_bucket(&aws, &bucket).await;
    let items: Vec<_> = every_type_items(48)
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            item.insert("grp".into(), AttributeValue::S(format!("g{}", i % 3)));
            item
        })
        .collect();
    put_items(&aws, &source, &items).await;
    let store = Arc::new(S3Store::new(
        aws.s3(),
        BucketName::new(&bucket).unwrap(),
        ServerSideEncryption::Aes256,
        None,
    ));

    for compression in Compression::ALL {
        let job = BackupJob::parse(
            &format!(r#"{{"table":"{source}","bucket":"{bucket}","compression":"{compression}","segments":2}}"#),
            &JobDefaults::default(),
        )
        .unwrap();
        let manifest = Backup::new(
            Arc::new(DynamoDbSource::new(aws.dynamodb())),
            store.clone(),
            Tuning::default(),
        )
        .run(&job)
        .await
        .expect("backup");
        assert_eq!(manifest.global_secondary_indexes[0].index_name, "byGroup");

        let report = ddb_backup::verify::verify_backup(store.clone(), &manifest, str::to_string)
            .await
            .expect("verify");
        assert!(report.is_ok(), "{compression}: {:?}", report.problems());

        let target = unique("restored");
        let options = RestoreOptions {
            table: TableName::new(&target).unwrap(),
            create_table: true,
            write_budget: None,
            concurrency: 4,
            allow_lossy: false,
        };
        let writer = Arc::new(DynamoDbWriter::new(aws.dynamodb()));
        let restored = restore(
            store.clone(),
            &manifest,
            str::to_string,
            writer.clone(),
            &options,
            Arc::new(RestoreProgress::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("{compression}: {e}"));
        assert_eq!(restored.items, 48);

        assert_eq!(
            sorted(scan_all(&aws, &target).await),
            sorted(scan_all(&aws, &source).await),
            "{compression}"
        );
        assert_eq!(
            sorted(scan_all(&aws, &target).await),
            sorted(items.clone()),
            "{compression}"
        );

        let described = aws
            .dynamodb()
            .describe_table()
            .table_name(&target)
            .send()
            .await
            .unwrap();
        let gsi = &described.table().unwrap().global_secondary_indexes()[0];
        assert_eq!(gsi.index_name(), Some("byGroup"));
        assert_eq!(gsi.key_schema()[0].attribute_name(), "grp");

        // Restoring again into the now existing table changes nothing.
        let again = RestoreOptions {
            create_table: false,
            ..options
        };
        restore(
            store.clone(),
            &manifest,
            str::to_string,
            writer,
            &again,
            Arc::new(RestoreProgress::default()),
        )
        .await
        .expect("second restore");
        assert_eq!(sorted(scan_all(&aws, &target).await), sorted(items.clone()));
    }
}
