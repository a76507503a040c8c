//! Console sessions in PostgreSQL (the contract is in `sessions.rs`): every
//! node of a cluster knows every session.

use super::{PostgresStore, pg};
use crate::error::{StoreError, StoreResult};
use crate::model::{Principal, TokenHash};
use crate::sessions::SessionStore;
use async_trait::async_trait;

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(
        &self,
        session: TokenHash,
        token: TokenHash,
        expires_at: i64,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO sessions (hash, token_id, expires_at, created_at)
                 SELECT $1, id, $2, $3 FROM tokens WHERE hash = $4 AND revoked_at IS NULL",
                &[&&session[..], &expires_at, &crate::now(), &&token[..]],
            )
            .await
            .map_err(pg)?;
        match n {
            0 => Err(StoreError::NotFound("invalid or revoked token".into())),
            _ => Ok(()),
        }
    }

    async fn session(&self, session: TokenHash, now: i64) -> StoreResult<Option<Principal>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT t.tenant_id, n.name, n.created_at FROM sessions s
                 JOIN tokens t ON t.id = s.token_id
                 LEFT JOIN tenants n ON n.id = t.tenant_id
                 WHERE s.hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
                &[&&session[..], &now],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Principal::of_token(r.get(0), r.get(1), r.get(2))))
    }

    async fn delete_session(&self, session: TokenHash) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM sessions WHERE hash = $1", &[&&session[..]])
            .await
            .map_err(pg)?;
        Ok(n > 0)
    }

    async fn forget_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
            .await
            .map_err(pg)
    }
}
