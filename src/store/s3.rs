//! The production store: S3, with server-side encryption and the expected-bucket-owner guard on
//! every request, and CRC32 checksums on every part so S3 rejects a corrupted upload.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload};
use bytes::Bytes;

use super::{
    CompletedPart, DefaultRetention, KeyFilter, ObjectMeta, ObjectReader, ObjectStore,
    Precondition, StoreError,
};
use crate::aws::{error_facts, FailureKind};
use crate::model::job::BucketName;
use crate::model::manifest::LockMode;

/// Server-side encryption for every object written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerSideEncryption {
    /// SSE-S3 (AES256), the default: no key to manage.
    #[default]
    Aes256,
    /// SSE-KMS with the given key, or the account's `aws/s3` key when `None`.
    Kms {
        /// Key id, ARN or alias.
        key_id: Option<String>,
    },
}

/// S3 bucket adapter.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: BucketName,
    sse: ServerSideEncryption,
    expected_owner: Option<String>,
    lock: Option<DefaultRetention>,
}

impl S3Store {
    /// A store writing into `bucket`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: BucketName,
        sse: ServerSideEncryption,
        expected_owner: Option<String>,
    ) -> Self {
        S3Store {
            client,
            bucket,
            sse,
            expected_owner,
            lock: None,
        }
    }

    /// Locks every object of a backup ([`ObjectMeta::retained`]) for `lock`, from the moment it
    /// is written: the deployed stack's bucket has Object Lock on but no default rule, so that
    /// only backups are locked, not the documents jobs coordinate with.
    pub fn with_object_lock(mut self, lock: Option<DefaultRetention>) -> Self {
        self.lock = lock;
        self
    }

    /// The Object Lock headers for an object of `meta`: mode and retain-until date.
    fn lock_for(
        &self,
        meta: &ObjectMeta,
    ) -> (
        Option<aws_sdk_s3::types::ObjectLockMode>,
        Option<aws_sdk_s3::primitives::DateTime>,
    ) {
        match self.lock {
            Some(lock) if meta.retained => {
                let mode = match lock.mode {
                    LockMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
                    LockMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
                };
                let until = std::time::SystemTime::now()
                    + std::time::Duration::from_secs(u64::from(lock.days) * 86_400);
                (
                    Some(mode),
                    Some(aws_sdk_s3::primitives::DateTime::from(until)),
                )
            }
            _ => (None, None),
        }
    }

    fn sse_algorithm(&self) -> aws_sdk_s3::types::ServerSideEncryption {
        match self.sse {
            ServerSideEncryption::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
            ServerSideEncryption::Kms { .. } => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
        }
    }

    fn kms_key(&self) -> Option<String> {
        match &self.sse {
            ServerSideEncryption::Kms { key_id } => key_id.clone(),
            ServerSideEncryption::Aes256 => None,
        }
    }

    fn fail<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let facts = error_facts(&err);
        let target = self.uri(key);
        if facts.code.as_deref() == Some("NoSuchBucket") {
            StoreError::DestinationMissing {
                destination: format!("s3://{}", self.bucket),
            }
        } else if facts.is_access_denied() {
            StoreError::AccessDenied {
                operation,
                target,
                message: facts.message,
            }
        } else {
            StoreError::Request {
                operation,
                target,
                kind: facts.kind,
                message: facts.message,
                source: Some(err.into()),
            }
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn preflight(&self) -> Result<(), StoreError> {
        match self
            .client
            .head_bucket()
            .bucket(self.bucket.as_str())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                let facts = error_facts(&err);
                if facts.status == Some(404) {
                    Err(StoreError::DestinationMissing {
                        destination: format!("s3://{}", self.bucket),
                    })
                } else {
                    Err(self.fail("HeadBucket", "", err))
                }
            }
        }
    }

    fn min_part_size(&self) -> usize {
        5 * 1024 * 1024
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<(), StoreError> {
        let timeouts = sized_for(body.len());
        self.put_request(key, body, meta)
            .customize()
            .config_override(timeouts)
            .send()
            .await
            .map_err(|e| self.fail("PutObject", key, e))?;
        Ok(())
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        condition: Precondition<'_>,
    ) -> Result<bool, StoreError> {
        // S3 answers 409 ConditionalRequestConflict when two conditional writes of one key race;
        // the request is then simply sent again, and one of the writers sees 412.
        let mut conflicts = 0;
        loop {
            let request = self.put_request(key, body.clone(), meta);
            let request = match condition {
                Precondition::Absent => request.if_none_match("*"),
                Precondition::Unchanged(tag) => request.if_match(tag),
            };
            match request
                .customize()
                .config_override(sized_for(body.len()))
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                Err(err) => {
                    let facts = error_facts(&err);
                    match facts.status {
                        Some(412) => return Ok(false),
                        Some(409) if conflicts < 3 => conflicts += 1,
                        _ => return Err(self.fail("PutObject", key, err)),
                    }
                }
            }
        }
    }

    async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        let object = match self.get_object(key).await {
            Ok(object) => object,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let tag = object.e_tag.clone().ok_or_else(|| {
            StoreError::request(
                "GetObject",
                self.uri(key),
                FailureKind::ServerError,
                "response carried no ETag",
            )
        })?;
        Ok(Some((self.read_body(key, object).await?, tag)))
    }

    async fn default_retention(&self) -> Result<Option<DefaultRetention>, StoreError> {
        if self.lock.is_some() {
            return Ok(self.lock);
        }
        let out = match self
            .client
            .get_object_lock_configuration()
            .bucket(self.bucket.as_str())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
        {
            Ok(out) => out,
            Err(err)
                if error_facts(&err).code.as_deref()
                    == Some("ObjectLockConfigurationNotFoundError") =>
            {
                return Ok(None)
            }
            Err(err) => return Err(self.fail("GetObjectLockConfiguration", "", err)),
        };
        let Some(retention) = out
            .object_lock_configuration
            .and_then(|c| c.rule)
            .and_then(|r| r.default_retention)
        else {
            return Ok(None);
        };
        let mode = match retention.mode {
            Some(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance) => LockMode::Compliance,
            Some(aws_sdk_s3::types::ObjectLockRetentionMode::Governance) => LockMode::Governance,
            _ => return Ok(None),
        };
        let days = match (retention.days, retention.years) {
            (Some(days), _) => days,
            (None, Some(years)) => years.saturating_mul(365),
            (None, None) => return Ok(None),
        };
        Ok(Some(DefaultRetention {
            mode,
            days: u32::try_from(days).unwrap_or(0),
        }))
    }

    async fn download_url(
        &self,
        key: &str,
        filename: &str,
        expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let config =
            aws_sdk_s3::presigning::PresigningConfig::expires_in(expires).map_err(|e| {
                StoreError::request("GetObject", key, FailureKind::Rejected, e.to_string())
            })?;
        let presigned = self
            .client
            .get_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .response_content_disposition(format!(
                "attachment; filename=\"{}\"",
                filename.replace(['"', '\\'], "_")
            ))
            .set_expected_bucket_owner(self.expected_owner.clone())
            .presigned(config)
            .await
            .map_err(|e| self.fail("GetObject", key, e))?;
        Ok(Some(presigned.uri().to_string()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(self.bucket.as_str())
                .prefix(prefix)
                .set_continuation_token(token.take())
                .set_expected_bucket_owner(self.expected_owner.clone())
                .send()
                .await
                .map_err(|e| self.fail("ListObjectsV2", prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, StoreError> {
        let (lock_mode, retain_until) = self.lock_for(meta);
        let out = self
            .client
            .create_multipart_upload()
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(retain_until)
            .bucket(self.bucket.as_str())
            .key(key)
            .content_type(meta.content_type)
            .set_content_encoding(meta.content_encoding.map(str::to_string))
            .set_metadata(user_metadata(meta))
            .server_side_encryption(self.sse_algorithm())
            .set_ssekms_key_id(self.kms_key())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| self.fail("CreateMultipartUpload", key, e))?;
        out.upload_id.ok_or_else(|| {
            StoreError::request(
                "CreateMultipartUpload",
                self.uri(key),
                FailureKind::ServerError,
                "response carried no upload id",
            )
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let timeouts = sized_for(body.len());
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket.as_str())
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .checksum_crc32(crc32_base64(&body))
            .body(ByteStream::from(body))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .customize()
            .config_override(timeouts)
            .send()
            .await
            .map_err(|e| self.fail("UploadPart", key, e))?;
        Ok(CompletedPart {
            part_number,
            etag: out.e_tag.unwrap_or_default(),
            checksum_crc32: out.checksum_crc32,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        let expected = CompositeDigest::of(&parts);
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket.as_str())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(
                        parts
                            .into_iter()
                            .map(|p| {
                                aws_sdk_s3::types::CompletedPart::builder()
                                    .part_number(p.part_number)
                                    .e_tag(p.etag)
                                    .set_checksum_crc32(p.checksum_crc32)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build(),
            )
            .set_expected_bucket_owner(self.expected_owner.clone())
            .customize()
            // S3 may take minutes to assemble many parts; the reply comes at the end.
            .config_override(sized_for(512 * 1024 * 1024))
            .send()
            .await;
        let err = match completed {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let no_such_upload = error_facts(&err).code.as_deref() == Some("NoSuchUpload");
        let failure = self.fail("CompleteMultipartUpload", key, err);
        if !no_such_upload {
            return Err(failure);
        }
        // The upload is gone: completed by a first request whose reply was lost (the SDK
        // then sent it again), or aborted. The object at the key tells which.
        if self.assembled_from(key, &expected).await {
            tracing::info!(
                key,
                upload_id,
                "a completed upload's reply was lost; the object holds exactly its parts"
            );
            return Ok(());
        }
        Err(failure)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(self.bucket.as_str())
            .key(key)
            .upload_id(upload_id)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
            .map_err(|e| self.fail("AbortMultipartUpload", key, e))?;
        Ok(())
    }

    async fn abort_uploads_under(
        &self,
        prefix: &str,
        owned: &KeyFilter<'_>,
    ) -> Result<usize, StoreError> {
        let mut aborted = 0;
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(self.bucket.as_str())
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .set_expected_bucket_owner(self.expected_owner.clone())
                .send()
                .await
                .map_err(|e| self.fail("ListMultipartUploads", prefix, e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    if !owned(key) {
                        continue;
                    }
                    self.abort_multipart(key, id).await?;
                    aborted += 1;
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                return Ok(aborted);
            }
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if error_facts(&err).status == Some(404) => Ok(false),
            Err(err) => Err(self.fail("HeadObject", key, err)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = self.get_object(key).await?;
        self.read_body(key, object).await
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, StoreError> {
        Ok(Box::new(self.get_object(key).await?.body.into_async_read()))
    }
}

/// User metadata (`x-amz-meta-*`) of an object: what a compressed file holds.
fn user_metadata(meta: &ObjectMeta) -> Option<std::collections::HashMap<String, String>> {
    meta.records
        .map(|records| [("records-content-type".to_string(), records.to_string())].into())
}

/// The base64 CRC32 S3 checks a body against. Computed here rather than left to the SDK, whose
/// defaults (`AWS_REQUEST_CHECKSUM_CALCULATION`) may skip it: an Object Lock bucket refuses an
/// upload without one, and it is what makes S3 reject a part corrupted on the way.
/// The client's timeouts with the whole-attempt timeout sized to an upload of `body_bytes`.
fn sized_for(body_bytes: usize) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(crate::aws::timeouts(body_bytes as u64))
}

/// What S3 reports for an object assembled from a list of parts, computed from the parts: the
/// composite CRC32 (`base64(crc32(part crc32s))-N`) and the multipart ETag
/// (`md5(part md5s)-N`, where the parts' ETags are their MD5s). A retried Complete answered
/// `NoSuchUpload` compares the object with these to know whether the first one assembled it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CompositeDigest {
    crc32: Option<String>,
    etag: Option<String>,
}

impl CompositeDigest {
    fn of(parts: &[CompletedPart]) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let n = parts.len();
        let crc32 = parts
            .iter()
            .map(|p| p.checksum_crc32.as_deref().and_then(|c| b64.decode(c).ok()))
            .collect::<Option<Vec<Vec<u8>>>>()
            .map(|crcs| format!("{}-{n}", crc32_base64(&crcs.concat())));
        let etag = parts
            .iter()
            .map(|p| {
                hex::decode(p.etag.trim_matches('"'))
                    .ok()
                    .filter(|d| d.len() == 16)
            })
            .collect::<Option<Vec<Vec<u8>>>>()
            .map(|md5s| {
                use md5::Digest;
                format!("{}-{n}", hex::encode(md5::Md5::digest(md5s.concat())))
            });
        CompositeDigest { crc32, etag }
    }

    /// Whether an object with this checksum and ETag was assembled from the parts. The
    /// checksum decides when both sides have one; the ETag otherwise.
    fn matches(&self, crc32: Option<&str>, etag: Option<&str>) -> bool {
        if let (Some(ours), Some(theirs)) = (&self.crc32, crc32) {
            if theirs.contains('-') {
                return ours == theirs;
            }
        }
        matches!((&self.etag, etag), (Some(ours), Some(theirs)) if ours == theirs.trim_matches('"'))
    }
}

fn crc32_base64(body: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(body).to_be_bytes())
}

impl S3Store {
    /// Whether the object at `key` was assembled from exactly `parts` (its composite checksum,
    /// or its multipart ETag, is theirs): how a Complete answered `NoSuchUpload` knows whether
    /// the first, unanswered Complete made it. A HEAD that fails counts as no.
    pub async fn holds_parts(&self, key: &str, parts: &[CompletedPart]) -> bool {
        self.assembled_from(key, &CompositeDigest::of(parts)).await
    }

    async fn assembled_from(&self, key: &str, expected: &CompositeDigest) -> bool {
        let head = self
            .client
            .head_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await;
        head.is_ok_and(|head| expected.matches(head.checksum_crc32(), head.e_tag()))
    }

    /// A `PutObject` of `body` with the store's encryption, owner guard and checksum.
    fn put_request(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let checksum = crc32_base64(&body);
        let (lock_mode, retain_until) = self.lock_for(meta);
        self.client
            .put_object()
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(retain_until)
            .bucket(self.bucket.as_str())
            .key(key)
            .body(ByteStream::from(body))
            .content_type(meta.content_type)
            .set_content_encoding(meta.content_encoding.map(str::to_string))
            .set_metadata(user_metadata(meta))
            .server_side_encryption(self.sse_algorithm())
            .set_ssekms_key_id(self.kms_key())
            .set_expected_bucket_owner(self.expected_owner.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_crc32(checksum)
    }

    /// The whole body of a small object.
    async fn read_body(
        &self,
        key: &str,
        object: aws_sdk_s3::operation::get_object::GetObjectOutput,
    ) -> Result<Bytes, StoreError> {
        let data = object
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Request {
                operation: "GetObject",
                target: self.uri(key),
                kind: FailureKind::Unreachable,
                message: "the object's body could not be read to its end".to_string(),
                source: Some(e.into()),
            })?;
        Ok(data.into_bytes())
    }

    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        self.client
            .get_object()
            .bucket(self.bucket.as_str())
            .key(key)
            .set_expected_bucket_owner(self.expected_owner.clone())
            .send()
            .await
            .map_err(|err| {
                if error_facts(&err).code.as_deref() == Some("NoSuchKey") {
                    StoreError::NotFound { uri: self.uri(key) }
                } else {
                    self.fail("GetObject", key, err)
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retried_complete_recognises_the_object_its_parts_made() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (one, two) = (b"first part".as_slice(), b"second part".as_slice());
        let part = |n, body: &[u8]| {
            use md5::Digest;
            CompletedPart {
                part_number: n,
                etag: format!("\"{}\"", hex::encode(md5::Md5::digest(body))),
                checksum_crc32: Some(crc32_base64(body)),
            }
        };
        let digest = CompositeDigest::of(&[part(1, one), part(2, two)]);
        let crcs: Vec<u8> = [one, two]
            .iter()
            .flat_map(|b| crc32fast::hash(b).to_be_bytes())
            .collect();
        let composite = format!("{}-2", b64.encode(crc32fast::hash(&crcs).to_be_bytes()));
        assert!(digest.matches(Some(&composite), None));
        assert!(!digest.matches(Some("AAAAAA==-2"), None));
        let etag = {
            use md5::Digest;
            let md5s: Vec<u8> = [one, two]
                .iter()
                .flat_map(|b| md5::Md5::digest(b).to_vec())
                .collect();
            format!("\"{}-2\"", hex::encode(md5::Md5::digest(&md5s)))
        };
        assert!(digest.matches(None, Some(&etag)), "{digest:?} vs {etag}");
        // A full-object checksum (no part count) cannot be compared; the ETag decides.
        assert!(digest.matches(Some("AAAAAA=="), Some(&etag)));
        assert!(!digest.matches(None, Some("\"0123-2\"")));
        // The other order of the same parts is another object.
        let swapped = CompositeDigest::of(&[part(1, two), part(2, one)]);
        assert!(!swapped.matches(Some(&composite), Some(&etag)));
    }

    #[test]
    fn the_checksum_is_s3s_base64_of_the_big_endian_crc32() {
        // CRC32 of "hello" is 0x3610a686.
        assert_eq!(super::crc32_base64(b"hello"), "NhCmhg==");
        assert_eq!(super::crc32_base64(b""), "AAAAAA==");
    }
}
