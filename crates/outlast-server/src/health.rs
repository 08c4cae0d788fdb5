//! What the router knows about each target and provider: breaker, TTFT estimate, cool-down
//! from Retry-After, outstanding requests (per target); adaptive concurrency limit and retry
//! budget (per provider); and the global retry budget. Locks are held only for a few field
//! updates, never across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use outlast_config::{Config, Resilience, Target};
use outlast_core::{Fault, UpstreamError, UpstreamErrorKind};
use outlast_resilience::breaker::{Breaker, BreakerConfig};
use outlast_resilience::budget::{BudgetConfig, RetryBudget};
use outlast_resilience::ewma::PeakEwma;
use outlast_resilience::limiter::{AimdLimit, LimitConfig, Outcome};
use tokio::time::Instant;

/// Linkerd's load-biaser penalty: a target that failed or rate-limited must not look fast.
const FAILURE_PENALTY: Duration = Duration::from_secs(5);
/// Direct targets (`provider/any-model`) are tracked up to this many; past it they share one
/// entry, so a flood of made-up model names cannot grow memory without bound.
const MAX_TRACKED_TARGETS: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
pub struct TargetState {
    pub breaker: Breaker,
    pub ewma: PeakEwma,
    pub cooldown_until: Option<Instant>,
    /// Back-pressure answers (429, 503, 529) in a row, without a success between them.
    pub backpressure_streak: u32,
    pub outstanding: u32,
}

#[derive(Debug)]
pub struct TargetHealth {
    pub label: String,
    state: Mutex<TargetState>,
}

impl TargetHealth {
    pub fn lock(&self) -> MutexGuard<'_, TargetState> {
        lock(&self.state)
    }
}

#[derive(Debug)]
pub struct ProviderHealth {
    limiter: Option<Mutex<AimdLimit>>,
    budget: Mutex<RetryBudget>,
}

impl ProviderHealth {
    /// Take a concurrency slot (always granted when the cascade guard is off).
    pub fn try_acquire(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| lock(l).try_acquire())
    }

    pub fn release(&self, outcome: Outcome, now: Instant) {
        if let Some(l) = &self.limiter {
            lock(l).release(outcome, now);
        }
    }

    /// `(limit, in_flight)` when the cascade guard is on.
    pub fn limit(&self) -> Option<(u32, u32)> {
        self.limiter.as_ref().map(|l| {
            let l = lock(l);
            (l.limit(), l.in_flight())
        })
    }

    pub fn deposit(&self, now: Instant) {
        lock(&self.budget).deposit(now);
    }

    pub fn withdraw(&self, now: Instant) -> bool {
        lock(&self.budget).withdraw(now)
    }
}

#[derive(Debug)]
pub struct Health {
    pub config: Resilience,
    breaker: BreakerConfig,
    /// provider index -> model -> health; nested so that a lookup borrows the model name.
    targets: RwLock<HashMap<usize, HashMap<String, Arc<TargetHealth>>>>,
    tracked: std::sync::atomic::AtomicUsize,
    overflow: Arc<TargetHealth>,
    providers: Vec<ProviderHealth>,
    global: Mutex<RetryBudget>,
}

