//! The gateway's HTTP surface: the OpenAI-compatible API, health and metrics endpoints, the
//! edge (connection handling, limits, graceful shutdown), failover, and the one place where
//! errors become HTTP answers.

mod auth;
mod body;
mod chat;
mod edge;
pub mod error;
mod failover;
mod handlers;
pub mod health;
mod messages;
pub mod metrics;
pub mod protect;
mod request_id;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::routing::{get, post};
use outlast_config::Config;
use outlast_providers::{Provider, UnsupportedProtocol};

pub use edge::{Server, ShutdownReport};
pub use protect::{Protection, attach_store};

/// What every handler shares. Immutable but for counters and the draining flag.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Parallel to `config.providers`.
    pub providers: Vec<Provider>,
    pub client: reqwest::Client,
    pub metrics: metrics::Metrics,
    pub health: health::Health,
    pub status: status::StatusState,
    /// Set when shutdown starts: `/readyz` turns 503 so load balancers stop sending.
    pub draining: AtomicBool,
    /// Edge limits, virtual keys, admission, cost and the usage ledger.
    pub protect: protect::Protection,
}

/// Why the gateway could not be assembled from a (valid) configuration.
#[derive(Debug)]
pub enum BuildError {
    Provider(UnsupportedProtocol),
    Client(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Provider(e) => write!(f, "{e}"),
            BuildError::Client(e) => write!(f, "could not build the upstream HTTP client: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl AppState {
    pub fn new(config: Config) -> Result<Arc<Self>, BuildError> {
        let providers = config
            .providers
            .iter()
            .map(Provider::from_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Provider)?;
        let client = outlast_providers::build_client(&config.upstream)
            .map_err(|e| BuildError::Client(e.to_string()))?;
        let health = health::Health::new(&config);
        let status = status::StatusState::new(&config);
        Ok(Arc::new(Self {
            protect: protect::Protection::new(&config),
            health,
            status,
            config: Arc::new(config),
            providers,
            client,
            metrics: metrics::Metrics::default(),
            draining: AtomicBool::new(false),
        }))
    }
}

/// The axum application. Usable in-process (`tower::ServiceExt::oneshot`) or served by
/// [`Server`].
pub fn app(state: Arc<AppState>) -> Router {
    // The API endpoints that reach providers go through the protection layer.
    let guarded = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/embeddings", post(handlers::embeddings))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            protect::guard::layer,
        ));
    Router::new()
        .merge(guarded)
        .route(
            "/admin/keys",
            post(protect::admin::create).get(protect::admin::list),
        )
        .route(
            "/admin/keys/{id}",
            axum::routing::delete(protect::admin::revoke),
        )
        .route("/v1/models", get(handlers::models))
        .route("/v1/models/{*id}", get(handlers::model))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/status", get(status::page))
        .route("/api/v2/summary.json", get(status::summary))
        .route("/api/v2/status.json", get(status::status))
        .route("/api/v2/components.json", get(status::components))
        .route("/api/v2/incidents.json", get(status::incidents))
        .route("/api/v2/incidents/unresolved.json", get(status::unresolved))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
