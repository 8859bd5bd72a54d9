//! Logs: captured as the function writes them (JSON lines), at the production level (INFO).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pca_audit_scheduler::entry::{Response, RunError};
use pca_audit_scheduler::services::Services;
use serde_json::json;

use super::handler::invoke;
use crate::support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A JSON subscriber writing here, as the function's own is (no ANSI, one object a line).
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || sink.clone())
            .finish()
    }
}

/// A current-thread runtime, so every task of the run logs through the thread's subscriber.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn assert_absent(logs: &str, secret: &str, what: &str) {
    assert!(!secret.is_empty(), "{what} is empty");
    assert!(!logs.contains(secret), "the logs carry {what}:\n{logs}");
}

/// The world's secret key and session token are not in the logs.
fn assert_no_keys(logs: &str, world: &World) {
    assert_absent(
        logs,
        world.credentials.secret_access_key(),
        "the secret access key",
    );
    assert_absent(
        logs,
        world.credentials.session_token().unwrap_or_default(),
        "the session token",
    );
}

#[test]
fn logs_of_a_refused_and_a_valid_request_carry_no_secret_and_no_event_body() {
    block_on(async {
        let (world, mut arns, services) = World::fast_with_cas(1).await;
        let arn = arns.remove(0);
        let secret_value = "sk-live-5f0e9a1c-never-log-this";
        let refused =
            json!({"certificateAuthorityArns": [arn], "awsSecretAccessKey": secret_value});
        let valid = json!({"certificateAuthorityArns": [arn], "format": "CSV"});
        let (refused_run, valid_run) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );

        let captured = Captured::default();
        let guard = tracing::subscriber::set_default(captured.subscriber());
        let err = invoke(&services, &world, &refused_run, refused.clone()).await;
        assert!(matches!(err, Err(RunError::InvalidRequest(_))), "{err:?}");
        let summary = match invoke(&services, &world, &valid_run, valid.clone()).await {
            Ok(Response::Run(s)) => s,
            other => panic!("{other:?}"),
        };
        drop(guard);
        assert_eq!(summary.counts.requested, 1, "{summary:#?}");

        let logs = captured.text();
        assert_absent(&logs, secret_value, "the refused field's value");
        assert_absent(&logs, &refused.to_string(), "the refused event");
        assert_absent(&logs, &valid.to_string(), "the valid event");
        assert_no_keys(&logs, &world);
        // And they say what happened, so the test above can fail.
        assert!(
            logs.contains(&refused_run) && logs.contains("refused the event"),
            "{logs}"
        );
        assert!(
            logs.contains("unknown field `awsSecretAccessKey`"),
            "{logs}"
        );
        assert!(logs.contains(&valid_run), "{logs}");
        let requested = logs
            .lines()
            .any(|l| l.contains(&arn) && l.contains("\"outcome\":\"requested\""));
        assert!(requested, "no requested line for {arn}:\n{logs}");
    });
}

#[test]
fn logs_of_an_account_that_cannot_be_entered_carry_no_external_id_or_keys() {
    block_on(async {
        let external_id = "some-secret-value";
        let world = World::new().await;
        world.fast();
        let arn = world.seeded_arns(&[("ACTIVE", 1)]).remove(0);
        let locked = Member::new(&world.account_id, None).await;
        let accounts = format!("{},{}", world.account_id, locked.account_id);
        let services = Services::new(
            world.settings_with(&[
                ("AUDIT_ACCOUNTS", &accounts),
                ("MEMBER_ROLE_EXTERNAL_ID", external_id),
            ]),
            &world.sdk,
            clock(),
        )
        .with_create_period(Duration::ZERO);
        let run_id = uuid::Uuid::new_v4().to_string();
        let scheduled = json!({"source": "aws.scheduler", "executionId": run_id});

        let captured = Captured::default();
        let guard = tracing::subscriber::set_default(captured.subscriber());
        let result = invoke(&services, &world, &run_id, scheduled).await;
        drop(guard);
        match result {
            Err(RunError::Failed(m)) => assert!(
                m.contains(&locked.account_id) && m.contains("AssumeRoleFailed"),
                "{m}"
            ),
            other => panic!("the locked account should fail the run: {other:?}"),
        }

        let logs = captured.text();
        assert_absent(&logs, external_id, "the external id");
        assert_no_keys(&logs, &world);
        assert!(logs.contains(&run_id), "{logs}");
        assert!(
            logs.lines()
                .any(|l| l.contains(&locked.account_id) && l.contains("AssumeRoleFailed")),
            "no line for the locked account:\n{logs}"
        );
        assert!(
            logs.lines()
                .any(|l| l.contains(&arn) && l.contains("\"outcome\":\"requested\"")),
            "no outcome line for {arn}:\n{logs}"
        );
    });
}
