//! Choosing targets for one request and learning from each attempt.
//!
//! Order: tiers in preference order; within a tier, power of two choices on peak-EWMA of time
//! to first token times outstanding requests, divided by weight. A target is skipped while its
//! breaker is open, while it cools down after a Retry-After, or while its provider is at its
//! adaptive concurrency limit. If every target's breaker is open at once, breakers are ignored
//! for the request (panic mode: spread the load rather than refuse everything).
//!
//! Limits: one deadline for all attempts, at most `max_attempts` attempts, and every attempt
//! after the first must be paid for by the retry budget of the provider that failed and by the
//! global one. When nothing can be tried, the answer is 503 with Retry-After at once: excess
//! load is shed, never queued.
//!
//! Only provider faults fail over, and only before any byte reached the client.

use std::sync::Arc;
use std::time::Duration;

use outlast_config::Target;
use outlast_core::{UpstreamError, UpstreamErrorKind};
use outlast_providers::AttemptLimits;
use outlast_resilience::breaker::Admit;
use outlast_resilience::limiter::Outcome;
use tokio::time::Instant;

use crate::AppState;
use crate::error::ApiError;
use crate::health::{self, PENALTY, TargetHealth};

/// Back-pressure answers in a row after which a target's Retry-After is honoured.
const COOLDOWN_STREAK: u32 = 3;

/// When nothing said when to come back.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A chosen target (a cheap handle: the route's targets are shared).
#[derive(Debug, Clone)]
pub(crate) struct Pick {
    targets: Arc<[Target]>,
    index: usize,
}

impl std::ops::Deref for Pick {
    type Target = Target;

    fn deref(&self) -> &Target {
        // `index` always comes from iterating `targets`.
        #[allow(clippy::indexing_slicing)]
        &self.targets[self.index]
    }
}

/// One attempt's hold on its target: an outstanding request and a concurrency slot, given back
/// (with what was learnt) when the attempt ends. For a stream that is when the stream ends.
#[derive(Debug)]
pub(crate) struct Permit {
    state: Arc<AppState>,
    health: Arc<TargetHealth>,
    provider: usize,
    started: Instant,
    probe: bool,
    recorded: bool,
    outcome: Outcome,
}

impl Permit {
    fn succeeded(&mut self, now: Instant) {
        let ttft = now.saturating_duration_since(self.started);
        let mut s = self.health.lock();
        s.breaker.record_success(now);
        s.ewma.observe(ttft, now);
        s.backpressure_streak = 0;
        self.recorded = true;
        self.outcome = Outcome::Answered(ttft);
        drop(s);
        self.state.metrics.ttft(ttft);
        self.state.status.attempt(&self.health.label, false);
    }

    fn failed(&mut self, e: &UpstreamError, now: Instant) -> health::Signal {
        let signal = health::signal(e);
        // Status history: a caller fault says nothing against the provider.
        self.state.status.attempt(
            &self.health.label,
            signal.breaker_failure || signal.backpressure,
        );
        let mut s = self.health.lock();
        if signal.breaker_failure {
            s.breaker.record_failure(now, fastrand::f64());
        } else {
            // Up, if busy or refusing this request: the breaker has nothing against it.
            s.breaker.record_success(now);
        }
        if signal.breaker_failure || signal.backpressure {
            // A target that fails or refuses fast must not look fast to the balancer.
            s.ewma.penalize(PENALTY, now);
        }
        if matches!(e.kind, UpstreamErrorKind::Status(429 | 503 | 529)) {
            s.backpressure_streak += 1;
            // Refusals among successes are the provider at its capacity: the concurrency limit
            // backs off. Refusals in a row with nothing running mean its quota is gone:
            // honour Retry-After.
            // (Only when nothing else is running there: refusals while others succeed are
            // the provider's capacity, not its quota.)
            if let Some(after) = e.retry_after
                && s.backpressure_streak >= COOLDOWN_STREAK
                && s.outstanding <= 1
            {
                let until = now + after.min(self.state.health.config.cooldown_max);
                s.cooldown_until = Some(s.cooldown_until.map_or(until, |u| u.max(until)));
            }
        }
        self.recorded = true;
        self.outcome = health::outcome(e);
        signal
    }

    /// A stream that had started broke: the target failed after all.
    pub fn stream_failed(&mut self, e: &UpstreamError) {
        let now = Instant::now();
        let signal = health::signal(e);
        if signal.breaker_failure || signal.backpressure {
            self.state.status.attempt(&self.health.label, true);
        }
        if signal.breaker_failure {
            let mut s = self.health.lock();
            s.breaker.record_failure(now, fastrand::f64());
            s.ewma.penalize(PENALTY, now);
        }
        if signal.backpressure {
            self.outcome = Outcome::Backpressure;
        }
    }
}

