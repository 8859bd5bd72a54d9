//! The report bucket: checked once per run before any window is claimed, its report objects
//! listed (`listing`), a report's object pinned (HeadObject: its version, ETag and checksum), its versions
//! listed when a coverage request verifies the evidence, and a report's body fetched when
//! READ_REPORTS asks what it says.
//!
//! Every call names the account that must own the bucket (`x-amz-expected-bucket-owner`): "We
//! recommend using bucket owner condition whenever you perform a supported S3 operation and
//! know the account ID of the expected bucket owner" (S3 user guide, "Verifying bucket
//! ownership with bucket owner condition"). A bucket name is global and a deleted bucket's
//! name can be taken by anyone: without it, a mistyped or re-created name would receive the
//! evidence (and the manifests) of someone else's bucket.

use std::sync::OnceLock;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;

mod listing;

pub use listing::{list_objects, list_versions};

use crate::aws::ServiceError;
use crate::domain::code::Code;
use crate::domain::report::{ObjectPin, SeenObject, checksum_text, full_object_sha256};

/// The S3 client, and the account every bucket it is pointed at must belong to.
#[derive(Debug)]
pub struct Store {
    pub(crate) client: Client,
    owner: OnceLock<String>,
}

impl Store {
    /// `owner`: REPORT_BUCKET_OWNER; unset, the function's own account, known at its first
    /// invocation (`own_by_default`).
    pub fn new(client: Client, owner: Option<String>) -> Self {
        let cell = OnceLock::new();
        if let Some(owner) = owner {
            let _ = cell.set(owner);
        }
        Self {
            client,
            owner: cell,
        }
    }

    /// The function's own account owns the bucket, unless a setting said otherwise.
    pub fn own_by_default(&self, home_account: Option<&str>) {
        if let Some(home) = home_account {
            let _ = self.owner.set(home.to_owned());
        }
    }

    /// The expected bucket owner every call names; `None` only before the function knows its
    /// own account (a bare local run without REPORT_BUCKET_OWNER).
    pub fn owner(&self) -> Option<String> {
        self.owner.get().cloned()
    }
}

/// Fails clearly when the bucket is missing or out of reach: otherwise every CA of the run
/// would claim its window only to have the service refuse the request.
pub async fn check(store: &Store, bucket: &str) -> Result<(), ServiceError> {
    let client = &store.client;
    let head = client
        .head_bucket()
        .bucket(bucket)
        .set_expected_bucket_owner(store.owner());
    match head.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let not_found = e.as_service_error().is_some_and(|s| s.is_not_found());
            let status = e.raw_response().map(|r| r.status().as_u16());
            // S3 names the bucket's region in the `x-amz-bucket-region` header of its HeadBucket
            // answer, a 301 when asked from another region (S3 API reference, HeadBucket).
            let bucket_region = e
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_owned);
            let here = client.config().region().map(|r| r.to_string());
            if let Some(there) = bucket_region.filter(|r| Some(r) != here.as_ref()) {
                return Err(ServiceError {
                    code: Code::BucketInAnotherRegion.into(),
                    message: format!(
                        "report bucket {bucket} is in {there}, not in the function's region {}: \
                         the function's S3 client does not follow S3's redirects, so deploy the \
                         function in {there} or use a bucket in its own region",
                        here.as_deref().unwrap_or("(unknown)")
                    ),
                    ambiguous: false,
                });
            }
            Err(match (not_found, status) {
                (true, _) | (_, Some(404)) => ServiceError {
                    code: Code::NoSuchBucket.into(),
                    message: format!("report bucket {bucket} does not exist"),
                    ambiguous: false,
                },
                (_, Some(403)) => ServiceError {
                    code: Code::AccessDenied.into(),
                    message: format!(
                        "access to report bucket {bucket} is denied, or it is not owned by \
                         account {} (REPORT_BUCKET_OWNER, default the function's own account; \
                         S3 refuses every call naming another owner)",
                        store.owner().as_deref().unwrap_or("(unknown)")
                    ),
                    ambiguous: false,
                },
                _ => {
                    let e = ServiceError::from_sdk(&e);
                    ServiceError {
                        message: format!("report bucket {bucket}: {}", e.message),
                        ..e
                    }
                }
            })
        }
    }
}

/// The report object under exactly `key` (its current version, or `version_id`), sized and
/// pinned; `None` when there is none. HeadObject with checksum mode, so S3 answers the checksum
/// it keeps for the object (S3 API reference, HeadObject, `x-amz-checksum-mode`).
pub async fn report_object(
    store: &Store,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Option<SeenObject>, ServiceError> {
    let head = store
        .client
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .checksum_mode(ChecksumMode::Enabled)
        .set_expected_bucket_owner(store.owner());
    let out = match head.send().await {
        Ok(out) => out,
        // 404 for a key with no object (or a delete marker as its current version); asked
        // for a version that is gone, S3 answers 404 too (or 400 for an id it cannot read).
        Err(e)
            if matches!(
                e.raw_response().map(|r| r.status().as_u16()),
                Some(404 | 400)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(ServiceError::from_sdk(&e)),
    };
    let checksum = checksum_text([
        ("CRC64NVME", out.checksum_crc64_nvme()),
        ("CRC32", out.checksum_crc32()),
        ("CRC32C", out.checksum_crc32_c()),
        ("SHA256", out.checksum_sha256()),
        ("SHA1", out.checksum_sha1()),
    ]);
    Ok(Some(SeenObject {
        size_bytes: out.content_length().unwrap_or(0).max(0) as u64,
        pin: ObjectPin {
            version_id: out.version_id().map(str::to_owned),
            etag: out.e_tag().map(str::to_owned),
            sha256: checksum.as_deref().and_then(full_object_sha256),
            checksum,
        },
    }))
}

/// A report's body at its pin, as a stream (`evidence::contents` parses it as it arrives). The
/// pinned ETag is a condition (If-Match): in a bucket without versioning an object written
/// over since it was pinned is refused (412 PreconditionFailed), never read as the report.
pub async fn report_body(
    store: &Store,
    bucket: &str,
    key: &str,
    pin: Option<&ObjectPin>,
) -> Result<ByteStream, ServiceError> {
    let object = store
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(pin.and_then(|p| p.version_id.clone()))
        .set_if_match(pin.and_then(|p| p.etag.clone()))
        .set_expected_bucket_owner(store.owner())
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(object.body)
}
