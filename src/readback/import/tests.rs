use super::*;
use crate::model::manifest::Throughput;
use crate::model::table::IndexInfo;
use crate::source::KeyElement;
use crate::store::{MemoryStore, ObjectMeta};
use crate::test_support::{memory_backup, numbered_items, sorted_by_id};

/// A backup of `n` items in `format`, placed as if in bucket `bkt`; returns it with its
/// manifest key.
async fn backup(store: &MemoryStore, n: usize, extra: &str) -> (Manifest, String) {
    let mut manifest = memory_backup(
        store,
        numbered_items(n),
        &format!(r#","segments":3{extra}"#),
    )
    .await;
    manifest.location = "s3://bkt/tbl/dt=x/job/".into();
    let key = store
        .keys()
        .into_iter()
        .find(|k| k.ends_with("manifest.json"))
        .expect("a manifest");
    (manifest, key)
}

const META: ObjectMeta = ObjectMeta {
    content_type: "application/zstd",
    content_encoding: None,
    records: None,
    retained: true,
};

fn table(name: &str) -> TableName {
    TableName::new(name).unwrap()
}

async fn plan(
    store: &MemoryStore,
    manifest: &Manifest,
    key: &str,
    overrides: &ImportOverrides,
) -> Result<ImportPlan, ImportError> {
    ImportPlan::new(
        manifest,
        Some("bkt"),
        key,
        store,
        &table("restored-tbl"),
        overrides,
    )
    .await
}

#[tokio::test]
async fn an_import_gives_back_every_item_of_any_compression() {
    for compression in ["zstd", "gzip", "none"] {
        let store = MemoryStore::new();
        let (manifest, key) =
            backup(&store, 120, &format!(r#","compression":"{compression}""#)).await;
        let plan = plan(&store, &manifest, &key, &ImportOverrides::default())
            .await
            .unwrap();
        assert_eq!(plan.key_prefix, key.replace("manifest.json", "data/"));
        assert_eq!(plan.bucket, "bkt");
        assert_eq!(plan.compression.name(), compression);
        let writer = MemoryWriter::new();
        let importer = MemoryImporter::new(Arc::new(store.clone()), writer.clone());
        let mut seen = Vec::new();
        let report = run_import(&importer, &writer, &plan, Duration::ZERO, |p| {
            seen.push(p.state)
        })
        .await
        .unwrap();
        assert_eq!(seen, [ImportState::InProgress, ImportState::Completed]);
        assert_eq!(report.progress.imported_items, 120);
        assert_eq!(
            sorted_by_id(writer.items("restored-tbl")),
            sorted_by_id(numbered_items(120)),
            "{compression}"
        );
    }
}

#[tokio::test]
async fn formats_that_cannot_round_trip_are_refused_by_name() {
    for format in ["csv", "parquet", "json"] {
        let store = MemoryStore::new();
        let (manifest, key) = backup(&store, 3, &format!(r#","format":"{format}""#)).await;
        let err = plan(&store, &manifest, &key, &ImportOverrides::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ImportError::NotImportable { .. }), "{err}");
        assert!(err.to_string().contains(&format!("`{format}`")), "{err}");
        assert!(err.to_string().contains("without --import"), "{err}");
    }
}

#[tokio::test]
async fn what_import_cannot_do_is_refused_before_it_starts() {
    let store = MemoryStore::new();
    let (manifest, key) = backup(&store, 3, "").await;
    let defaults = ImportOverrides::default();

    let mut many = manifest.clone();
    many.files = vec![manifest.files[0].clone(); MAX_IMPORT_OBJECTS + 1];
    let err = plan(&store, &many, &key, &defaults).await.unwrap_err();
    assert!(
        matches!(err, ImportError::TooManyObjects { files: 50_001, .. }),
        "{err}"
    );

    let err = ImportPlan::new(
        &manifest,
        None,
        &key,
        &store,
        &table("restored-tbl"),
        &defaults,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImportError::NotInS3 { .. }), "{err}");

    let mut indexed = manifest.clone();
    indexed.local_secondary_indexes = vec![IndexInfo {
        index_name: "by-date".into(),
        key_schema: vec![KeyElement {
            attribute_name: "id".into(),
            key_type: "HASH".into(),
        }],
        projection_type: Some("ALL".into()),
        non_key_attributes: vec![],
    }];
    let err = plan(&store, &indexed, &key, &defaults).await.unwrap_err();
    assert!(err.to_string().contains("by-date"), "{err}");

    let mut provisioned = manifest.clone();
    provisioned.billing_mode = Some("PROVISIONED".into());
    let err = plan(&store, &provisioned, &key, &defaults)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::CapacityUnknown), "{err}");
    provisioned.provisioned_throughput = Some(Throughput {
        read: 50,
        write: 20,
    });
    let ok = plan(&store, &provisioned, &key, &defaults).await.unwrap();
    assert_eq!(
        ok.billing,
        ImportBilling::Provisioned {
            read: 50,
            write: 20
        }
    );
    let overridden = ImportOverrides {
        billing: Some(ImportBilling::OnDemand),
        without_indexes: false,
    };
    let ok = plan(&store, &provisioned, &key, &overridden).await.unwrap();
    assert_eq!(ok.billing, ImportBilling::OnDemand);
}

#[tokio::test]
async fn an_object_under_the_prefix_that_the_manifest_does_not_list_refuses() {
    let store = MemoryStore::new();
    let (manifest, key) = backup(&store, 30, "").await;
    let prefix = key.replace("manifest.json", "data/");
    store
        .put_object(
            &format!("{prefix}seg-0009-00000.json.zst"),
            bytes::Bytes::from_static(b"stray"),
            &META,
        )
        .await
        .unwrap();
    let err = plan(&store, &manifest, &key, &ImportOverrides::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::StrayObjects { count: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("seg-0009-00000"), "{err}");
}

#[tokio::test]
async fn an_existing_table_is_refused_and_no_import_starts() {
    let store = MemoryStore::new();
    let (manifest, key) = backup(&store, 3, "").await;
    let plan = plan(&store, &manifest, &key, &ImportOverrides::default())
        .await
        .unwrap();
    let writer = MemoryWriter::new();
    writer
        .create_table("restored-tbl", &plan.spec)
        .await
        .unwrap();
    let importer = MemoryImporter::new(Arc::new(store.clone()), writer.clone());
    let err = run_import(&importer, &writer, &plan, Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::TableExists(_)), "{err}");
    assert!(importer.started().is_empty());
}

#[tokio::test]
async fn an_import_with_errors_fails_and_names_its_log_group() {
    let store = MemoryStore::new();
    let (manifest, key) = backup(&store, 60, "").await;
    let plan = plan(&store, &manifest, &key, &ImportOverrides::default())
        .await
        .unwrap();
    // One file's bytes damaged after the plan was made.
    let file = &manifest.files[0].key;
    store
        .put_object(file, bytes::Bytes::from_static(b"not zstd"), &META)
        .await
        .unwrap();
    let writer = MemoryWriter::new();
    let importer = MemoryImporter::new(Arc::new(store.clone()), writer.clone());
    let err = run_import(&importer, &writer, &plan, Duration::ZERO, |_| {})
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            ImportError::Incomplete {
                errors: 1,
                expected: 60,
                ..
            }
        ),
        "{message}"
    );
    assert!(
        message.contains("/aws-dynamodb/imports/restored-tbl"),
        "{message}"
    );
}