impl Health {
    pub fn new(config: &Config) -> Self {
        let r = config.resilience.clone();
        let now = Instant::now();
        let breaker = BreakerConfig {
            consecutive_failures: r.breaker_consecutive_failures,
            failure_rate: r.breaker_failure_rate,
            min_requests: r.breaker_min_requests,
            window: r.breaker_window,
            base_ejection: r.ejection_base,
            max_ejection: r.ejection_max,
            jitter: 0.5,
        };
        let budget = BudgetConfig {
            ratio: r.retry_budget_ratio,
            min_per_sec: r.retry_budget_min_per_sec,
            window: Duration::from_secs(10),
        };
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let max = p.max_concurrency.unwrap_or(LimitConfig::default().max);
                let limiter = r.cascade_guard.then(|| {
                    Mutex::new(AimdLimit::new(
                        LimitConfig {
                            initial: r.initial_concurrency.min(max),
                            min: r.min_concurrency.min(max),
                            max,
                            ..LimitConfig::default()
                        },
                        now,
                    ))
                });
                ProviderHealth {
                    limiter,
                    budget: Mutex::new(RetryBudget::new(budget, now)),
                }
            })
            .collect();
        let health = Self {
            breaker,
            targets: RwLock::new(HashMap::new()),
            tracked: std::sync::atomic::AtomicUsize::new(0),
            overflow: Arc::new(Self::new_target("(untracked)".into(), breaker, &r, now)),
            providers,
            global: Mutex::new(RetryBudget::new(budget, now)),
            config: r,
        };
        for route in &config.routes {
            for t in route.targets.iter() {
                health.target(t);
            }
        }
        health
    }

    fn new_target(
        label: String,
        breaker: BreakerConfig,
        r: &Resilience,
        now: Instant,
    ) -> TargetHealth {
        TargetHealth {
            label,
            state: Mutex::new(TargetState {
                breaker: Breaker::new(breaker, now),
                ewma: PeakEwma::new(r.default_ttft, r.ewma_decay, now),
                cooldown_until: None,
                backpressure_streak: 0,
                outstanding: 0,
            }),
        }
    }

    pub fn target(&self, t: &Target) -> Arc<TargetHealth> {
        {
            let map = self
                .targets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(h) = map.get(&t.provider).and_then(|m| m.get(t.model.as_str())) {
                return Arc::clone(h);
            }
        }
        let mut map = self
            .targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let models = map.entry(t.provider).or_default();
        if let Some(h) = models.get(t.model.as_str()) {
            return Arc::clone(h);
        }
        if self.tracked.load(std::sync::atomic::Ordering::Relaxed) >= MAX_TRACKED_TARGETS {
            return Arc::clone(&self.overflow);
        }
        self.tracked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let h = Arc::new(Self::new_target(
            t.label(),
            self.breaker,
            &self.config,
            Instant::now(),
        ));
        models.insert(t.model.clone(), Arc::clone(&h));
        h
    }

    pub fn provider(&self, index: usize) -> Option<&ProviderHealth> {
        self.providers.get(index)
    }

    pub fn global_deposit(&self, now: Instant) {
        lock(&self.global).deposit(now);
    }

    pub fn global_withdraw(&self, now: Instant) -> bool {
        lock(&self.global).withdraw(now)
    }

    /// Tracked targets with their breaker state, for metrics and the status page.
    pub fn snapshot(&self) -> Vec<(String, bool, f64)> {
        let now = Instant::now();
        let map = self
            .targets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = map
            .values()
            .flat_map(HashMap::values)
            .map(|h| {
                let s = h.lock();
                (
                    h.label.clone(),
                    s.breaker.is_open(now),
                    s.ewma.estimate_ms(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// How an upstream error feeds the health of its target and provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Counts against the breaker.
    pub breaker_failure: bool,
    /// Tells the concurrency limiter the provider is overloaded.
    pub backpressure: bool,
}

pub fn signal(e: &UpstreamError) -> Signal {
    let backpressure = match e.kind {
        UpstreamErrorKind::Status(s) => matches!(s, 429 | 503 | 529),
        UpstreamErrorKind::FirstByteTimeout | UpstreamErrorKind::Stalled => true,
        UpstreamErrorKind::Connect
        | UpstreamErrorKind::Unsupported
        | UpstreamErrorKind::DeadlineExceeded
        | UpstreamErrorKind::BodyBroken
        | UpstreamErrorKind::Malformed
        | UpstreamErrorKind::StreamError => false,
    };
    // The request's own deadline says nothing about the provider; a caller fault shows the
    // provider is up; a 429 says "slower", which is the concurrency limit's and the
    // cool-down's business, not a reason to eject a provider that is answering.
    let breaker_failure = e.fault() == Fault::Provider
        && !matches!(
            e.kind,
            UpstreamErrorKind::DeadlineExceeded
                | UpstreamErrorKind::Unsupported
                | UpstreamErrorKind::Status(429)
        );
    Signal {
        breaker_failure,
        backpressure,
    }
}

/// Outcome for the limiter.
pub fn outcome(e: &UpstreamError) -> Outcome {
    match e.kind {
        UpstreamErrorKind::Status(429 | 503 | 529) => Outcome::Refused,
        _ if signal(e).backpressure => Outcome::Backpressure,
        _ => Outcome::Neutral,
    }
}

pub const PENALTY: Duration = FAILURE_PENALTY;
