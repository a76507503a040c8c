//! `/v1/schedules`: the tenant's scheduled functions with their next and last
//! runs, and one function's recent runs (`/v1/schedules/{function}`).

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use kiln_api::{NameKind, ScheduleInfo, ScheduledRun, check_name};
use std::collections::HashMap;
use std::sync::Arc;

/// Runs answered by default.
const DEFAULT_RUNS: u32 = 50;

/// `GET /v1/schedules`.
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    let now = kiln_store::now();
    let mut out = Vec::new();
    let mut scheduled = state.store.scheduled_functions().await?;
    scheduled.retain(|f| f.deployment.tenant_id == tenant.id);
    scheduled.sort_by(|a, b| a.deployment.function.cmp(&b.deployment.function));
    for function in scheduled {
        let deployment = function.deployment;
        let Some(schedule) = deployment.config.schedule else {
            continue;
        };
        let last = state
            .store
            .runs(tenant.id, &deployment.function, 1)
            .await?
            .into_iter()
            .next();
        out.push(ScheduleInfo {
            function: deployment.function,
            schedule: schedule.to_string(),
            version: deployment.version,
            next_at: schedule.next_after(now),
            last,
        });
    }
    Ok(Json(out))
}

/// `GET /v1/schedules/{function}?limit=N`: its runs, newest first.
pub(super) async fn runs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(function): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<ScheduledRun>>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    check_name(NameKind::Function, &function).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = match query.get("limit") {
        None => DEFAULT_RUNS,
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=kiln_store::RUNS_KEPT as u32).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit is a number from 1 to {}",
                    kiln_store::RUNS_KEPT
                ))
            })?,
    };
    if state.store.function(tenant.id, &function).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no function named {function:?}"
        )));
    }
    Ok(Json(state.store.runs(tenant.id, &function, limit).await?))
}
