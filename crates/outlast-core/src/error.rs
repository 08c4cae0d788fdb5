//! The error model of an upstream attempt: what went wrong, whose fault it is, and whether the
//! request may move on to the next target.
//!
//! The rule (as in Pingora's failover guide) is that only a provider fault fails over, and only
//! before any byte of the answer reached the client. Which statuses count as provider faults is
//! decided in one exhaustive match ([`classify_status`]) that defaults to "not retryable".

use std::time::Duration;

use bytes::Bytes;

/// Who caused a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself is wrong (400, 404, 413, 422...): every target would refuse it, so the
    /// answer goes back to the client at once.
    Caller,
    /// The provider failed (5xx, 408, 429, 529, network, timeouts, bad body, our key rejected):
    /// another target may answer.
    Provider,
}

/// What went wrong with one upstream attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// TCP connect refused, reset, DNS or TLS failure: nothing reached the provider.
    Connect,
    /// No response headers (or, for streams, no first event) within the time allowed.
    FirstByteTimeout,
    /// The request's own deadline ran out during this attempt.
    DeadlineExceeded,
    /// A stream produced nothing for longer than the stall timeout.
    Stalled,
    /// The provider answered with this HTTP status.
    Status(u16),
    /// The body or stream could not be read to the end (connection cut, reset).
    BodyBroken,
    /// The body was read but is not what the protocol promises.
    Malformed,
    /// The provider reported an error inside a stream that had started with 200.
    StreamError,
    /// This target's protocol cannot express something the request asks for (for example
    /// `n > 1` on Anthropic). Nothing was sent; the next target may be able to, so it fails
    /// over, but it says nothing about the provider's health.
    Unsupported,
}

/// A failed upstream attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    /// A sentence for logs and for the client; never contains credentials.
    pub message: String,
    /// How long the provider asked us to stay away (Retry-After and friends), if it said.
    pub retry_after: Option<Duration>,
    /// The provider's own error body, kept for caller faults so the client sees the provider's
    /// explanation (for example a context-length error).
    pub body: Option<Bytes>,
}

impl UpstreamError {
    pub fn new(kind: UpstreamErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            body: None,
        }
    }

    pub fn fault(&self) -> Fault {
        match self.kind {
            UpstreamErrorKind::Connect
            | UpstreamErrorKind::FirstByteTimeout
            | UpstreamErrorKind::DeadlineExceeded
            | UpstreamErrorKind::Stalled
            | UpstreamErrorKind::BodyBroken
            | UpstreamErrorKind::Malformed
            | UpstreamErrorKind::StreamError
            | UpstreamErrorKind::Unsupported => Fault::Provider,
            UpstreamErrorKind::Status(status) => classify_status(status),
        }
    }

    /// Whether the next target may be tried. The deadline is the request's, not the
    /// provider's: once it has passed no target can help.
    pub fn fails_over(&self) -> bool {
        self.fault() == Fault::Provider && self.kind != UpstreamErrorKind::DeadlineExceeded
    }
}

/// Classify an upstream HTTP status. Exhaustive over the ranges; anything not known to be the
/// provider's fault is treated as the caller's, so an unknown status never triggers failover.
pub fn classify_status(status: u16) -> Fault {
    match status {
        // Our credentials for this provider are bad or lack access: another provider can answer.
        401 | 403 => Fault::Provider,
        // Request timeout, rate limited, Anthropic's "overloaded".
        408 | 429 | 529 => Fault::Provider,
        500..=599 => Fault::Provider,
        // Malformed request, unknown model, too large, unprocessable, conflicts, and anything
        // else: the request itself is the problem.
        0..=399 | 400 | 402 | 404..=407 | 409..=428 | 430..=499 | 600..=u16::MAX => Fault::Caller,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_designed() {
        for s in [401, 403, 408, 429, 500, 502, 503, 504, 529] {
            assert_eq!(classify_status(s), Fault::Provider, "{s}");
        }
        for s in [400, 404, 409, 413, 422, 451, 200, 302, 600] {
            assert_eq!(classify_status(s), Fault::Caller, "{s}");
        }
    }

    #[test]
    fn deadline_is_a_provider_fault_that_does_not_fail_over() {
        let e = UpstreamError::new(UpstreamErrorKind::DeadlineExceeded, "late");
        assert_eq!(e.fault(), Fault::Provider);
        assert!(!e.fails_over());
        assert!(UpstreamError::new(UpstreamErrorKind::Connect, "refused").fails_over());
        assert!(!UpstreamError::new(UpstreamErrorKind::Status(400), "bad").fails_over());
        assert!(UpstreamError::new(UpstreamErrorKind::Unsupported, "n>1").fails_over());
    }
}
