//! Open sign-up (`kiln up --signup open`): a visitor names a tenant on the
//! console's page and gets it, with the server's default quotas, its first
//! token (shown once) and a session, within the rate limit of
//! [`crate::signups`].

use super::{check_origin, start_session};
use crate::api;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_api::{ErrorCode, NewNamed};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// `GET /console/config`: what the page needs to know before signing in.
#[derive(Serialize)]
pub(super) struct ConsoleSettings {
    /// Whether visitors may create a tenant.
    signup: bool,
}

pub(super) async fn settings(State(state): State<Arc<AppState>>) -> Json<ConsoleSettings> {
    Json(ConsoleSettings {
        signup: state.settings.open_signup,
    })
}

/// `POST /console/signup` `{"name"}`: a new tenant, its first token (in the
/// answer, once), and a session cookie for it.
pub(super) async fn sign_up(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    check_origin(&headers)?;
    if !state.settings.open_signup {
        return Err(ApiError::forbidden(
            "sign-up is closed on this server: ask its operator for a token",
        ));
    }
    let request: NewNamed = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"name\": \"...\"}}: {e}")))?;
    let now = Instant::now();
    if let Err(wait) = state.signups.take(peer.ip(), now) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many sign-ups from here lately: try again in {minutes} min"),
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return Ok(response);
    }
    let created = match api::new_tenant(&state, &request.name).await {
        Ok(created) => created,
        Err(refused) => {
            state.signups.give_back(peer.ip(), now);
            return Err(refused);
        }
    };
    tracing::info!(tenant = %created.tenant.name, client = %peer.ip(), "tenant signed up");
    let cookie = start_session(&state, crate::auth::hash(&created.token)).await?;
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
