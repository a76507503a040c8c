//! The invoke path: `/fn/{tenant}/{function}[/{rest}]` runs the function's current
//! version in a fresh instance and answers with what it wrote. So do a custom
//! domain's requests ([`by_host`]: the function its longest matching route
//! names, at `/`) and scheduled runs ([`scheduled`]: an empty `POST` carrying
//! its tick, which no client can forge).
//!
//! One pipeline, in this file: **resolve** (the cached deployment) → **authorize**
//! (private functions) → **admit** (quotas, the declared body size) → **load**
//! (the compiled function, [`crate::functions`]) → **execute** (one executor per
//! way of running: [`buffered`], [`streamed`]) → **settle** ([`call`]: metering,
//! quotas, logs) → **observe** (metrics, by [`Kind`]). Executors answer and say
//! what is to be settled; only this file settles and counts. Every answer that
//! is not the function's own is an [`Answer`]: a status, a kind and one line of
//! text (the table is in [`answer`] and in `docs/api.md`).

mod answer;
mod buffered;
mod call;
mod cgi;
mod request;
mod streamed;

pub(crate) use answer::Answer;

use crate::auth;
use crate::body::{declared_length, drain, worth_draining};
use crate::domains::Routed;
use crate::state::{AppState, CachedDeployment};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use call::{Call, Executed, InFlight, Pipeline};
use kiln_api::{Kind, SCHEDULED_TIME_HEADER};
use kiln_runtime::FunctionKind;
use kiln_store::{NewLogEntry, Principal, StoreError};
use request::GuestRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Which function a request runs, and where it sits in the URL.
struct Target<'a> {
    tenant: &'a str,
    function: &'a str,
    /// `/fn/{tenant}/{function}`, or empty on a custom domain.
    script_name: String,
    /// The path after the script name.
    path_info: String,
    /// A scheduled run: the platform's own, past the private check.
    scheduled: bool,
}

/// The `/fn` handler.
pub(crate) async fn invoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let (tenant, function) = (param("tenant"), param("function"));
    let target = Target {
        tenant,
        function,
        script_name: format!("/fn/{tenant}/{function}"),
        path_info: params
            .get("rest")
            .map(|rest| format!("/{rest}"))
            .unwrap_or_default(),
        scheduled: false,
    };
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(SCHEDULED_TIME_HEADER);
    let mut response = serve(&state, peer, &target, parts, body).await.0;
    if state.settings.console {
        response.headers_mut().append(
            axum::http::header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(crate::console::FUNCTION_SANDBOX),
        );
    }
    response
}

/// In front of every route: a request whose `Host` is a custom domain runs
/// the function its longest matching route names (SCRIPT_NAME empty,
/// PATH_INFO the whole path), or is a 404 of that domain; any other request
/// goes on to the platform's routes.
pub(crate) async fn by_host(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in `Host`.
    let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let routed = host.and_then(|host| state.domains.route(host, request.uri().path()));
    let Some(routed) = routed else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(SCHEDULED_TIME_HEADER);
    match routed {
        Routed::Function { tenant, function } => {
            let target = Target {
                tenant: &tenant,
                function: &function,
                script_name: String::new(),
                path_info: parts.uri.path().to_owned(),
                scheduled: false,
            };
            serve(&state, peer, &target, parts, body).await.0
        }
        Routed::NoRoute => {
            let host = host_of(&parts);
            let answer = Answer::new(
                StatusCode::NOT_FOUND,
                Kind::NotFound,
                format!("no route for {} on {host}", parts.uri.path()),
            );
            if worth_draining(declared_length(&parts.headers)) {
                drain(body).await;
            }
            let (response, kind) = answer.answered();
            state.metrics.observe(kind, std::time::Duration::ZERO);
            response
        }
    }
}

fn host_of(parts: &Parts) -> String {
    parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default()
        .to_owned()
}

