//! Console sessions in SQLite (the contract is in `sessions.rs`).

use super::{SqliteStore, internal};
use crate::error::{StoreError, StoreResult};
use crate::model::{Principal, TokenHash};
use crate::sessions::SessionStore;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        session: TokenHash,
        token: TokenHash,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO sessions (hash, token_id, expires_at, created_at)
                     SELECT ?1, id, ?2, ?3 FROM tokens WHERE hash = ?4 AND revoked_at IS NULL",
                    params![&session[..], expires_at, crate::now(), &token[..]],
                )
                .map_err(internal)?;
            match n {
                0 => Err(StoreError::NotFound("invalid or revoked token".into())),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn session(&self, session: TokenHash, now: i64) -> StoreResult<Option<Principal>> {
        self.with(move |conn| {
            let row: Option<(Option<i64>, Option<String>, Option<i64>)> = conn
                .query_row(
                    "SELECT t.tenant_id, n.name, n.created_at FROM sessions s
                     JOIN tokens t ON t.id = s.token_id
                     LEFT JOIN tenants n ON n.id = t.tenant_id
                     WHERE s.hash = ?1 AND s.expires_at > ?2 AND t.revoked_at IS NULL",
                    params![&session[..], now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(internal)?;
            Ok(row.map(|(tenant, name, created)| Principal::of_token(tenant, name, created)))
        })
        .await
    }

    async fn delete_session(&self, session: TokenHash) -> StoreResult<bool> {
        self.with(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM sessions WHERE hash = ?1",
                    params![&session[..]],
                )
                .map_err(internal)?;
            Ok(n > 0)
        })
        .await
    }

    async fn forget_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])
                .map_err(internal)?;
            Ok(n as u64)
        })
        .await
    }
}
