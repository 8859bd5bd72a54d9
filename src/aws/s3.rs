//! The report bucket: checked once per run before any window is claimed, its report objects
//! listed, a report's object pinned (HeadObject: its version, ETag and checksum), its versions
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

use crate::aws::ServiceError;
use crate::domain::bucket::{ListedObject, ListedVersion};
use crate::domain::code::Code;
use crate::domain::report::{ObjectPin, SeenObject, checksum_text, full_object_sha256};
use crate::domain::time::Timestamp;

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

/// Every version and delete marker under `prefix`, all pages (ListObjectVersions: the
/// `s3:ListBucketVersions` permission). The SDK has no paginator for it: the key and version
/// markers are followed by hand.
pub async fn list_versions(
    store: &Store,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ListedVersion>, ServiceError> {
    let mut found = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = store
            .client
            .list_object_versions()
            .bucket(bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .set_expected_bucket_owner(store.owner())
            .send()
            .await
            .map_err(|e| ServiceError::from_sdk(&e))?;
        for v in page.versions() {
            let (Some(key), Some(id)) = (v.key(), v.version_id()) else {
                continue;
            };
            found.push(ListedVersion {
                key: key.to_owned(),
                version_id: id.to_owned(),
                etag: v.e_tag().map(str::to_owned),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
            });
        }
        for m in page.delete_markers() {
            let (Some(key), Some(id)) = (m.key(), m.version_id()) else {
                continue;
            };
            found.push(ListedVersion {
                key: key.to_owned(),
                version_id: id.to_owned(),
                etag: None,
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
            });
        }
        if page.is_truncated() != Some(true) {
            return Ok(found);
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            return Ok(found);
        }
    }
}

/// Pages of one prefix a listing reads at most: 100,000 keys, eleven years of hourly reports
/// of one CA. Past it the listing fails, naming the prefix, rather than holding the CA up.
const MOST_PAGES: usize = 100;

/// The objects under `prefix` written at or after `written_since`, all pages: key, when it
/// was written, size. S3 lists keys in UTF-8 order ("List results are always returned in
/// UTF-8 binary order", S3 API reference, ListObjectsV2) and a report's key ends in its id,
/// which is not ordered by time: no `StartAfter` skips the older reports, so every page is
/// read, and only the objects since the instant are kept.
pub async fn list_objects(
    store: &Store,
    bucket: &str,
    prefix: &str,
    written_since: Timestamp,
) -> Result<Vec<ListedObject>, ServiceError> {
    let mut pages = store
        .client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_expected_bucket_owner(store.owner())
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    let mut read = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
        read += 1;
        if read > MOST_PAGES {
            return Err(ServiceError {
                code: Code::InvalidRequest.into(),
                message: format!(
                    "s3://{bucket}/{prefix} holds more than {} objects: not searched further",
                    MOST_PAGES * 1_000
                ),
                ambiguous: false,
            });
        }
        for object in page.contents() {
            let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                continue;
            };
            let written_at = Timestamp::from_epoch_seconds(modified.secs().max(0) as u64);
            if written_at < written_since {
                continue;
            }
            objects.push(ListedObject {
                key: key.to_owned(),
                written_at,
                size_bytes: object.size().unwrap_or(0).max(0) as u64,
            });
        }
    }
    Ok(objects)
}

/// A report's body, as a stream (`evidence::contents` parses it as it arrives).
pub async fn report_body(
    store: &Store,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<ByteStream, ServiceError> {
    let object = store
        .client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .set_expected_bucket_owner(store.owner())
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(object.body)
}
