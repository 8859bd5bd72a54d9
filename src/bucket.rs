//! The report bucket, checked once per run before any window is claimed.

use aws_sdk_s3::Client;

use crate::codes::Code;
use crate::service_error::ServiceError;

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
