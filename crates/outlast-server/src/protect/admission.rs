//! The gateway-wide admission gate: the [`Admission`] state machine behind a mutex held only
//! for a few instructions, a bounded wait with a deadline for critical and default requests,
//! and an immediate answer for sheddable ones, so a refusal costs microseconds in a flood.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use outlast_resilience::admission::{Admission, Finished, Priority};
use outlast_resilience::limiter::LimitConfig;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Gate {
    enabled: bool,
    state: Mutex<Admission>,
    /// One queue per class that may wait (critical, default), so a freed slot wakes one
    /// waiter of the highest class that may take it instead of every waiter.
    freed: [Notify; 2],
    waiting: [AtomicUsize; 2],
    queued: AtomicUsize,
    max_wait: Duration,
    max_queue: usize,
}

/// A held slot; give it back with [`Gate::finish`].
#[derive(Debug)]
pub(crate) struct Slot {
    _private: (),
}

impl Gate {
    pub(crate) fn new(config: &outlast_config::Admission) -> Self {
        let limit = LimitConfig {
            initial: config.initial_concurrency,
            min: config.min_concurrency,
            max: config.max_concurrency,
            ..LimitConfig::default()
        };
        Self {
            enabled: config.enabled,
            state: Mutex::new(Admission::new(limit, Instant::now())),
            freed: [Notify::new(), Notify::new()],
            waiting: [AtomicUsize::new(0), AtomicUsize::new(0)],
            queued: AtomicUsize::new(0),
            max_wait: config.max_wait,
            max_queue: config.max_queue,
        }
    }

    fn try_admit(&self, p: Priority) -> bool {
        self.state
            .lock()
            .map(|mut s| s.try_admit(p))
            .unwrap_or(false)
    }

    /// Admit now, or after a bounded wait; `None`: shed.
    pub(crate) async fn admit(&self, p: Priority) -> Option<Slot> {
        if !self.enabled {
            return Some(Slot { _private: () });
        }
        if self.try_admit(p) {
            return Some(Slot { _private: () });
        }
        // The lowest class is shed first: it never queues.
        let class = match p {
            Priority::Critical => 0,
            Priority::Default => 1,
            Priority::Sheddable => return None,
        };
        if self.max_wait.is_zero() {
            return None;
        }
        let (Some(freed), Some(waiting)) = (self.freed.get(class), self.waiting.get(class)) else {
            return None;
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        waiting.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + self.max_wait;
        let admitted = loop {
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_admit(p) {
                break true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break self.try_admit(p);
            }
        };
        waiting.fetch_sub(1, Ordering::AcqRel);
        self.queued.fetch_sub(1, Ordering::AcqRel);
        admitted.then_some(Slot { _private: () })
    }

    pub(crate) fn finish(&self, _slot: Slot, how: Finished) {
        if !self.enabled {
            return;
        }
        let room = match self.state.lock() {
            Ok(mut s) => {
                s.finish(how, Instant::now());
                [
                    s.in_flight() < s.cap(Priority::Critical),
                    s.in_flight() < s.cap(Priority::Default),
                ]
            }
            Err(_) => [false, false],
        };
        // Wake one waiter of the highest class that may take the freed slot.
        for ((room, waiting), freed) in room.iter().zip(&self.waiting).zip(&self.freed) {
            if *room && waiting.load(Ordering::Acquire) > 0 {
                freed.notify_one();
                break;
            }
        }
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// (limit, in flight) for metrics.
    pub(crate) fn snapshot(&self) -> (u32, u32) {
        self.state
            .lock()
            .map(|s| (s.limit(), s.in_flight()))
            .unwrap_or((0, 0))
    }
}
