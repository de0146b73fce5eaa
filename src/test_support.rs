//! Helpers shared by the unit tests of the pipeline, verify and restore.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::backup::pipeline::{Backup, Tuning};
use crate::codec::encode::test_items::every_type;
use crate::model::job::{BackupJob, Destination, JobRequest, Prefix};
use crate::model::manifest::Manifest;
use crate::model::Item;
use crate::source::MemorySource;
use crate::store::MemoryStore;

/// `n` items of every type, with ids `id-00000`, `id-00001`, …
pub(crate) fn numbered_items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let mut item = every_type();
            item.insert("id".into(), AttributeValue::S(format!("id-{i:05}")));
            item
        })
        .collect()
}

/// A job for table `tbl` with the given extra JSON fields (`,"segments":2`); the destination is
/// a directory, so no bucket is needed.
pub(crate) fn directory_job(extra: &str) -> BackupJob {
    JobRequest::from_json(&format!(r#"{{"table":"tbl"{extra}}}"#))
        .expect("test job JSON")
        .into_job(
            &Default::default(),
            Some(Destination::Directory {
                root: "unused".into(),
                prefix: Prefix::default(),
            }),
        )
        .expect("valid test job")
}

/// Backs `items` (table `tbl`, key `id`) up into `store` and returns the manifest.
pub(crate) async fn memory_backup(store: &MemoryStore, items: Vec<Item>, extra: &str) -> Manifest {
    Backup::new(
        Arc::new(MemorySource::new("tbl", "id", items, 40)),
        Arc::new(store.clone()),
        Tuning::default(),
    )
    .run(&directory_job(extra))
    .await
    .expect("backup")
}

/// Items sorted by id, to compare item sets.
pub(crate) fn sorted_by_id(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| a["id"].as_s().ok().cmp(&b["id"].as_s().ok()));
    items
}
