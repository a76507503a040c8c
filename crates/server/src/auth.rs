//! API tokens: generated here, shown once, stored as sha256 hashes, checked on
//! every control request (and on invocations of private functions); or, from
//! a browser, the console's session cookie, which speaks for the token it was
//! opened with (`console/`).

use crate::error::ApiError;
use axum::http::HeaderMap;
use kiln_api::Tenant;
use kiln_store::{MetadataStore, Principal, TokenHash};
use sha2::{Digest, Sha256};

/// The name of the console's session cookie.
pub(crate) const SESSION_COOKIE: &str = "kiln_session";

/// Tokens start with this, so they are recognisable in configs and leaks.
const PREFIX: &str = "kiln_";

/// A new random token (256 bits) and its hash.
pub(crate) fn generate() -> anyhow::Result<(String, TokenHash)> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{PREFIX}{hex}");
    let hash = hash(&token);
    Ok((token, hash))
}

/// The stored form of a token. Lookup is by this hash (an index probe), so the
/// secret itself is never compared byte by byte.
pub(crate) fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("authorization") else {
        return Ok(None);
    };
    let unauthorized =
        || ApiError::unauthorized("malformed Authorization header: expected `Bearer <token>`");
    let text = value.to_str().map_err(|_| unauthorized())?;
    let token = text.strip_prefix("Bearer ").ok_or_else(unauthorized)?;
    Ok(Some(token.trim()))
}

/// The principal of a request, or `None` when it carries no token. A token that
/// does not exist or was revoked is an error, not anonymity.
pub(crate) async fn principal(
    store: &dyn MetadataStore,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = bearer(headers)? else {
        let Some(session) = session_cookie(headers) else {
            return Ok(None);
        };
        return match store.session(hash(session), kiln_store::now()).await? {
            Some(p) => Ok(Some(p)),
            None => Err(ApiError::unauthorized(
                "the console session has ended (signed out, expired, or its token revoked): sign in again",
            )),
        };
    };
    match store.authenticate(hash(token)).await? {
        Some(p) => Ok(Some(p)),
        None => Err(ApiError::unauthorized("invalid or revoked token")),
    }
}

/// The console's session id in the request's cookies, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// The principal of a request that must carry a token.
pub(crate) async fn require(
    store: &dyn MetadataStore,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    principal(store, headers).await?.ok_or_else(|| {
        ApiError::unauthorized("missing token: send `Authorization: Bearer <token>`")
    })
}

/// The tenant of a request that must carry a tenant token.
pub(crate) async fn tenant(
    store: &dyn MetadataStore,
    headers: &HeaderMap,
) -> Result<Tenant, ApiError> {
    match require(store, headers).await? {
        Principal::Tenant(t) => Ok(t),
        Principal::Admin => Err(ApiError::forbidden(
            "this route acts on a tenant's functions: use a tenant token, not the admin token",
        )),
    }
}

/// Succeeds only for the admin token.
pub(crate) async fn admin(store: &dyn MetadataStore, headers: &HeaderMap) -> Result<(), ApiError> {
    match require(store, headers).await? {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::forbidden("this route needs the admin token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, ha) = generate().unwrap();
        let (b, hb) = generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert!(a.starts_with("kiln_") && a.len() == 5 + 64);
        assert_eq!(hash(&a), ha);
    }
}
