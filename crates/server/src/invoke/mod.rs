//! The invoke path: `/fn/{tenant}/{function}[/{rest}]` runs the function's current
//! version in a fresh instance and answers with what it wrote.
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
use crate::state::{AppState, CachedDeployment};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use call::{Call, Executed, InFlight, Pipeline};
use kiln_api::Kind;
use kiln_runtime::FunctionKind;
use kiln_store::{NewLogEntry, Principal, StoreError};
use request::GuestRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The `/fn` handler.
pub(crate) async fn invoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let arrived = Instant::now();
    let in_flight = InFlight::enter(&state);
    let (parts, body) = request.into_parts();
    let declared = declared_length(&parts.headers);
    let mut body = Some(body);
    let (response, kind) = match run(&state, in_flight, peer, &params, &parts, &mut body).await {
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
    response
}

async fn run(
    state: &Arc<AppState>,
    in_flight: InFlight,
    peer: SocketAddr,
    params: &HashMap<String, String>,
    parts: &Parts,
    body: &mut Option<Body>,
) -> Result<(Response, Kind), Answer> {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let (tenant, function) = (param("tenant"), param("function"));

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
    if deployment.row.config.private {
        authorize(state, parts, &deployment).await?;
    }

    // Admit.
    let admission = match state.quotas.admit(deployment.row.tenant_id).await {
        Ok(admission) => admission,
        Err(exceeded) => {
            tracing::debug!(%tenant, %function, %exceeded, "refused by quota");
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
        script_name: format!("/fn/{tenant}/{function}"),
        path_info: params
            .get("rest")
            .map(|rest| format!("/{rest}"))
            .unwrap_or_default(),
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
