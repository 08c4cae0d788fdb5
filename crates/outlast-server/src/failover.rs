//! Ordered failover across a route's targets within one request deadline.
//!
//! The rule: a failed attempt moves on to the next target only when it is the provider's fault
//! and nothing has reached the client yet. Caller faults come back at once; once every target
//! has failed the client gets 503 with the shortest Retry-After any provider gave.
//!
//! This is the seam where breakers, retry budgets and target selection plug in: they decide the
//! order `next_target` yields and learn from `failed`/`succeeded`.

use std::time::Duration;

use outlast_config::Target;
use outlast_core::{UpstreamError, UpstreamErrorKind};
use outlast_providers::AttemptLimits;
use tokio::time::Instant;

use crate::AppState;
use crate::error::ApiError;

/// When every target failed without saying when to come back.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Failover<'a> {
    state: &'a AppState,
    targets: &'a [Target],
    next: usize,
    attempts: u32,
    deadline: Instant,
    retry_after: Option<Duration>,
    last_error: Option<UpstreamError>,
}

impl<'a> Failover<'a> {
    pub fn new(state: &'a AppState, targets: &'a [Target], deadline: Instant) -> Self {
        Self {
            state,
            targets,
            next: 0,
            attempts: 0,
            deadline,
            retry_after: None,
            last_error: None,
        }
    }

    /// The next target to try, or why there is none.
    pub fn next_target(&mut self) -> Result<&'a Target, ApiError> {
        if Instant::now() >= self.deadline {
            return Err(self.deadline_error());
        }
        let Some(target) = self.targets.get(self.next) else {
            return Err(self.exhausted());
        };
        self.next += 1;
        self.attempts += 1;
        self.state.metrics.upstream_attempt();
        Ok(target)
    }

    pub fn limits(&self) -> AttemptLimits {
        AttemptLimits::new(self.deadline, &self.state.config.upstream)
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Record that `target` answered (for a stream: its first event arrived).
    pub fn succeeded(&mut self, _target: &Target) {
        if self.attempts > 1 {
            self.state.metrics.failed_over();
        }
    }

    /// Record a failed attempt. `Ok` means the next target may be tried; `Err` is the answer
    /// for the client now.
    pub fn failed(&mut self, target: &Target, error: UpstreamError) -> Result<(), ApiError> {
        self.state.metrics.upstream_failure();
        if error.kind == UpstreamErrorKind::DeadlineExceeded {
            tracing::warn!(target = %target.label(), error = %error.message, "request deadline passed");
            self.last_error = Some(error);
            return Err(self.deadline_error());
        }
        if !error.fails_over() {
            tracing::debug!(target = %target.label(), error = %error.message, "provider refused the request itself");
            let status = match error.kind {
                UpstreamErrorKind::Status(s) => s,
                _ => 400,
            };
            return Err(ApiError::UpstreamRejected {
                status,
                message: error.message,
                body: error.body,
            });
        }
        tracing::warn!(target = %target.label(), error = %error.message, "attempt failed; trying the next target");
        if let Some(after) = error.retry_after {
            self.retry_after = Some(self.retry_after.map_or(after, |cur| cur.min(after)));
        }
        self.last_error = Some(error);
        Ok(())
    }

    pub fn exhausted(&self) -> ApiError {
        let last = self
            .last_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" Last failure: {}.", e.message));
        let n = self.targets.len();
        ApiError::Unavailable {
            message: format!(
                "Every provider for this model is unavailable right now ({n} target{} tried).{last}",
                if n == 1 { "" } else { "s" }
            ),
            retry_after: self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        }
    }

    fn deadline_error(&self) -> ApiError {
        let last = self
            .last_error
            .as_ref()
            .map_or_else(String::new, |e| format!(" Last failure: {}.", e.message));
        ApiError::DeadlineExceeded {
            message: format!(
                "No provider answered within the request deadline of {:?}.{last} Retry, or raise upstream.request_timeout.",
                self.state.config.upstream.request_timeout
            ),
        }
    }
}
