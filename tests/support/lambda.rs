//! The function called in-process: run requests, invocations, the clock, and the Lambda
//! handler with the context Lambda would give it.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use pca_audit_scheduler::domain::request::{RunRequest, RunScope, Trigger};
use pca_audit_scheduler::entry::{self, Response};
use pca_audit_scheduler::invocation::Invocation;
use pca_audit_scheduler::run::summary::RunSummary;
use pca_audit_scheduler::services::{Clock, Services, SystemClock};
use serde_json::{Value, json};

use super::stack::{REGION, epoch_ms};

/// The machine's clock, as the function reads it.
pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::default())
}

/// The machine's clock moved by `offset`: a later run, without waiting for it.
pub fn clock_at(offset: Duration) -> Arc<dyn Clock> {
    Arc::new(SystemClock { offset })
}

/// The machine's clock moved `skew_ms` ahead (behind, when negative): the clock of a host that
/// disagrees with the others. Its runs read the create slots on the same skew when their
/// services are made with `Services::with_pacer_clock_skew(skew_ms)`.
pub fn skewed_clock(skew_ms: i64) -> Arc<dyn Clock> {
    Arc::new(SkewedClock { skew_ms })
}

struct SkewedClock {
    skew_ms: i64,
}

impl Clock for SkewedClock {
    fn now(&self) -> pca_audit_scheduler::domain::time::Timestamp {
        let skew = Duration::from_millis(self.skew_ms.unsigned_abs());
        let now = std::time::SystemTime::now();
        let at = if self.skew_ms < 0 {
            now - skew
        } else {
            now + skew
        };
        pca_audit_scheduler::domain::time::Timestamp::from_system_time(at)
    }
}

pub fn scheduled() -> RunRequest {
    RunRequest {
        trigger: Trigger::Schedule {
            source: "aws.events".into(),
            id: None,
            time: None,
        },
        scope: RunScope::Every,
        dry_run: false,
        format: None,
    }
}

pub fn manual(arns: &[&str]) -> RunRequest {
    let body = json!({ "certificateAuthorityArns": arns });
    RunRequest::from_value(body).expect("manual request")
}

pub fn invocation(run_id: &str, time: Duration) -> Invocation {
    Invocation {
        run_id: run_id.into(),
        deadline: tokio::time::Instant::now() + time,
        reserve: Invocation::DEFAULT_RESERVE,
        home_account: None,
        partition: None,
    }
}

pub async fn run(services: &Services, request: &RunRequest, run_id: &str) -> RunSummary {
    pca_audit_scheduler::run::run(
        services,
        request,
        &invocation(run_id, Duration::from_secs(600)),
    )
    .await
}

/// Scheduled runs started together, one per services (each its own clients, as separate
/// Lambda execution environments would have) and run id, with ten minutes each.
pub async fn runs_together(services: &[Services], run_ids: &[String]) -> Vec<RunSummary> {
    let request = scheduled();
    let runs = services
        .iter()
        .zip(run_ids)
        .map(|(s, id)| run(s, &request, id));
    futures::future::join_all(runs).await
}

pub fn outcome_of(summary: &RunSummary, arn: &str) -> Value {
    let o = summary
        .certificate_authorities
        .iter()
        .find(|o| o.certificate_authority_arn == arn)
        .unwrap_or_else(|| panic!("no outcome for {arn} in {summary:#?}"));
    serde_json::to_value(o).unwrap()
}

/// The function's name in the tests' accounts.
pub const FUNCTION_NAME: &str = "audit";

/// The ARN Lambda gives the function of `account`.
pub fn function_arn(account: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{account}:function:{FUNCTION_NAME}")
}

/// The context Lambda gives an invocation: this request id, the invoked function's ARN (empty
/// for none) and a deadline five minutes away.
pub fn context(request_id: &str, invoked_function_arn: &str) -> Context {
    let mut context = Context::default();
    context.request_id = request_id.to_string();
    context.invoked_function_arn = invoked_function_arn.to_string();
    context.deadline = epoch_ms() + 300_000;
    context
}

/// An event through the Lambda handler, as one invocation with a fresh request id.
pub async fn handle(services: &Services, payload: Value) -> Result<Response, Diagnostic> {
    let context = context(&uuid::Uuid::new_v4().to_string(), "");
    entry::handle(services, LambdaEvent::new(payload, context))
        .await
        .map_err(Diagnostic::from)
}

/// A scheduled run of `world`'s account as the function runs it in Lambda (its own account
/// known from its ARN), with ten minutes to go.
pub async fn run_as(services: &Services, world: &super::World, run_id: &str) -> RunSummary {
    let mut inv = invocation(run_id, Duration::from_secs(600));
    inv.home_account = Some(world.account_id.clone());
    pca_audit_scheduler::run::run(services, &scheduled(), &inv).await
}
