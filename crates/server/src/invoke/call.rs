//! The vocabulary the pipeline and its executors share: what an executor is
//! given ([`Pipeline`]) and returns ([`Executed`], with what is left to
//! [`Settle`]), and one admitted [`Call`] of a deployment until it is settled:
//! metered, counted against its tenant's quotas, and logged. Only the pipeline
//! (`invoke/mod.rs`) settles.

use super::answer::answered;
use crate::metering::totals_of;
use crate::quota::Admission;
use crate::state::{AppState, CachedDeployment, Counters};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use kiln_api::{CPU_HEADER, Kind, PEAK_MEMORY_HEADER, UsageTotals, WALL_HEADER};
use kiln_runtime::{Finished, Invocation, InvokeError};
use kiln_store::NewLogEntry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How much of a failed invocation's stdout its log entry keeps.
const FAILED_STDOUT_KEPT: usize = 8 << 10;

/// Counts an invocation as running until dropped (even if the client goes away).
pub(crate) struct InFlight(Arc<Counters>);

impl InFlight {
    pub(crate) fn enter(state: &AppState) -> InFlight {
        state.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.counters.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an executor did: the response to send, how it came about, and what is
/// left to settle.
pub(crate) struct Executed {
    pub(crate) response: Response,
    pub(crate) kind: Kind,
    pub(crate) settle: Settle,
}

/// What the executors of one request share.
pub(crate) struct Pipeline {
    pub(crate) state: Arc<AppState>,
    pub(crate) deployment: Arc<CachedDeployment>,
    /// The function's own variables with its granted secrets: the environment
    /// it adds to the request's, and a component's `wasi:config`.
    pub(crate) config: Arc<[(String, String)]>,
}

/// What an executor leaves to be settled.
pub(crate) enum Settle {
    /// The run is over (or never started): its result.
    Now(Result<Invocation, InvokeError>),
    /// The response streams: the run ends with its body.
    Later(Finished),
}

/// An admitted call, until settled.
pub(crate) struct Call {
    pub(crate) state: Arc<AppState>,
    pub(crate) deployment: Arc<CachedDeployment>,
    pub(crate) admission: Admission,
    pub(crate) _in_flight: InFlight,
}

impl Call {
    /// Settles the call for `response` (what the client was answered), now or
    /// once a streamed body has ended, and adds the usage receipt to a response
    /// settled now when the function asked for one.
    pub(crate) fn settle(self, settle: Settle, mut response: Response) -> Response {
        let status = response.status();
        match settle {
            Settle::Now(result) => {
                let receipt = self.deployment.row.config.receipt && result.is_ok();
                let usage = self.record(status, &result);
                if receipt {
                    let headers = response.headers_mut();
                    headers.insert(CPU_HEADER, HeaderValue::from(usage.cpu_us));
                    headers.insert(WALL_HEADER, HeaderValue::from(usage.wall_us));
                    headers.insert(
                        PEAK_MEMORY_HEADER,
                        HeaderValue::from(usage.peak_memory_bytes),
                    );
                }
            }
            Settle::Later(finished) => {
                let tracker = self.state.settling.clone();
                tracker.spawn(async move {
                    let result = finished.wait().await;
                    self.record(status, &result);
                });
            }
        }
        response
    }

    /// Meters, counts and logs how the call went.
    fn record(
        mut self,
        status: StatusCode,
        result: &Result<Invocation, InvokeError>,
    ) -> UsageTotals {
        let deployment = &self.deployment;
        let (outcome, usage, stderr, stdout) = match result {
            Ok(inv) => {
                let answered = answered(&inv.outcome, &deployment.row.config);
                let usage = totals_of(&inv.stats, answered);
                if let Some(meter) = &self.state.meter {
                    meter.record(
                        deployment.row.tenant_id,
                        deployment.row.function_id,
                        &deployment.row.function,
                        &usage,
                    );
                }
                self.admission.ran(usage);
                let stderr = String::from_utf8_lossy(&inv.stderr).into_owned();
                // A success's stdout was its answer; a failure's is kept to
                // explain it.
                let stdout = match answered {
                    true => String::new(),
                    false => {
                        let kept = inv.stdout.len().min(FAILED_STDOUT_KEPT);
                        String::from_utf8_lossy(&inv.stdout[..kept]).into_owned()
                    }
                };
                (inv.outcome.to_string(), usage, stderr, stdout)
            }
            Err(e) => (
                e.to_string(),
                UsageTotals::default(),
                String::new(),
                String::new(),
            ),
        };
        self.state.logs.record(NewLogEntry {
            function_id: deployment.row.function_id,
            version: deployment.row.version,
            at: kiln_store::now(),
            outcome,
            status: status.as_u16(),
            wall_us: usage.wall_us,
            stderr,
            cpu_us: usage.cpu_us,
            instantiation_us: usage.instantiation_us,
            peak_memory_bytes: usage.peak_memory_bytes,
            bytes_in: usage.bytes_in,
            bytes_out: usage.bytes_out,
            stdout,
        });
        usage
    }
}
