//! Verifying a backup: every file the manifest lists is streamed once, its stored bytes counted and
//! hashed, decompressed and every record decoded, then compared with the manifest. Memory stays
//! flat whatever the backup's size; problems name the file and what differs.

use std::io::{self, Read};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::format::{Compression, Format};
use crate::model::manifest::{FileEntry, Manifest};
use crate::readback::records::read_items;
use crate::store::{ObjectStore, StoreError};

/// Files verified at once.
const PARALLEL_FILES: usize = 4;

/// What verify found in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// Key as listed in the manifest.
    pub key: String,
    /// Stored bytes read.
    pub bytes: u64,
    /// Records decoded.
    pub items: u64,
    /// Everything that differs from the manifest (empty when the file is good).
    pub problems: Vec<String>,
}

/// The result of verifying a whole backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Job of the backup.
    pub job_id: String,
    /// Files checked.
    pub files: Vec<FileCheck>,
    /// Problems of the manifest itself (totals that do not add up).
    pub manifest_problems: Vec<String>,
}

impl VerifyReport {
    /// Whether every file and the manifest's totals check out.
    pub fn is_ok(&self) -> bool {
        self.manifest_problems.is_empty() && self.files.iter().all(|f| f.problems.is_empty())
    }

    /// Items decoded across all files.
    pub fn items(&self) -> u64 {
        self.files.iter().map(|f| f.items).sum()
    }

    /// Stored bytes read across all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// One line per problem: `file: what differs`.
    pub fn problems(&self) -> Vec<String> {
        self.manifest_problems
            .iter()
            .map(|p| format!("manifest: {p}"))
            .chain(
                self.files
                    .iter()
                    .flat_map(|f| f.problems.iter().map(move |p| format!("{}: {p}", f.key))),
            )
            .collect()
    }
}

/// Verifies every file of `manifest` in `store`. `locate` maps a manifest key to the store's key
/// (identity for S3; for a directory, the path below the backup's own folder).
pub async fn verify_backup(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    locate: impl Fn(&str) -> String,
) -> Result<VerifyReport, StoreError> {
    let mut manifest_problems = Vec::new();
    let listed: u64 = manifest.files.iter().map(|f| f.item_count).sum();
    if listed != manifest.item_count {
        manifest_problems.push(format!(
            "files list {listed} items in all, but item_count says {}",
            manifest.item_count
        ));
    }
    let checks = stream::iter(manifest.files.iter().map(|entry| {
        let store = store.clone();
        let key = locate(&entry.key);
        let entry = entry.clone();
        let (format, compression) = (manifest.format, manifest.compression);
        async move { check_file(store, key, entry, format, compression).await }
    }))
    .buffered(PARALLEL_FILES)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifyReport {
        job_id: manifest.job_id.clone(),
        files: checks,
        manifest_problems,
    })
}

async fn check_file(
    store: Arc<dyn ObjectStore>,
    key: String,
    entry: FileEntry,
    format: Format,
    compression: Compression,
) -> Result<FileCheck, StoreError> {
    let reader = match store.open(&key).await {
        Ok(reader) => reader,
        Err(StoreError::NotFound { uri }) => {
            return Ok(FileCheck {
                key: entry.key,
                bytes: 0,
                items: 0,
                problems: vec![format!("missing: {uri} does not exist")],
            })
        }
        Err(e) => return Err(e),
    };
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || Ok(scan_file(bridge, entry, format, compression)))
        .await
        .map_err(|source| StoreError::Task {
            task: "verify",
            source,
        })?
}

