//! The invoke path: `/fn/{tenant}/{function}[/{rest}]` runs the function's current
//! version in a fresh instance, CGI-style, and turns its outcome into a response.
//!
//! | outcome | status | `Kiln-Outcome` |
//! |---|---|---|
//! | success | 200, or the CGI `Status:` | `success` |
//! | non-zero exit | 502 | `exit` |
//! | trap | 500 | `trap` |
//! | wall-time limit | 504 | `timeout` |
//! | memory limit | 507 | `memory` |
//! | output limit | 509 | `output` |
//! | malformed CGI headers | 502 | `cgi` |
//! | wasi:http component sent no response | 502 | `no-response` |
//! | request body over the limit | 413 | `too-large` |
//! | no free instance slot | 503 | `capacity` |
//! | tenant quota or spending cap reached | 429 | `quota` |
//!
//! Commands run with the whole body as stdin and answer with their whole stdout;
//! wasi:http components and commands deployed with `stream` are served by
//! [`crate::streamed`]. Every invocation that ran is metered ([`crate::metering`])
//! and counted against its tenant's quotas ([`crate::quota`]); refusals cost nothing.

use crate::cgi::{self, CgiRequest};
use crate::error::ApiError;
use crate::metering::totals_of;
use crate::quota::{Admission, QuotaExceeded};
use crate::state::{AppState, Served};
use crate::{auth, drain, streamed};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use kiln_runtime::{ByteCount, FunctionKind, Invocation, InvokeError, Limits, Outcome};
use kiln_store::{Deployment, NewLogEntry, Principal, UsageTotals};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `Kiln-Outcome`: how the invocation ended, for clients and tests.
pub const OUTCOME_HEADER: &str = "kiln-outcome";
/// Usage receipt headers, on responses of functions deployed with `receipt`.
pub const CPU_HEADER: &str = "kiln-cpu-us";
pub const WALL_HEADER: &str = "kiln-wall-us";
pub const PEAK_MEMORY_HEADER: &str = "kiln-peak-memory";

pub async fn invoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let arrived = Instant::now();
    let in_flight = InFlight::enter(&state);
    let (parts, body) = request.into_parts();
    let declared = drain::declared_length(&parts.headers);
    let mut body = Some(body);
    let response = match run(&state, in_flight, peer, &params, parts, &mut body).await {
        Ok(response) => response,
        Err(response) => {
            // Refused before the body was read: read it anyway (bounded), so that
            // the client, still sending, receives the refusal.
            if let Some(body) = body.take().filter(|_| drain::worth_draining(declared)) {
                drain::drain(body).await;
            }
            response
        }
    };
    let outcome = response
        .headers()
        .get(OUTCOME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("other");
    state.metrics.observe(outcome, arrived.elapsed());
    response
}

/// Counts an invocation as running until dropped (even if the client goes away).
pub(crate) struct InFlight(Arc<crate::state::Counters>);

