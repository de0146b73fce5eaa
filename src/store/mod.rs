//! Where backup files go. The [`ObjectStore`] port is shaped like S3's multipart API because that
//! is the strictest target; the local directory and in-memory stores emulate it. Stores see only
//! keys and byte parts: they never know about items, formats or compression.

mod local;
mod memory;
mod s3;
mod upload;

use async_trait::async_trait;
use bytes::Bytes;

use crate::aws::{BoxError, FailureKind};
use crate::error::{io_is_retryable, Retryable};
use crate::model::manifest::LockMode;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{S3Store, ServerSideEncryption};
pub use upload::{
    part_size_for, ObjectUploader, OpenUploads, UploadLimits, MAX_FILE_SIZE_MIB, MAX_PARTS,
};

/// Metadata stored with every object, derived from the job's format and compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// `Content-Encoding` header.
    pub content_encoding: Option<&'static str>,
    /// For a compressed file, the media type of the records inside it (user metadata
    /// `records-content-type`), so whoever downloads it knows what it decompresses to.
    pub records: Option<&'static str>,
    /// Part of a backup (a data file, the manifest): a store configured with an Object Lock
    /// retention locks it. Job-coordination documents (status, leases, checkpoints, plans) are
    /// not, so that their rewrites do not pile up as locked versions for the whole retention.
    pub retained: bool,
}

/// A part accepted by a multipart upload, needed to complete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub part_number: i32,
    /// Entity tag returned for the part.
    pub etag: String,
    /// Base64 CRC32 of the part, when the store computed one.
    pub checksum_crc32: Option<String>,
}

