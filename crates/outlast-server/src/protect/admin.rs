//! The admin API for virtual keys, behind `keys.admin_key`: `POST /admin/keys` creates a key
//! and shows it once, `GET /admin/keys` lists keys without their secrets, `DELETE
//! /admin/keys/{id}` revokes one (refused on this replica at once). Without an admin key
//! configured these routes answer 404.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use outlast_resilience::admission::Priority;
use outlast_store::keys::{KeyLimits, KeyRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::VirtualKey;
use super::now_ms;
use crate::AppState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    #[serde(default)]
    pub models: Vec<String>,
    pub priority: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub budget_daily_usd: Option<f64>,
    pub budget_monthly_usd: Option<f64>,
}

impl CreateKey {
    /// Check the fields; the message names the one at fault.
    pub fn into_limits(self) -> Result<(String, KeyLimits), String> {
        let priority = self.priority.unwrap_or_else(|| "default".into());
        if Priority::parse(&priority).is_none() {
            return Err("priority: must be critical, default or sheddable".into());
        }
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        for (field, v) in [
            ("budget_daily_usd", self.budget_daily_usd),
            ("budget_monthly_usd", self.budget_monthly_usd),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(format!("{field}: must be a non-negative amount in USD"));
            }
        }
        if self.models.iter().any(|m| m.contains(',') || m.is_empty()) {
            return Err("models: names must be non-empty and contain no commas".into());
        }
        Ok((
            self.name,
            KeyLimits {
                models: self.models,
                priority,
                rpm: self.rpm,
                tpm: self.tpm,
                max_concurrent: self.max_concurrent,
                budget_daily_usd: self.budget_daily_usd,
                budget_monthly_usd: self.budget_monthly_usd,
            },
        ))
    }
}

/// A key as listed: never the secret, nor its hash.
pub fn describe(r: &KeyRecord) -> Value {
    let l = &r.limits;
    json!({
        "id": r.id, "name": r.name, "prefix": r.prefix, "models": l.models, "priority": l.priority,
        "rpm": l.rpm, "tpm": l.tpm, "max_concurrent": l.max_concurrent,
        "budget_daily_usd": l.budget_daily_usd, "budget_monthly_usd": l.budget_monthly_usd,
        "created_ms": r.created_ms, "revoked_ms": r.revoked_ms,
    })
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<outlast_store::Db, ApiError> {
    let Some(admin) = &state.config.keys.admin_key else {
        return Err(ApiError::NotFound {
            path: "/admin/keys".into(),
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !crate::auth::constant_time_eq(admin.expose().as_bytes(), given.as_bytes()) {
        return Err(ApiError::Unauthorized {
            message: "The admin API needs `Authorization: Bearer <keys.admin_key>`.",
        });
    }
    state
        .protect
        .store
        .get()
        .map(|s| s.db.clone())
        .ok_or_else(|| ApiError::Internal {
            message: "The gateway has no key store attached; virtual keys are unavailable.".into(),
        })
}

fn store_error(e: &outlast_store::StoreError) -> Response {
    ApiError::Internal {
        message: format!("The key store failed: {e}"),
    }
    .into_response()
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let db = match authorize(&state, &headers) {
        Ok(db) => db,
        Err(e) => return e.into_response(),
    };
    let bytes = match crate::body::read(
        &headers,
        body,
        64 * 1024,
        state.config.server.body_read_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req: CreateKey = match crate::body::json(&bytes) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (name, limits) = match req.into_limits() {
        Ok(v) => v,
        Err(m) => return ApiError::invalid(m, None).into_response(),
    };
    match db.create_key(&name, limits).await {
        Ok(new) => {
            state.protect.keys_in_use.store(true, Ordering::Release);
            let mut v = describe(&new.record);
            if let Some(o) = v.as_object_mut() {
                o.insert("key".into(), Value::String(new.secret));
            }
            state
                .protect
                .registry
                .insert(VirtualKey::from_record(new.record, 0.0, 0.0, now_ms()));
            (StatusCode::CREATED, axum::Json(v)).into_response()
        }
        Err(e) => store_error(&e),
    }
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let db = match authorize(&state, &headers) {
        Ok(db) => db,
        Err(e) => return e.into_response(),
    };
    match db.list_keys().await {
        Ok(keys) => axum::Json(
            json!({"object": "list", "data": keys.iter().map(describe).collect::<Vec<_>>()}),
        )
        .into_response(),
        Err(e) => store_error(&e),
    }
}

pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let db = match authorize(&state, &headers) {
        Ok(db) => db,
        Err(e) => return e.into_response(),
    };
    // Refuse on this replica before the database even answers.
    state.protect.registry.remove_id(&id);
    match db.revoke_key(&id).await {
        Ok(true) => axum::Json(json!({"id": id, "revoked": true})).into_response(),
        Ok(false) => ApiError::NotFound {
            path: format!("/admin/keys/{id}"),
        }
        .into_response(),
        Err(e) => store_error(&e),
    }
}