impl InFlight {
    fn enter(state: &AppState) -> InFlight {
        state.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state.counters.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One admitted call of a deployment, until it is settled: metered, counted
/// against the tenant's quotas, and logged.
pub(crate) struct Call {
    pub(crate) state: Arc<AppState>,
    pub(crate) deployment: Arc<Served>,
    admission: Admission,
    _in_flight: InFlight,
}

impl Call {
    /// Records how the call went (`status` is what the client was answered).
    pub(crate) fn settle(
        mut self,
        status: StatusCode,
        result: &Result<Invocation, InvokeError>,
    ) -> UsageTotals {
        let deployment = &self.deployment;
        let (outcome, usage, stderr) = match result {
            Ok(inv) => {
                let usage = totals_of(&inv.stats, inv.outcome.is_success());
                if let Some(meter) = &self.state.meter {
                    meter.record(
                        deployment.tenant_id,
                        deployment.function_id,
                        &deployment.function,
                        &usage,
                    );
                }
                self.admission.ran(usage);
                let stderr = String::from_utf8_lossy(&inv.stderr).into_owned();
                (inv.outcome.to_string(), usage, stderr)
            }
            Err(e) => (e.to_string(), UsageTotals::default(), String::new()),
        };
        self.state.logs.record(NewLogEntry {
            function_id: deployment.function_id,
            version: deployment.version,
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
        });
        usage
    }
}

/// What the function sees of the request besides its body.
pub(crate) struct Target<'a> {
    pub(crate) peer: SocketAddr,
    /// `/fn/{tenant}/{function}`.
    pub(crate) script_name: String,
    /// The path after the script name, with its leading `/`, or empty.
    pub(crate) path_info: String,
    pub(crate) parts: &'a axum::http::request::Parts,
}

async fn run(
    state: &Arc<AppState>,
    in_flight: InFlight,
    peer: SocketAddr,
    params: &HashMap<String, String>,
    parts: axum::http::request::Parts,
    body: &mut Option<Body>,
) -> Result<Response, Response> {
    let tenant = params.get("tenant").map(String::as_str).unwrap_or_default();
    let function = params
        .get("function")
        .map(String::as_str)
        .unwrap_or_default();
    let not_found = || {
        plain(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no function {tenant}/{function}"),
        )
    };
    let deployment = state
        .deployments
        .get(&*state.store, tenant, function)
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(not_found)?;

    if deployment.config.private {
        let principal = auth::principal(&*state.store, &parts.headers)
            .await
            .map_err(IntoResponse::into_response)?;
        let allowed = match principal {
            Some(Principal::Admin) => true,
            Some(Principal::Tenant(t)) => t.name == deployment.tenant,
            None => {
                return Err(plain(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this function is private: send `Authorization: Bearer <token>`".into(),
                ));
            }
        };
        if !allowed {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this function is private to its tenant".into(),
            ));
        }
    }

    let admission = match state.quotas.admit(deployment.tenant_id) {
        Ok(admission) => admission,
        Err(exceeded) => {
            tracing::debug!(%tenant, %function, %exceeded, "refused by quota");
            let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "quota", exceeded.to_string());
            if let QuotaExceeded::Rate { .. } = exceeded {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            state.logs.record(NewLogEntry {
                function_id: deployment.function_id,
                version: deployment.version,
                at: kiln_store::now(),
                outcome: exceeded.to_string(),
                status: response.status().as_u16(),
                ..Default::default()
            });
            return Err(response);
        }
    };
    let limits = limits_of(&deployment, &state.settings.default_limits);
    if drain::declared_length(&parts.headers).is_some_and(|len| len > limits.stdin_bytes) {
        return Err(too_large(limits.stdin_bytes));
    }
    let loaded = crate::artifacts::function(state, deployment.digest)
        .await
        .map_err(|e| {
            tracing::error!(%tenant, %function, error = %e, "cannot load function");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this function cannot be loaded right now".into(),
            )
        })?;

    let target = Target {
        peer,
        script_name: format!("/fn/{tenant}/{function}"),
        path_info: params
            .get("rest")
            .map(|rest| format!("/{rest}"))
            .unwrap_or_default(),
        parts: &parts,
    };
    let call = Call {
        state: state.clone(),
        deployment: deployment.clone(),
        admission,
        _in_flight: in_flight,
    };
    let mut streamed_body = || body.take().unwrap_or_default();
    match loaded.kind() {
        FunctionKind::Http => {
            return Ok(streamed::http(call, &loaded, &target, streamed_body(), limits).await);
        }
        FunctionKind::Command if deployment.config.stream => {
            return Ok(streamed::command(call, &loaded, &target, streamed_body(), limits).await);
        }
        FunctionKind::Command => {}
    }

    let body = read_body(body, limits.stdin_bytes).await?;
    let (args, env) = command_env(&deployment, &target, Some(body.len() as u64));
    let result = state
        .runtime
        .invoke(
            &loaded,
            kiln_runtime::Request {
                stdin: body,
                args,
                env,
                limits,
                allowed_hosts: deployment.allowed_hosts.clone(),
            },
        )
        .await;
    let mut response = match &result {
        Ok(inv) => respond(&deployment, &inv.outcome, inv.stdout.clone()),
        Err(e) => invoke_error_response(e),
    };
    let usage = call.settle(response.status(), &result);
    if deployment.config.receipt && result.is_ok() {
        let headers = response.headers_mut();
        headers.insert(CPU_HEADER, HeaderValue::from(usage.cpu_us));
        headers.insert(WALL_HEADER, HeaderValue::from(usage.wall_us));
        headers.insert(
            PEAK_MEMORY_HEADER,
            HeaderValue::from(usage.peak_memory_bytes),
        );
    }
    Ok(response)
}

/// A command's arguments and environment: the function's own variables, then the
/// RFC 3875 request variables. `body_len` is `None` for a body of unknown length.
pub(crate) fn command_env(
    deployment: &Deployment,
    target: &Target<'_>,
    body_len: Option<u64>,
) -> (Vec<String>, Vec<(String, String)>) {
    let parts = target.parts;
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().unwrap_or(80)),
        None => (host, 80),
    };
    let remote_addr = target.peer.ip().to_string();
    let protocol = format!("{:?}", parts.version);
    let mut env = deployment.config.env.clone();
    let request_env = cgi::request_env(&CgiRequest {
        method: parts.method.as_str(),
        script_name: &target.script_name,
        path_info: &target.path_info,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body_len,
        server_name,
        server_port,
        remote_addr: &remote_addr,
        protocol: &protocol,
    });
    env.retain(|(k, _)| !request_env.iter().any(|(r, _)| r == k));
    env.extend(request_env);
    let mut args = vec![deployment.function.clone()];
    args.extend(deployment.config.args.iter().cloned());
    (args, env)
}

