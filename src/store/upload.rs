//! Drives one object's upload through an [`ObjectStore`]: a single `PutObject` when the object is
//! small, otherwise a multipart upload with a bounded number of parts in flight, and an abort on
//! every failure path. Open uploads are registered so a failed job can abort the ones whose task
//! was cancelled mid-flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{CompletedPart, ObjectMeta, ObjectStore, StoreError};
use crate::aws::FailureKind;

/// The largest file size target (1 TiB): the part-size schedule is checked to cover it.
pub const MAX_FILE_SIZE_MIB: u64 = 1024 * 1024;

/// S3 refuses uploads of more than 10,000 parts.
pub const MAX_PARTS: i32 = 10_000;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// Size of part `part_number` (1-based): the base size, doubled every 1,000 parts (capped at 5 GiB).
/// From the smallest base S3 allows (5 MiB, also the default), 10,000 parts hold 4.9 TiB, far more
/// than the largest file size target (`DDB_BACKUP_FILE_SIZE_MIB`, at most 1 TiB), so a file never
/// runs out of part numbers; from 8 MiB they hold 8 TiB, past S3's 5 TiB object limit.
pub fn part_size_for(base: usize, part_number: i32) -> usize {
    let doublings = ((part_number.max(1) - 1) / 1000).min(20) as u32;
    base.saturating_mul(1usize << doublings).min(MAX_PART_SIZE)
}

/// Limits shared by every upload of a job.
#[derive(Clone)]
pub struct UploadLimits {
    /// Parts in flight across the whole job: what bounds upload memory.
    pub parts_in_flight: Arc<Semaphore>,
    /// Base part size (grown by [`part_size_for`]).
    pub base_part_size: usize,
}

/// Multipart uploads started and not yet completed or aborted, by upload id.
#[derive(Clone, Default)]
pub struct OpenUploads {
    inner: Arc<Mutex<HashMap<String, String>>>,
}

impl OpenUploads {
    /// The map, even if a thread panicked while holding it: one insert or remove cannot leave it
    /// half-changed, and an upload missing from it would never be aborted.
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, upload_id: &str, key: &str) {
        self.map().insert(upload_id.to_string(), key.to_string());
    }

    fn remove(&self, upload_id: &str) {
        self.map().remove(upload_id);
    }

    /// Aborts every upload still open; failures are logged, since the job has already failed.
    pub async fn abort_all(&self, store: &dyn ObjectStore) {
        let open: Vec<(String, String)> = self.map().drain().collect();
        for (upload_id, key) in open {
            match store.abort_multipart(&key, &upload_id).await {
                Ok(()) => debug!(key, upload_id, "aborted multipart upload"),
                Err(e) => {
                    warn!(key, upload_id, error = %e, "could not abort multipart upload; the bucket's lifecycle rule will remove it")
                }
            }
        }
    }
}

/// One object being uploaded.
pub struct ObjectUploader {
    store: Arc<dyn ObjectStore>,
    key: String,
    meta: ObjectMeta,
    limits: UploadLimits,
    open: OpenUploads,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart, StoreError>>,
    done: Vec<CompletedPart>,
}

