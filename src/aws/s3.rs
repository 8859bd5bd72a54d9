//! The report bucket: checked once per run before any window is claimed, its report objects
//! listed and sized (ListObjectsV2 only: the `s3:ListBucket` permission, never HeadObject),
//! and a report's body fetched when READ_REPORTS asks what it says.

use aws_sdk_s3::Client;

use aws_sdk_s3::primitives::ByteStream;

use crate::aws::ServiceError;
use crate::domain::bucket::ListedObject;
use crate::domain::code::Code;
use crate::domain::time::Timestamp;

/// Fails clearly when the bucket is missing or out of reach: otherwise every CA of the run
/// would claim its window only to have the service refuse the request.
pub async fn check(client: &Client, bucket: &str) -> Result<(), ServiceError> {
    match client.head_bucket().bucket(bucket).send().await {
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
                    message: format!("access to report bucket {bucket} is denied"),
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

/// The object's size, or `None` when there is no object under exactly that key.
pub async fn object_size(
    s3: &Client,
    bucket: &str,
    key: &str,
) -> Result<Option<u64>, ServiceError> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(key)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(out
        .contents()
        .iter()
        .find(|o| o.key() == Some(key))
        .map(|o| o.size().unwrap_or(0).max(0) as u64))
}

/// Every object under `prefix`, all pages: its key, when it was written and its size.
pub async fn list_objects(
    s3: &Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<ListedObject>, ServiceError> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ServiceError::from_sdk(&e))?;
        for object in page.contents() {
            let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                continue;
            };
            objects.push(ListedObject {
                key: key.to_owned(),
                written_at: Timestamp::from_epoch_seconds(modified.secs().max(0) as u64),
                size_bytes: object.size().unwrap_or(0).max(0) as u64,
            });
        }
    }
    Ok(objects)
}

/// A report's body, as a stream (`evidence::contents` parses it as it arrives).
pub async fn report_body(s3: &Client, bucket: &str, key: &str) -> Result<ByteStream, ServiceError> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk(&e))?;
    Ok(object.body)
}
