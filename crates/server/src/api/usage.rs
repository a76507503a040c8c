//! The usage API: `GET /v1/usage` (metered units and their cost, grouped by
//! function, hour or day), `GET /v1/quota` (a tenant's limits and its month so
//! far), and the admin's `GET|PUT /v1/tenants/{name}/quota`.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::quota::month_start;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use kiln_api::{
    HOUR, MAX_CPU_WEIGHT, PriceList, Quota, QuotaStatus, TenantId, UsageGrouping as By, UsageLine,
    UsageReport, UsageTotals,
};
use kiln_store::{Principal, UsageQuery, now};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const DAY: i64 = 24 * HOUR;

#[derive(Deserialize)]
pub(crate) struct UsageParams {
    /// RFC 3339 time, `YYYY-MM-DD`, or seconds since the epoch. Default: the start
    /// of this month (UTC).
    since: Option<String>,
    /// Same forms; exclusive. Default: now.
    until: Option<String>,
    function: Option<String>,
    #[serde(default)]
    by: By,
    /// Admins only: one tenant instead of all.
    tenant: Option<String>,
    /// `csv` for a CSV download instead of JSON.
    format: Option<String>,
}

/// Parses a time the way users write one.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let at = humantime::parse_rfc3339(&full).map_err(|_| {
        format!(
            "invalid time {text:?}: use YYYY-MM-DD, RFC 3339 (2026-11-25T09:00:00Z) or Unix seconds"
        )
    })?;
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| format!("time {text:?} is before 1970"))
}

fn format_time(at: i64, by: By) -> String {
    let moment = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(moment).to_string();
    match by {
        By::Day => text[..10].to_owned(),
        _ => text,
    }
}

fn line(
    tenant: Option<String>,
    function: Option<String>,
    period: Option<String>,
    totals: UsageTotals,
    prices: &PriceList,
) -> UsageLine {
    UsageLine {
        tenant,
        function,
        period,
        units: totals.into(),
        cost: prices.cost(&totals),
    }
}

pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> ApiResult<Response> {
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown format {other:?}: use `json` or `csv`"
            )));
        }
    };
    let tenant = match auth::require(&*state.store, &headers).await? {
        Principal::Tenant(t) => {
            if params.tenant.as_ref().is_some_and(|n| *n != t.name) {
                return Err(ApiError::forbidden(
                    "only an admin token can read another tenant's usage",
                ));
            }
            Some(t.id)
        }
        Principal::Admin => match &params.tenant {
            Some(name) => Some(tenant_id(&state, name).await?),
            None => None,
        },
    };
    let now = now();
    let since = match &params.since {
        Some(text) => parse_time(text).map_err(ApiError::bad_request)?,
        None => month_start(now),
    };
    let until = match &params.until {
        Some(text) => parse_time(text).map_err(ApiError::bad_request)?,
        None => now + 1,
    };
    if since >= until {
        return Err(ApiError::bad_request("`since` must be before `until`"));
    }
    // Usage is kept per hour: an hour is in the range when it starts in it.
    let rows = state
        .store
        .usage(UsageQuery {
            tenant,
            function: params.function.clone(),
            since: since.div_euclid(HOUR) * HOUR,
            until,
        })
        .await?;

    let mut grouped: BTreeMap<(String, String, i64), UsageTotals> = BTreeMap::new();
    let mut total = UsageTotals::default();
    for row in rows {
        let key = match params.by {
            By::Function => (row.tenant, row.function, 0),
            By::Hour => (row.tenant, String::new(), row.hour),
            By::Day => (row.tenant, String::new(), row.hour.div_euclid(DAY) * DAY),
        };
        grouped.entry(key).or_default().add(&row.totals);
        total.add(&row.totals);
    }
    let prices = state.quotas.prices();
    let lines = grouped
        .into_iter()
        .map(|((tenant, function, period), totals)| match params.by {
            By::Function => line(Some(tenant), Some(function), None, totals, prices),
            by => line(
                Some(tenant),
                params.function.clone(),
                Some(format_time(period, by)),
                totals,
                prices,
            ),
        })
        .collect();
    let report = UsageReport {
        since: format_time(since, By::Hour),
        until: format_time(until, By::Hour),
        by: params.by,
        prices: prices.clone(),
        rows: lines,
        total: line(None, params.function, None, total, prices),
    };
    if !csv {
        return Ok(Json(report).into_response());
    }
    let file = format!(
        "attachment; filename=\"kiln-usage-{}-{}.csv\"",
        &report.since[..10],
        report.by.as_str()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, file),
        ],
        report.to_csv(),
    )
        .into_response())
}

async fn tenant_id(state: &AppState, name: &str) -> ApiResult<TenantId> {
    let tenant = state.store.tenant(name).await?;
    tenant
        .map(|t| t.id)
        .ok_or_else(|| ApiError::not_found(format!("no tenant named {name:?}")))
}

fn quota_status(state: &AppState, id: TenantId, name: String) -> QuotaStatus {
    let (quota, used) = state.quotas.month_to_date(id);
    let prices = state.quotas.prices();
    QuotaStatus {
        tenant: name,
        quota,
        month_start: format_time(month_start(now()), By::Hour),
        cost: prices.cost(&used),
        used: used.into(),
        currency: prices.currency.clone(),
    }
}

/// `GET /v1/quota`: the calling tenant's own.
pub(crate) async fn own_quota(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<QuotaStatus>> {
    let tenant = auth::tenant(&*state.store, &headers).await?;
    Ok(Json(quota_status(&state, tenant.id, tenant.name)))
}

/// `GET /v1/tenants/{name}/quota` (admin).
pub(crate) async fn tenant_quota(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<QuotaStatus>> {
    auth::admin(&*state.store, &headers).await?;
    let id = tenant_id(&state, &name).await?;
    Ok(Json(quota_status(&state, id, name)))
}

/// `PUT /v1/tenants/{name}/quota` (admin): replaces the tenant's quota; fields
/// left out are unlimited.
pub(crate) async fn set_tenant_quota(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<QuotaStatus>> {
    auth::admin(&*state.store, &headers).await?;
    let quota: Quota = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"requests_per_month\": N, \"cost_per_month\": X, \"max_concurrent\": N, \
             \"requests_per_second\": N, \"cpu_weight\": N}} (each optional): {e}"
        ))
    })?;
    if quota
        .cost_per_month
        .is_some_and(|c| !c.is_finite() || c < 0.0)
    {
        return Err(ApiError::bad_request("cost_per_month must be a number ≥ 0"));
    }
    if quota
        .cpu_weight
        .is_some_and(|w| !(1..=MAX_CPU_WEIGHT).contains(&w))
    {
        return Err(ApiError::bad_request(format!(
            "cpu_weight must be between 1 and {MAX_CPU_WEIGHT}"
        )));
    }
    let id = tenant_id(&state, &name).await?;
    state.store.set_quota(id, quota).await?;
    state.quotas.set(id, quota);
    tracing::info!(tenant = %name, ?quota, "quota set");
    Ok(Json(quota_status(&state, id, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_three_forms_and_print_back() {
        assert_eq!(parse_time("2026-11-01"), Ok(1_793_491_200));
        assert_eq!(parse_time("2026-11-01T01:00:00Z"), Ok(1_793_494_800));
        assert_eq!(parse_time("1793491200"), Ok(1_793_491_200));
        assert!(parse_time("yesterday").unwrap_err().contains("YYYY-MM-DD"));
        assert_eq!(format_time(1_793_494_800, By::Hour), "2026-11-01T01:00:00Z");
        assert_eq!(format_time(1_793_494_800, By::Day), "2026-11-01");
    }
}
