//! The small endpoints: models, embeddings, health, readiness, metrics, and the fallbacks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use outlast_core::EmbeddingsRequest;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::failover::Failover;
use crate::{AppState, auth, body};

/// When the gateway's model list was built; OpenAI's `created` is a Unix time.
fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn model_entries(state: &AppState) -> Vec<Value> {
    let created = created();
    let mut out = Vec::new();
    for r in &state.config.routes {
        out.push(
            json!({"id": r.model, "object": "model", "created": created, "owned_by": "outlast"}),
        );
    }
    for p in &state.config.providers {
        for m in &p.models {
            out.push(json!({"id": format!("{}/{m}", p.name), "object": "model", "created": created, "owned_by": p.name}));
        }
    }
    out
}

pub(crate) async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check(&state, &headers) {
        return e.into_response();
    }
    axum::Json(json!({"object": "list", "data": model_entries(&state)})).into_response()
}

pub(crate) async fn model(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = auth::check(&state, &headers) {
        return e.into_response();
    }
    match model_entries(&state)
        .into_iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(id.as_str()))
    {
        Some(m) => axum::Json(m).into_response(),
        None if state.config.resolve(&id).is_some() => axum::Json(
            json!({"id": id, "object": "model", "created": created(), "owned_by": "outlast"}),
        )
        .into_response(),
        None => ApiError::ModelNotFound { model: id }.into_response(),
    }
}

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.metrics.request();
    let response = match embed(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.response(response.status().as_u16());
    response
}

async fn embed(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth::check(state, headers)?;
    let limits = &state.config.server;
    let bytes = body::read(
        headers,
        body,
        limits.max_body_bytes,
        limits.body_read_timeout,
    )
    .await?;
    let mut req: EmbeddingsRequest = body::json(&bytes)?;
    req.validate()
        .map_err(|i| ApiError::invalid(i.message, i.param))?;
    let targets = state
        .config
        .resolve(&req.model)
        .ok_or_else(|| ApiError::ModelNotFound {
            model: req.model.clone(),
        })?;
    let deadline = crate::chat::deadline(state, headers)?;
    let mut failover = Failover::new(state, targets, deadline);
    loop {
        let target = failover.next_target()?;
        req.model.clone_from(&target.model);
        let provider = crate::chat::provider(state, &target)?;
        match provider
            .embeddings(&state.client, &req, failover.limits())
            .await
        {
            Ok(reply) => {
                failover.succeeded(&target);
                crate::protect::tap::record(&target, reply.usage);
                let mut r = (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    reply.body,
                )
                    .into_response();
                crate::chat::mark(r.headers_mut(), &target, failover.attempts());
                return Ok(r);
            }
            Err(e) => failover.failed(&target, e)?,
        }
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = state.metrics.render();
            state.protect.render_metrics(&mut text);
            text + &crate::status::render_metrics(&state)
        },
    )
        .into_response()
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    ApiError::NotFound {
        path: uri.path().to_string(),
    }
    .into_response()
}

pub(crate) async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