/// A client request through a route ends: answered (after failover) or not, for the status
/// page's user-facing availability. Direct `provider/model` requests have no route.
impl Drop for Failover {
    fn drop(&mut self) {
        if self.caller_fault {
            return;
        }
        if let Some(route) = self
            .state
            .config
            .routes
            .iter()
            .find(|r| Arc::ptr_eq(&r.targets, &self.targets))
        {
            self.state.status.request(&route.model, self.answered);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let now = Instant::now();
        {
            let mut s = self.health.lock();
            s.outstanding = s.outstanding.saturating_sub(1);
            if self.probe && !self.recorded {
                s.breaker.release_probe();
            }
        }
        if let Some(p) = self.state.health.provider(self.provider) {
            p.release(self.outcome, now);
        }
    }
}

/// Why targets were passed over, for the answer when none is left.
#[derive(Debug, Default, Clone, Copy)]
struct Skipped {
    capacity: u32,
    cooldown: u32,
    ejected: u32,
    budget: bool,
}

pub(crate) struct Failover {
    state: Arc<AppState>,
    targets: Arc<[Target]>,
    tried: Vec<bool>,
    attempts: u32,
    deadline: Instant,
    panic: bool,
    retry_after: Option<Duration>,
    last_error: Option<UpstreamError>,
    skipped: Skipped,
    current: Option<Permit>,
    /// The provider of the last failed attempt: its budget pays for the retry.
    last_provider: Option<usize>,
    /// For the status page: did the client get an answer, or was the request its own fault.
    answered: bool,
    caller_fault: bool,
}

impl Failover {
    pub fn new(state: &Arc<AppState>, targets: Arc<[Target]>, deadline: Instant) -> Self {
        state.health.global_deposit(Instant::now());
        Self {
            state: Arc::clone(state),
            tried: vec![false; targets.len()],
            targets,
            attempts: 0,
            deadline,
            panic: false,
            retry_after: None,
            last_error: None,
            skipped: Skipped::default(),
            current: None,
            last_provider: None,
            answered: false,
            caller_fault: false,
        }
    }

    pub fn limits(&self) -> AttemptLimits {
        AttemptLimits::new(self.deadline, &self.state.config.upstream)
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next target to try, or the answer for the client when there is none.
    pub fn next_target(&mut self) -> Result<Pick, ApiError> {
        // End the previous attempt before starting another.
        self.current = None;
        let now = Instant::now();
        if now >= self.deadline {
            return Err(self.deadline_error());
        }
        if self.attempts >= self.state.health.config.max_attempts {
            return Err(self.exhausted());
        }
        for index in self.order() {
            match self.try_take(index, now) {
                Some(pick) => return Ok(pick),
                None if self.skipped.budget => break,
                None => continue,
            }
        }
        // Panic mode: every target passed over because its breaker is open. Ejecting them all
        // would refuse every request on what may be a fleet-wide signal; spread load instead.
        let s = self.skipped;
        if !self.panic
            && self.attempts == 0
            && s.ejected > 0
            && s.capacity == 0
            && s.cooldown == 0
            && !s.budget
        {
            self.panic = true;
            self.state.metrics.panic_mode();
            self.skipped = Skipped::default();
            for index in self.order() {
                if let Some(pick) = self.try_take(index, now) {
                    return Ok(pick);
                }
            }
        }
        Err(self.exhausted())
    }

    /// Untried targets in the order to try them.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::with_capacity(self.targets.len());
        let mut tier_start = 0;
        while tier_start < self.targets.len() {
            let tier = self.targets.get(tier_start).map_or(0, |t| t.tier);
            let tier_end = (tier_start..self.targets.len())
                .find(|&i| self.targets.get(i).is_some_and(|t| t.tier != tier))
                .unwrap_or(self.targets.len());
            let members: Vec<usize> = (tier_start..tier_end)
                .filter(|&i| !self.tried.get(i).copied().unwrap_or(true))
                .collect();
            order.extend(self.p2c(members));
            tier_start = tier_end;
        }
        order
    }

    /// Power of two choices: of two random members, the cheaper goes first; the rest follow
    /// by cost, so that a refused first choice falls to the next cheapest.
    fn p2c(&self, mut members: Vec<usize>) -> Vec<usize> {
        if members.len() < 2 {
            return members;
        }
        let cost = |i: usize| {
            self.targets.get(i).map_or(f64::MAX, |t| {
                let h = self.state.health.target(t);
                let s = h.lock();
                s.ewma.cost(s.outstanding, t.weight)
            })
        };
        let a = fastrand::usize(..members.len());
        let mut b = fastrand::usize(..members.len() - 1);
        if b >= a {
            b += 1;
        }
        let first = match (members.get(a), members.get(b)) {
            (Some(&x), Some(&y)) => {
                if cost(x) <= cost(y) {
                    x
                } else {
                    y
                }
            }
            _ => return members,
        };
        members.retain(|&m| m != first);
        let mut rest: Vec<(f64, usize)> = members.into_iter().map(|m| (cost(m), m)).collect();
        rest.sort_by(|x, y| x.0.total_cmp(&y.0));
        std::iter::once(first)
            .chain(rest.into_iter().map(|(_, m)| m))
            .collect()
    }

