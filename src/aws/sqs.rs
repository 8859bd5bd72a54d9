//! SQS: message bodies sent to a queue in batches (the fan-out's work items, serialised by
//! the run: this adapter knows bodies, not work items).

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::aws::ServiceError;
use crate::domain::code::Code;

/// SendMessageBatch takes at most ten messages.
const BATCH: usize = 10;

/// A body the queue did not take, by its index in what was asked, with the queue's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSent {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// Sends the bodies in batches of ten; returns the indexes of those the queue took, and for
/// each it did not, why.
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &[String],
) -> (Vec<usize>, Vec<NotSent>) {
    let (mut sent, mut not_sent) = (Vec::new(), Vec::new());
    for (n, chunk) in bodies.chunks(BATCH).enumerate() {
        let first = n * BATCH;
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, body) in chunk.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build();
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => not_sent.push(NotSent {
                    index: first + i,
                    code: Code::InvalidRequest.into(),
                    message: e.to_string(),
                }),
            }
        }
        if entries.is_empty() {
            continue;
        }
        let answer = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let index = |id: &str| id.parse::<usize>().ok().filter(|i| *i < chunk.len());
        match answer {
            Ok(out) => {
                sent.extend(
                    out.successful()
                        .iter()
                        .filter_map(|ok| index(ok.id()))
                        .map(|i| first + i),
                );
                not_sent.extend(out.failed().iter().filter_map(|bad| {
                    Some(NotSent {
                        index: first + index(bad.id())?,
                        code: bad.code().to_owned(),
                        message: bad.message().unwrap_or("refused").to_owned(),
                    })
                }));
            }
            Err(e) => {
                let e = ServiceError::from_sdk(&e);
                not_sent.extend((0..chunk.len()).map(|i| NotSent {
                    index: first + i,
                    code: e.code.clone(),
                    message: e.message.clone(),
                }));
            }
        }
    }
    (sent, not_sent)
}