#[tokio::test]
async fn the_request_has_importtables_documented_shape() {
    let store = MemoryStore::new();
    let (mut manifest, key) = backup(&store, 3, "").await;
    manifest.billing_mode = Some("PROVISIONED".into());
    manifest.provisioned_throughput = Some(Throughput { read: 7, write: 3 });
    manifest.global_secondary_indexes = vec![IndexInfo {
        index_name: "by-name".into(),
        key_schema: vec![KeyElement {
            attribute_name: "name".into(),
            key_type: "HASH".into(),
        }],
        projection_type: Some("KEYS_ONLY".into()),
        non_key_attributes: vec![],
    }];
    let plan = plan(&store, &manifest, &key, &ImportOverrides::default())
        .await
        .unwrap();
    let again = ImportPlan::new(
        &manifest,
        Some("bkt"),
        &key,
        &store,
        &table("restored-tbl"),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        plan.client_token, again.client_token,
        "a retried start is the same import"
    );
    assert!(plan.client_token.len() <= 36);

    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .build();
    let importer = DynamoDbImporter::new(aws_sdk_dynamodb::Client::from_conf(conf));
    let request = importer.request(&plan).unwrap();
    let input = request.as_input();
    let source = input.get_s3_bucket_source().as_ref().unwrap();
    assert_eq!(source.s3_bucket(), "bkt");
    assert_eq!(
        source.s3_key_prefix(),
        Some(key.replace("manifest.json", "data/").as_str())
    );
    assert_eq!(input.get_input_format(), &Some(InputFormat::DynamodbJson));
    assert_eq!(
        input.get_input_compression_type(),
        &Some(InputCompressionType::Gzip)
    );
    assert_eq!(
        input.get_client_token().as_deref(),
        Some(plan.client_token.as_str())
    );
    let creation = input.get_table_creation_parameters().as_ref().unwrap();
    assert_eq!(creation.table_name(), "restored-tbl");
    assert_eq!(creation.billing_mode(), Some(&BillingMode::Provisioned));
    let throughput = creation.provisioned_throughput().unwrap();
    assert_eq!(
        (
            throughput.read_capacity_units(),
            throughput.write_capacity_units()
        ),
        (7, 3)
    );
    assert_eq!(creation.key_schema()[0].attribute_name(), "id");
    let gsi = &creation.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), "by-name");
    assert!(
        gsi.provisioned_throughput().is_some(),
        "a provisioned table's index needs its own"
    );
}