/// The answer to an invocation that could not run.
pub(crate) fn invoke_error_response(error: &InvokeError) -> Response {
    match error {
        InvokeError::StdinTooLarge { .. } => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            error.to_string(),
        ),
        InvokeError::AtCapacity(_) => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "capacity",
                error.to_string(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        InvokeError::BadRequest(_) => {
            plain(StatusCode::BAD_REQUEST, "bad-request", error.to_string())
        }
        InvokeError::MemoryLimitTooLarge { .. }
        | InvokeError::NotACommand
        | InvokeError::NotHttp
        | InvokeError::Interrupted => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "config",
            error.to_string(),
        ),
    }
}

pub(crate) fn too_large(limit: u64) -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("request body is over the limit of {}", ByteCount(limit)),
    )
}

fn limits_of(deployment: &Deployment, defaults: &Limits) -> Limits {
    Limits {
        memory_bytes: deployment
            .config
            .memory_bytes
            .unwrap_or(defaults.memory_bytes),
        wall_time: deployment
            .config
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.wall_time),
        stdin_bytes: deployment.config.max_input.unwrap_or(defaults.stdin_bytes),
        stdout_bytes: deployment
            .config
            .max_output
            .unwrap_or(defaults.stdout_bytes),
        ..*defaults
    }
}

/// The whole request body, refusing (413) as soon as the bytes read cross
/// `limit` (a declared length over it was refused before).
async fn read_body(slot: &mut Option<Body>, limit: u64) -> Result<Bytes, Response> {
    let Some(body) = slot.take() else {
        return Ok(Bytes::new());
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match crate::listen::stalled(&e) {
            Some(stall) => plain(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                stall.to_string(),
            ),
            None => plain(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("cannot read the request body: {e}"),
            ),
        })?;
        if collected.len() + chunk.len() > limit {
            drain::drain(Body::from_stream(stream)).await;
            return Err(too_large(limit as u64));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

/// The response for an invocation that ran.
pub(crate) fn respond(deployment: &Deployment, outcome: &Outcome, stdout: Bytes) -> Response {
    let failed = |status: u16, kind: &'static str, message: String| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        plain(status, kind, format!("function {message}"))
    };
    match outcome {
        Outcome::Success if deployment.config.cgi => cgi_response(stdout),
        Outcome::Success => {
            let content_type = if std::str::from_utf8(&stdout).is_ok() {
                "text/plain; charset=utf-8"
            } else {
                "application/octet-stream"
            };
            let mut response = Response::new(Body::from(stdout));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(OUTCOME_HEADER, HeaderValue::from_static("success"));
            response
        }
        Outcome::Exit(code) => failed(502, "exit", format!("exited with code {code}")),
        Outcome::Trap { message } => failed(500, "trap", format!("trapped: {message}")),
        Outcome::WallTimeLimit { limit } => failed(
            504,
            "timeout",
            format!("exceeded its time limit of {limit:?}"),
        ),
        Outcome::MemoryLimit { limit } => failed(
            507,
            "memory",
            format!("exceeded its memory limit of {}", ByteCount(*limit)),
        ),
        Outcome::OutputLimit { limit } => failed(
            509,
            "output",
            format!("exceeded its output limit of {}", ByteCount(*limit)),
        ),
        Outcome::NoResponse { reason } => {
            failed(502, "no-response", format!("sent no response: {reason}"))
        }
    }
}

fn cgi_response(stdout: Bytes) -> Response {
    let parsed = match cgi::parse_response(&stdout) {
        Ok(parsed) => parsed,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                "cgi",
                format!("function printed invalid CGI output: {e}"),
            );
        }
    };
    let mut response = Response::new(Body::from(stdout.slice(parsed.body_offset..)));
    *response.status_mut() = parsed.status;
    let headers = response.headers_mut();
    for (name, value) in parsed.headers {
        headers.append(name, value);
    }
    headers.insert(OUTCOME_HEADER, HeaderValue::from_static("success"));
    response
}

/// A one-line plain-text answer with its outcome kind.
pub(crate) fn plain(status: StatusCode, kind: &'static str, message: String) -> Response {
    let mut response = (status, format!("{message}\n")).into_response();
    response
        .headers_mut()
        .insert(OUTCOME_HEADER, HeaderValue::from_static(kind));
    response
}
