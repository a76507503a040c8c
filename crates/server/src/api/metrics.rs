//! Prometheus metrics at `GET /metrics`: invoke-path requests by outcome, their
//! latency, instances, the loaded-function cache, compiles, and the usage flusher.
//! Served on the main listener to admin tokens, or without a token on the
//! separate address given with `kiln up --metrics-listen`.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::metrics::BUCKETS;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// `GET /metrics` on the main listener: admin tokens only, and only when metrics
/// have no listener of their own.
pub(crate) async fn admin_metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !state.settings.metrics_on_main {
        return Err(ApiError::not_found(
            "metrics are served on the address given with --metrics-listen",
        ));
    }
    auth::admin(&*state.store, &headers).await?;
    Ok(exposition(&state))
}

/// `GET /metrics` on the `--metrics-listen` address: no token (bind it where
/// only the monitoring system reaches it).
pub(crate) async fn open_metrics(State(state): State<Arc<AppState>>) -> Response {
    exposition(&state)
}

fn exposition(state: &AppState) -> Response {
    let mut response = render(state).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The Prometheus text exposition of everything.
pub(crate) fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // Writing to a String cannot fail: the `let _ =` below discard nothing.
    let _ = writeln!(
        out,
        "# HELP kiln_requests_total Invoke-path responses, by outcome (the Kiln-Outcome header).\n\
         # TYPE kiln_requests_total counter"
    );
    for (kind, count) in m.requests() {
        let _ = writeln!(out, "kiln_requests_total{{outcome=\"{kind}\"}} {count}");
    }

    let name = "kiln_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Invoke-path latency, from the request's arrival to its response.\n# TYPE {name} histogram"
    );
    let (buckets, sum) = m.latency();
    let mut cumulative = 0;
    for (le, count) in BUCKETS.iter().zip(&buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += buckets.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", sum.as_secs_f64());
    let _ = writeln!(out, "{name}_count {cumulative}");

    let functions = state.functions.stats();
    let counters = &state.counters;
    let shares = state.runtime.cpu_shares();
    let copies = state.runtime.writable_copies();
    let scratches = state.runtime.scratch_directories();
    let scalars: [(&str, &str, &str, f64); 24] = [
        (
            "kiln_open_connections",
            "gauge",
            "Client connections open.",
            load(&counters.connections) as f64,
        ),
        (
            "kiln_in_flight_requests",
            "gauge",
            "Invoke-path requests being handled.",
            load(&counters.in_flight) as f64,
        ),
        (
            "kiln_active_instances",
            "gauge",
            "Instances alive in the pool.",
            f64::from(state.runtime.active_instances()),
        ),
        (
            "kiln_cpu_share_delays_total",
            "counter",
            "Times a guest waited at an epoch tick because its tenant was over its share of CPU.",
            shares.delays() as f64,
        ),
        (
            "kiln_cpu_share_limited_tenants",
            "gauge",
            "Tenants held to their share of CPU now (the machine is saturated).",
            shares.limited() as f64,
        ),
        (
            "kiln_cpu_share_capacity_cores",
            "gauge",
            "Cores the tenants' shares divide: this process's CPU time plus the machine's idle time, at most --cpu-cores (sampled while guests run).",
            shares.capacity(),
        ),
        (
            "kiln_loaded_functions",
            "gauge",
            "Functions loaded in memory (artifact mapped, pre-linked).",
            state.functions.loaded() as f64,
        ),
        (
            "kiln_loaded_code_bytes",
            "gauge",
            "Bytes of artifacts the loaded functions keep mapped (at most --max-loaded-code).",
            state.functions.loaded_bytes() as f64,
        ),
        (
            "kiln_function_cache_hits_total",
            "counter",
            "Requests that found their function loaded.",
            load(&functions.hits) as f64,
        ),
        (
            "kiln_function_cache_misses_total",
            "counter",
            "Requests that loaded their function from its artifact.",
            load(&functions.misses) as f64,
        ),
        (
            "kiln_function_cache_evictions_total",
            "counter",
            "Functions unloaded to stay within --max-loaded-functions.",
            load(&functions.evictions) as f64,
        ),
        (
            "kiln_writable_copies_made_total",
            "counter",
            "Private writable copies of shipped trees made for invocations (--dir ...:copy).",
            copies.made as f64,
        ),
        (
            "kiln_writable_copies_overlaid_total",
            "counter",
            "Of the writable copies made, those made as copy-on-write overlays (a file is copied when first written); the others were copied whole.",
            copies.overlaid as f64,
        ),
        (
            "kiln_writable_copies_reused_total",
            "counter",
            "Times an invocation got a writable copy ready-made (left unchanged by the one before, or made ahead), instead of a new one.",
            copies.reused as f64,
        ),
        (
            "kiln_writable_copies_idle",
            "gauge",
            "Writable copies ready for the next invocation.",
            copies.idle as f64,
        ),
        (
            "kiln_scratch_directories_made_total",
            "counter",
            "Scratch directories made for invocations (--tmp).",
            scratches.made as f64,
        ),
        (
            "kiln_scratch_directories_reused_total",
            "counter",
            "Times an invocation got a scratch directory ready-made (left untouched by the one before, or made ahead), instead of a new one.",
            scratches.reused as f64,
        ),
        (
            "kiln_baseline_compiles_total",
            "counter",
            "Modules compiled with the baseline compiler (Winch) first.",
            load(&functions.baseline_compiles) as f64,
        ),
        (
            "kiln_tier_switches_total",
            "counter",
            "Functions switched from baseline to optimized code.",
            load(&functions.tier_switches) as f64,
        ),
        (
            "kiln_compiles_total",
            "counter",
            "Modules compiled (deploys of new bytes, start-up and request-path compiles).",
            load(&functions.compiles) as f64,
        ),
        (
            "kiln_compile_seconds_total",
            "counter",
            "Time spent compiling modules.",
            load(&functions.compile_ns) as f64 / 1e9,
        ),
        (
            "kiln_usage_flush_lag_seconds",
            "gauge",
            "Age of the oldest usage record not yet written to the store.",
            state
                .meter
                .as_ref()
                .map_or(0.0, |m| m.flush_lag().as_secs_f64()),
        ),
        (
            "kiln_usage_flush_failures_total",
            "counter",
            "Usage flushes that failed (their records are kept and retried).",
            state.meter.as_ref().map_or(0, |m| m.flush_failures()) as f64,
        ),
        (
            "kiln_logs_dropped_total",
            "counter",
            "Invocation log entries dropped because the log writer was behind.",
            state.logs.dropped() as f64,
        ),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}
