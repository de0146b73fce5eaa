//! A local directory as a store, for backups to a laptop: the same key layout as S3 below the
//! root. Objects appear atomically (written to a temporary name, then renamed), so a crashed run
//! never leaves a file that looks whole.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use sha2::{Digest, Sha256};

use super::{
    CompletedPart, KeyFilter, ObjectMeta, ObjectReader, ObjectStore, Precondition, StoreError,
};

/// Conditional writes compare and write under this lock: a local directory is written by one
/// process (the CLI), whose tasks it keeps from interleaving.
static CONDITIONAL_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tag_of(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Directory adapter. Multipart parts are kept in `<root>/.uploads/<id>/` until completed.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io_err(operation: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        operation,
        path: path.display().to_string(),
        source,
    }
}

impl LocalStore {
    /// A store rooted at `root` (created on preflight).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join(".uploads").join(upload_id)
    }

    async fn write_atomically(
        &self,
        key: &str,
        chunks: Vec<PathBuf>,
        body: Option<Bytes>,
    ) -> Result<(), StoreError> {
        let target = self.path(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err("creating directory", parent, e))?;
        }
        let tmp = target.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err("creating", &tmp, e))?;
        if let Some(body) = body {
            file.write_all(&body)
                .await
                .map_err(|e| io_err("writing", &tmp, e))?;
        }
        for chunk in chunks {
            let mut part = tokio::fs::File::open(&chunk)
                .await
                .map_err(|e| io_err("opening part", &chunk, e))?;
            tokio::io::copy(&mut part, &mut file)
                .await
                .map_err(|e| io_err("copying part into", &tmp, e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| io_err("syncing", &tmp, e))?;
        drop(file);
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(|e| io_err("renaming into place", &target, e))
    }
}

/// File in an upload's directory holding its object key.
const UPLOAD_KEY_FILE: &str = "key";

