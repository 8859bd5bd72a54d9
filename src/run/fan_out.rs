//! Fan-out: a round over more account-regions than one invocation should take (scheduled or
//! asked for by hand, dry runs included) becomes one work item per account-region, sent to an
//! SQS queue whose event source is this same function.

use crate::aws::sqs;
use crate::config::FanOut;
use crate::domain::outcome::RegionError;
use crate::domain::request::{RunRequest, RunScope, WorkItem};
use crate::inventory::targets::Target;
use crate::invocation::Invocation;
use crate::services::Services;

/// Whether a round fans out: a run over every CA (scheduled, or by hand: `{"dryRun": true}`
/// over an organisation is as large as the schedule's round), only with a queue configured,
/// and only over more account-regions than the threshold. A run naming its CAs, a work item
/// and a round at or under the threshold run here.
pub(super) fn fans_out(request: &RunRequest, fan_out: Option<&FanOut>, targets: usize) -> bool {
    request.scope == RunScope::Every && fan_out.is_some_and(|f| targets > f.threshold)
}

/// The work item of one account-region of this round.
pub(super) fn item(
    invocation: &Invocation,
    request: &RunRequest,
    account: &str,
    region: &str,
) -> WorkItem {
    WorkItem {
        account_id: account.to_owned(),
        region: region.to_owned(),
        parent_run_id: invocation.run_id.clone(),
        dry_run: request.dry_run,
        format: request.format,
    }
}

/// A round that fans out: one work item per account-region sent to the queue instead (what
/// was sent, and an error for each account-region that could not be, which is then not
/// audited in this round and says so). `None` when the round runs here.
pub(super) async fn fan_out_round(
    services: &Services,
    request: &RunRequest,
    invocation: &Invocation,
    targets: &[Target],
) -> Option<(Vec<WorkItem>, Vec<RegionError>)> {
    let settings = services.settings.fan_out.as_ref();
    if !fans_out(request, settings, targets.len()) {
        return None;
    }
    let queue_url = &settings?.queue_url;
    let home = invocation.home_account.as_deref();
    let items: Vec<WorkItem> = targets
        .iter()
        .map(|t| item(invocation, request, t.account.id(home), t.region.as_str()))
        .collect();
    // A WorkItem is strings, a bool and an enum: serialising it cannot fail.
    let bodies: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap_or_default())
        .collect();
    let (sent, not_sent) = sqs::send_all(&services.sqs, queue_url, &bodies).await;
    let errors = not_sent
        .into_iter()
        .map(|n| RegionError {
            account_id: items[n.index].account_id.clone(),
            region: items[n.index].region.clone(),
            error_code: n.code,
            error_message: format!(
                "work item not sent to the fan-out queue {queue_url}: {}",
                n.message
            ),
        })
        .collect();
    Some((sent.into_iter().map(|i| items[i].clone()).collect(), errors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::arn::CaArn;
    use crate::domain::request::Trigger;

    #[test]
    fn only_a_round_over_every_ca_past_the_threshold_fans_out() {
        let queue = FanOut {
            queue_url: "https://sqs.us-east-1.amazonaws.com/111111111111/q".into(),
            threshold: 8,
        };
        let run = |trigger, scope| RunRequest {
            trigger,
            scope,
            dry_run: false,
            format: None,
        };
        let schedule = || Trigger::Schedule {
            source: "aws.events".into(),
            id: None,
            time: None,
        };
        let round = run(schedule(), RunScope::Every);
        assert!(fans_out(&round, Some(&queue), 9));
        assert!(
            !fans_out(&round, Some(&queue), 8),
            "at the threshold it runs here"
        );
        assert!(!fans_out(&round, None, 100), "no queue, no fan-out");
        let arn = CaArn::parse(
            "arn:aws:acm-pca:us-east-1:111111111111:certificate-authority/11111111-2222-3333-4444-555555555555",
        )
        .unwrap();
        let named = run(schedule(), RunScope::These(vec![arn]));
        assert!(!fans_out(&named, Some(&queue), 100));
        let by_hand = run(Trigger::Manual, RunScope::Every);
        assert!(fans_out(&by_hand, Some(&queue), 9), "a manual round too");
        let dry = RunRequest {
            dry_run: true,
            ..by_hand
        };
        assert!(fans_out(&dry, Some(&queue), 9), "a dry run too");
        assert!(!fans_out(&dry, Some(&queue), 8));
    }
}