    fn try_take(&mut self, index: usize, now: Instant) -> Option<Pick> {
        let target = self.targets.get(index)?;
        let health = self.state.health.target(target);
        let provider = self.state.health.provider(target.provider)?;
        let probe = {
            let mut s = health.lock();
            if let Some(until) = s.cooldown_until {
                if now < until {
                    self.skipped.cooldown += 1;
                    let left = until - now;
                    self.retry_after = Some(self.retry_after.map_or(left, |r| r.min(left)));
                    return None;
                }
                s.cooldown_until = None;
            }
            let admit = if self.panic {
                Admit::Yes
            } else {
                s.breaker.admit(now)
            };
            match admit {
                Admit::No => {
                    self.skipped.ejected += 1;
                    return None;
                }
                Admit::Probe => true,
                Admit::Yes => false,
            }
        };
        let release_probe = |h: &TargetHealth| {
            if probe {
                h.lock().breaker.release_probe();
            }
        };
        if !provider.try_acquire() {
            release_probe(&health);
            self.skipped.capacity += 1;
            self.state.metrics.capacity_skip();
            return None;
        }
        if self.attempts > 0 {
            // A retry: the provider that failed pays first, then the global budget.
            let failed_provider = self.last_error_provider();
            let paid = failed_provider.is_none_or(|p| {
                self.state
                    .health
                    .provider(p)
                    .is_none_or(|h| h.withdraw(now))
            }) && self.state.health.global_withdraw(now);
            if !paid {
                provider.release(Outcome::Neutral, now);
                release_probe(&health);
                self.skipped.budget = true;
                self.state.metrics.budget_exhausted();
                return None;
            }
            self.state.metrics.retry();
        } else {
            provider.deposit(now);
        }
        health.lock().outstanding += 1;
        if let Some(t) = self.tried.get_mut(index) {
            *t = true;
        }
        self.attempts += 1;
        self.state.metrics.upstream_attempt();
        self.current = Some(Permit {
            state: Arc::clone(&self.state),
            health,
            provider: target.provider,
            started: now,
            probe,
            recorded: false,
            outcome: Outcome::Neutral,
        });
        Some(Pick {
            targets: Arc::clone(&self.targets),
            index,
        })
    }

    fn last_error_provider(&self) -> Option<usize> {
        self.last_provider
    }

    /// Record that the current target answered (for a stream: its first event arrived).
    pub fn succeeded(&mut self, _target: &Target) {
        self.answered = true;
        if let Some(p) = &mut self.current {
            p.succeeded(Instant::now());
        }
        if self.attempts > 1 {
            self.state.metrics.failed_over();
        }
    }

    /// Hand the current attempt's permit to a stream, which holds it until it ends.
    pub fn take_permit(&mut self) -> Option<Permit> {
        self.current.take()
    }

    /// Record a failed attempt. `Ok` means the next target may be tried; `Err` is the answer
    /// for the client now.
    pub fn failed(&mut self, target: &Target, error: UpstreamError) -> Result<(), ApiError> {
        self.state.metrics.upstream_failure();
        if let Some(mut p) = self.current.take() {
            p.failed(&error, Instant::now());
        }
        self.last_provider = Some(target.provider);
        if error.kind == UpstreamErrorKind::DeadlineExceeded {
            tracing::warn!(target = %target.label(), error = %error.message, "request deadline passed");
            self.last_error = Some(error);
            return Err(self.deadline_error());
        }
        if !error.fails_over() {
            self.caller_fault = true;
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
            let after = after.min(self.state.health.config.cooldown_max);
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
        let s = self.skipped;
        let retry_after = self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        if self.attempts == 0 {
            self.state.metrics.shed();
            let why = if s.capacity > 0 {
                "at capacity right now: every target is at its concurrency limit, cooling down or ejected"
            } else {
                "unavailable right now: every target is ejected or cooling down after failures"
            };
            return ApiError::AtCapacity {
                message: format!(
                    "Every provider for this model is {why} ({n} target{}).",
                    plural(n)
                ),
                retry_after,
            };
        }
        let message = if s.budget {
            format!(
                "The provider failed and the gateway's retry budget is spent, so it did not retry (to avoid multiplying load during an outage).{last}"
            )
        } else {
            format!(
                "Every provider for this model is unavailable right now ({} of {n} target{} tried).{last}",
                self.attempts,
                plural(n)
            )
        };
        ApiError::Unavailable {
            message,
            retry_after,
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
