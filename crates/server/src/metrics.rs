//! Prometheus metrics at `GET /metrics`: invoke-path requests by outcome, their
//! latency, instances, the loaded-function cache, compiles, and the usage flusher.
//! Served on the main listener to admin tokens, or without a token on the
//! separate address given with `kiln up --metrics-listen`.

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every `Kiln-Outcome` an invoke-path response can carry; anything else counts
/// as `other`.
pub const OUTCOMES: &[&str] = &[
    "success",
    "exit",
    "trap",
    "timeout",
    "memory",
    "output",
    "cgi",
    "too-large",
    "capacity",
    "quota",
    "not-found",
    "unauthorized",
    "forbidden",
    "unavailable",
    "bad-request",
    "config",
    "other",
];

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

pub struct Metrics {
    requests: Vec<AtomicU64>,
    /// Per bucket (not cumulative), plus one for +Inf.
    latency_buckets: Vec<AtomicU64>,
    latency_sum_ns: AtomicU64,
    /// Time spent compiling at deploy and start-up.
    pub compile_ns: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: OUTCOMES.iter().map(|_| AtomicU64::new(0)).collect(),
            latency_buckets: (0..=BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            latency_sum_ns: AtomicU64::new(0),
            compile_ns: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one invoke-path response with its outcome and how long it took.
    pub fn observe(&self, outcome: &str, took: Duration) {
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.requests[index].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn add_compile_time(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.compile_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// `GET /metrics` on the main listener: admin tokens only, and only when metrics
/// have no listener of their own.
pub async fn admin_metrics(
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
pub async fn open_metrics(State(state): State<Arc<AppState>>) -> Response {
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
pub fn render(state: &AppState) -> String {
    let m = &state.metrics;
    let mut out = String::new();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // Writing to a String cannot fail: the `let _ =` below discard nothing.
    let _ = writeln!(
        out,
        "# HELP kiln_requests_total Invoke-path responses, by outcome (the Kiln-Outcome header).\n\
         # TYPE kiln_requests_total counter"
    );
    for (outcome, count) in OUTCOMES.iter().zip(&m.requests) {
        let _ = writeln!(
            out,
            "kiln_requests_total{{outcome=\"{outcome}\"}} {}",
            load(count)
        );
    }

    let name = "kiln_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Invoke-path latency, from the request's arrival to its response.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (le, count) in BUCKETS.iter().zip(&m.latency_buckets) {
        cumulative += load(count);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += load(&m.latency_buckets[BUCKETS.len()]);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", load(&m.latency_sum_ns) as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {cumulative}");

    let functions = state.functions.stats();
    let counters = &state.counters;
    let scalars: [(&str, &str, &str, f64); 12] = [
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
            "kiln_loaded_functions",
            "gauge",
            "Functions loaded in memory (artifact mapped, pre-linked).",
            state.functions.len() as f64,
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
            "kiln_compiles_total",
            "counter",
            "Modules compiled (deploys of new bytes, start-up compiles).",
            load(&counters.compiles) as f64,
        ),
        (
            "kiln_compile_seconds_total",
            "counter",
            "Time spent compiling modules.",
            load(&m.compile_ns) as f64 / 1e9,
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
