//! Console sessions: a browser signs in with an API token and gets a session
//! (its random id in an HttpOnly cookie; only the id's sha256 is stored), which
//! speaks for that token's principal until it expires, is signed out, or the
//! token is revoked (a session is checked against its token on every use).

use crate::error::StoreResult;
use crate::model::{Principal, TokenHash};
use async_trait::async_trait;

/// Sessions. A supertrait of [`crate::MetadataStore`].
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Opens a session for the token `token`, until `expires_at` (seconds).
    /// `NotFound` if the token does not exist or is revoked.
    async fn create_session(
        &self,
        session: TokenHash,
        token: TokenHash,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// Who the session speaks for at `now`: `None` if it does not exist, has
    /// expired, or its token was revoked.
    async fn session(&self, session: TokenHash, now: i64) -> StoreResult<Option<Principal>>;
    /// Ends a session; false if there was none.
    async fn delete_session(&self, session: TokenHash) -> StoreResult<bool>;
    /// Deletes the sessions expired at `now`; how many.
    async fn forget_expired_sessions(&self, now: i64) -> StoreResult<u64>;
}
