//! The bucket's listings: a report prefix's versions (a coverage request verifying the
//! evidence) and the objects written under it since an instant (finding a lost report).

use super::Store;
use crate::aws::ServiceError;
use crate::domain::bucket::{ListedObject, ListedVersion};
use crate::domain::code::Code;
use crate::domain::time::Timestamp;

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
