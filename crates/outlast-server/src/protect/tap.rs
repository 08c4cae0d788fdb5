//! Usage seen while a request is answered. The protection layer opens a tap around the
//! handler (a task-local, so the handlers need no new parameters); the handlers report each
//! usage block they see with [`record`], and a stream's relay keeps the tap it was created
//! under, since the body is polled after the handler returned.

use std::sync::{Arc, Mutex};

use outlast_config::Target;
use outlast_core::Usage;

tokio::task_local! {
    static TAP: Arc<Tap>;
}

/// Usage per target that answered (a resumed stream has several).
#[derive(Debug, Default)]
pub struct Tap {
    segments: Mutex<Vec<Segment>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub provider: String,
    pub model: String,
    pub label: String,
    pub usage: Usage,
}

impl Tap {
    /// Note `usage` from `target`: cumulative within one target, so a later block replaces an
    /// earlier one from the same target.
    pub fn record(&self, target: &Target, usage: Usage) {
        let Ok(mut s) = self.segments.lock() else {
            return;
        };
        match s.last_mut() {
            Some(last) if last.provider == target.provider_name && last.model == target.model => {
                last.usage = usage;
            }
            _ => s.push(Segment {
                provider: target.provider_name.clone(),
                model: target.model.clone(),
                label: target.label(),
                usage,
            }),
        }
    }

    pub(crate) fn segments(&self) -> Vec<Segment> {
        self.segments.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The tap of the request being handled, if the protection layer opened one.
pub fn current() -> Option<Arc<Tap>> {
    TAP.try_with(Arc::clone).ok()
}

/// Report usage for the request being handled.
pub fn record(target: &Target, usage: Option<Usage>) {
    if let (Some(u), Some(tap)) = (usage, current()) {
        tap.record(target, u);
    }
}

pub(crate) async fn scope<F: std::future::Future>(tap: Arc<Tap>, f: F) -> F::Output {
    TAP.scope(tap, f).await
}

/// Ask the provider for usage on a stream whose client did not, so every stream is billed;
/// `true` when the usage-only chunk must then be kept from the client.
pub(crate) fn ensure_stream_usage(req: &mut outlast_core::ChatRequest) -> bool {
    if req.wants_stream_usage() {
        return false;
    }
    let options = req
        .stream_options
        .get_or_insert_with(|| outlast_core::StreamOptions {
            include_usage: None,
            extra: Default::default(),
        });
    options.include_usage = Some(true);
    true
}

/// The final `choices: []` chunk that only carries usage.
pub(crate) fn is_usage_only(chunk: &outlast_providers::Chunk) -> bool {
    chunk.usage.is_some()
        && chunk.text.is_none()
        && chunk.data.windows(12).any(|w| w == b"\"choices\":[]")
}