#[async_trait]
impl ObjectStore for LocalStore {
    async fn preflight(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io_err("creating backup directory", &self.root, e))
    }

    fn min_part_size(&self) -> usize {
        1024 * 1024
    }

    fn uri(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        _meta: &ObjectMeta,
    ) -> Result<(), StoreError> {
        self.write_atomically(key, Vec::new(), Some(body)).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        condition: Precondition<'_>,
    ) -> Result<bool, StoreError> {
        let _guard = CONDITIONAL_WRITES.lock().await;
        let current = self.get_tagged(key).await?.map(|(_, tag)| tag);
        let holds = condition.holds(current.as_deref());
        if holds {
            self.put_object(key, body, meta).await?;
        }
        Ok(holds)
    }

    async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        match self.get(key).await {
            Ok(body) => {
                let tag = tag_of(&body);
                Ok(Some((body, tag)))
            }
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn default_retention(&self) -> Result<Option<super::DefaultRetention>, StoreError> {
        Ok(None)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // The deepest directory the prefix names, walked below; keys are `/`-joined.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let mut keys = Vec::new();
        let mut pending = vec![dir_part.to_string()];
        while let Some(dir) = pending.pop() {
            let path = self.path(&dir);
            let mut entries = match tokio::fs::read_dir(&path).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("listing", &path, e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_err("listing", &path, e))?
            {
                let name = entry.file_name().to_string_lossy().to_string();
                let key = format!("{dir}{name}");
                let kind = entry
                    .file_type()
                    .await
                    .map_err(|e| io_err("listing", &entry.path(), e))?;
                if kind.is_dir() {
                    if name != ".uploads" {
                        pending.push(format!("{key}/"));
                    }
                } else if key.starts_with(prefix) && !name.contains(".tmp-") {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn create_multipart(&self, key: &str, _meta: &ObjectMeta) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_err("creating upload directory", &dir, e))?;
        // The key, so that a later attempt can find this upload by prefix and abort it.
        let key_file = dir.join(UPLOAD_KEY_FILE);
        tokio::fs::write(&key_file, key)
            .await
            .map_err(|e| io_err("writing upload key", &key_file, e))?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let path = self.upload_dir(upload_id).join(format!("{part_number:05}"));
        tokio::fs::write(&path, &body)
            .await
            .map_err(|e| io_err("writing part", &path, e))?;
        Ok(CompletedPart {
            part_number,
            etag: format!("{part_number}"),
            checksum_crc32: None,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload_id);
        let chunks = parts
            .iter()
            .map(|p| dir.join(format!("{:05}", p.part_number)))
            .collect();
        self.write_atomically(key, chunks, None).await?;
        self.abort_multipart(key, upload_id).await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), StoreError> {
        let dir = self.upload_dir(upload_id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing upload directory", &dir, e)),
        }
        // Leave no empty `.uploads` behind; it fails harmlessly while other uploads are open.
        let _ = tokio::fs::remove_dir(self.root.join(".uploads")).await;
        Ok(())
    }

    async fn abort_uploads_under(
        &self,
        prefix: &str,
        owned: &KeyFilter<'_>,
    ) -> Result<usize, StoreError> {
        let uploads = self.root.join(".uploads");
        let mut entries = match tokio::fs::read_dir(&uploads).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("listing uploads", &uploads, e)),
        };
        let mut aborted = 0;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_err("listing uploads", &uploads, e))?
        {
            let id = entry.file_name().to_string_lossy().to_string();
            let key = tokio::fs::read_to_string(entry.path().join(UPLOAD_KEY_FILE))
                .await
                .unwrap_or_default();
            if key.starts_with(prefix) && owned(&key) {
                self.abort_multipart(&key, &id).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key);
        tokio::fs::try_exists(&path)
            .await
            .map_err(|e| io_err("checking", &path, e))
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                uri: path.display().to_string(),
            }),
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        let path = self.path(key);
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Box::new(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                uri: path.display().to_string(),
            }),
            Err(e) => Err(io_err("opening", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: ObjectMeta = ObjectMeta {
        content_type: "application/json",
        content_encoding: None,
        records: None,
        retained: false,
    };

    #[tokio::test]
    async fn conditional_writes_tags_and_lists_behave_as_on_s3() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let put = |body: &'static str, condition| {
            let store = store.clone();
            async move {
                store
                    .put_object_if("a/b/c.json", Bytes::from(body), &JSON, condition)
                    .await
                    .unwrap()
            }
        };
        assert!(put("first", Precondition::Absent).await);
        assert!(!put("second", Precondition::Absent).await);
        let (body, tag) = store.get_tagged("a/b/c.json").await.unwrap().unwrap();
        assert_eq!(body, "first");
        assert!(put("third", Precondition::Unchanged(&tag)).await);
        assert!(!put("fourth", Precondition::Unchanged(&tag)).await);
        assert_eq!(store.get("a/b/c.json").await.unwrap(), "third");
        assert_eq!(store.get_tagged("a/none.json").await.unwrap(), None);

        store
            .put_object("a/b/d.json", Bytes::new(), &JSON)
            .await
            .unwrap();
        store
            .put_object("a/x.json", Bytes::new(), &JSON)
            .await
            .unwrap();
        let id = store.create_multipart("a/b/e.json", &JSON).await.unwrap();
        assert_eq!(
            store.list("a/b/").await.unwrap(),
            ["a/b/c.json", "a/b/d.json"],
            "open uploads and other folders are not listed"
        );
        assert_eq!(store.list("a/").await.unwrap().len(), 3);
        assert_eq!(store.list("a/b/c").await.unwrap(), ["a/b/c.json"]);
        assert!(store.list("z/").await.unwrap().is_empty());
        let aborted = store
            .abort_uploads_under("a/", &|key: &str| key.ends_with("d.json"))
            .await
            .unwrap();
        assert_eq!(aborted, 0, "an upload another worker owns is left alone");
        assert_eq!(
            store
                .abort_uploads_under("a/", &|_: &str| true)
                .await
                .unwrap(),
            1
        );
        let _ = id;
    }
}