/// Why a store operation failed, classified so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The destination bucket or directory does not exist.
    #[error(
        "destination {destination} does not exist: create it (see infra/) or fix the bucket name"
    )]
    DestinationMissing {
        /// `s3://bucket` or a path.
        destination: String,
    },
    /// Credentials are valid but not allowed to do this.
    #[error("access denied: {operation} on {target}: {message}; check the role's IAM policy and the bucket policy")]
    AccessDenied {
        /// The API call.
        operation: &'static str,
        /// Bucket or key.
        target: String,
        /// Service message.
        message: String,
    },
    /// An object that was expected is not there.
    #[error("{uri} does not exist")]
    NotFound {
        /// Where it was looked for.
        uri: String,
    },
    /// Any other failure of a store request (after the SDK's retries).
    #[error("{operation} on {target} failed: {message}")]
    Request {
        /// The API call.
        operation: &'static str,
        /// Bucket or key.
        target: String,
        /// What kind of failure, which decides whether to try again.
        kind: FailureKind,
        /// One line saying what happened.
        message: String,
        /// The SDK's error with its whole chain, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A local filesystem error.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The job's limit on parts in flight was closed under a running upload (a bug).
    #[error("the limit on parts in flight was closed while uploading")]
    LimitClosed,
    /// A background task died (a bug, reported instead of hanging).
    #[error("{task} task failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

impl StoreError {
    /// A failed request that is not an SDK error: a response that contradicts itself, or a
    /// request this store cannot carry out as it is.
    pub fn request(
        operation: &'static str,
        target: impl Into<String>,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Self {
        StoreError::Request {
            operation,
            target: target.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }
}

impl StoreError {
    /// Whether the object asked for is not there (as opposed to unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

impl Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        match self {
            StoreError::DestinationMissing { .. }
            | StoreError::AccessDenied { .. }
            | StoreError::NotFound { .. } => false,
            StoreError::Request { kind, .. } => kind.is_retryable(),
            StoreError::Io { source, .. } => io_is_retryable(source),
            StoreError::Task { .. } | StoreError::LimitClosed => true,
        }
    }
}

/// The object store port: S3 in production, a directory for laptop backups, memory for tests.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Fails fast, before any scanning, when the destination is missing or unreachable.
    async fn preflight(&self) -> Result<(), StoreError>;

    /// Smallest size of every part but the last (S3: 5 MiB).
    fn min_part_size(&self) -> usize;

    /// Human-readable location of a key (`s3://bucket/key` or a path).
    fn uri(&self, key: &str) -> String;

    /// Stores a small object in one request.
    async fn put_object(&self, key: &str, body: Bytes, meta: &ObjectMeta)
        -> Result<(), StoreError>;

    /// Starts a multipart upload and returns its id.
    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, StoreError>;

    /// Uploads one part; parts may be uploaded concurrently and in any order.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError>;

    /// Assembles the parts (sorted by number) into the object.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError>;

    /// Discards an unfinished upload and its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;

    /// Aborts every unfinished multipart upload whose key starts with `prefix` and that `owned`
    /// accepts, and returns how many there were: the leftovers of an attempt that was killed
    /// before it could abort them. `owned` keeps one worker of a fanned-out job from aborting
    /// the uploads its siblings have open under the same prefix.
    async fn abort_uploads_under(
        &self,
        prefix: &str,
        owned: &KeyFilter<'_>,
    ) -> Result<usize, StoreError>;

    /// Stores a small object only if `condition` holds, in one request that no concurrent
    /// writer can interleave with (S3 conditional writes). `Ok(false)` when the condition did
    /// not hold and nothing was written: how the workers of one job agree on who writes what.
    /// Call it through [`put_if`], which also recognises a write whose reply was lost.
    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        condition: Precondition<'_>,
    ) -> Result<bool, StoreError>;

    /// Reads a small object with its version tag (S3's ETag), for a later
    /// [`Precondition::Unchanged`]; `None` when there is no such object.
    async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError>;

    /// Keys of the objects under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The Object Lock retention the destination gives every object of a backup, if any (the
    /// store's own, or its bucket's default rule): what the manifest records about how long the
    /// backup cannot be deleted.
    async fn default_retention(&self) -> Result<Option<DefaultRetention>, StoreError>;

    /// Whether an object exists (manifest checks).
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Reads a whole object; for manifests and small files.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Streams an object, so that verify and restore read files of any size in flat memory.
    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError>;

    /// A URL a browser downloads `key` from without credentials, for `expires`, saved as
    /// `filename` (S3: a presigned GET asking for `Content-Disposition: attachment`); `None`
    /// where the store has no such thing (a directory, memory).
    async fn download_url(
        &self,
        _key: &str,
        _filename: &str,
        _expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

/// An Object Lock retention: a bucket's default rule, or what a store sets on each object of a
/// backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    /// Governance or compliance.
    pub mode: LockMode,
    /// How long each new object version is locked.
    pub days: u32,
}

/// A conditional write that knows its own: `store.put_object_if`, and when that reports the
/// condition refused (or fails), a read of the object. If it holds exactly `body`, the write was
/// this writer's, applied by the store while its reply was lost: the SDK sent the request again
/// and the store refused the copy because of the object the first one made. Every document
/// written this way is unique to its writer (a lease's holder, a marker's writer id) or the same
/// whoever writes it (a plan, a result, a manifest of the same job), so equal bytes settle it.
/// Callers use this rather than `put_object_if` itself.
pub async fn put_if(
    store: &dyn ObjectStore,
    key: &str,
    body: Bytes,
    meta: &ObjectMeta,
    condition: Precondition<'_>,
) -> Result<bool, StoreError> {
    let outcome = store
        .put_object_if(key, body.clone(), meta, condition)
        .await;
    if matches!(outcome, Ok(true)) {
        return outcome;
    }
    match store.get_tagged(key).await {
        Ok(Some((current, _))) if current == body => Ok(true),
        _ => outcome,
    }
}

/// Which keys an operation may touch.
pub type KeyFilter<'a> = dyn Fn(&str) -> bool + Send + Sync + 'a;

/// When a conditional write may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition<'a> {
    /// No object exists at the key (`If-None-Match: *`): the first writer wins.
    Absent,
    /// The object is still the version with this tag (`If-Match`): compare-and-swap.
    Unchanged(&'a str),
}

impl Precondition<'_> {
    /// Whether the condition holds for an object whose current tag is `current` (`None`: absent).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Precondition::Absent => current.is_none(),
            Precondition::Unchanged(tag) => current == Some(*tag),
        }
    }
}

/// A stored object being read.
pub type ObjectReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