/// A scheduled run of `tenant`'s `function`: `parts` is an empty `POST`
/// carrying [`SCHEDULED_TIME_HEADER`]. Metered, counted and logged like a
/// request; the caller reads the body to its end (a streamed run settles then).
pub(crate) async fn scheduled(
    state: &Arc<AppState>,
    tenant: &str,
    function: &str,
    parts: Parts,
) -> (Response, Kind) {
    let target = Target {
        tenant,
        function,
        script_name: format!("/fn/{tenant}/{function}"),
        path_info: String::new(),
        scheduled: true,
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    serve(state, peer, &target, parts, Body::empty()).await
}

/// Runs the pipeline for one request and counts its outcome.
async fn serve(
    state: &Arc<AppState>,
    peer: SocketAddr,
    target: &Target<'_>,
    parts: Parts,
    body: Body,
) -> (Response, Kind) {
    let arrived = Instant::now();
    let in_flight = InFlight::enter(state);
    let declared = declared_length(&parts.headers);
    let mut body = Some(body);
    let (response, kind) = match run(state, in_flight, peer, target, &parts, &mut body).await {
        Ok(answered) => answered,
        Err(answer) => {
            // Refused before the body was read: read it anyway (bounded), so that
            // the client, still sending, receives the refusal.
            if let Some(body) = body.take().filter(|_| worth_draining(declared)) {
                drain(body).await;
            }
            answer.answered()
        }
    };
    state.metrics.observe(kind, arrived.elapsed());
    (response, kind)
}

async fn run(
    state: &Arc<AppState>,
    in_flight: InFlight,
    peer: SocketAddr,
    target: &Target<'_>,
    parts: &Parts,
    body: &mut Option<Body>,
) -> Result<(Response, Kind), Answer> {
    let (tenant, function) = (target.tenant, target.function);

    // Resolve.
    let deployment = state
        .deployments
        .get(&*state.store, &state.bundles, tenant, function)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(|| {
            Answer::new(
                StatusCode::NOT_FOUND,
                Kind::NotFound,
                format!("no function {tenant}/{function}"),
            )
        })?;

    // Authorize.
    if deployment.row.config.private && !target.scheduled {
        authorize(state, parts, &deployment).await?;
    }

    // Admit.
    let admission = match state.quotas.admit(deployment.row.tenant_id).await {
        Ok(admission) => admission,
        Err(exceeded) => {
            tracing::debug!(%tenant, %function, %exceeded, "refused by quota");
            deployment.cpu.refused();
            let retry = matches!(exceeded, crate::quota::QuotaExceeded::Rate { .. });
            let answer = Answer::quota(exceeded.to_string(), retry);
            state.logs.record(NewLogEntry {
                function_id: deployment.row.function_id,
                version: deployment.row.version,
                at: kiln_store::now(),
                outcome: exceeded.to_string(),
                status: answer.status.as_u16(),
                ..Default::default()
            });
            return Err(answer);
        }
    };
    deployment.cpu.set_weight(admission.cpu_weight());
    let limit = deployment.limits.stdin_bytes;
    if declared_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err(Answer::too_large(limit));
    }

    // Load.
    let loaded = state
        .functions
        .get(deployment.row.digest)
        .await
        .map_err(|e| {
            let cause = crate::error::FailureCause::of(&e);
            tracing::error!(%tenant, %function, %cause, "cannot load function");
            Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Kind::Unavailable,
                "this function cannot be loaded right now",
            )
        })?;
    // Its files: unpacked on this node once, before its first request here.
    if !deployment.files_ready.load(Ordering::Acquire) {
        for mount in &deployment.row.config.mounts {
            state
                .bundles
                .ensure(mount.bundle, None)
                .await
                .map_err(|e| {
                    let cause = crate::error::FailureCause::of(&e);
                    tracing::error!(%tenant, %function, %cause, "cannot make a bundle ready");
                    Answer::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Kind::Unavailable,
                        "this function's files cannot be had right now",
                    )
                })?;
        }
        deployment.files_ready.store(true, Ordering::Release);
    }

    // Secrets, read for each request: a rotation is seen by the next one.
    let secrets = match deployment.row.config.secrets.is_empty() {
        true => Vec::new(),
        false => crate::secrets::granted(&*state.store, &state.secret_keys, &deployment.row)
            .await
            .map_err(|e| {
                tracing::error!(%tenant, %function, error = %e, "cannot read a function's secrets");
                Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Kind::Unavailable,
                    "this function's secrets cannot be read right now",
                )
            })?,
    };

    // Execute.
    let guest = GuestRequest {
        peer,
        script_name: target.script_name.clone(),
        path_info: target.path_info.clone(),
        parts,
    };
    let call = Call {
        state: state.clone(),
        deployment: deployment.clone(),
        admission,
        _in_flight: in_flight,
    };
    let config = match secrets.is_empty() {
        true => deployment.config_vars.clone(),
        false => deployment
            .config_vars
            .iter()
            .filter(|(name, _)| !secrets.iter().any(|(secret, _)| secret == name))
            .chain(secrets.iter())
            .cloned()
            .collect(),
    };
    let pipeline = Pipeline {
        state: state.clone(),
        deployment,
        config,
    };
    let executed = match loaded.kind() {
        FunctionKind::Http => {
            let body = body.take().unwrap_or_default();
            streamed::http(&pipeline, &loaded, &guest, body).await
        }
        FunctionKind::Command if pipeline.deployment.row.config.stream => {
            let body = body.take().unwrap_or_default();
            streamed::command(&pipeline, &loaded, &guest, body).await
        }
        FunctionKind::Command => buffered::run(&pipeline, &loaded, &guest, body.take()).await?,
    };

    // Settle.
    let Executed {
        response,
        kind,
        settle,
    } = executed;
    Ok((call.settle(settle, response), kind))
}

/// Lets a private function's own tenant (or an admin) through.
async fn authorize(
    state: &AppState,
    parts: &Parts,
    deployment: &CachedDeployment,
) -> Result<(), Answer> {
    let principal = auth::principal(&*state.store, &parts.headers)
        .await
        .map_err(|e| match e.status {
            StatusCode::UNAUTHORIZED => {
                Answer::new(StatusCode::UNAUTHORIZED, Kind::Unauthorized, e.message)
            }
            _ => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Kind::Unavailable,
                e.message,
            ),
        })?;
    match principal {
        Some(Principal::Admin) => Ok(()),
        Some(Principal::Tenant(t)) if t.name == deployment.row.tenant => Ok(()),
        Some(Principal::Tenant(_)) => Err(Answer::new(
            StatusCode::FORBIDDEN,
            Kind::Forbidden,
            "this function is private to its tenant",
        )),
        None => Err(Answer::new(
            StatusCode::UNAUTHORIZED,
            Kind::Unauthorized,
            "this function is private: send `Authorization: Bearer <token>`",
        )),
    }
}

/// A store failure on the invoke path: the cause to the log, a short line to
/// the client.
fn store_failed(error: &StoreError) -> Answer {
    let cause = crate::error::FailureCause::of(error);
    tracing::error!(%cause, "metadata store failed on the invoke path");
    let (status, kind) = match error {
        StoreError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, Kind::Unavailable),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, Kind::Internal),
    };
    let message = match kind {
        Kind::Unavailable => "the metadata store is unavailable; try again later",
        _ => "internal error; see the server log",
    };
    Answer::new(status, kind, message)
}
