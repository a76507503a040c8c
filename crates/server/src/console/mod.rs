//! The console's server side: its page and assets (in the binary, from
//! `crates/server/console/`), and its sessions. A browser signs in with an API
//! token (`POST /console/session`) and gets a session cookie, `HttpOnly`,
//! `SameSite=Strict`, `Secure` when the server speaks HTTPS; the cookie then
//! authenticates `/v1` like the token would (`auth::principal`), until it
//! expires (`--session-ttl`), is signed out (`DELETE /console/session`), or its
//! token is revoked. A state-changing `/v1` request authenticated by a cookie
//! must come from the console's own origin ([`same_origin_only`]), and the
//! page's Content-Security-Policy allows no inline script: what a function, a
//! tenant or a guest's stderr says is only ever set as text. While the console
//! is served, `/fn` answers run sandboxed in an origin of their own
//! ([`FUNCTION_SANDBOX`]). Open sign-up is in [`signup`].

use crate::auth::{self, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use kiln_store::TokenHash;
use serde::Deserialize;
use std::sync::Arc;

mod signup;

/// What the console's pages may load: only their own scripts and styles, no
/// inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sent with every `/fn` answer while the console is served: a function's
/// page shares the console's origin, so it runs in a sandbox with an origin
/// of its own (scripts and forms still work), where it cannot call `/v1` with
/// a signed-in visitor's session. A web app that needs its own origin
/// belongs on a custom domain, which the console never shares.
pub(crate) const FUNCTION_SANDBOX: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// The console's files, all in the binary: its page, its script and style,
/// and the vendored charting library (uPlot, MIT, `vendor/uplot.LICENSE`;
/// `scripts/vendor-console` checks it against npm).
const ASSETS: [(&str, &str, &str); 6] = [
    (
        "/console",
        include_str!("../../console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/console/",
        include_str!("../../console/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/console/app.js",
        include_str!("../../console/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/app.css",
        include_str!("../../console/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/console/vendor/uplot.js",
        include_str!("../../console/vendor/uplot.iife.min.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/console/vendor/uplot.css",
        include_str!("../../console/vendor/uplot.min.css"),
        "text/css; charset=utf-8",
    ),
];

/// The console's routes (its page, assets, sessions and sign-up), and `/`
/// sending a browser to it.
pub(crate) fn routes() -> axum::Router<Arc<AppState>> {
    let mut router = axum::Router::new();
    for (path, body, content_type) in ASSETS {
        router = router.route(path, get(move || asset(body, content_type)));
    }
    router
        .layer(tower_http::compression::CompressionLayer::new())
        .route("/", get(|| async { Redirect::to("/console") }))
        .route(
            "/console/session",
            axum::routing::post(sign_in).delete(sign_out),
        )
        .route("/console/config", get(signup::settings))
        .route("/console/signup", axum::routing::post(signup::sign_up))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change only with the binary: a browser asks again each time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /console/session` `{"token"}`: a session for the token's principal.
async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<SignIn>,
) -> ApiResult<Response> {
    check_origin(&headers)?;
    let token_hash = auth::hash(request.token.trim());
    let principal = state
        .store
        .authenticate(token_hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked token"))?;
    let cookie = start_session(&state, token_hash).await?;
    let mut response = Json(principal.who()).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// A new session for a token: stored, and the cookie that carries it.
async fn start_session(state: &AppState, token_hash: TokenHash) -> ApiResult<HeaderValue> {
    let (session, session_hash) = auth::generate().map_err(ApiError::internal)?;
    let now = kiln_store::now();
    let ttl = state.settings.session_ttl;
    let expires = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    state
        .store
        .create_session(session_hash, token_hash, expires)
        .await?;
    // Expired sessions go as new ones come.
    if let Err(e) = state.store.forget_expired_sessions(now).await {
        tracing::warn!(error = %e, "cannot delete expired console sessions");
    }
    let secure = if state.settings.https { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        ttl.as_secs()
    );
    HeaderValue::from_str(&cookie).map_err(ApiError::internal)
}

/// `DELETE /console/session`: the session ends, everywhere, now.
async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    check_origin(&headers)?;
    if let Some(session) = auth::session_cookie(&headers) {
        state.store.delete_session(auth::hash(session)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let expired = HeaderValue::from_str(&expired).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, expired);
    Ok(response)
}

/// A request that changes something on the strength of a cookie must come from
/// a page of this server: its `Origin` names the host it was sent to (and a
/// browser's `Sec-Fetch-Site`, when sent, says `same-origin`).
fn check_origin(headers: &HeaderMap) -> ApiResult<()> {
    let refused = || {
        ApiError::forbidden("cross-site request refused: send it from the console, or with a token")
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(refused)?;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .ok_or_else(refused)?;
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(refused)?;
    if !origin_host.eq_ignore_ascii_case(host) {
        return Err(refused());
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") => Ok(()),
        Some(_) => Err(refused()),
    }
}

/// In front of `/v1`: a state-changing request authenticated by the session
/// cookie (no `Authorization` header) must be same-origin ([`check_origin`]).
pub(crate) async fn same_origin_only(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    let by_cookie =
        !headers.contains_key(header::AUTHORIZATION) && auth::session_cookie(headers).is_some();
    if !safe
        && by_cookie
        && let Err(refused) = check_origin(headers)
    {
        return refused.into_response();
    }
    next.run(request).await
}
