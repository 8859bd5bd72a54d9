//! The function as a process: its binary (cargo builds it for integration tests), under a
//! Runtime API of the test's own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::runtime_api::RuntimeApi;
use crate::support::{FUNCTION_NAME, World};

/// The release binary of the function (cargo builds it for integration tests), started with
/// only the environment Lambda would give it; killed with SIGKILL when dropped.
pub(super) struct Function {
    child: Child,
    log: PathBuf,
}

impl Function {
    pub(super) fn start(world: &World, api: &RuntimeApi, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("function log");
        let env = world.function_env(&[]);
        let child = Command::new(env!("CARGO_BIN_EXE_pca-audit-scheduler"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the function binary");
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// Whether the process ended by itself, and how.
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL (`Child::kill` on Unix), then reaps the process.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.kill();
    }
}