/// Counts and hashes bytes as they are read from the store.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn scan_file<R: Read>(
    raw: R,
    entry: FileEntry,
    format: Format,
    compression: Compression,
) -> FileCheck {
    let mut raw = Hashing {
        inner: raw,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut problems = Vec::new();
    let read = read_items(
        &mut raw,
        format,
        compression,
        entry.columns.as_deref(),
        |_| true,
    );
    let (items, plain) = match read {
        Ok(read) => (read.items, read.plain_bytes),
        Err(e) => {
            problems.push(e.message);
            (e.read.items, e.read.plain_bytes)
        }
    };
    // Whatever the decoder left unread still belongs to the stored bytes.
    if let Err(e) = io::copy(&mut raw, &mut io::sink()) {
        problems.push(format!("reading failed: {e}"));
    }
    let sha256 = hex::encode(raw.hasher.finalize());
    if raw.bytes != entry.bytes {
        problems.push(format!(
            "stored size is {} bytes, manifest says {}",
            raw.bytes, entry.bytes
        ));
    }
    if sha256 != entry.sha256 {
        problems.push(format!(
            "sha256 is {sha256}, manifest says {}",
            entry.sha256
        ));
    }
    if items != entry.item_count {
        problems.push(format!(
            "holds {items} items, manifest says {}",
            entry.item_count
        ));
    }
    if problems.is_empty() && plain != entry.uncompressed_bytes {
        problems.push(format!(
            "decompresses to {plain} bytes, manifest says {}",
            entry.uncompressed_bytes
        ));
    }
    FileCheck {
        key: entry.key,
        bytes: raw.bytes,
        items,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ObjectMeta};
    use crate::test_support::{memory_backup, numbered_items};
    use bytes::Bytes;

    async fn backup(store: &MemoryStore, compression: &str) -> Manifest {
        let extra = format!(r#","compression":"{compression}","segments":2"#);
        memory_backup(store, numbered_items(600), &extra).await
    }

    async fn verify(store: &MemoryStore, manifest: &Manifest) -> VerifyReport {
        verify_backup(Arc::new(store.clone()), manifest, str::to_string)
            .await
            .unwrap()
    }

    async fn replace(store: &MemoryStore, key: &str, f: impl Fn(&mut Vec<u8>)) {
        let mut body = store.get(key).await.unwrap().to_vec();
        f(&mut body);
        let meta = ObjectMeta {
            content_type: "application/x-ndjson",
            content_encoding: None,
            records: None,
            retained: false,
        };
        store
            .put_object(key, Bytes::from(body), &meta)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_good_backup_verifies_in_every_compression() {
        for compression in ["gzip", "zstd", "none"] {
            let store = MemoryStore::new();
            let manifest = backup(&store, compression).await;
            let report = verify(&store, &manifest).await;
            assert!(report.is_ok(), "{compression}: {:?}", report.problems());
            assert_eq!(report.items(), 600);
            assert_eq!(report.bytes(), manifest.bytes);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flipped_byte_is_caught() {
        for compression in ["gzip", "zstd", "none"] {
            let store = MemoryStore::new();
            let manifest = backup(&store, compression).await;
            let key = manifest.files[0].key.clone();
            replace(&store, &key, |b| {
                let middle = b.len() / 2;
                b[middle] ^= 0x20;
            })
            .await;
            let problems = verify(&store, &manifest).await.problems();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&key) && p.contains("sha256")),
                "{compression}: {problems:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_file_is_caught_with_its_size() {
        for compression in ["gzip", "zstd", "none"] {
            let store = MemoryStore::new();
            let manifest = backup(&store, compression).await;
            let key = manifest.files[1].key.clone();
            replace(&store, &key, |b| b.truncate(b.len() * 2 / 3)).await;
            let problems = verify(&store, &manifest).await.problems();
            assert!(
                problems.iter().any(|p| p.contains("stored size")),
                "{compression}: {problems:?}"
            );
            assert!(
                problems.iter().any(|p| p.contains("truncated")
                    || p.contains("cut off")
                    || p.contains("items, manifest says")),
                "{compression}: {problems:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_file_and_a_wrong_count_are_caught() {
        let store = MemoryStore::new();
        let mut manifest = backup(&store, "gzip").await;
        manifest.files[0].key.push_str(".gone");
        manifest.files[1].item_count += 1;
        let problems = verify(&store, &manifest).await.problems();
        assert!(
            problems.iter().any(|p| p.contains(".gone: missing")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("holds 300 items, manifest says 301")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("manifest: files list 601 items")),
            "{problems:?}"
        );
    }
}
