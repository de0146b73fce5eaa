//! An in-memory store for fast tests and for benchmarks that must not measure a disk or network.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, KeyFilter, ObjectMeta, ObjectReader, ObjectStore, Precondition, StoreError,
};
use crate::aws::FailureKind;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, (Bytes, ObjectMeta)>,
    /// Version tags of objects, bumped on every write.
    tags: HashMap<String, u64>,
    next_tag: u64,
    uploads: HashMap<String, (String, ObjectMeta, BTreeMap<i32, Bytes>)>,
    /// Keys whose next conditional write is applied and then reported refused, once each.
    lose_replies: Option<Arc<KeyFilter<'static>>>,
    replies_lost: std::collections::HashSet<String>,
    /// Lists of prefixes containing this fail as S3 failing past the SDK's retries.
    failing_lists: Option<String>,
}

/// Objects in a map. With `discard_data`, the bodies of data files (keys with `/data/` in them)
/// are dropped, so a benchmark of a million items keeps flat memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    discard_data: bool,
}

impl State {
    fn insert(&mut self, key: &str, body: Bytes, meta: ObjectMeta) {
        self.next_tag += 1;
        self.tags.insert(key.to_string(), self.next_tag);
        self.objects.insert(key.to_string(), (body, meta));
    }
}

impl MemoryStore {
    /// A store that keeps every object.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps only manifests and drops every data body.
    pub fn discarding() -> Self {
        MemoryStore {
            discard_data: true,
            ..Self::default()
        }
    }

    /// Keys of stored objects, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Makes the first conditional write to each key that `filter` picks succeed and then
    /// answer as S3 answers the SDK's retry of a write whose reply was lost: refused, since the
    /// object the write itself made is now there. For tests of writers recognising their own
    /// write.
    pub fn lose_conditional_replies(&self, filter: impl Fn(&str) -> bool + Send + Sync + 'static) {
        self.lock().lose_replies = Some(Arc::new(filter));
    }

    /// Makes every list of a prefix containing `part` fail with a server error, as S3 failing
    /// past the SDK's retries.
    pub fn fail_lists_under(&self, part: &str) {
        self.lock().failing_lists = Some(part.to_string());
    }

    /// Content metadata of an object.
    pub fn meta(&self, key: &str) -> Option<ObjectMeta> {
        self.lock().objects.get(key).map(|(_, m)| m.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated, so recover the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep(&self, body: Bytes, key: &str) -> Bytes {
        if self.discard_data && key.contains("/data/") {
            Bytes::new()
        } else {
            body
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn preflight(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn min_part_size(&self) -> usize {
        1024 * 1024
    }

    fn uri(&self, key: &str) -> String {
        format!("memory://{key}")
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<(), StoreError> {
        let body = self.keep(body, key);
        self.lock().insert(key, body, meta.clone());
        Ok(())
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        condition: Precondition<'_>,
    ) -> Result<bool, StoreError> {
        let body = self.keep(body, key);
        let mut state = self.lock();
        let current = state.tags.get(key).map(u64::to_string);
        let holds = condition.holds(current.as_deref());
        if holds {
            state.insert(key, body, meta.clone());
            let lose = state.lose_replies.as_ref().is_some_and(|f| f(key));
            if lose && state.replies_lost.insert(key.to_string()) {
                return Ok(false);
            }
        }
        Ok(holds)
    }

    async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let state = self.lock();
        Ok(state
            .objects
            .get(key)
            .map(|(body, _)| (body.clone(), state.tags[key].to_string())))
    }

    async fn default_retention(&self) -> Result<Option<super::DefaultRetention>, StoreError> {
        Ok(None)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let state = self.lock();
        if state
            .failing_lists
            .as_deref()
            .is_some_and(|part| prefix.contains(part))
        {
            return Err(StoreError::request(
                "ListObjectsV2",
                prefix,
                FailureKind::ServerError,
                "InternalError: we encountered an internal error, please try again",
            ));
        }
        Ok(state
            .objects
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.lock()
            .uploads
            .insert(id.clone(), (key.to_string(), meta.clone(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let body = self.keep(body, key);
        let mut state = self.lock();
        let (_, _, parts) =
            state
                .uploads
                .get_mut(upload_id)
                .ok_or_else(|| StoreError::NotFound {
                    uri: format!("memory://{key}?uploadId={upload_id}"),
                })?;
        parts.insert(part_number, body);
        Ok(CompletedPart {
            part_number,
            etag: part_number.to_string(),
            checksum_crc32: None,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (_, meta, stored) =
            state
                .uploads
                .remove(upload_id)
                .ok_or_else(|| StoreError::NotFound {
                    uri: format!("memory://{key}?uploadId={upload_id}"),
                })?;
        let mut body = Vec::new();
        for part in parts {
            let bytes = stored.get(&part.part_number).ok_or_else(|| {
                StoreError::request(
                    "CompleteMultipartUpload",
                    key,
                    FailureKind::Rejected,
                    format!("part {} was never uploaded", part.part_number),
                )
            })?;
            body.extend_from_slice(bytes);
        }
        state.insert(key, Bytes::from(body), meta);
        Ok(())
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn abort_uploads_under(
        &self,
        prefix: &str,
        owned: &KeyFilter<'_>,
    ) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let before = state.uploads.len();
        state
            .uploads
            .retain(|_, (key, _, _)| !(key.starts_with(prefix) && owned(key)));
        Ok(before - state.uploads.len())
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().objects.contains_key(key))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.lock()
            .objects
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StoreError::NotFound {
                uri: format!("memory://{key}"),
            })
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let body = self.get(key).await?;
        Ok(Box::new(std::io::Cursor::new(body)))
    }
}
