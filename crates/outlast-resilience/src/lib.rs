//! The resilience mechanisms, as small state machines that take the current time as an
//! argument: no HTTP, no sleeping, no global clock. The router owns one of each per target or
//! provider and feeds them outcomes; tests drive them through time explicitly.
//!
//! - [`breaker::Breaker`]: consecutive failures plus a failure-rate window eject a target for a
//!   jittered, exponentially growing time; then one probe decides.
//! - [`budget::RetryBudget`]: retries may add at most a share of recent requests, plus a floor.
//! - [`ewma::PeakEwma`]: time-to-first-token estimate that jumps up at once and decays slowly.
//! - [`limiter::AimdLimit`]: per-provider concurrency limit, additive increase while the
//!   provider keeps up, multiplicative decrease on back-pressure (the cascade guard).
//! - [`gcra::Gcra`]: per-key and per-address rate limits (requests, weighted tokens).
//! - [`admission::Admission`]: the gateway-wide adaptive limit shared by priority classes.

pub mod admission;
pub mod breaker;
pub mod budget;
pub mod ewma;
pub mod gcra;
pub mod limiter;

pub use tokio::time::Instant;
