//! `/_sim/faults` and `/_sim/stats`: the simulator's control API.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::SimState;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(
            "/_sim/faults",
            get(get_faults).patch(patch_faults).post(patch_faults),
        )
        .route("/_sim/stats", get(stats))
        .with_state(state)
}

async fn get_faults(State(state): State<Arc<SimState>>) -> Response {
    axum_json(&state.faults())
}

async fn patch_faults(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")).into_response(),
    };
    match state.faults().merge(patch) {
        Ok(f) => {
            state.set_faults(f.clone());
            axum_json(&f)
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    axum_json(&state.stats())
}

fn axum_json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
