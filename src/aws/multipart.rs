//! Evidence objects the function writes itself (the coverage manifests), streamed to S3 in
//! parts: a year of 1,000 CAs' reports is a manifest of about 100 MB, more than the function's
//! memory, so no manifest is ever held whole.
//!
//! S3 multipart upload (S3 user guide, "Uploading and copying objects using multipart
//! upload"): every part but the last at least 5 MiB, at most 10,000 parts. Each part here is
//! `PART_SIZE`, so an object can reach 80 GB. With SSE-KMS, S3 needs `kms:GenerateDataKey` and
//! `kms:Decrypt` of the caller for a multipart upload ("Multipart upload API and
//! permissions"); with the stack's own key the object is encrypted with a data key of its own
//! (no Bucket Key), so S3 asks KMS with the object's ARN as encryption context and the role's
//! grant can be held to `evidence/*` (template.yaml, `CoverageManifestKey`).
//!
//! Every part carries a SHA-256 checksum that S3 checks on arrival and keeps, so the manifest
//! has a SHA-256 an auditor can read back (S3 user guide, "Checking object integrity"); a
//! bucket with Object Lock also needs a checksum (or Content-MD5) on each upload ("Using
//! S3 Object Lock": "the Content-MD5 header or the x-amz-sdk-checksum-algorithm header is
//! required for any request to upload an object with a retention period configured").

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};

use crate::aws::ServiceError;
use crate::aws::s3::Store;

/// Bytes of one part: above S3's 5 MiB minimum, small beside the function's memory (two
/// manifests are written side by side).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A failed write of an evidence object: which one, and what S3 said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("writing s3://{bucket}/{key}: {error}")]
pub struct EvidenceError {
    pub bucket: String,
    pub key: String,
    pub error: ServiceError,
}

/// One object being written, part by part.
pub struct EvidenceObject<'a> {
    s3: &'a Store,
    bucket: String,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
}

impl<'a> EvidenceObject<'a> {
    /// Starts the upload. `kms_key`: the stack's own report key, with which the object is
    /// encrypted without a Bucket Key; `None` leaves the bucket's default encryption.
    pub async fn start(
        s3: &'a Store,
        bucket: &str,
        key: &str,
        content_type: &str,
        kms_key: Option<&str>,
    ) -> Result<Self, EvidenceError> {
        let mut create = s3
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            // Which release wrote the evidence, on the object itself (user-defined metadata,
            // `x-amz-meta-tool-version`: S3 user guide, "Working with object metadata").
            .metadata("tool-version", crate::domain::version::VERSION)
            .set_expected_bucket_owner(s3.owner());
        if let Some(kms_key) = kms_key {
            create = create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms_key)
                .bucket_key_enabled(false);
        }
        let fail = |error| EvidenceError {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            error,
        };
        let created = create
            .send()
            .await
            .map_err(|e| fail(ServiceError::from_sdk(&e)))?;
        let upload_id = created.upload_id.ok_or_else(|| {
            fail(ServiceError {
                code: crate::domain::code::Code::IncompleteResponse.into(),
                message: "CreateMultipartUpload returned no upload id".into(),
                ambiguous: false,
            })
        })?;
        Ok(Self {
            s3,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            buffer: Vec::with_capacity(PART_SIZE),
            parts: Vec::new(),
        })
    }

    /// Appends bytes; a full part goes to S3 at once.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), EvidenceError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_SIZE {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), EvidenceError> {
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_SIZE));
        let sent = self
            .s3
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(body))
            .set_expected_bucket_owner(self.s3.owner())
            .send()
            .await
            .map_err(|e| self.failed(ServiceError::from_sdk(&e)))?;
        self.parts.push(
            CompletedPart::builder()
                .set_e_tag(sent.e_tag)
                .set_checksum_sha256(sent.checksum_sha256)
                .part_number(number)
                .build(),
        );
        Ok(())
    }

    /// Sends what is left as the last part and completes the object: only now does it
    /// appear in the bucket, whole.
    pub async fn finish(mut self) -> Result<(), EvidenceError> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.send_part().await?;
        }
        let parts = std::mem::take(&mut self.parts);
        self.s3
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .set_expected_bucket_owner(self.s3.owner())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed(ServiceError::from_sdk(&e)))?;
        Ok(())
    }

    /// Gives the upload up: S3 drops the parts sent so far, and no object appears. A failure
    /// here is only logged: the bucket's lifecycle rule for incomplete uploads removes the
    /// parts in any case (template.yaml).
    pub async fn abort(self) {
        let aborted = self
            .s3
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .set_expected_bucket_owner(self.s3.owner())
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(
                key = self.key,
                "abandoned upload not aborted: {}",
                ServiceError::from_sdk(&e)
            );
        }
    }

    fn failed(&self, error: ServiceError) -> EvidenceError {
        EvidenceError {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            error,
        }
    }
}