impl ObjectUploader {
    /// Prepares an upload of `key`; nothing is sent until the first part or `finish`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        key: String,
        meta: ObjectMeta,
        limits: UploadLimits,
        open: OpenUploads,
    ) -> Self {
        ObjectUploader {
            store,
            key,
            meta,
            limits,
            open,
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
        }
    }

    /// Bytes the producer should gather before calling [`send_part`](Self::send_part).
    pub fn next_part_size(&self) -> usize {
        part_size_for(self.limits.base_part_size, self.next_part)
    }

    /// Size of the part after the next one, to reserve its buffer ahead.
    pub fn part_size_after_next(&self) -> usize {
        part_size_for(self.limits.base_part_size, self.next_part + 1)
    }

    /// Uploads a full part in the background; waits while too many parts are in flight.
    pub async fn send_part(&mut self, body: Bytes) -> Result<(), StoreError> {
        if let Err(e) = self.try_send_part(body).await {
            self.abort().await;
            return Err(e);
        }
        Ok(())
    }

    async fn try_send_part(&mut self, body: Bytes) -> Result<(), StoreError> {
        if self.next_part > MAX_PARTS {
            return Err(StoreError::request(
                "UploadPart",
                self.key.clone(),
                FailureKind::Rejected,
                format!("object would need more than {MAX_PARTS} parts"),
            ));
        }
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.key, &self.meta).await?;
                self.open.insert(&id, &self.key);
                self.upload_id = Some(id.clone());
                id
            }
        };
        // Surface failures of parts already sent before queueing more.
        while let Some(result) = self.in_flight.try_join_next() {
            self.done.push(join_result(result)?);
        }
        let permit = self
            .limits
            .parts_in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::LimitClosed)?;
        let store = self.store.clone();
        let key = self.key.clone();
        let part_number = self.next_part;
        self.next_part += 1;
        self.in_flight.spawn(async move {
            let result = store.upload_part(&key, &upload_id, part_number, body).await;
            drop(permit);
            result
        });
        Ok(())
    }

    /// Sends the last bytes and makes the object visible. Small objects go in one `PutObject`.
    pub async fn finish(mut self, last: Bytes) -> Result<(), StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            return self.store.put_object(&self.key, last, &self.meta).await;
        };
        let result = self.try_finish(&upload_id, last).await;
        if result.is_err() {
            self.abort().await;
        } else {
            self.open.remove(&upload_id);
        }
        result
    }

    async fn try_finish(&mut self, upload_id: &str, last: Bytes) -> Result<(), StoreError> {
        if !last.is_empty() {
            self.try_send_part(last).await?;
        }
        while let Some(result) = self.in_flight.join_next().await {
            self.done.push(join_result(result)?);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number);
        self.store
            .complete_multipart(&self.key, upload_id, parts)
            .await
    }

    /// Aborts the multipart upload, if one was started. Parts in flight are let finish first:
    /// S3 says a part still uploading during an abort may survive it.
    pub async fn abort(&mut self) {
        while self.in_flight.join_next().await.is_some() {}
        if let Some(upload_id) = self.upload_id.take() {
            self.open.remove(&upload_id);
            if let Err(e) = self.store.abort_multipart(&self.key, &upload_id).await {
                warn!(key = %self.key, upload_id, error = %e, "could not abort multipart upload; the bucket's lifecycle rule will remove it");
            }
        }
    }
}

fn join_result(
    result: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
) -> Result<CompletedPart, StoreError> {
    result.map_err(|source| StoreError::Task {
        task: "part upload",
        source,
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_grow_so_ten_thousand_parts_cover_any_file() {
        let total = |base: usize| -> u128 {
            (1..=MAX_PARTS)
                .map(|n| part_size_for(base, n) as u128)
                .sum()
        };
        let base = 5 * 1024 * 1024;
        assert_eq!(part_size_for(base, 1), base);
        assert_eq!(part_size_for(base, 1000), base);
        assert_eq!(part_size_for(base, 1001), 2 * base);
        assert!((1..=MAX_PARTS).all(|n| part_size_for(base, n) <= MAX_PART_SIZE));
        // The smallest base holds more than the largest file (plus a page past the target).
        let largest_file = u128::from(MAX_FILE_SIZE_MIB) << 20;
        assert!(total(base) >= 4 * largest_file, "{}", total(base));
        // From 8 MiB up, even one object at S3's 5 TiB limit fits.
        assert!(total(8 << 20) >= 5u128 << 40, "{}", total(8 << 20));
    }

    #[tokio::test]
    async fn uploads_registered_after_a_panic_under_the_lock_are_still_aborted() {
        let store = crate::store::MemoryStore::default();
        let open = OpenUploads::default();
        let poisoner = open.clone();
        let _ = std::thread::spawn(move || {
            let _held = poisoner.inner.lock();
            panic!("a task panicked while holding the registry");
        })
        .join();
        assert!(open.inner.is_poisoned());
        let meta = ObjectMeta {
            content_type: "application/octet-stream",
            content_encoding: None,
            records: None,
            retained: false,
        };
        let id = store.create_multipart("k", &meta).await.unwrap();
        open.insert(&id, "k");
        open.abort_all(&store).await;
        assert_eq!(store.open_uploads(), 0, "the upload was aborted");
    }
}
